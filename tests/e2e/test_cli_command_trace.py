"""`cqrs command trace` against the real command-svc and projector: an accepted command's outcome,
its events where they really are on Kafka, their state in the projection and the caller's trace id;
a rejected command; an unknown id; Kafka or PostgreSQL unreachable. Two tests, each with its own
two service processes (about 25 s each on two shared cores)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from typer.testing import CliRunner, Result

from cqrs_cli.main import app
from cqrs_shared.testing.service_processes import ServiceProcess, free_port
from tests.e2e.harness import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TRACE_ID = uuid.uuid4().hex
TRACEPARENT = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"

Cqrs = Callable[..., Awaitable[Result]]


@pytest.fixture
def cqrs(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Cqrs:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "CQRS_TOPIC_PREFIX", "DATABASE_URL"):
        monkeypatch.setenv(name, service_env[name])
    runner = CliRunner()

    async def run(*args: str) -> Result:
        return await asyncio.to_thread(runner.invoke, app, list(args))

    return run


@pytest.fixture
def stack(start_service: Callable[..., ServiceProcess], service_env: dict[str, str]) -> Stack:
    """command-svc traced (its spans go to its log), the projector; no query-svc needed."""
    projector = start_service("projector_svc", "PROJECTOR_SVC_PORT")
    command = start_service("command_svc", "COMMAND_SVC_PORT", OTEL_TRACES_EXPORTER="console")
    for service in (projector, command):
        service.wait_ready()
    return Stack(
        command,
        projector,
        projector,  # stands in for query-svc, which this test does not use
        service_env["CQRS_TOPIC_PREFIX"],
        service_env["MONGODB_DATABASE"],
        service_env["DATABASE_URL"],
    )


async def post(stack: Stack, kind: str, aggregate_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    command = {
        "command_id": str(uuid.uuid4()),
        "type": kind,
        "aggregate_id": aggregate_id,
        "payload": payload,
    }
    headers = {"Authorization": stack.token("customers:write"), "traceparent": TRACEPARENT}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{stack.command.url}/v1/commands", json=command, headers=headers)
    body: dict[str, Any] = response.json()
    body["command_id"] = command["command_id"]
    return body


async def traced_until_applied(cqrs: Cqrs, command_id: str) -> dict[str, Any]:
    """The JSON trace, once every event is applied in the projection (the projector is async)."""
    async with asyncio.timeout(60):
        while True:
            result = await cqrs("command", "trace", command_id, "--json")
            assert result.exit_code in (0, 1), result.output  # 1 until the outcome is on the topic
            if result.exit_code == 0:
                trace: dict[str, Any] = json.loads(result.stdout)
                states = [p["state"] for e in trace["events"] for p in e["projections"]]
                if states and set(states) == {"applied"}:
                    return trace
            await asyncio.sleep(0.2)


async def record_at(bootstrap: str, topic: str, partition: int, offset: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = await consumer.getone(tp)
    finally:
        await consumer.stop()
    value: dict[str, Any] = json.loads(record.value)
    return value


async def test_an_accepted_command_is_traced_to_its_events_and_their_projection(
    stack: Stack, cqrs: Cqrs, kafka_bootstrap: str
) -> None:
    customer = f"tr-{uuid.uuid4().hex[:8]}"
    await post(stack, "RegisterCustomer", customer, {"name": "Ada", "email": "ada@example.com"})
    renamed = await post(stack, "RenameCustomer", customer, {"name": "Ada King"})
    assert renamed["status"] == "accepted", renamed

    trace = await traced_until_applied(cqrs, renamed["command_id"])
    assert trace["outcome"]["status"] == "accepted"
    assert trace["outcome"]["version"] == 2
    assert trace["topic"] == f"{stack.topic_prefix}command-results"
    assert trace["trace_id"] == TRACE_ID
    assert trace["problems"] == []
    [event] = trace["events"]
    assert (event["type"], event["version"], event["event_id"]) == (
        "CustomerRenamed",
        2,
        renamed["event_ids"][0],
    )
    assert event["topic"] == f"{stack.topic_prefix}events.customer"
    assert event["trace_id"] == TRACE_ID  # the relay's publish continued the command's trace
    on_kafka = await record_at(kafka_bootstrap, event["topic"], event["partition"], event["offset"])
    assert on_kafka["event_id"] == event["event_id"]
    assert event["projections"] == [{"projection": "shop", "state": "applied", "applied_version": 2}]

    pretty = await cqrs("command", "trace", renamed["command_id"], "--since", "10m")
    assert pretty.exit_code == 0, pretty.output
    assert f"  outcome  accepted: customer/{customer} v2" in pretty.stdout
    assert f"  trace    {TRACE_ID}" in pretty.stdout
    assert f"  event    v2 CustomerRenamed {event['event_id']}  {event['topic']}[" in pretty.stdout
    assert "           shop: applied" in pretty.stdout


async def test_rejected_and_unknown_commands_and_unreachable_servers(
    stack: Stack, cqrs: Cqrs, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejected = await post(stack, "RenameCustomer", f"tr-ghost-{uuid.uuid4().hex[:8]}", {"name": "Nobody"})
    assert rejected["status"] == 404, rejected
    async with asyncio.timeout(30):
        # Exit 1 until command-svc has published the outcome.
        while (result := await cqrs("command", "trace", rejected["command_id"])).exit_code == 1:  # noqa: ASYNC110  # a topic offers no event to wait on
            await asyncio.sleep(0.2)
    assert result.exit_code == 0, result.output
    assert "  outcome  rejected (not_found): " in result.stdout
    assert "  event " not in result.stdout
    later = await cqrs("command", "trace", rejected["command_id"], "--since", "2099-01-01T00:00:00")
    assert later.exit_code == 1  # nothing was sent after that time

    unknown = str(uuid.uuid4())
    missing = await cqrs("command", "trace", unknown)
    assert missing.exit_code == 1
    assert f"no outcome for command {unknown} on {stack.topic_prefix}command-results" in missing.stderr

    customer = f"tr-{uuid.uuid4().hex[:8]}"
    registered = await post(stack, "RegisterCustomer", customer, {"name": "Bo", "email": "bo@example.com"})
    await traced_until_applied(cqrs, registered["command_id"])
    monkeypatch.setenv("DATABASE_URL", f"postgresql://cqrs:cqrs@127.0.0.1:{free_port()}/cqrs")
    no_database = await cqrs("command", "trace", registered["command_id"])
    assert no_database.exit_code == 4
    assert "           shop: unknown" in no_database.stdout  # what Kafka alone could tell is shown
    assert "  problem  projection shop: cannot read PostgreSQL: " in no_database.stdout

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    no_broker = await cqrs("command", "trace", registered["command_id"])
    assert no_broker.exit_code == 4
    assert "cannot reach Kafka at 127.0.0.1:" in no_broker.stderr
    for result in (missing, no_database, no_broker):
        assert "Traceback" not in result.output
