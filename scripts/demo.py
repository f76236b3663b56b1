"""The `make up` demo: register a customer through the `commands` topic and read it back.

Produces a `RegisterCustomer` command with a plain Kafka producer, waits for its outcome on
`command-results`, then polls query-svc until the read model shows the customer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
QUERY_URL = os.environ.get("QUERY_URL", "http://127.0.0.1:8080")
PREFIX = os.environ.get("CQRS_TOPIC_PREFIX", "")


async def wait_for_outcome(consumer: AIOKafkaConsumer, command_id: str, within: float) -> dict[str, object]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for record in records:
                if record.key == command_id.encode():
                    return json.loads(record.value)  # type: ignore[no-any-return]
    raise TimeoutError("no outcome on command-results")


async def send(command: dict[str, object]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        value = json.dumps(command).encode()
        await producer.send_and_wait(f"{PREFIX}commands", value, key=str(command["aggregate_id"]).encode())
    finally:
        await producer.stop()


async def main() -> int:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    command_id = str(uuid.uuid4())
    command: dict[str, object] = {
        "command_id": command_id,
        "type": "RegisterCustomer",
        "aggregate_id": customer_id,
        "payload": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "metadata": {"correlation_id": "demo"},
    }
    results = AIOKafkaConsumer(f"{PREFIX}command-results", bootstrap_servers=BOOTSTRAP, group_id=None)
    await results.start()
    try:
        # Position at the end before sending, so the outcome cannot slip past us.
        await results.seek_to_end()
        started = time.monotonic()
        await send(command)
        print(f"sent RegisterCustomer for {customer_id} onto {PREFIX}commands")
        outcome = await wait_for_outcome(results, command_id, 30)
    finally:
        await results.stop()
    print(f"outcome on command-results: {json.dumps(outcome)}")
    async with httpx.AsyncClient(base_url=QUERY_URL, timeout=5) as client:
        while time.monotonic() - started < 30:
            response = await client.get(f"/v1/customers/{customer_id}")
            if response.status_code == 404:
                await asyncio.sleep(0.1)
                continue
            response.raise_for_status()
            elapsed = time.monotonic() - started
            print(f"query-svc GET /v1/customers/{customer_id} answered {elapsed:.2f}s after sending:")
            print(json.dumps(response.json(), indent=2))
            return 0
    print("the customer did not appear in the read model within 30 s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
