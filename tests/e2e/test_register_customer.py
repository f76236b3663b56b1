"""One command travels from the `commands` topic through all three services to an HTTP query."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from tests.e2e.harness import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_a_customer_registered_on_the_topic_is_returned_by_the_query_service(
    stack: Stack, kafka_bootstrap: str, mongodb_uri: str
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    command = {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterCustomer",
        "aggregate_id": customer_id,
        "payload": {"name": "Grace Hopper", "email": "grace@example.com"},
        "metadata": {"correlation_id": "e2e-1"},
    }
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{stack.topic_prefix}commands",
            json.dumps(command).encode(),
            key=customer_id.encode(),
            headers=[("authorization", stack.token("customers:write").encode())],
        )
    finally:
        await producer.stop()

    read_token = stack.token("customers:read")
    body = None
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=stack.query.url) as client:
        while time.monotonic() < deadline:
            response = await client.get(f"/v1/customers/{customer_id}", headers={"Authorization": read_token})
            if response.status_code == 200:
                body = response.json()
                break
            assert response.status_code == 404, response.text
            await asyncio.sleep(0.1)
    assert body is not None, "the customer never appeared in the read model"
    assert (body["name"], body["email"], body["status"], body["version"]) == (
        "Grace Hopper",
        "grace@example.com",
        "registered",
        1,
    )

    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_uri)
    try:
        commits = await mongo[stack.mongodb_database]["commits"].find({"aggregate_id": customer_id}).to_list()
    finally:
        await mongo.close()
    assert len(commits) == 1
    stored = commits[0]
    assert stored["command_id"] == command["command_id"]
    assert stored["state"] == {"status": "registered", "name": "Grace Hopper", "email": "grace@example.com"}
    events = stored["events"]
    assert isinstance(events, list)
    assert [e["type"] for e in events] == ["CustomerRegistered"]
    assert events[0]["correlation_id"] == "e2e-1"
