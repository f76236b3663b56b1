"""The images users deploy, run as containers (host network, nothing pulled) against the real servers:
a command travels from the topic and from HTTP through command-svc, projector-svc and query-svc, and a
SIGTERM of command-svc under load loses and half-applies nothing.

The first test to run builds the images (`make images`; from the build cache when nothing changed).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from cqrs_shared.auth import mint_token
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER
from cqrs_shared.topics import TopicNames
from tests.deploy.containers import Container, Engine, run_once
from tests.e2e.command_load import COMMANDS_PER_CUSTOMER, CUSTOMERS, commands, read_all, send_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]

WAIT = {"max_wait_ms": "10000"}
LINE = {"sku": "pen", "quantity": 2, "unit_price": "9.95"}


def bearer(*roles: str) -> dict[str, str]:
    token = mint_token(E2E_SECRET, subject="image-e2e", roles=list(roles), issuer=ISSUER, audience=AUDIENCE)
    return {"Authorization": f"Bearer {token}"}


def start_all(start_image: Callable[..., Container], *services: str) -> list[Container]:
    containers = [start_image(service) for service in services]
    for container in containers:
        container.wait_ready()
    return containers


async def send(client: httpx.AsyncClient, url: str, kind: str, aggregate: str, **payload: Any) -> str:
    """POST one command to the command-svc container; its consistency token."""
    command = {"command_id": str(uuid.uuid4()), "type": kind, "aggregate_id": aggregate, "payload": payload}
    response = await client.post(
        f"{url}/v1/commands", json=command, headers=bearer("customers:write", "orders:write")
    )
    assert response.status_code == 200, response.text
    return str(response.json()["consistency_token"])


async def test_the_service_images_carry_commands_from_the_topic_and_http_to_the_query_api(
    start_image: Callable[..., Container],
    engine: Engine,
    image_env: dict[str, str],
    kafka_bootstrap: str,
    topic_prefix: str,
) -> None:
    # What the Helm chart's pre-install Job and compose's `setup` run, from the CLI image.
    setup = run_once(engine, "cqrs-cli", image_env, "setup", "shop")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    topics = TopicNames(topic_prefix)
    assert f"{topics.commands}: created" in setup.stdout.splitlines()
    assert f"{topics.events('customer')}: created" in setup.stdout.splitlines()
    projector, command, query = start_all(start_image, "projector-svc", "command-svc", "query-svc")
    customer, order = f"c-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    reader = bearer("customers:read", "orders:read")

    # The topic door, as tests/e2e/test_register_customer.py drives it.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        registration = {
            "command_id": str(uuid.uuid4()),
            "type": "RegisterCustomer",
            "aggregate_id": customer,
            "payload": {"name": "Ada", "email": "ada@example.com"},
        }
        await producer.send_and_wait(
            TopicNames(topic_prefix).commands,
            json.dumps(registration).encode(),
            key=customer.encode(),
            headers=[("authorization", bearer("customers:write")["Authorization"].encode())],
        )
    finally:
        await producer.stop()

    async with httpx.AsyncClient(base_url=query.url, timeout=30) as client:
        registered = None
        deadline = time.monotonic() + 60
        while registered is None and time.monotonic() < deadline:
            response = await client.get(f"/v1/customers/{customer}", headers=reader)
            if response.status_code == 200:
                registered = response.json()
            else:
                assert response.status_code == 404, response.text
                await asyncio.sleep(0.2)
        assert registered is not None, "the customer registered on the topic never reached query-svc"

        # The HTTP door, read back with consistency tokens as tests/e2e/test_query_read_your_writes.py does.
        await send(client, command.url, "RenameCustomer", customer, name="Ada Lovelace")
        await send(
            client, command.url, "PlaceOrder", order, customer_id=customer, currency="EUR", lines=[LINE]
        )
        token = await send(client, command.url, "ConfirmOrder", order)
        orders = await client.get(
            f"/v1/customers/{customer}/orders", params={**WAIT, "after": token}, headers=reader
        )
        counted = await client.get(
            f"/v1/customers/{customer}", params={**WAIT, "after": token}, headers=reader
        )

    assert (registered["name"], registered["status"], registered["version"]) == ("Ada", "registered", 1)
    assert orders.status_code == 200, orders.text
    assert [(o["id"], o["customer_name"], o["total"], o["status"]) for o in orders.json()["items"]] == [
        (order, "Ada Lovelace", "19.90", "confirmed")
    ]
    assert (counted.json()["name"], counted.json()["order_count"]) == ("Ada Lovelace", 1)
    assert orders.headers["x-read-model-stale"] == "false"
    for container in (projector, command, query):
        assert container.inspect()["Config"]["User"] == "10001:10001"


async def test_sigterm_of_the_command_and_projector_images_under_load_loses_and_half_applies_nothing(
    start_image: Callable[..., Container],
    kafka_bootstrap: str,
    topic_prefix: str,
    mongodb_uri: str,
    pg_database: str,
    image_env: dict[str, str],
) -> None:
    topics = TopicNames(topic_prefix)
    (projector,) = start_all(start_image, "projector-svc")
    (first,) = start_all(start_image, "command-svc")
    sent = commands()
    await send_all(kafka_bootstrap, topics, sent)

    # Stop once a quarter of the outcomes are out: commits, publishes and offset commits are mid-flight.
    await read_all(kafka_bootstrap, topics.command_results, lambda r: len(r) >= len(sent) // 4, 120)
    stopping = time.monotonic()
    exit_code = first.stop()
    stop_seconds = time.monotonic() - stopping
    assert exit_code == 0, f"command-svc did not stop cleanly on SIGTERM (exit {exit_code}):\n{first.logs()}"
    (second,) = start_all(start_image, "command-svc")

    # The projector too, while the new command-svc republishes and publishes the rest: its batches
    # commit rows and offsets in one transaction, so a stop in between must leave no trace.
    await read_all(kafka_bootstrap, topics.command_results, lambda r: len(r) >= len(sent) // 2, 120)
    projector_exit = projector.stop()
    assert projector_exit == 0, f"projector-svc exit {projector_exit} on SIGTERM:\n{projector.logs()}"
    start_all(start_image, "projector-svc")

    wanted = {c["command_id"] for c in sent}
    results = await read_all(
        kafka_bootstrap,
        topics.command_results,
        lambda r: wanted <= {json.loads(x.value)["command_id"] for x in r},
        180,
    )
    outcomes = {json.loads(r.value)["command_id"]: json.loads(r.value) for r in results}
    rejected = [o for o in outcomes.values() if o["status"] != "accepted"]
    assert not rejected, rejected[:3]

    # Every customer's events were published, in version order, and projected completely.
    expected = {(f"c-{c}", v) for c in range(CUSTOMERS) for v in range(1, COMMANDS_PER_CUSTOMER + 1)}
    events = await read_all(
        kafka_bootstrap,
        topics.events("customer"),
        lambda r: (
            expected <= {(json.loads(x.value)["aggregate_id"], json.loads(x.value)["version"]) for x in r}
        ),
        180,
    )
    for customer in range(CUSTOMERS):
        versions = [
            json.loads(e.value)["version"]
            for e in events
            if json.loads(e.value)["aggregate_id"] == f"c-{customer}"
        ]
        assert list(dict.fromkeys(versions)) == list(range(1, COMMANDS_PER_CUSTOMER + 1)), (
            customer,
            versions,
        )

    final_name = f"N{COMMANDS_PER_CUSTOMER - 1}"
    connection = await asyncpg.connect(pg_database)
    try:
        rows: list[Any] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = await connection.fetch("SELECT id, name, version FROM read.customers")
            if len(rows) == CUSTOMERS and all(r["version"] == COMMANDS_PER_CUSTOMER for r in rows):
                break
            await asyncio.sleep(0.5)
    finally:
        await connection.close()
    assert (
        sorted((r["name"], r["version"]) for r in rows) == [(final_name, COMMANDS_PER_CUSTOMER)] * CUSTOMERS
    )

    # In the write store: exactly one commit per accepted command, and none left unpublished.
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    try:
        commits = mongo[image_env["MONGODB_DATABASE"]]["commits"]
        assert await commits.count_documents({}) == len(sent)
        unpublished = -1
        for _ in range(120):  # the relay marks what it published within seconds
            unpublished = await commits.count_documents({"published": False})
            if unpublished == 0:
                break
            await asyncio.sleep(0.5)
        assert unpublished == 0
    finally:
        await mongo.close()
    print(f"\ncommand-svc container stopped by SIGTERM in {stop_seconds:.1f} s (exit 0) with load in flight")
    assert second.inspect()["State"]["Running"]


@pytest.mark.parametrize("name", ["command-svc", "projector-svc", "query-svc", "cqrs-cli"])
def test_each_image_runs_as_the_fixed_uid_with_no_build_tools(engine: Engine, name: str) -> None:
    config = json.loads(
        engine.run("image", "inspect", "--format", "{{json .Config}}", engine.image(name)).stdout
    )
    assert (config["User"], config["StopSignal"]) == ("10001:10001", "SIGTERM")
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "/app/healthcheck.py"]
    probe = "id -u; for tool in uv pip pip3 gcc cc make; do command -v $tool; done; true"
    done = engine.run(
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        engine.image(name),
        "-c",
        probe,
    )
    assert done.stdout.split() == ["10001"], f"{name} carries {done.stdout.split()[1:]}"
