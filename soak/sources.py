"""What the system actually holds, read directly: Kafka topics, the write store, the read models.

Nothing here goes through a service: the checker must not trust the code it checks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.topics import TopicNames
from cqrs_shared.write_store import Commit
from projector_svc.testing.builds import create_pool
from projector_svc.testing.kafka_feed import partitions_of
from projector_svc.testing.shop_fold import ShopRows
from projector_svc.testing.views_io import read_rows
from soak.ledger import Ack

AggregateKey = tuple[str, str]
AGGREGATE_TYPES = ("customer", "order")


@dataclass(frozen=True)
class TopicEvent:
    topic: str
    partition: int
    offset: int
    event: EventEnvelope


@dataclass
class Observed:
    commits: list[Commit] = field(default_factory=list)
    #: command id -> stored rejection outcome.
    rejections: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[TopicEvent] = field(default_factory=list)
    malformed_events: list[str] = field(default_factory=list)
    results: list[Ack] = field(default_factory=list)
    #: Command ids and garbage markers in `commands.dlq`.
    dead_letters: set[str] = field(default_factory=set)
    events_dlq: int = 0
    rows: ShopRows = field(default_factory=lambda: ShopRows({}, {}))
    applied: dict[AggregateKey, int] = field(default_factory=dict)


async def read_topic(bootstrap: str, topic: str, *, within: float = 120.0) -> list[Any]:
    """Every record on `topic` now, in partition order (empty when the topic does not exist)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = await partitions_of(bootstrap, [topic])
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + within
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: could not read up to {ends} within {within} s")
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def read_kafka(bootstrap: str, topics: TopicNames, observed: Observed) -> None:
    for aggregate_type in AGGREGATE_TYPES:
        topic = topics.events(aggregate_type)
        for record in await read_topic(bootstrap, topic):
            try:
                event = EventEnvelope.model_validate_json(record.value or b"")
            except ValidationError:
                observed.malformed_events.append(f"{topic}[{record.partition}]@{record.offset}")
                continue
            observed.events.append(TopicEvent(topic, record.partition, record.offset, event))
    for record in await read_topic(bootstrap, topics.command_results):
        try:
            observed.results.append(Ack.from_outcome(json.loads(record.value or b""), "results-topic", 0.0))
        except (ValueError, AttributeError):
            observed.malformed_events.append(f"{topics.command_results}@{record.offset}")
    for record in await read_topic(bootstrap, topics.commands_dlq):
        observed.dead_letters.add(_dead_letter_id(record.value or b""))
    observed.events_dlq = len(await read_topic(bootstrap, topics.events_dlq))


def _dead_letter_id(value: bytes) -> str:
    text = value.decode(errors="replace")
    if text.startswith("soak garbage "):
        return text.split()[2]
    try:
        return str(json.loads(text)["command_id"])
    except (ValueError, TypeError, KeyError):
        return text[:80]


async def read_write_store(uri: str, database: str, observed: Observed) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True, timeoutMS=120_000)
    try:
        async for doc in client[database]["commits"].find({}).sort([("_id", 1)]).batch_size(2000):
            if doc.get("kind") == "rejection":
                observed.rejections[str(doc["command_id"])] = doc["outcome"]
                continue
            body = {k: v for k, v in doc.items() if k not in ("_id", "stream")}
            observed.commits.append(Commit.model_validate(body))
    finally:
        await client.close()


async def read_views(dsn: str, observed: Observed) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            observed.rows = await read_rows(connection)
            versions = await connection.fetch(
                "SELECT aggregate_type, aggregate_id, version FROM read.shop_aggregate_versions"
            )
        observed.applied = {(r["aggregate_type"], r["aggregate_id"]): r["version"] for r in versions}
    finally:
        await pool.close()


async def observe(bootstrap: str, topics: TopicNames, mongo_uri: str, database: str, dsn: str) -> Observed:
    observed = Observed()
    await read_write_store(mongo_uri, database, observed)
    await read_views(dsn, observed)
    await read_kafka(bootstrap, topics, observed)
    return observed
