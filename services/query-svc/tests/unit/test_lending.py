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


def lender(
    pool: FakePool, *, max_size: int = 2, acquire_timeout: float = 5.0, idle_seconds: float = 60.0
) -> Any:
    # The fake offers what the lender uses of an asyncpg pool.
    return ConnectionLender(
        pool,  # type: ignore[arg-type]
        max_size=max_size,
        acquire_timeout=acquire_timeout,
        idle_seconds=idle_seconds,
    )


async def settle() -> None:
    """Let background releases run (the fake pool's release never waits)."""
    for _ in range(3):
        await asyncio.sleep(0)


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
    lending.expire()
    await settle()
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


class SlowReleasePool(FakePool):
    """A pool whose release of an expired connection takes long: it closes it politely."""

    async def release(self, connection: FakeConnection) -> None:
        await asyncio.sleep(3600)
        self.released.append(connection)


async def test_expire_frees_the_places_at_once_while_the_pool_closes_the_old_connections() -> None:
    pool = SlowReleasePool()
    lending = lender(pool, max_size=2, acquire_timeout=0.5)
    old = [await lending.lend(), await lending.lend()]
    for connection in old:
        await lending.give_back(connection, clean=True)
    lending.expire()  # no await: the read that saw the failover does not wait for the closes
    fresh = [await lending.lend(), await lending.lend()]  # the places are free although not yet released
    assert not set(fresh) & set(old)
    assert pool.released == []
    for task in list(lending._releasing):
        task.cancel()


async def test_a_wake_up_spent_on_a_read_that_timed_out_goes_to_the_next_one() -> None:
    pool = FakePool()
    lending = lender(pool, max_size=1)
    held = await lending.lend()
    first, second = asyncio.create_task(lending.lend()), asyncio.create_task(lending.lend())
    await asyncio.sleep(0)
    lending.forget(held)  # its place is free: `first` is woken ...
    first.cancel()  # ... and its wait ends (its timeout) before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    # Without the wake-up passed on, `second` would wait for its whole acquire timeout (5 s).
    connection = await asyncio.wait_for(second, 1.0)
    assert connection is not held


async def test_a_connection_left_free_too_long_goes_back_to_the_pool() -> None:
    pool = FakePool()
    kept = lender(pool, idle_seconds=60.0)
    connection = await kept.lend()
    await kept.give_back(connection, clean=True)
    assert pool.released == []
    trimmed = lender(pool, idle_seconds=0.0)
    first, second = await trimmed.lend(), await trimmed.lend()
    await trimmed.give_back(first, clean=True)
    await trimmed.give_back(second, clean=True)  # `first` has been free longer than 0 s
    assert pool.released[0] is first


async def test_a_connection_given_back_after_close_goes_to_the_pool() -> None:
    pool = FakePool()
    lending = lender(pool)
    connection = await lending.lend()
    await lending.close()
    await lending.give_back(connection, clean=True)
    assert pool.released == [connection]
