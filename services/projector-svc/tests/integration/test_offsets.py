"""Where batches resume: from the build's stored offsets even when seeking to them failed on
assignment, and claimed per partition so that replicas on different partitions do not conflict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from projector_svc import positions
from projector_svc.builds import ensure_active_build
from projector_svc.dead_letters import DeadLetter, MemoryDeadLetters
from projector_svc.pg import Connection
from projector_svc.positions import PartitionKey
from projector_svc.runtime import ProjectorRuntime
from projector_svc.settings import ProjectorSettings
from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed, PartitionEnds, end_offsets
from projector_svc.testing.shop import ShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, stored_offsets, wait_for_offsets

pytestmark = pytest.mark.integration

_TOPIC = "events.customer"


async def _commit_group_offsets(settings: ProjectorSettings, offsets: PartitionEnds) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id_for("shop"),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t, p in offsets])
        await consumer.commit({TopicPartition(t, p): offset for (t, p), offset in offsets.items()})
    finally:
        await consumer.stop()


async def test_a_failed_seek_on_assignment_still_resumes_from_the_stored_offsets(
    settings: ProjectorSettings,
    feed: EventFeed,
    pool: asyncpg.Pool[asyncpg.Record],
    start_projector: StartProjector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = ShopHistory(seed=21).take(300)
    await feed.send(events)
    ends = await end_offsets(feed.bootstrap, [feed.topics.events("customer"), feed.topics.events("order")])
    # The group's advisory offsets at the end, the build's nowhere: as after a rebuild swapped in a
    # build that is behind what the group committed.
    await _commit_group_offsets(settings, ends)
    # The query fails once, after the replica learned which build is active (as in a rebalance
    # late in its life), so that only the seek itself can put the consumer right.
    read_stored = positions.stored_offsets
    failed: list[str] = []

    async def fails_once(connection: Connection, schema: str) -> dict[PartitionKey, int]:
        if not failed:
            failed.append(schema)
            raise ConnectionError("the database is unreachable for a moment")
        return await read_stored(connection, schema)

    monkeypatch.setattr(positions, "stored_offsets", fails_once)
    await start_projector()
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, ends, within=15)
        assert diff(await read_rows(connection), fold(events)) == []
    assert failed == ["shop_b1"], "the seek on assignment did not fail, so this test proved nothing"


@dataclass(frozen=True)
class _Record:
    """A consumed record whose value is not an event: it touches no table but the offsets."""

    topic: str
    partition: int
    offset: int
    value: bytes | None = b"{not an event"
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp: int = 0


class _NoConsumer:
    """`process` only asks the consumer for high watermarks."""

    def highwater(self, tp: TopicPartition) -> None:
        return None


class _MeetingSink(MemoryDeadLetters):
    """Holds each batch inside its transaction until `parties` batches are inside theirs, so
    their transactions overlap for sure; later sends (retries) pass straight through."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.sends = 0
        self._parties = parties
        self._met = asyncio.Event()

    async def send(self, letters: Sequence[DeadLetter], *, build: str) -> None:
        await super().send(letters, build=build)
        self.sends += 1
        if self.sends >= self._parties:
            self._met.set()
        await asyncio.wait_for(self._met.wait(), 10)


@pytest.fixture
async def build_pool(pg_database: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    from projector_svc.pg import create_pool

    pool = await create_pool(pg_database, max_size=4)
    async with pool.acquire() as connection:
        await ensure_active_build(connection, ShopProjection())
    yield pool
    await pool.close()


def _runtime(pool: asyncpg.Pool[asyncpg.Record], sink: MemoryDeadLetters) -> ProjectorRuntime:
    return ProjectorRuntime(ShopProjection(), pool, _NoConsumer(), sink, schema="shop_b1")


def _retries() -> float:
    return REGISTRY.get_sample_value("cqrs_projector_batch_retries_total", {"projection": "shop"}) or 0.0


async def test_batches_of_replicas_on_different_partitions_commit_side_by_side(
    build_pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    for round_ in range(2):  # the first round stores the partitions' rows, the second updates them
        sink = _MeetingSink(parties=2)
        first, second = _runtime(build_pool, sink), _runtime(build_pool, sink)
        retries = _retries()
        await asyncio.gather(
            first.process([_Record(_TOPIC, p, round_ * 10 + i) for p in (0, 1, 2) for i in range(3)]),
            second.process([_Record(_TOPIC, p, round_ * 10 + i) for p in (3, 4, 5) for i in range(3)]),
        )
        assert sink.sends == 2, "a batch was retried: the two transactions conflicted"
        assert _retries() == retries
    async with build_pool.acquire() as connection:
        assert await stored_offsets(connection, "shop_b1") == {(_TOPIC, p): 13 for p in range(6)}


async def test_two_replicas_briefly_owning_one_partition_apply_its_batch_once(
    build_pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    sink = MemoryDeadLetters()
    batch = [_Record(_TOPIC, 0, i) for i in range(5)]
    await asyncio.gather(_runtime(build_pool, sink).process(batch), _runtime(build_pool, sink).process(batch))
    # The later batch waited for the earlier one's partition row, then skipped what it committed:
    # not even the undecodable records, which no version guards, were dead-lettered twice.
    assert sorted(letter.origin.offset for letter in sink.letters) == [0, 1, 2, 3, 4]


async def test_a_new_build_starts_every_partition_at_the_beginning_despite_a_slow_default_reset(
    settings: ProjectorSettings,
    feed: EventFeed,
    build_pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    """A freshly assigned consumer with no position resets itself with its own policy ('latest'
    by default). When that reset is still in flight as the runtime positions a partition the build
    has no offset for, the runtime's choice must win, or the build silently skips the partition's
    history (a rebuild under load once swapped in a copy missing a third of its customers)."""
    await feed.send(ShopHistory(seed=22).take(200))
    topic = feed.topics.events("customer")
    ends = await end_offsets(feed.bootstrap, [topic])
    partitions = [TopicPartition(t, p) for t, p in ends if ends[(t, p)] > 0]
    consumer = AIOKafkaConsumer(bootstrap_servers=feed.bootstrap, group_id=None, auto_offset_reset="latest")
    await consumer.start()
    try:
        fetcher = consumer._fetcher  # the one place the in-flight reset can be slowed
        request_offsets = fetcher._proc_offset_request
        slowed: list[object] = []

        async def slow_offset_request(node_id: int, topic_data: object) -> object:
            slowed.append(topic_data)
            await asyncio.sleep(0.5)
            return await request_offsets(node_id, topic_data)

        fetcher._proc_offset_request = slow_offset_request
        sink = MemoryDeadLetters()
        runtime = ProjectorRuntime(ShopProjection(), build_pool, consumer, sink, schema="shop_b1")
        consumer.assign(partitions)
        await asyncio.sleep(0.1)  # the fetcher's own 'latest' reset is now on its way
        await runtime.seek_to_stored(partitions)
        await asyncio.sleep(1.0)  # and has landed
        assert slowed, "the fetcher never reset on its own, so this test proved nothing"
        assert {tp: await consumer.position(tp) for tp in partitions} == dict.fromkeys(partitions, 0)
    finally:
        await consumer.stop()
