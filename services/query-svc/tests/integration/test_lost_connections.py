"""A read whose connection is lost mid-statement (a reset, a crash, a failover) costs no capacity.

asyncpg handles the lost connection before the read sees the error: it takes the connection back
into its pool and detaches the proxy the read holds. The reader must still free the lender's place
for it; once a reader had lost as many as its pool holds, every later read waited out the acquire
timeout and answered 503 until the process restarted (found in review).
"""

from __future__ import annotations

import asyncio

import pytest

from cqrs_shared.problems import ProblemError
from query_svc.database import Reader

pytestmark = pytest.mark.integration


async def test_reads_go_on_after_more_lost_connections_than_the_pool_holds(database_url: str) -> None:
    reader = Reader(database_url, min_size=0, max_size=2, statement_timeout_ms=10_000, acquire_timeout=1.0)
    await reader.start()

    async def read_while_the_socket_is_reset() -> None:
        async with reader.connection() as connection:
            # Reset while the statement runs (private: there is no public way to do it).
            transport = connection._con._transport  # type: ignore[union-attr]
            asyncio.get_running_loop().call_later(0.2, transport.abort)
            await connection.fetchval("SELECT pg_sleep(3)")

    try:
        for _ in range(3):
            with pytest.raises(ProblemError) as lost:
                await read_while_the_socket_is_reset()
            assert lost.value.status == 503
        async with reader.connection() as connection:
            assert await connection.fetchval("SELECT 41 + 1") == 42
    finally:
        await reader.close()
