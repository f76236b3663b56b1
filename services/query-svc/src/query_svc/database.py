"""The reader pool: bounded, read-only, with a statement timeout, and database failures as problems.

Every connection starts with `default_transaction_read_only = on` and a `statement_timeout`, so
even a bug in the engine cannot write or run away. Acquiring waits at most `acquire_timeout`, and a
statement the server has not answered a second after its own time limit is given up on (half-open
TCP answers nothing, ever). An exhausted pool, a cancelled statement, or a server that is
unreachable, shutting down, starting up, recovering or out of connections answers 503 with
`Retry-After` instead of queueing without bound or surfacing as a 500.

Reads borrow connections from a `ConnectionLender` over the pool (taken out of it once, lent read
after read: the pool's own acquire and release cost more CPU than a point read's SELECT). The pool
recovers by itself: asyncpg replaces a closed connection when it is next acquired, and a connection
that failed (lost, or left by the server's FATAL in a state it cannot use) goes back to it and is
discarded, never lent again. A reader started while the database is down starts without
connections and answers 503 until it is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from cqrs_shared.pg_failover import drop, is_failover
from cqrs_shared.postgres_connect import PLAIN, ConnectOptions
from cqrs_shared.problems import ProblemError
from query_svc.lending import ConnectionLender

log = logging.getLogger(__name__)

#: A connection taken from the pool or opened alone; both offer the same API.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
_RETRY = {"Retry-After": "1"}
#: Seconds a statement may outlast its `statement_timeout` before the client stops waiting for it.
_STATEMENT_GRACE = 1.0
_CONNECT_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 2.0

#: Failures that say "the database cannot serve now, try again shortly", not "this request is wrong":
#: connection exceptions (SQLSTATE class 08), operator intervention (57: shutting down, crashed,
#: starting up or recovering; its 57014, a cancelled statement, is told apart by the reader),
#: insufficient resources (53: too many connections), rollbacks forced on a replica by a conflict
#: with recovery (40), sockets and timeouts, and asyncpg's own errors on a connection it lost or can
#: no longer use. `InternalClientError` is one of those: when the server ends an idle session (57P01
#: on a restart, 57P02 after a crash) asyncpg reads the FATAL before the EOF, and in between the pool
#: still counts the connection as open; its next statement fails with "cannot switch to state 12;
#: another operation (2) is in progress" (state 2: discarding input after an error).
UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.TransactionRollbackError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


async def _init_connection(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own rollback of an open transaction.

    asyncpg's default reset is a round trip per release (`pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`), 9 % of a read's CPU in the profile. Reader sessions never take advisory
    locks, open cursors outside a transaction, LISTEN (the listener has its own connection) or SET
    anything after connect, so there is nothing to reset, and the connect-time settings
    (read-only, statement timeout) are exactly what must survive.
    """


async def create_reader_pool(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    statement_timeout_ms: int,
    application_name: str = "query-svc",
    connect: ConnectOptions = PLAIN,
) -> asyncpg.Pool[asyncpg.Record]:
    """A pool whose every session is read-only and time-limited; it opens `min_size` connections
    before returning and keeps that many, reconnecting in the background (asyncpg 0.32)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        timeout=_CONNECT_TIMEOUT,
        command_timeout=statement_timeout_ms / 1000 + _STATEMENT_GRACE,
        server_settings={
            "application_name": application_name,
            "default_transaction_read_only": "on",
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(max(statement_timeout_ms * 5, 10_000)),
        },
        **connect.for_dsn(dsn),
    )
    if pool is None:  # asyncpg's typing allows it; an awaited create_pool always returns the pool
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


class Reader:
    """Hands out reader connections for one request and turns database failures into problems."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        statement_timeout_ms: int,
        acquire_timeout: float,
        connect: ConnectOptions = PLAIN,
    ) -> None:
        self._dsn = dsn
        self._connect = connect
        self._sizes = (min_size, max_size)
        self._statement_timeout_ms = statement_timeout_ms
        self._acquire_timeout = acquire_timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._lender: ConnectionLender | None = None

    async def start(self) -> None:
        """Create the pool; while the database is unavailable, an empty one (reads answer 503)."""
        try:
            self._pool = await self._create_pool(self._sizes[0])
        except UNAVAILABLE as exc:
            # Connections are then opened by the reads that need them, once the database is back.
            log.warning("reader database unavailable at start (%s); reads answer 503 until it is back", exc)
            self._pool = await self._create_pool(0)
        self._lender = ConnectionLender(
            self._pool, max_size=self._sizes[1], acquire_timeout=self._acquire_timeout
        )

    async def _create_pool(self, min_size: int) -> asyncpg.Pool[asyncpg.Record]:
        return await create_reader_pool(
            self._dsn,
            min_size=min_size,
            max_size=self._sizes[1],
            statement_timeout_ms=self._statement_timeout_ms,
            connect=self._connect,
        )

    async def close(self) -> None:
        """Close politely within a few seconds, else drop the connections: a server that is gone
        or half-open never acknowledges a close, and shutdown must not wait for it."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            lender, self._lender = self._lender, None
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    if lender is not None:
                        await lender.close()
                    await pool.close()
            except UNAVAILABLE as exc:
                log.warning(
                    "reader pool did not close cleanly (%s: %s); dropping it", type(exc).__name__, exc
                )
                pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("the reader is not started")
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection for one read (lent, see `lending`); every database failure leaves as a
        `ProblemError`."""
        if self._lender is None:
            raise RuntimeError("the reader is not started")
        lender = self._lender
        try:
            connection = await lender.lend()
            clean, dropped = False, False
            try:
                yield connection
                clean = True
            except BaseException as exc:
                if is_failover(exc):
                    # Dropped with every other connection to the same node, so the next request
                    # reconnects to whatever node the reader endpoint names now. Forgotten and the
                    # rest expired before anything awaits: a lent place must not outlive the read.
                    dropped = True
                    lender.forget(connection)
                    lender.expire()
                    await drop(self.pool, connection, exc)
                raise
            finally:
                if not dropped:
                    await lender.give_back(connection, clean=clean)
        except TimeoutError as exc:
            raise ProblemError(
                503,
                "database-busy",
                "Database busy",
                "the read database did not answer in time",
                headers=_RETRY,
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
        except UNAVAILABLE as exc:
            log.warning("reader database unavailable: %s: %s", type(exc).__name__, exc)
            raise ProblemError(
                503,
                "database-unavailable",
                "Database unavailable",
                "the read database does not answer",
                headers=_RETRY,
            ) from exc

    async def check(self) -> None:
        """Readiness: a connection answers (raises a `ProblemError` otherwise)."""
        async with self.connection() as connection:
            await connection.fetchval("SELECT 1")
