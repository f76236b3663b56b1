"""Two projector processes in one consumer group: they start together on an empty database
(migrations under the advisory lock), share the partitions, survive a member leaving and coming
back mid-load, and together produce exactly the fold of every event (a lost event or an event
applied twice, e.g. an order line added twice, would show)."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.testing.service_processes import ServiceProcess
from cqrs_shared.topics import TopicNames
from projector_svc.testing.builds import create_pool
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop import ShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
async def pool(pg_database: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    pool = await create_pool(pg_database, max_size=2)
    yield pool
    await pool.close()


async def _applied(replica: ServiceProcess) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{replica.url}/metrics")).text
    found = re.search(r'cqrs_projector_events_total\{outcome="applied",projection="shop"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


async def _load_until_applied(
    feed: EventFeed, history: ShopHistory, sent: list[EventEnvelope], at_least: int, *replicas: ServiceProcess
) -> None:
    """Send `at_least` events in chunks, and more until each replica has applied some (a replica
    that just joined gets partitions only once the group has rebalanced)."""
    before = [await _applied(r) for r in replicas]
    for chunk in range(600):
        if chunk * 250 >= at_least and all(
            [await _applied(r) > b for r, b in zip(replicas, before, strict=True)]
        ):
            return
        events = history.take(250)
        await feed.send(events)
        sent.extend(events)
        await asyncio.sleep(0.05)
    raise AssertionError(f"not every replica applied events: {[await _applied(r) for r in replicas]}")


async def test_two_replicas_share_partitions_through_rebalances_without_loss_or_double_effect(
    start_service: Callable[..., ServiceProcess],
    kafka_bootstrap: str,
    topic_prefix: str,
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    env = {"PROJECTOR_SVC_MAX_BATCH_RECORDS": "300"}
    first = start_service("projector_svc", "PROJECTOR_SVC_PORT", **env)
    second = start_service("projector_svc", "PROJECTOR_SVC_PORT", **env)
    await asyncio.gather(asyncio.to_thread(first.wait_ready), asyncio.to_thread(second.wait_ready))
    topics = TopicNames(topic_prefix)
    history = ShopHistory(seed=31)
    events: list[EventEnvelope] = []
    async with EventFeed(kafka_bootstrap, topics) as feed:
        # Both replicas take part: each owns some partitions and applies some events.
        await _load_until_applied(feed, history, events, 6000, first, second)
        first.stop(signal.SIGTERM)  # leaves the group: the other takes its partitions
        await _load_until_applied(feed, history, events, 3000, second)
        back = start_service("projector_svc", "PROJECTOR_SVC_PORT", **env)
        await asyncio.to_thread(back.wait_ready)
        await _load_until_applied(feed, history, events, 3000, back)  # it got partitions again
    async with pool.acquire() as connection:
        names = [topics.events("customer"), topics.events("order")]
        await wait_for_offsets(connection, await end_offsets(kafka_bootstrap, names), within=60)
        assert diff(await read_rows(connection), fold(events)) == []
        builds = await connection.fetch("SELECT build, status FROM projector.builds")
        migrations = await connection.fetchval("SELECT count(*) FROM shop_b1.schema_migrations")
    assert [(r["build"], r["status"]) for r in builds] == [(1, "active")]
    assert migrations == 1 + len(ShopProjection.migrations)  # the runtime's own, then the view's, once each
