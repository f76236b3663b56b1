"""A failover under the projector: sessions terminated, then connections landing on a read-only node.

The database plays Aurora's old writer after a failover: every session is terminated (57P01, as
the instance restarts) and new sessions come up read-only (`default_transaction_read_only`, so
writes fail with 25006, as on a reader that stale DNS still points at), until "DNS moves on"
(the setting is reset). A read-only session stays read-only for its whole life, so a projector
that kept it in its pool would stay stuck after the writer is back; it must drop such connections
and retry the batch on fresh ones, and end with exactly the reference fold of every event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest
from prometheus_client import REGISTRY

from projector_svc.pg import create_pool
from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = pytest.mark.integration


def _dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("cqrs_postgres_connections_dropped_total", {"reason": reason}) or 0.0


async def _wait_for(check: Callable[[], bool], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110  # a metric offers no event to wait on
            await asyncio.sleep(0.05)


async def test_a_batch_that_meets_a_failover_is_retried_on_fresh_connections(
    feed: EventFeed, pg_database: str, start_projector: StartProjector
) -> None:
    history = ShopHistory(seed=11)
    first = history.take(400)
    await feed.send(first)
    topics = [feed.topics.events("customer"), feed.topics.events("order")]
    await start_projector(pool_size=2)
    admin = await asyncpg.connect(pg_database)
    try:
        await wait_for_offsets(admin, await end_offsets(feed.bootstrap, topics))
        database = await admin.fetchval("SELECT current_database()")
        read_only_before = _dropped("25006")

        # The failover: the node restarts as a reader...
        await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        rest = history.take(400)
        await feed.send(rest)
        # ...and the projector's batches meet it: connections it drops for being read-only.
        await _wait_for(lambda: _dropped("25006") > read_only_before)
        # DNS moves to the new writer: new sessions are writable again.
        await admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')

        await wait_for_offsets(admin, await end_offsets(feed.bootstrap, topics))
    finally:
        await admin.close()
    pool = await create_pool(pg_database, max_size=1)  # opened after the failover: writable, JSON codecs
    try:
        async with pool.acquire() as connection:
            assert diff(await read_rows(connection), fold(first + rest)) == []
    finally:
        await pool.close()
