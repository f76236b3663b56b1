"""The topic door against real Kafka: a failure costs only what failed, and a stuck loop fails /healthz."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI

from command_svc.app import create_app
from command_svc.domain.decider import AggregateDefinition
from command_svc.settings import CommandServiceSettings
from command_svc.write_store.memory_store import MemoryWriteStore
from cqrs_shared.testing.kafka_client import KafkaClient
from cqrs_shared.write_store import Commit, WriteStoreUnavailableError

pytestmark = pytest.mark.integration


@pytest.fixture
def door_settings(settings: CommandServiceSettings, unique: str) -> CommandServiceSettings:
    # One partition, so the aggregates share offsets; a group of its own, so no other test rebalances it.
    return settings.model_copy(
        update={
            "write_store": "memory",
            "consumer_group": f"command-svc-{unique}",
            "topic_partitions": 1,
            "topic_retry_pause_seconds": 0.2,
        }
    )


@asynccontextmanager
async def running(
    settings: CommandServiceSettings, tally: AggregateDefinition[Any]
) -> AsyncIterator[FastAPI]:
    app = create_app(settings, aggregates=[tally])
    async with app.router.lifespan_context(app):
        yield app


def increment(aggregate: str, by: int) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "type": "Increment",
        "aggregate_id": aggregate,
        "payload": {"by": by},
    }


async def read_to_end(bootstrap: str, topic: str) -> list[Any]:
    """Every record on the topic now, from its beginning to its end offsets."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = sorted(consumer.assignment())
        end = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def committed_offset(bootstrap: str, group: str, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = offsets.get(TopicPartition(topic, 0))
    return None if committed is None else int(committed.offset)


async def test_a_failing_aggregate_holds_back_only_its_own_commands_and_commits_the_done_prefix(
    door_settings: CommandServiceSettings, kafka: KafkaClient, tally: AggregateDefinition[Any], token_for: Any
) -> None:
    failing = {"a"}
    attempts: Counter[str] = Counter()
    stored: Counter[uuid.UUID] = Counter()
    token = token_for("tally:write")
    async with running(door_settings, tally) as app:
        store: MemoryWriteStore = app.state.service.store
        original = store.append

        async def append(commit: Commit) -> None:
            attempts[commit.aggregate_id] += 1
            if commit.aggregate_id in failing:
                raise WriteStoreUnavailableError("timed out")
            await original(commit)
            stored[commit.command_id] += 1

        store.append = append  # type: ignore[method-assign]  # a store double failing one aggregate
        # b1 c1 a1 b2 c2 a2 b3 c3 a3 on one partition: a1 sits at offset 2.
        sent = [increment(aggregate, by) for by in (1, 2, 3) for aggregate in ("b", "c", "a")]
        for command in sent:
            await kafka.send_command(command, token=token)
        others = {c["command_id"] for c in sent if c["aggregate_id"] != "a"}
        topic, results = kafka.topics.commands, kafka.topics.command_results

        async def answered(wanted: set[str]) -> bool:
            records = await read_to_end(kafka.bootstrap, results)
            return wanted <= {json.loads(r.value)["command_id"] for r in records}

        async def committed_at(offset: int) -> bool:
            return await committed_offset(kafka.bootstrap, door_settings.consumer_group, topic) == offset

        async def retried() -> bool:
            return attempts["a"] >= 3

        await eventually(lambda: answered(others))
        await eventually(lambda: committed_at(2))
        await eventually(retried)
        assert {json.loads(r.value)["aggregate_id"] for r in await read_to_end(kafka.bootstrap, results)} == {
            "b",
            "c",
        }

        failing.clear()
        await eventually(lambda: answered({c["command_id"] for c in sent}))
        await eventually(lambda: committed_at(len(sent)))
        history = [(c.aggregate_id, c.events[0].payload["by"]) async for c in store.history()]

    outcomes = [json.loads(r.value) for r in await read_to_end(kafka.bootstrap, results)]
    # Every command answered once: the re-reads skipped what other aggregates had already done.
    assert sorted(Counter(o["command_id"] for o in outcomes).values()) == [1] * len(sent)
    assert {o["status"] for o in outcomes} == {"accepted"}
    assert sorted(stored.values()) == [1] * len(sent)
    assert [by for aggregate, by in history if aggregate == "a"] == [1, 2, 3]


async def test_healthz_fails_while_the_door_loop_is_stuck_and_recovers(
    door_settings: CommandServiceSettings, kafka: KafkaClient, tally: AggregateDefinition[Any], token_for: Any
) -> None:
    settings = door_settings.model_copy(update={"topic_liveness_seconds": 1.0})
    release = asyncio.Event()
    async with running(settings, tally) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://command-svc") as http:

            async def health_is(status: int) -> bool:
                return (await http.get("/healthz")).status_code == status

            await asyncio.sleep(1.5)
            assert await health_is(200)  # idle turns beat too
            store: MemoryWriteStore = app.state.service.store
            original = store.find_outcome

            async def never_answers(command_id: uuid.UUID) -> Any:
                await release.wait()
                return await original(command_id)

            store.find_outcome = never_answers  # type: ignore[method-assign]  # a store call that hangs
            command = increment("a", 1)
            await kafka.send_command(command, token=token_for("tally:write"))
            await eventually(lambda: health_is(503), within=15)
            problem = (await http.get("/healthz")).json()
            assert "topic_door" in problem["checks"]

            release.set()
            await eventually(lambda: health_is(200), within=15)
            [outcome] = await kafka.outcomes(1)
            assert (outcome["command_id"], outcome["status"]) == (command["command_id"], "accepted")
