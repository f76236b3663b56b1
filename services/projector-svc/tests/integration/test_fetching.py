"""Batches fetched, decoded and checked before their transaction: after a required seek the build
resumes from its stored offsets, not from where the consumer was; a history applies in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from cqrs_shared.contracts import shop as c
from cqrs_shared.envelopes import EventEnvelope
from projector_svc.builds import ensure_active_build
from projector_svc.dead_letters import MemoryDeadLetters
from projector_svc.pg import create_pool
from projector_svc.runtime import ProjectorRuntime, RuntimeSettings
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop import ShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory, envelope
from projector_svc.testing.views_io import diff, read_rows, stored_offsets

pytestmark = pytest.mark.integration


@pytest.fixture
async def build_pool(pg_database: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    pool = await create_pool(pg_database, max_size=4)
    async with pool.acquire() as connection:
        await ensure_active_build(connection, ShopProjection())
    yield pool
    await pool.close()


@pytest.fixture
async def consumer(feed: EventFeed) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers=feed.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    yield consumer
    await consumer.stop()


async def _runtime(
    pool: asyncpg.Pool[asyncpg.Record], consumer: AIOKafkaConsumer, feed: EventFeed
) -> ProjectorRuntime:
    runtime = ProjectorRuntime(
        ShopProjection(),
        pool,
        consumer,
        MemoryDeadLetters(),
        schema="shop_b1",
        settings=RuntimeSettings(max_records=40, fetch_timeout_ms=500),
        advisory_commits=False,
    )
    topics = [feed.topics.events("customer"), feed.topics.events("order")]
    partitions = [TopicPartition(t, p) for t, p in await end_offsets(feed.bootstrap, topics)]
    consumer.assign(partitions)
    await runtime.seek_to_stored(partitions)
    return runtime


async def _applied(runtime: ProjectorRuntime) -> int:
    """Records applied by the first step that fetched any (a fetch may come back empty while the
    consumer's first requests are on their way)."""
    for _ in range(50):
        if applied := await runtime.step():
            return applied
    raise AssertionError("no records fetched in 50 steps")


def _one_customer(renames: int) -> list[EventEnvelope]:
    """One aggregate's history: every event on one partition, in offset order."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events = [envelope(c.CUSTOMER, "c-1", 1, c.CustomerRegistered(name="A", email="a@example.com"), at)]
    renamed = [c.CustomerRenamed(name=f"A{v}") for v in range(2, renames + 2)]
    events += [envelope(c.CUSTOMER, "c-1", v, p, at) for v, p in enumerate(renamed, start=2)]
    return events


async def test_after_a_required_seek_the_build_resumes_from_its_stored_offsets(
    feed: EventFeed, build_pool: asyncpg.Pool[asyncpg.Record], consumer: AIOKafkaConsumer
) -> None:
    await feed.send(_one_customer(199))
    runtime = await _runtime(build_pool, consumer, feed)
    assert await _applied(runtime) == 40  # offsets 0-39; the consumer is now at 40
    async with build_pool.acquire() as connection:
        # The build's offsets go back to the start (as a switch to a new build would make them)
        # and the runtime is told to seek: it must not go on from the consumer's 40.
        await connection.execute("UPDATE shop_b1.partition_offsets SET next_offset = 0")
        runtime.require_seek()
        assert await _applied(runtime) == 40
        stored = await stored_offsets(connection, "shop_b1")
    # Offsets 0-39 again (duplicates by version), not 40-79.
    assert list(stored.values()) == [40]


async def test_checked_batches_apply_the_whole_history_equal_to_the_fold(
    feed: EventFeed, build_pool: asyncpg.Pool[asyncpg.Record], consumer: AIOKafkaConsumer
) -> None:
    sent = ShopHistory(seed=32).take(600)
    await feed.send(sent)
    ends = await end_offsets(feed.bootstrap, [feed.topics.events("customer"), feed.topics.events("order")])
    runtime = await _runtime(build_pool, consumer, feed)
    async with build_pool.acquire() as connection:
        for _ in range(200):
            await runtime.step()
            stored = await stored_offsets(connection, "shop_b1")
            if all(stored.get(k, 0) >= v for k, v in ends.items() if v > 0):
                break
        assert diff(await read_rows(connection, "shop_b1"), fold(sent)) == []
