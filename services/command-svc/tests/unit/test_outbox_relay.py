"""The outbox relay over in-memory stores: order, recovery, failure and shard ownership."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from command_svc.outbox_relay import OutboxRelay, RelaySettings
from command_svc.write_store.memory_store import MemoryLeaseStore, MemoryWriteStore
from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.kafka_io import Headers
from cqrs_shared.write_store import Commit, WriteStoreUnavailableError, shard_of

SHARDS = 8
FAST = RelaySettings(shards=SHARDS, lease_ttl_seconds=3.0, scan_interval_seconds=0.05)


class RecordingPublisher:
    def __init__(self, failures: int = 0) -> None:
        self.published: list[EventEnvelope] = []
        self.failures = failures

    async def publish(
        self, events: Sequence[EventEnvelope], *, trace_headers: Mapping[uuid.UUID, Headers] | None = None
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("kafka is down")
        self.published.extend(events)

    def versions(self, aggregate_id: str) -> list[int]:
        return [e.version for e in self.published if e.aggregate_id == aggregate_id]


def make_commit(aggregate_id: str, version: int) -> Commit:
    now = utc_now()
    event = EventEnvelope(
        event_id=uuid.uuid4(),
        type="Incremented",
        aggregate_type="tally",
        aggregate_id=aggregate_id,
        version=version,
        occurred_at=now,
        correlation_id="c",
        causation_id="c",
    )
    return Commit(
        aggregate_type="tally",
        aggregate_id=aggregate_id,
        base_version=version - 1,
        version=version,
        command_id=uuid.uuid4(),
        command_type="Increment",
        correlation_id="c",
        events=[event],
        state={},
        committed_at=now,
        shard=shard_of("tally", aggregate_id, SHARDS),
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def all_marked(store: MemoryWriteStore, timeout: float = 3.0) -> None:
    """Every stored commit marked published (marks are written behind the publishing)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await store.unpublished(range(SHARDS), 1000):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("commits left unmarked")
        await asyncio.sleep(0.01)


async def store_and_notify(store: MemoryWriteStore, relay: OutboxRelay | None, commit: Commit) -> None:
    await store.append(commit)
    if relay is not None:
        relay.notify(commit)


async def test_fresh_commits_are_published_in_version_order_and_marked() -> None:
    store, publisher = MemoryWriteStore(), RecordingPublisher()
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=FAST)
    await relay.start()
    try:
        assert relay.owned_shards == frozenset(range(SHARDS))
        for v in range(1, 6):
            await store_and_notify(store, relay, make_commit("a", v))
        await eventually(lambda: len(publisher.published) == 5)
        assert publisher.versions("a") == [1, 2, 3, 4, 5]
        await all_marked(store)
    finally:
        await relay.stop()


async def test_commits_left_unpublished_by_a_crash_are_recovered_in_order() -> None:
    store, publisher = MemoryWriteStore(), RecordingPublisher()
    for aggregate in ("a", "b", "c"):
        for v in range(1, 4):
            await store_and_notify(store, None, make_commit(aggregate, v))
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=FAST)
    await relay.start()
    try:
        await store_and_notify(store, relay, make_commit("a", 4))  # fresh, but its predecessors are pending
        await eventually(lambda: len(publisher.published) == 10)
        assert publisher.versions("a") == [1, 2, 3, 4]
        assert publisher.versions("b") == [1, 2, 3]
        assert publisher.versions("c") == [1, 2, 3]
    finally:
        await relay.stop()


async def test_a_publishing_failure_marks_nothing_and_is_retried() -> None:
    store, publisher = MemoryWriteStore(), RecordingPublisher(failures=2)
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=FAST)
    await relay.start()
    try:
        await store_and_notify(store, relay, make_commit("a", 1))
        await store_and_notify(store, relay, make_commit("a", 2))
        await eventually(lambda: publisher.versions("a")[-1:] == [2], timeout=6)
        assert publisher.versions("a") == [1, 2]
        await all_marked(store)
    finally:
        await relay.stop()


