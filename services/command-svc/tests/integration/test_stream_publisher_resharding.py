"""Shard splits, which moto never makes: a child shard is read only once its parent is drained.

The stream itself is played by a fake (moto has one shard per table, forever); the leases, the
checkpoints and the store are the real DynamoDB ones on moto.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from command_svc.stream_publishing.stream_publisher import SHARD_END, StreamPublisher, StreamPublisherSettings
from command_svc.write_store.dynamo_items import commit_item
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.kafka_io import Headers
from cqrs_shared.testing.write_store_contract import make_commit

from .dynamo_fixtures import private_tables

pytestmark = pytest.mark.integration


def _record(version: int, sequence: int) -> dict[str, Any]:
    image = commit_item(make_commit("a", version))
    return {"eventName": "INSERT", "dynamodb": {"NewImage": image, "SequenceNumber": str(sequence)}}


class _SplitStream:
    """A parent shard holding versions 1-3 (closed by a split) and its open child holding 4-5."""

    def __init__(self) -> None:
        self.records = {
            "parent": [_record(v, 100 + v) for v in (1, 2, 3)],
            "child": [_record(v, 200 + v) for v in (4, 5)],
        }
        self.reads: list[str] = []

    async def describe_stream(self, **_: Any) -> dict[str, Any]:
        # Children are listed before their parents on purpose: the order must not matter.
        shards = [{"ShardId": "child", "ParentShardId": "parent"}, {"ShardId": "parent"}]
        return {"StreamDescription": {"Shards": shards}}

    async def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        shard = request["ShardId"]
        if request["ShardIteratorType"] == "TRIM_HORIZON":
            return {"ShardIterator": f"{shard}:0"}
        after = int(request["SequenceNumber"])
        start = sum(1 for r in self.records[shard] if int(r["dynamodb"]["SequenceNumber"]) <= after)
        return {"ShardIterator": f"{shard}:{start}"}

    async def get_records(self, **request: Any) -> dict[str, Any]:
        shard, start = request["ShardIterator"].split(":")
        self.reads.append(shard)
        records = self.records[shard][int(start) : int(start) + 2]
        end = int(start) + len(records)
        closed = shard == "parent" and end >= len(self.records[shard])
        # A closed shard read to its end answers without a next iterator; an open one never does.
        return {"Records": records, **({} if closed else {"NextShardIterator": f"{shard}:{end}"})}


class _Recorder:
    def __init__(self) -> None:
        self.versions: list[int] = []
        self.last_published = asyncio.Event()

    async def publish(
        self, events: Sequence[EventEnvelope], *, trace_headers: Mapping[uuid.UUID, Headers] | None = None
    ) -> None:
        self.versions.extend(e.version for e in events)
        if 5 in self.versions:
            self.last_published.set()


async def test_a_child_shard_is_published_only_after_its_parent_is_drained(
    dynamodb_endpoint: str, unique: str
) -> None:
    stream, recorder = _SplitStream(), _Recorder()
    async with private_tables(dynamodb_endpoint, f"t{unique}-") as store:
        publisher = StreamPublisher(
            stream,  # type: ignore[arg-type]  # the fake plays DynamoDB Streams' three calls
            store,
            store.leases(),
            recorder,
            member_id="r1",
            settings=StreamPublisherSettings(lease_ttl_seconds=1.5, poll_interval_seconds=0.05),
        )
        await publisher.start()
        try:
            async with asyncio.timeout(30):
                await recorder.last_published.wait()
            for _ in range(200):  # the checkpoint follows Kafka's acknowledgement
                if await store.leases().checkpoint("stream-shard/child") == "205":
                    break
                await asyncio.sleep(0.05)
        finally:
            await publisher.stop()
        assert recorder.versions == [1, 2, 3, 4, 5]
        assert stream.reads.index("child") > max(i for i, s in enumerate(stream.reads) if s == "parent")
        leases = store.leases()
        assert await leases.checkpoint("stream-shard/parent") == SHARD_END
        assert await leases.checkpoint("stream-shard/child") == "205"


class _FourShards(_SplitStream):
    """Four open shards, aggregate `s<n>` in shard n with versions 1-4."""

    def __init__(self) -> None:
        self.records = {
            f"shard-{n}": [
                {
                    "eventName": "INSERT",
                    "dynamodb": {
                        "NewImage": commit_item(make_commit(f"s{n}", v)),
                        "SequenceNumber": str(1000 * n + v),
                    },
                }
                for v in (1, 2, 3, 4)
            ]
            for n in range(4)
        }
        self.reads = []

    async def describe_stream(self, **_: Any) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": shard} for shard in self.records]}}

    async def get_records(self, **request: Any) -> dict[str, Any]:
        answer = await super().get_records(**request)
        shard, _ = request["ShardIterator"].split(":")
        answer.setdefault("NextShardIterator", f"{shard}:{len(self.records[shard])}")  # open shards
        return answer


class _AggregateRecorder:
    """One replica's Kafka; `total` and `all_done` are shared: set once the replicas published 16 events."""

    def __init__(self, total: list[int], all_done: asyncio.Event) -> None:
        self.by_aggregate: dict[str, list[int]] = {}
        self.total = total
        self.all_done = all_done

    async def publish(
        self, events: Sequence[EventEnvelope], *, trace_headers: Mapping[uuid.UUID, Headers] | None = None
    ) -> None:
        for event in events:
            self.by_aggregate.setdefault(event.aggregate_id, []).append(event.version)
        self.total[0] += len(events)
        if self.total[0] >= 16:
            self.all_done.set()


async def test_two_replicas_share_the_shards_through_leases_each_published_once(
    dynamodb_endpoint: str, unique: str
) -> None:
    stream = _FourShards()
    all_done = asyncio.Event()
    total = [0]
    recorders = [_AggregateRecorder(total, all_done), _AggregateRecorder(total, all_done)]
    async with private_tables(dynamodb_endpoint, f"t{unique}-") as store:
        # Both replicas heartbeat before either balances, so the first does not take every shard.
        for member in ("r0", "r1"):
            await store.leases().heartbeat(member, 3)
        publishers = [
            StreamPublisher(
                stream,  # type: ignore[arg-type]  # the fake plays DynamoDB Streams' three calls
                store,
                store.leases(),
                recorder,
                member_id=f"r{i}",
                settings=StreamPublisherSettings(lease_ttl_seconds=3, poll_interval_seconds=0.05),
            )
            for i, recorder in enumerate(recorders)
        ]
        for publisher in publishers:
            await publisher.start()
        try:
            async with asyncio.timeout(30):
                await all_done.wait()
            owned = [p.owned_shards for p in publishers]
        finally:
            for publisher in publishers:
                await publisher.stop()
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    assert owned[0] | owned[1] == set(stream.records)
    merged: dict[str, list[int]] = {}
    for recorder in recorders:
        for aggregate, versions in recorder.by_aggregate.items():
            assert aggregate not in merged  # one publisher per shard, so per aggregate
            merged[aggregate] = versions
    assert merged == {f"s{n}": [1, 2, 3, 4] for n in range(4)}
