"""The connection lender: reuse without the pool, a bound on what is out, and what goes back."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from query_svc.lending import ConnectionLender


class FakeConnection:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False
        self.detached = False

    def is_closed(self) -> bool:
        if self.detached:
            raise asyncpg.InterfaceError("cannot call Connection.is_closed(): released back to the pool")
        return self.closed


class FakePool:
    def __init__(self) -> None:
        self.opened: list[FakeConnection] = []
        self.released: list[FakeConnection] = []

    async def acquire(self) -> FakeConnection:
        connection = FakeConnection(len(self.opened))
        self.opened.append(connection)
        return connection

    async def release(self, connection: FakeConnection) -> None:
        self.released.append(connection)


def lender(pool: FakePool, *, max_size: int = 2, acquire_timeout: float = 5.0) -> Any:
    # The fake offers what the lender uses of an asyncpg pool.
    return ConnectionLender(pool, max_size=max_size, acquire_timeout=acquire_timeout)  # type: ignore[arg-type]


async def test_a_connection_given_back_clean_is_lent_again_without_the_pool() -> None:
    pool = FakePool()
    lending = lender(pool)
    for _ in range(5):
        connection = await lending.lend()
        await lending.give_back(connection, clean=True)
    assert len(pool.opened) == 1
    assert pool.released == []


async def test_no_more_than_max_size_are_out_and_a_waiting_read_gets_the_next_one_back() -> None:
    pool = FakePool()
    lending = lender(pool, max_size=1)
    first = await lending.lend()
    waiting = asyncio.create_task(lending.lend())
    await asyncio.sleep(0)
    assert not waiting.done()
    await lending.give_back(first, clean=True)
    assert await waiting is first
    assert len(pool.opened) == 1


async def test_a_read_that_finds_none_free_waits_at_most_the_acquire_timeout() -> None:
    lending = lender(FakePool(), max_size=1, acquire_timeout=0.05)
    await lending.lend()
    with pytest.raises(TimeoutError):
        await lending.lend()


async def test_a_connection_left_with_an_error_goes_back_to_the_pool_and_frees_its_place() -> None:
    pool = FakePool()
    lending = lender(pool, max_size=1)
    first = await lending.lend()
    waiting = asyncio.create_task(lending.lend())
    await asyncio.sleep(0)
    await lending.give_back(first, clean=False)
    second = await waiting
    assert pool.released == [first]
    assert second is not first
    assert len(pool.opened) == 2


async def test_after_expire_no_connection_taken_before_is_lent_again() -> None:
    pool = FakePool()
    lending = lender(pool)
    free, lent = await lending.lend(), await lending.lend()
    await lending.give_back(free, clean=True)
    await lending.expire()
    assert pool.released == [free]
    await lending.give_back(lent, clean=True)
    assert pool.released == [free, lent]
    fresh = await lending.lend()
    assert fresh not in (free, lent)


async def test_a_connection_found_closed_goes_back_to_the_pool_and_another_is_lent() -> None:
    pool = FakePool()
    lending = lender(pool)
    connection = await lending.lend()
    await lending.give_back(connection, clean=True)
    connection.closed = True
    other = await lending.lend()
    assert other is not connection
    assert pool.released == [connection]


async def test_close_sends_the_free_connections_back_and_a_forgotten_one_frees_its_place() -> None:
    pool = FakePool()
    lending = lender(pool, max_size=1)
    connection = await lending.lend()
    lending.forget(connection)
    replacement = await lending.lend()
    assert replacement is not connection
    await lending.give_back(replacement, clean=True)
    await lending.close()
    assert pool.released == [replacement]


async def test_a_connection_asyncpg_took_back_when_it_closed_frees_its_place() -> None:
    pool = FakePool()
    lending = lender(pool, max_size=1, acquire_timeout=0.5)
    connection = await lending.lend()
    await lending.give_back(connection, clean=True)
    connection.detached = True  # what asyncpg does to a pooled proxy whose connection closed
    other = await lending.lend()
    assert other is not connection
    assert len(pool.opened) == 2


async def test_a_read_that_gave_up_waiting_leaves_no_claim_on_the_next_connection_back() -> None:
    pool = FakePool()
    lending = lender(pool, max_size=1, acquire_timeout=0.05)
    first = await lending.lend()
    with pytest.raises(TimeoutError):
        await lending.lend()
    await lending.give_back(first, clean=True)
    assert await lending.lend() is first
    assert len(pool.opened) == 1
