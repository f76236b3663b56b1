"""A command load for end-to-end tests: 200 customers, each registered then renamed nine times."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cqrs_shared.auth import mint_token
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER
from cqrs_shared.topics import TopicNames

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


async def send_all(bootstrap: str, topics: TopicNames, sent: list[dict[str, Any]]) -> None:
    """Produce every command onto the commands topic with a token, and wait for all acknowledgements."""
    token = "Bearer " + mint_token(
        E2E_SECRET, subject="t", roles=["customers:write"], issuer=ISSUER, audience=AUDIENCE
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
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
