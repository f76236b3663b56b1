"""The long-running stream publisher is SIGKILLed mid-stream under load and started again: every
stored commit's events reach Kafka, in version order per aggregate (duplicates allowed, loss never)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from cqrs_shared.testing.service_processes import ServiceProcess
from cqrs_shared.testing.write_store_contract import make_commit
from cqrs_shared.topics import TopicNames, ensure_topics
from cqrs_shared.write_store import Commit, DuplicateCommandError

from .dynamo_fixtures import private_tables

pytestmark = pytest.mark.integration

#: Small on purpose: moto deep-copies a table (its stream included) on every TransactWriteItems, so
#: its cost grows with the table; real DynamoDB's does not.
AGGREGATES = 12
VERSIONS = 12


def _publisher(tmp_path: Path, name: str, env: dict[str, str]) -> ServiceProcess:
    return ServiceProcess(
        "command_svc.stream_publishing",
        0,  # no HTTP: the process only publishes
        {**env, "COMMAND_SVC_INSTANCE_ID": name},
        tmp_path / f"{name}.log",
    ).start()


class _Reader:
    """Every event on the topic, in the order each partition holds them, per aggregate."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        self.seen: dict[str, list[int]] = defaultdict(list)

    async def poll(self) -> int:
        for batch in (await self.consumer.getmany(timeout_ms=200)).values():
            for record in batch:
                event = json.loads(record.value)
                self.seen[event["aggregate_id"]].append(event["version"])
        return sum(len(set(v)) for v in self.seen.values())


async def test_a_killed_stream_publisher_resumes_from_its_checkpoint_losing_nothing(
    dynamodb_endpoint: str, kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    topics = TopicNames(f"t{unique}.")
    topic = topics.events("tally")
    await ensure_topics(kafka_bootstrap, [topic], partitions=3, replication_factor=1)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CQRS_TOPIC_PREFIX": topics.prefix,
        "WRITE_STORE": "dynamodb",
        "DYNAMODB_ENDPOINT_URL": dynamodb_endpoint,
        "DYNAMODB_TABLE_PREFIX": f"t{unique}-",
        "COMMAND_SVC_RELAY_LEASE_TTL_SECONDS": "2",
        "LOG_FORMAT": "text",
        "CQRS_AUTH_MODE": "disabled",  # the publisher takes no commands
    }
    reader = _Reader(kafka_bootstrap, topic)
    await reader.consumer.start()
    async with private_tables(dynamodb_endpoint, f"t{unique}-") as store:
        first = _publisher(tmp_path, "first", env)
        try:

            async def append(commit: Commit) -> None:
                try:
                    await store.append(commit)
                except DuplicateCommandError as exc:
                    # botocore retried a call that had succeeded (moto is slow under this load):
                    # the store reports the commit already there, which must be this one.
                    if exc.existing != commit.outcome():
                        raise

            async def write(versions: range) -> None:
                for version in versions:
                    await asyncio.gather(*(append(make_commit(f"a{n}", version)) for n in range(AGGREGATES)))
                    await asyncio.sleep(0.1)  # a steady stream, so the kill lands in the middle of it

            # The first round shows the publisher is up; then a steady load, and the kill lands in it.
            await write(range(1, 2))
            deadline = time.monotonic() + 60
            while await reader.poll() < AGGREGATES:
                assert time.monotonic() < deadline, first.tail()
            writer = asyncio.create_task(write(range(2, VERSIONS + 1)))
            while await reader.poll() < AGGREGATES * 3:
                assert time.monotonic() < deadline, first.tail()
            assert not writer.done()
            assert first.stop(signal.SIGKILL) == -signal.SIGKILL
            published_before = sum(len(set(v)) for v in reader.seen.values())
            assert published_before < AGGREGATES * VERSIONS
            await writer
            second = _publisher(tmp_path, "second", env)
            try:
                deadline = time.monotonic() + 90
                while await reader.poll() < AGGREGATES * VERSIONS:
                    assert time.monotonic() < deadline, second.tail()
            finally:
                second.stop()
        finally:
            first.stop(signal.SIGKILL)
            await reader.consumer.stop()
    for aggregate in (f"a{n}" for n in range(AGGREGATES)):
        versions = reader.seen[aggregate]
        first_seen = list(dict.fromkeys(versions))
        assert first_seen == list(range(1, VERSIONS + 1)), (aggregate, versions)
        # A duplicate only ever repeats what came before: never a version ahead of its predecessor.
        highest = 0
        for version in versions:
            assert version <= highest + 1, (aggregate, versions)
            highest = max(highest, version)