async def test_two_replicas_split_the_shards_and_publish_each_aggregate_from_one_place() -> None:
    store, leases = MemoryWriteStore(), MemoryLeaseStore()
    first, second = RecordingPublisher(), RecordingPublisher()
    relay1 = OutboxRelay(store, leases, first, member_id="r1", settings=FAST)
    relay2 = OutboxRelay(store, leases, second, member_id="r2", settings=FAST)
    await relay1.start()
    await relay2.start()
    try:
        # r1 took everything before r2 existed; within a lease round it gives up its excess.
        await eventually(
            lambda: len(relay1.owned_shards) == SHARDS // 2 and len(relay2.owned_shards) == SHARDS // 2, 5
        )
        assert relay1.owned_shards.isdisjoint(relay2.owned_shards)
        aggregates = [f"agg-{i}" for i in range(20)]
        for v in range(1, 4):
            for aggregate in aggregates:
                commit = make_commit(aggregate, v)
                await store.append(commit)
                relay1.notify(commit)  # r1 is told of every commit; it must publish only its own shards
        await eventually(lambda: len(first.published) + len(second.published) == 60, 5)
        for aggregate in aggregates:
            owner = first if shard_of("tally", aggregate, SHARDS) in relay1.owned_shards else second
            other = second if owner is first else first
            assert owner.versions(aggregate) == [1, 2, 3]
            assert other.versions(aggregate) == []
    finally:
        await relay1.stop()
        await relay2.stop()


async def test_a_stopped_replica_hands_its_shards_over_at_once() -> None:
    store, leases = MemoryWriteStore(), MemoryLeaseStore()
    relay1 = OutboxRelay(store, leases, RecordingPublisher(), member_id="r1", settings=FAST)
    await relay1.start()
    await relay1.stop()
    relay2 = OutboxRelay(store, leases, RecordingPublisher(), member_id="r2", settings=FAST)
    await relay2.start()
    try:
        assert relay2.owned_shards == frozenset(range(SHARDS))
    finally:
        await relay2.stop()


class FlakyLeases(MemoryLeaseStore):
    """A lease store that can be cut off, as when the write store is unreachable."""

    down = False

    async def heartbeat(self, member: str, ttl_seconds: float) -> None:
        if self.down:
            raise WriteStoreUnavailableError("unreachable")
        await super().heartbeat(member, ttl_seconds)

    async def renew(self, names: Any, owner: str, ttl_seconds: float) -> set[str]:
        if self.down:
            raise WriteStoreUnavailableError("unreachable")
        return await super().renew(names, owner, ttl_seconds)


async def test_a_replica_that_cannot_renew_its_leases_stops_publishing_until_it_can() -> None:
    store, publisher, leases = MemoryWriteStore(), RecordingPublisher(), FlakyLeases()
    settings = RelaySettings(shards=SHARDS, lease_ttl_seconds=1.5, scan_interval_seconds=0.05)
    relay = OutboxRelay(store, leases, publisher, member_id="r1", settings=settings)
    await relay.start()
    try:
        leases.down = True
        await asyncio.sleep(1.5)  # past 80% of the TTL without a successful renewal
        await store_and_notify(store, relay, make_commit("a", 1))
        await asyncio.sleep(0.3)
        assert publisher.published == []
        leases.down = False
        await eventually(lambda: publisher.versions("a") == [1], timeout=3)
    finally:
        await relay.stop()


class FlakyStore(MemoryWriteStore):
    """Fails the next `failures` scans, as an unreachable write store does."""

    failures = 0

    async def unpublished(self, shards: Any, limit: int) -> list[Commit]:
        if self.failures:
            self.failures -= 1
            raise WriteStoreUnavailableError("unreachable")
        return await super().unpublished(shards, limit)


async def test_the_relay_survives_a_failing_scan_and_publishes_afterwards() -> None:
    store, publisher = FlakyStore(), RecordingPublisher()
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=FAST)
    await relay.start()
    try:
        store.failures = 3
        await store.append(make_commit("a", 1))  # not handed over: only a scan can find it
        await eventually(lambda: publisher.versions("a") == [1], timeout=8)
        relay.check_running()
    finally:
        await relay.stop()
    with pytest.raises(RuntimeError):
        relay.check_running()


