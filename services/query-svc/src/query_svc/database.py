"""The reader pool: bounded, read-only, with a statement timeout, and database failures as problems.

Every connection starts with `default_transaction_read_only = on` and a `statement_timeout`, so
even a bug in the engine cannot write or run away. Acquiring waits at most `acquire_timeout`;
an exhausted pool, a cancelled statement or an unreachable server answers 503 with `Retry-After`
instead of queueing without bound or surfacing as a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from cqrs_shared.problems import ProblemError

log = logging.getLogger(__name__)

#: A connection taken from the pool or opened alone; both offer the same API.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
_RETRY = {"Retry-After": "1"}
_UNAVAILABLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


async def _init_connection(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_reader_pool(
    dsn: str, *, min_size: int, max_size: int, statement_timeout_ms: int, application_name: str = "query-svc"
) -> asyncpg.Pool[asyncpg.Record]:
    """A pool whose every session is read-only and time-limited."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=_init_connection,
        server_settings={
            "application_name": application_name,
            "default_transaction_read_only": "on",
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(max(statement_timeout_ms * 5, 10_000)),
        },
    )
    if pool is None:  # asyncpg's typing allows it; an awaited create_pool always returns the pool
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


class Reader:
    """Hands out reader connections for one request and turns database failures into problems."""

    def __init__(
        self, dsn: str, *, min_size: int, max_size: int, statement_timeout_ms: int, acquire_timeout: float
    ) -> None:
        self._dsn = dsn
        self._sizes = (min_size, max_size)
        self._statement_timeout_ms = statement_timeout_ms
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    async def start(self) -> None:
        self._pool = await create_reader_pool(
            self._dsn,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            statement_timeout_ms=self._statement_timeout_ms,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("the reader is not started")
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        try:
            async with self.pool.acquire(timeout=self._acquire_timeout) as connection:
                yield connection
        except TimeoutError as exc:
            raise ProblemError(
                503, "database-busy", "Database busy", "no reader connection was free in time", headers=_RETRY
            ) from exc
        except asyncpg.QueryCanceledError as exc:
            raise ProblemError(
                503, "query-timeout", "Query timed out", "the query exceeded its time limit", headers=_RETRY
            ) from exc
        except asyncpg.UndefinedTableError as exc:
            raise ProblemError(
                503,
                "read-model-unavailable",
                "Read model unavailable",
                "the read model has not been built yet",
                headers=_RETRY,
            ) from exc
        except asyncpg.DataError as exc:
            # Values are validated before they reach SQL; this is the net under that validation.
            log.warning("a value passed validation but not PostgreSQL: %s", exc)
            raise ProblemError(
                422, "invalid-value", "Invalid value", "a parameter value is not acceptable"
            ) from exc
        except _UNAVAILABLE as exc:
            log.warning("reader database unavailable: %s", exc)
            raise ProblemError(
                503,
                "database-unavailable",
                "Database unavailable",
                "the read database does not answer",
                headers=_RETRY,
            ) from exc

    async def check(self) -> None:
        """Readiness: a connection answers (raises otherwise)."""
        async with self.pool.acquire(timeout=self._acquire_timeout) as connection:
            await connection.fetchval("SELECT 1")
