"""Reader connections lent read after read, without asyncpg's per-acquire and per-release work.

asyncpg's `Pool.acquire` and `release` cost more CPU than the point SELECT between them: a timeout
context and its timer, a proxy object, a Task per release (`asyncio.shield`) and an idle-expiry
timer re-armed every time. Measured on this machine with uvloop, 16 readers on 10 connections:
0.035-0.042 ms of client CPU per pooled point read, 0.015-0.016 ms lending from a plain list. So a
connection is taken from the pool once and then lent from a list:

- lending a free one is a list pop, giving it back a list append (or a hand-over to the read that
  has waited longest); neither awaits;
- at most `max_size` are out of the pool at once; a read that finds none free waits for one at
  most `acquire_timeout` in all, then fails with `TimeoutError` (as the pool's acquire does);
- the pool still opens, reconnects, resets and closes every connection: one found closed when
  lent (or already taken back by asyncpg, which does so when a connection closes), one a read left
  with an error (a statement in an unknown state: cancelled, timed out,
  failed) and one taken before `expire()` go back to it, and it does with them what it always does;
- `expire()` (after a failover) forgets the free ones at once and sends them back in the
  background (the pool closes each politely, up to its command timeout: a read must not wait for
  that, nor lose them if it is cancelled meanwhile); `close()` sends them back so the pool can close,
  and a connection given back after it goes straight to the pool;
- a connection left free for `idle_seconds` goes back to the pool, whose own inactivity timer closes
  it: a burst does not keep its connections open for ever, and the oldest idle ones (those a NAT or
  load balancer would cut silently) are not the ones lent after a long quiet spell.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Lent: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


class ConnectionLender:
    """Lends connections taken out of `pool`; see the module for the rules."""

    def __init__(
        self, pool: Pool, *, max_size: int, acquire_timeout: float, idle_seconds: float = 60.0
    ) -> None:
        self._pool = pool
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._idle_seconds = idle_seconds
        #: Free connections, most recently given back last, with when they were given back.
        self._free: list[Lent] = []
        self._free_since: dict[Lent, float] = {}
        self._closed = False
        self._releasing: set[asyncio.Task[None]] = set()
        #: Reads waiting for a connection; a None result means "one went back to the pool: take it".
        self._waiting: deque[asyncio.Future[Lent | None]] = deque()
        #: Connections out of the pool (lent or free here), by the generation they were taken in.
        self._taken: dict[Lent, int] = {}
        #: Acquires from the pool under way (they count against `max_size` too).
        self._taking = 0
        self._generation = 0

    async def lend(self) -> Lent:
        """A connection for one read, to be given back with `give_back` (or `forget`)."""
        while self._free:
            connection = self._pop_free()
            if self._usable(connection):
                return connection
            await self._return(connection)
        async with asyncio.timeout(self._acquire_timeout):
            return await self._lend_when_possible()

    def _pop_free(self) -> Lent:
        connection = self._free.pop()
        self._free_since.pop(connection, None)
        return connection

    def _usable(self, connection: Lent) -> bool:
        if self._taken.get(connection) != self._generation:
            return False
        try:
            return not connection.is_closed()
        except asyncpg.InterfaceError:
            # asyncpg took it back itself when its connection closed (the proxy is detached and
            # the pool has the place back); giving it back to the pool again is a no-op.
            return False

    async def _lend_when_possible(self) -> Lent:
        loop = asyncio.get_running_loop()
        while True:
            while self._free:
                connection = self._pop_free()
                if self._usable(connection):
                    return connection
                await self._return(connection)
            if len(self._taken) + self._taking < self._max_size:
                return await self._take()
            waiter: asyncio.Future[Lent | None] = loop.create_future()
            self._waiting.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                # Handed a connection (or a free place) just as the wait ended: it goes to the next
                # reader, who would otherwise wait for a wake-up that was spent here.
                if waiter.done() and not waiter.cancelled():
                    late = waiter.result()
                    if late is not None:
                        self._hand_over(late)
                    else:
                        self._wake_one()
                raise
            if handed is not None:
                return handed

    async def _take(self) -> Lent:
        generation = self._generation
        self._taking += 1
        try:
            connection = await self._pool.acquire()
        except BaseException:
            self._wake_one()
            raise
        finally:
            self._taking -= 1
        self._taken[connection] = generation
        return connection

    async def give_back(self, connection: Lent, *, clean: bool) -> None:
        """Return a lent connection: `clean` when its read ended without an error."""
        if clean and not self._closed and self._usable(connection):
            self._hand_over(connection)
            if self._free and self._free_since[self._free[0]] < time.monotonic() - self._idle_seconds:
                idle = self._free.pop(0)
                del self._free_since[idle]
                await self._return(idle)
        else:
            await self._return(connection)

    def _hand_over(self, connection: Lent) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._free.append(connection)
        self._free_since[connection] = time.monotonic()

    def forget(self, connection: Lent) -> None:
        """A lent connection that is gone (terminated: the pool has its place back)."""
        self._taken.pop(connection, None)
        self._wake_one()

    async def _return(self, connection: Lent) -> None:
        self.forget(connection)
        await self._release(connection)

    async def _release(self, connection: Lent) -> None:
        try:
            await self._pool.release(connection)
        except Exception as exc:  # noqa: BLE001  # asyncpg terminates a connection it cannot release
            log.warning("a reader connection could not be released (%s: %s)", type(exc).__name__, exc)

    def _wake_one(self) -> None:
        # A place in the pool is free: the read that waited longest takes it.
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def expire(self) -> None:
        """Connections taken so far are not lent again: the free ones are forgotten now and go back
        to the pool in the background (it closes each politely, which may take its command
        timeout), the lent ones when they are given back."""
        self._generation += 1
        free, self._free = self._free, []
        self._free_since.clear()
        for connection in free:
            self.forget(connection)
        if free:
            task = asyncio.get_running_loop().create_task(self._release_all(free))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_all(self, connections: list[Lent]) -> None:
        await asyncio.gather(*(self._release(c) for c in connections))

    async def close(self) -> None:
        """Send the free connections back (the pool's close waits for every one), let waiting reads
        find the pool closing, and send what is given back from now on straight to the pool."""
        self._closed = True
        self.expire()
        while self._waiting:
            self._wake_one()
        if self._releasing:
            await asyncio.gather(*self._releasing)
