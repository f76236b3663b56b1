"""R5: the command -> store -> Kafka path written plainly, as the reference for command-svc (B1).

What command-svc does for a consumed batch, with the store's bulk operations and nothing else: no
validation, authorization, framework, metrics, retries or leases. Per batch of records:
1. the head of each of the batch's streams, one `find_one` by `stream` each, concurrently;
2. one unordered `insert_many` of the new commits (a duplicate key fails only its own document:
   the commands whose commit collided on their command id are repeats, answered from the store);
3. the events produced to the aggregate's topic, then the publish marks, one update by `_id` each
   in unordered bulks;
4. one outcome per command produced to `command-results`.
Only filters FerretDB serves from an index (a top-level equality on an indexed field, see
infra/postgres/ferretdb-indexes.sql), as in the service's store: `$in` and `update_many` over
`_id: {$in}` are sequential scans there, which made an earlier R5 slow down as its own store grew
(675/s at 2,000 commands, 230/s at 10,000). Store calls in flight are bounded as in the service.
Its rate is what the machine allows this path; command-svc's rate is reported as a share of it.

`read_heads=False` is the leaner variant beside it: it reads no heads and takes every stream as new,
as command-svc guesses for an aggregate it knows nothing of (a wrong guess would collide on the
commit's key; the benchmark's commands all create aggregates, so none does here). It is the floor
of store work per new aggregate: one document in an insert bulk and one publish mark.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from cqrs_shared.topics import TopicNames

Document = dict[str, Any]
#: Store operations in flight, as command-svc's pool allows (`mongodb_max_pool_size`).
CONCURRENCY = 32
#: Statements per bulk update: FerretDB 1.24 holds a connection per statement until the bulk ends.
MARK_BULK = 8
EVENT_TYPES = {"RegisterCustomer": "CustomerRegistered", "RenameCustomer": "CustomerRenamed"}


def _event(command: Document, version: int) -> Document:
    return {
        "event_id": str(uuid.uuid4()),
        "type": EVENT_TYPES.get(command["type"], command["type"]),
        "schema_version": 1,
        "aggregate_type": "customer",
        "aggregate_id": command["aggregate_id"],
        "version": version,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": command["command_id"],
        "causation_id": command["command_id"],
        "payload": command["payload"],
    }


async def _heads(commits: AsyncCollection[Document], streams: list[str]) -> dict[str, int]:
    """Each stream's latest version: an equality on `stream`, served by its index; the sort only
    orders that stream's few commits."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def head(stream: str) -> tuple[str, int]:
        async with slots:
            doc = await commits.find_one({"stream": stream}, {"version": 1}, sort=[("version", DESCENDING)])
        return stream, doc["version"] if doc else 0

    return dict(await asyncio.gather(*(head(s) for s in streams)))


async def _commit_batch(
    commits: AsyncCollection[Document], commands: list[Document], *, read_heads: bool
) -> tuple[list[Document], list[Document]]:
    """(new commit documents, repeated commands): the store side of one batch."""
    streams = sorted({f"customer/{c['aggregate_id']}" for c in commands})
    heads = await _heads(commits, streams) if read_heads else dict.fromkeys(streams, 0)
    documents = []
    for command in commands:
        stream = f"customer/{command['aggregate_id']}"
        version = heads[stream] + 1
        heads[stream] = version
        documents.append(
            {
                "_id": f"{stream}@{version - 1:010d}",
                "stream": stream,
                "version": version,
                "command_id": command["command_id"],
                "events": [_event(command, version)],
                "published": False,
            }
        )
    repeats: list[Document] = []
    if documents:
        try:
            await commits.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            failed = {e["index"] for e in exc.details.get("writeErrors", [])}
            # A collision is a repeat when its command id has an outcome (one equality read each).
            repeats = [
                commands[index]
                for index in sorted(failed)
                if await commits.find_one({"command_id": commands[index]["command_id"]}, {"_id": 1})
            ]
            documents = [d for i, d in enumerate(documents) if i not in failed]
    return documents, repeats


async def _mark_published(commits: AsyncCollection[Document], documents: list[Document]) -> None:
    updates = [UpdateOne({"_id": d["_id"]}, {"$set": {"published": True}}) for d in documents]
    # At most CONCURRENCY statements in flight, the service's pool: FerretDB holds one PostgreSQL
    # connection for each until its bulk ends, and bulks waiting on each other's would never end.
    slots = asyncio.Semaphore(CONCURRENCY // MARK_BULK)

    async def bulk(part: list[UpdateOne]) -> None:
        async with slots:
            await commits.bulk_write(part, ordered=False)

    await asyncio.gather(*(bulk(updates[i : i + MARK_BULK]) for i in range(0, len(updates), MARK_BULK)))


async def run_null_pipeline(
    bootstrap: str, mongodb_uri: str, topics: TopicNames, count: int, *, read_heads: bool = True
) -> float:
    """Commands/s handling `count` commands already on `topics.commands`, first fetch to last ack."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_uri, maxPoolSize=CONCURRENCY)
    database = client[f"bench_r5_{uuid.uuid4().hex[:8]}"]
    commits = database["commits"]
    await commits.create_index("command_id", unique=True)
    await commits.create_index([("stream", 1), ("version", 1)], unique=True)
    consumer = AIOKafkaConsumer(
        topics.commands, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    handled, started = 0, 0.0
    try:
        while handled < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if started == 0.0 and batches:
                started = time.perf_counter()
            # Every partition's records of a fetch as one batch: one set of round trips per fetch.
            # Order within a partition (so per aggregate) is kept; across partitions none is owed.
            commands = [json.loads(r.value or b"{}") for records in batches.values() for r in records]
            if not commands:
                continue
            documents, _repeats = await _commit_batch(commits, commands, read_heads=read_heads)
            sends = [
                await producer.send(
                    topics.events("customer"), json.dumps(e).encode(), key=e["aggregate_id"].encode()
                )
                for d in documents
                for e in d["events"]
            ]
            await asyncio.gather(*sends)
            await _mark_published(commits, documents)
            outcomes = [
                await producer.send(
                    topics.command_results, b'{"status":"accepted"}', key=c["command_id"].encode()
                )
                for c in commands
            ]
            await asyncio.gather(*outcomes)
            handled += len(commands)
        return handled / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()
        await client.drop_database(database.name)
        await client.close()
