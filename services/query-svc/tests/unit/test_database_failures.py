"""Every way the database can be unavailable is a 503 with Retry-After, never a 500."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from cqrs_shared.pg_failover import is_failover
from cqrs_shared.problems import ProblemError
from query_svc import database
from query_svc.database import Reader

OUTAGES = [
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.CannotConnectNowError("consistent recovery state has not been yet reached"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CrashShutdownError("terminating connection because of crash of another server process"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.InsufficientResourcesError("out of shared memory"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.ConnectionFailureError("could not receive data from server"),
    asyncpg.SerializationError("canceling statement due to conflict with recovery"),
    asyncpg.InterfaceError("cannot perform operation: connection is closed"),
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    ConnectionRefusedError(111, "Connect call failed"),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError(113, "No route to host"),
    TimeoutError(),
]


class FakeConnection:
    terminated = False

    def terminate(self) -> None:
        self.terminated = True

    def is_closed(self) -> bool:
        return self.terminated


class FailingPool:
    """A pool whose acquire (connecting) or whose statement (reading) raises `error`."""

    def __init__(self, error: Exception, *, on: str) -> None:
        self.error = error
        self.on = on
        self.connection = FakeConnection()
        self.expired = False
        self.released: list[FakeConnection] = []

    async def acquire(self, *, timeout: float | None = None) -> FakeConnection:
        if self.on == "acquire":
            raise self.error
        return self.connection

    async def release(self, connection: FakeConnection) -> None:
        self.released.append(connection)

    async def expire_connections(self) -> None:
        self.expired = True


async def _reader_over(pool: FailingPool, monkeypatch: pytest.MonkeyPatch) -> Reader:
    async def create_pool(*_args: Any, **_kwargs: Any) -> FailingPool:
        return pool

    monkeypatch.setattr(database, "create_reader_pool", create_pool)
    reader = Reader(
        "postgresql://unused", min_size=1, max_size=1, statement_timeout_ms=100, acquire_timeout=1
    )
    await reader.start()
    return reader


@pytest.mark.parametrize("on", ["acquire", "statement"])
@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_an_unavailable_database_is_a_503_with_retry_after(
    error: Exception, on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = FailingPool(error, on=on)
    reader = await _reader_over(pool, monkeypatch)
    with pytest.raises(ProblemError) as problem:
        async with reader.connection():
            raise error
    assert problem.value.status == 503
    assert problem.value.headers == {"Retry-After": "1"}
    assert problem.value.__cause__ is error
    # A connection a failover ended is never handed out again, nor are its pool siblings; one
    # a read left with any other error goes back to the pool, which resets or discards it.
    dropped = on == "statement" and is_failover(error)
    assert (pool.connection.terminated, pool.expired) == (dropped, dropped)
    returned = on == "statement" and not dropped
    assert pool.released == ([pool.connection] if returned else [])


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__)
async def test_a_reader_started_while_the_database_is_unavailable_starts_empty(
    error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []

    async def create_pool(*_args: Any, min_size: int, **_kwargs: Any) -> FailingPool:
        sizes.append(min_size)
        if min_size:
            raise error
        return FailingPool(error, on="acquire")

    monkeypatch.setattr(database, "create_reader_pool", create_pool)
    reader = Reader(
        "postgresql://unused", min_size=2, max_size=4, statement_timeout_ms=100, acquire_timeout=1
    )
    await reader.start()
    assert sizes == [2, 0]
    with pytest.raises(ProblemError) as problem:
        async with reader.connection():
            pass
    assert problem.value.status == 503


async def test_a_bug_is_not_mistaken_for_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = await _reader_over(FailingPool(RuntimeError("a bug"), on="statement"), monkeypatch)
    with pytest.raises(RuntimeError):
        async with reader.connection():
            raise RuntimeError("a bug")