async def test_commits_beyond_the_hand_over_queue_are_published_by_the_scan() -> None:
    store, publisher = MemoryWriteStore(), RecordingPublisher()
    settings = RelaySettings(
        shards=SHARDS, lease_ttl_seconds=3.0, scan_interval_seconds=0.2, fresh_queue_size=3
    )
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=settings)
    await relay.start()
    try:
        for aggregate in [f"agg-{i}" for i in range(30)]:
            commit = make_commit(aggregate, 1)
            await store.append(commit)
            relay.notify(commit)  # no await in between: the queue of 3 overflows
        await eventually(lambda: len(publisher.published) == 30, timeout=5)
        assert len({e.aggregate_id for e in publisher.published}) == 30
    finally:
        await relay.stop()


async def test_a_backlog_larger_than_one_scan_drains_without_waiting_a_scan_interval_per_batch() -> None:
    store, publisher = MemoryWriteStore(), RecordingPublisher()
    for aggregate in [f"backlog-{i}" for i in range(100)]:
        await store_and_notify(store, None, make_commit(aggregate, 1))  # a restart into a backlog
    # One scan every minute, ten commits per scan: ten scans' worth must not take ten minutes.
    settings = RelaySettings(shards=SHARDS, lease_ttl_seconds=3.0, scan_interval_seconds=60.0, batch_size=10)
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=settings)
    await relay.start()
    try:
        await eventually(lambda: len(publisher.published) == 100, timeout=5)
        await all_marked(store)
    finally:
        await relay.stop()


class SlowLeases(MemoryLeaseStore):
    """Every acquisition takes `delay` seconds, as one round trip each to a store under load does."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        await asyncio.sleep(self.delay)
        return await super().acquire(name, owner, ttl_seconds)


async def test_a_store_too_slow_to_acquire_every_shard_within_a_ttl_still_lets_the_relay_publish() -> None:
    # Acquiring all 8 shards takes 2.4 s, longer than the 1.5 s TTL: a relay that takes every
    # shard in one round holds leases that expired while it was still acquiring, and never publishes.
    store, publisher = MemoryWriteStore(), RecordingPublisher()
    settings = RelaySettings(shards=SHARDS, lease_ttl_seconds=1.5, scan_interval_seconds=0.05)
    relay = OutboxRelay(store, SlowLeases(0.3), publisher, member_id="r1", settings=settings)
    await relay.start()
    try:
        for aggregate in [f"slow-{i}" for i in range(40)]:
            await store_and_notify(store, relay, make_commit(aggregate, 1))
        await eventually(lambda: len(publisher.published) == 40, timeout=10)
        assert relay.owned_shards == frozenset(range(SHARDS))
    finally:
        await relay.stop()


async def test_new_commands_wait_while_the_relay_cannot_hold_its_leases() -> None:
    store, publisher, leases = MemoryWriteStore(), RecordingPublisher(), FlakyLeases()
    settings = RelaySettings(
        shards=SHARDS, lease_ttl_seconds=1.5, scan_interval_seconds=0.05, intake_pause_after_seconds=0.5
    )
    relay = OutboxRelay(store, leases, publisher, member_id="r1", settings=settings)
    await relay.start()
    try:
        assert relay.intake_paused() is None
        leases.down = True
        await eventually(lambda: relay.intake_paused() is not None, timeout=4)
        assert "no valid lease" in (relay.intake_paused() or "")
        leases.down = False
        await eventually(lambda: relay.intake_paused() is None, timeout=3)
    finally:
        await relay.stop()


async def test_a_replica_restarted_under_the_same_id_takes_its_shards_back_at_once() -> None:
    store, leases = MemoryWriteStore(), MemoryLeaseStore()
    settings = RelaySettings(shards=SHARDS, lease_ttl_seconds=60.0, scan_interval_seconds=0.05)
    crashed = OutboxRelay(store, leases, RecordingPublisher(), member_id="host-8081", settings=settings)
    await crashed.start()
    for task in crashed._tasks:  # a SIGKILL: no release, the leases stay held for their 60 s
        task.cancel()
    publisher = RecordingPublisher()
    restarted = OutboxRelay(store, leases, publisher, member_id="host-8081", settings=settings)
    await restarted.start()
    try:
        assert restarted.owned_shards == frozenset(range(SHARDS))
        await store_and_notify(store, restarted, make_commit("a", 1))
        await eventually(lambda: publisher.versions("a") == [1])
    finally:
        await restarted.stop()


class GatedMarksStore(MemoryWriteStore):
    """Marks wait for `gate`, or fail while `failures` remain."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.failures = failures
        self.mark_calls = 0

    async def mark_published(self, commits: Sequence[Commit]) -> None:
        self.mark_calls += 1
        if self.failures:
            self.failures -= 1
            raise WriteStoreUnavailableError("the store is down")
        await self.gate.wait()
        await super().mark_published(commits)


