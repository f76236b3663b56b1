"""R5: the command -> store -> Kafka path written plainly, as the reference for command-svc (B1).

What command-svc does for a consumed batch, with the store's bulk operations and nothing else: no
validation, authorization, framework, metrics, retries or leases. Per batch of records:
1. one `$in` find of the batch's command ids (repeats answer their first outcome);
2. one `$in` find of the batch's streams' versions (the heads);
3. one unordered `insert_many` of the new commits (a duplicate key fails only its own document);
4. the events produced to the aggregate's topic, then one `update_many` publish mark;
5. one outcome per command produced to `command-results`.
Its rate is what the machine allows this path; command-svc's rate is reported as a share of it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from cqrs_shared.topics import TopicNames

Document = dict[str, Any]
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


async def _commit_batch(
    commits: AsyncCollection[Document], commands: list[Document]
) -> tuple[list[Document], list[Document]]:
    """(new commit documents, repeated commands): the store side of one batch."""
    ids = [c["command_id"] for c in commands]
    seen = {d["command_id"] async for d in commits.find({"command_id": {"$in": ids}}, {"command_id": 1})}
    fresh = [c for c in commands if c["command_id"] not in seen]
    streams = sorted({f"customer/{c['aggregate_id']}" for c in fresh})
    heads: dict[str, int] = {}
    # FerretDB implements no `$max` accumulator in `$group`; the versions are few per stream here.
    async for doc in commits.find({"stream": {"$in": streams}}, {"stream": 1, "version": 1}):
        heads[doc["stream"]] = max(heads.get(doc["stream"], 0), doc["version"])
    documents = []
    for command in fresh:
        stream = f"customer/{command['aggregate_id']}"
        version = heads.get(stream, 0) + 1
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
    if documents:
        try:
            await commits.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            failed = {e["index"] for e in exc.details.get("writeErrors", [])}
            documents = [d for i, d in enumerate(documents) if i not in failed]
    return documents, [c for c in commands if c["command_id"] in seen]


async def run_null_pipeline(bootstrap: str, mongodb_uri: str, topics: TopicNames, count: int) -> float:
    """Commands/s handling `count` commands already on `topics.commands`, first fetch to last ack."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_uri)
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
            documents, _repeats = await _commit_batch(commits, commands)
            sends = [
                await producer.send(
                    topics.events("customer"), json.dumps(e).encode(), key=e["aggregate_id"].encode()
                )
                for d in documents
                for e in d["events"]
            ]
            await asyncio.gather(*sends)
            await commits.update_many(
                {"_id": {"$in": [d["_id"] for d in documents]}}, {"$set": {"published": True}}
            )
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
