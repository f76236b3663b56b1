"""A database failover as a client sees it, and the one answer: drop the connection, retry the work.

During an Aurora failover (or any primary switch) the old writer restarts as a reader and the
cluster endpoint's DNS moves to the new writer. Clients see two things:
- sessions ended by the server (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03
  cannot_connect_now) or sockets lost mid-statement;
- connections that reached the old writer through a stale DNS answer, or were opened while it
  was already a reader, on which every write fails with 25006 read_only_sql_transaction.

A read-only session never becomes writable again, and a pool would hand it out forever. So the
connection is terminated (never returned to the pool) and the pool's other connections are
expired too, since they were opened against the same node; asyncpg replaces them on their next
acquire. The caller's unit of work (a projector batch, a request) fails and is retried on a fresh
connection, which DNS sends to the new writer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Counter

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
PooledConnection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

#: What a failover looks like from a connection. `InterfaceError` and `InternalClientError` are
#: asyncpg's own words for a connection it lost or read a server's FATAL on.
FAILOVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

DROPPED = Counter(
    "cqrs_postgres_connections_dropped_total",
    "Connections dropped because they were on a read-only node or ended by a failover",
    ["reason"],
)


def is_failover(exc: BaseException) -> bool:
    """True when `exc` says the connection's node is gone or no longer the writer."""
    return isinstance(exc, FAILOVER_ERRORS)


def _reason(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    return str(sqlstate) if sqlstate else type(exc).__name__


async def drop(pool: Pool, connection: PooledConnection, exc: BaseException) -> None:
    """Terminate `connection` and expire the rest of `pool`: none of them is used again."""
    DROPPED.labels(_reason(exc)).inc()
    await pool.expire_connections()
    # A connection lost mid-statement was already taken back by asyncpg (its proxy detached), and
    # terminating a detached proxy raises: there is nothing left to terminate.
    with contextlib.suppress(asyncpg.InterfaceError):
        connection.terminate()


@asynccontextmanager
async def acquire(pool: Pool, *, acquire_timeout: float | None = None) -> AsyncIterator[PooledConnection]:
    """`pool.acquire()`, except that a connection that fails with a failover error is dropped
    (see `drop`) before the error goes on to the caller, who retries its work."""
    async with pool.acquire(timeout=acquire_timeout) as connection:
        try:
            yield connection
        except BaseException as exc:
            if is_failover(exc):
                await drop(pool, connection, exc)
            raise