async def test_the_next_batch_is_published_while_the_previous_marks_are_still_being_written() -> None:
    store, publisher = GatedMarksStore(), RecordingPublisher()
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=FAST)
    await relay.start()
    try:
        await store_and_notify(store, relay, make_commit("a", 1))
        await eventually(lambda: store.mark_calls == 1)  # its marks are held at the gate
        await store_and_notify(store, relay, make_commit("a", 2))
        await store_and_notify(store, relay, make_commit("b", 1))
        await eventually(lambda: len(publisher.published) == 3)
        assert publisher.versions("a") == [1, 2]
        assert len(await store.unpublished(range(SHARDS), 100)) == 3  # none marked yet
        store.gate.set()
        await all_marked(store)
    finally:
        store.gate.set()
        await relay.stop()


async def test_marks_that_fail_are_written_again_and_nothing_is_published_twice() -> None:
    store, publisher = GatedMarksStore(failures=2), RecordingPublisher()
    store.gate.set()
    settings = RelaySettings(shards=SHARDS, lease_ttl_seconds=3.0, scan_interval_seconds=0.05)
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=settings)
    relay._marks._retry_pause = 0.05  # the test's pause, not a second's
    await relay.start()
    try:
        await store_and_notify(store, relay, make_commit("a", 1))
        await all_marked(store)
        assert store.mark_calls == 3
        assert publisher.versions("a") == [1]
    finally:
        await relay.stop()


async def test_a_routine_scan_does_not_hold_fresh_commits_back_behind_queued_marks() -> None:
    store, publisher = GatedMarksStore(), RecordingPublisher()
    # A scan is due at every turn; one that waited for the queued marks would wait 30 s here.
    settings = RelaySettings(
        shards=SHARDS, lease_ttl_seconds=3.0, scan_interval_seconds=0.01, flush_marks_seconds=30
    )
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=settings)
    await relay.start()
    try:
        await store_and_notify(store, relay, make_commit("a", 1))
        await eventually(lambda: store.mark_calls == 1)  # its marks are held at the gate
        await store_and_notify(store, relay, make_commit("a", 2))
        await store_and_notify(store, relay, make_commit("b", 1))
        await eventually(lambda: len(publisher.published) == 3)
        assert publisher.versions("a") == [1, 2]
        store.gate.set()
        await all_marked(store)
    finally:
        store.gate.set()
        await relay.stop()


async def test_a_scan_full_of_commits_whose_marks_are_queued_does_not_hold_the_next_ones_back() -> None:
    store, publisher = GatedMarksStore(), RecordingPublisher()
    # Two commits per scan, a scan every 0.2 s; a scan that waited for the queued marks would wait
    # 30 s here, and fresh commits with it.
    settings = RelaySettings(
        shards=SHARDS, lease_ttl_seconds=3.0, scan_interval_seconds=0.2, batch_size=2, flush_marks_seconds=30
    )
    relay = OutboxRelay(store, MemoryLeaseStore(), publisher, member_id="r1", settings=settings)
    await relay.start()
    await asyncio.sleep(0.05)  # the start's scan found nothing: what follows is fresh, not a backlog
    try:
        for aggregate in ("a", "b", "c"):
            await store_and_notify(store, relay, make_commit(aggregate, 1))
        await eventually(lambda: len(publisher.published) == 3)  # their marks are held at the gate
        await asyncio.sleep(0.5)  # scans find two of them (a full scan), all published already
        await store_and_notify(store, relay, make_commit("d", 1))
        await eventually(lambda: publisher.versions("d") == [1])
        store.gate.set()
        await all_marked(store)
    finally:
        store.gate.set()
        await relay.stop()
