"""SIGKILL command-svc while 2,000 commands are in flight: nothing accepted is lost on the event topics."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cqrs_shared.auth import mint_token
from cqrs_shared.topics import TopicNames
from tests.e2e.harness import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CUSTOMERS = 200
COMMANDS_PER_CUSTOMER = 10  # one registration and nine renames


def commands() -> list[dict[str, Any]]:
    out = []
    for c in range(CUSTOMERS):
        customer = f"c-{c}"
        out.append(_command("RegisterCustomer", customer, {"name": "N0", "email": f"{customer}@example.com"}))
        out.extend(
            _command("RenameCustomer", customer, {"name": f"N{i}"}) for i in range(1, COMMANDS_PER_CUSTOMER)
        )
    return out


def _command(type_: str, aggregate_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"command_id": str(uuid.uuid4()), "type": type_, "aggregate_id": aggregate_id, "payload": payload}


async def read_all(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool], within: float
) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + within
        while not until(records):
            assert asyncio.get_running_loop().time() < deadline, (
                f"{topic}: condition not met, {len(records)} records"
            )
            for batch in (await consumer.getmany(timeout_ms=300, max_records=5000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_sigkill_with_commands_in_flight_loses_no_accepted_event(
    start_service: Callable[..., ServiceProcess], kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = TopicNames(topic_prefix)
    first = start_service("command_svc", "COMMAND_SVC_PORT")
    first.wait_ready()
    token = "Bearer " + mint_token(
        E2E_SECRET, subject="t", roles=["customers:write"], issuer=ISSUER, audience=AUDIENCE
    )
    sent = commands()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        deliveries = [
            await producer.send(
                topics.commands,
                json.dumps(c).encode(),
                key=c["aggregate_id"].encode(),
                headers=[("authorization", token.encode())],
            )
            for c in sent
        ]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()

    # Kill once a quarter of the outcomes are out: commits, publishes and offset commits are mid-flight.
    await read_all(kafka_bootstrap, topics.command_results, lambda r: len(r) >= len(sent) // 4, 60)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = start_service("command_svc", "COMMAND_SVC_PORT")
    second.wait_ready()

    wanted = {c["command_id"] for c in sent}
    results = await read_all(
        kafka_bootstrap,
        topics.command_results,
        lambda r: wanted <= {json.loads(x.value)["command_id"] for x in r},
        120,
    )
    outcomes = {json.loads(r.value)["command_id"]: json.loads(r.value) for r in results}
    accepted = [o for o in outcomes.values() if o["status"] == "accepted"]
    assert len(accepted) == len(sent), [o for o in outcomes.values() if o["status"] != "accepted"][:3]
    expected = {(o["aggregate_id"], o["version"]) for o in accepted}

    def all_published(records: list[Any]) -> bool:
        return expected <= {
            (json.loads(r.value)["aggregate_id"], json.loads(r.value)["version"]) for r in records
        }

    events = [
        json.loads(r.value)
        for r in await read_all(kafka_bootstrap, topics.events("customer"), all_published, 120)
    ]
    duplicates = 0
    for customer in range(CUSTOMERS):
        versions = [e["version"] for e in events if e["aggregate_id"] == f"c-{customer}"]
        first_seen = list(dict.fromkeys(versions))
        # In version order: each version first appears only after all its predecessors did.
        assert first_seen == list(range(1, COMMANDS_PER_CUSTOMER + 1)), (customer, versions)
        duplicates += len(versions) - len(first_seen)
    print(
        f"\n{len(events)} events for {len(accepted)} accepted commands; {duplicates} duplicates after SIGKILL"
    )
