"""One trace from command to query across the three services, exported over OTLP/HTTP to an in-test
collector; and the flow's ids on dead letters and log lines.

The services run as real processes with tracing turned on by the standard `OTEL_*` variables. A
command comes in with a W3C `traceparent` the test made (over HTTP, then on the commands topic);
the spans each process exports must form the tree the design promises: the door's span under the
caller's, the command's handling under it, the store write and the publish under the handling, and
the projector's batch *linked* to the publish. The topic-door case publishes from another process
than the one that stored the commit: the first runs without a publisher (the state a crash between
storing and publishing leaves: the commit stored, nothing on the event topic), is SIGKILLed, and the
replacement's relay republishes from the store, continuing the stored trace.
"""

from __future__ import annotations

import json
import secrets
import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from cqrs_shared.auth import mint_token
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.kafka_io import event_headers
from cqrs_shared.testing.otlp_collector import OtlpCollector, ReceivedSpan
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess
from cqrs_shared.topics import TopicNames
from tests.e2e.command_load import read_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

StartService = Callable[..., ServiceProcess]


def bearer(*roles: str) -> str:
    return "Bearer " + mint_token(
        E2E_SECRET, subject="e2e", roles=list(roles), issuer=ISSUER, audience=AUDIENCE
    )


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def one(spans: list[ReceivedSpan], **fields: Any) -> ReceivedSpan:
    """The single span with these fields (fails listing the candidates otherwise)."""
    found = [s for s in spans if all(getattr(s, k) == v for k, v in fields.items())]
    assert len(found) == 1, (fields, found)
    return found[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan, **fields: Any) -> list[ReceivedSpan]:
    return [
        s
        for s in spans
        if s.trace_id == parent.trace_id
        and s.parent_id == parent.span_id
        and all(getattr(s, k) == v for k, v in fields.items())
    ]


def linking_batch(spans: list[ReceivedSpan], publish: ReceivedSpan) -> ReceivedSpan | None:
    return next(
        (s for s in spans if s.service == "projector-svc" and (publish.trace_id, publish.span_id) in s.links),
        None,
    )


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(errors="replace").splitlines() if line.startswith("{")
    ]


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as running:
        yield running


async def test_an_http_command_and_the_query_that_waits_for_it_form_one_trace(
    start_service: StartService, collector: OtlpCollector
) -> None:
    traced = collector.env()
    projector = start_service("projector_svc", "PROJECTOR_SVC_PORT", **traced)
    command = start_service("command_svc", "COMMAND_SVC_PORT", **traced)
    query = start_service("query_svc", "QUERY_SVC_PORT", **traced)
    for service in (projector, command, query):
        service.wait_ready()
    trace_id, sending, reading = uuid.uuid4().hex, secrets.token_hex(8), secrets.token_hex(8)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    sent = {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterCustomer",
        "aggregate_id": customer,
        "payload": {"name": "Ada", "email": "ada@example.com"},
    }
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            f"{command.url}/v1/commands",
            json=sent,
            headers={
                "Authorization": bearer("customers:write"),
                "traceparent": traceparent(trace_id, sending),
            },
        )
        assert answer.status_code == 200, answer.text
        read = await client.get(
            f"{query.url}/v1/customers/{customer}",
            params={"max_wait_ms": "10000"},
            headers={
                "Authorization": bearer("customers:read"),
                "X-Consistency-Token": answer.json()["consistency_token"],
                "traceparent": traceparent(trace_id, reading),
            },
        )
        assert read.status_code == 200 and read.json()["name"] == "Ada", read.text

    def complete(spans: list[ReceivedSpan]) -> bool:
        ours = [s for s in spans if s.trace_id == trace_id]
        publishes = [s for s in ours if s.kind == "PRODUCER"]
        waited = any(s.name == "wait for consistency token" for s in ours)
        return waited and any(linking_batch(spans, p) for p in publishes)

    spans = await collector.wait_for(complete)
    ours = [s for s in spans if s.trace_id == trace_id]
    request = one(ours, service="command-svc", kind="SERVER", parent_id=sending)
    handle = one(children(ours, request), name="handle RegisterCustomer")
    assert handle.attributes["cqrs.command_id"] == sent["command_id"]
    assert [s.name for s in children(ours, handle, name="decide")] == ["decide"]
    store = one(children(ours, handle), name="store commit")
    # PyMongo's instrumentation: the write store's database calls sit under the store write.
    assert children(ours, store, kind="CLIENT"), "no database span under the store write"
    publish = one(children(ours, handle), kind="PRODUCER", service="command-svc")
    batch = linking_batch(spans, publish)
    assert batch is not None and batch.kind == "CONSUMER"
    # A batch is its own trace (it serves many), linked to each event's publish; asyncpg's
    # instrumentation puts the batch's SQL under it.
    assert batch.parent_id == "" and batch.trace_id != trace_id
    assert children(spans, batch, kind="CLIENT"), "no database span under the projector's batch"
    # Background store calls (leases, scans, probes, metrics) and probes of the operations routes
    # make no traces of their own.
    assert not [s for s in spans if s.kind == "CLIENT" and not s.parent_id]
    assert not [
        s for s in spans if s.kind == "SERVER" and s.name.endswith(("/readyz", "/healthz", "/metrics"))
    ]
    served = one(ours, service="query-svc", kind="SERVER", parent_id=reading)
    wait = one(children(ours, served), name="wait for consistency token")
    assert wait.attributes["cqrs.aggregate_id"] == customer


async def test_a_topic_command_republished_after_a_crash_continues_its_trace_and_dead_letters_name_their_flow(
    start_service: StartService, collector: OtlpCollector, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = TopicNames(topic_prefix)
    traced = collector.env()
    projector = start_service("projector_svc", "PROJECTOR_SVC_PORT", **traced)
    # Stores commits but publishes none: what a crash between storing and publishing leaves behind.
    first = start_service("command_svc", "COMMAND_SVC_PORT", COMMAND_SVC_EVENT_PUBLISHER="none", **traced)
    projector.wait_ready()
    first.wait_ready()
    trace_id, producing = uuid.uuid4().hex, secrets.token_hex(8)
    dlq_trace = uuid.uuid4().hex
    customer = f"c-{uuid.uuid4().hex[:8]}"
    command_id = str(uuid.uuid4())
    sent = {
        "command_id": command_id,
        "type": "RegisterCustomer",
        "aggregate_id": customer,
        "payload": {"name": "Ada", "email": "ada@example.com"},
        "metadata": {"correlation_id": "signup-7"},
    }
    # Not a command (the id is no UUID), but it names its flow: the dead letter must say so.
    not_a_command = {
        "command_id": "nope",
        "metadata": {"correlation_id": "corr-dlq", "causation_id": "cause-dlq"},
    }
    poisoned = f"px-{uuid.uuid4().hex[:8]}"
    # An event whose payload breaks its contract (no e-mail): the projector dead-letters it.
    refused = EventEnvelope(
        event_id=EventEnvelope.id_for("customer", poisoned, 1),
        type="CustomerRegistered",
        aggregate_type="customer",
        aggregate_id=poisoned,
        version=1,
        occurred_at=datetime.now(UTC),
        correlation_id="corr-event",
        causation_id="cause-event",
        payload={"name": "P"},
    )
    event_trace = uuid.uuid4().hex
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.commands,
            json.dumps(sent).encode(),
            key=customer.encode(),
            headers=[
                ("authorization", bearer("customers:write").encode()),
                ("traceparent", traceparent(trace_id, producing).encode()),
            ],
        )
        await producer.send_and_wait(
            topics.commands,
            json.dumps(not_a_command).encode(),
            key=b"nope",
            headers=[("traceparent", traceparent(dlq_trace, secrets.token_hex(8)).encode())],
        )
        await producer.send_and_wait(
            topics.events("customer"),
            refused.model_dump_json().encode(),
            key=poisoned.encode(),
            headers=[
                *event_headers(refused),
                ("traceparent", traceparent(event_trace, secrets.token_hex(8)).encode()),
            ],
        )
    finally:
        await producer.stop()

    results = await read_all(kafka_bootstrap, topics.command_results, lambda r: len(r) >= 1, 60)
    outcome_headers = dict(results[0].headers)
    assert json.loads(results[0].value)["status"] == "accepted"
    assert outcome_headers["traceparent"].decode().split("-")[1] == trace_id

    def handled(spans: list[ReceivedSpan]) -> bool:
        return any(s.trace_id == trace_id and s.name == "handle RegisterCustomer" for s in spans)

    await collector.wait_for(handled)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not [s for s in collector.received() if s.trace_id == trace_id and s.kind == "PRODUCER"]
    second = start_service("command_svc", "COMMAND_SVC_PORT", **traced)
    query = start_service("query_svc", "QUERY_SVC_PORT", **traced)
    second.wait_ready()
    query.wait_ready()
    # The reader waits for the republished event with the outcome's token, in the same trace.
    reading = secrets.token_hex(8)
    async with httpx.AsyncClient(timeout=30) as client:
        read = await client.get(
            f"{query.url}/v1/customers/{customer}",
            params={"max_wait_ms": "10000"},
            headers={
                "Authorization": bearer("customers:read"),
                "X-Consistency-Token": json.loads(results[0].value)["consistency_token"],
                "traceparent": traceparent(trace_id, reading),
            },
        )
    assert read.status_code == 200 and read.json()["name"] == "Ada", read.text

    def republished(spans: list[ReceivedSpan]) -> bool:
        publishes = [s for s in spans if s.trace_id == trace_id and s.kind == "PRODUCER"]
        served = any(
            s.trace_id == trace_id and s.service == "query-svc" and s.kind == "SERVER" for s in spans
        )
        return served and any(linking_batch(spans, p) for p in publishes)

    spans = await collector.wait_for(republished, within=60)
    ours = [s for s in spans if s.trace_id == trace_id]
    consumed = one(ours, service="command-svc", kind="CONSUMER", parent_id=producing)
    assert consumed.name == f"{topics.commands} process"
    handle = one(children(ours, consumed), name="handle RegisterCustomer")
    assert handle.attributes["cqrs.correlation_id"] == "signup-7"
    # The replacement process published under the span the killed one stored with the commit.
    publish = one(children(ours, handle), kind="PRODUCER")
    batch = linking_batch(spans, publish)
    assert batch is not None and batch.service == "projector-svc"
    served = one(ours, service="query-svc", kind="SERVER", parent_id=reading)
    assert [s.name for s in children(ours, served)].count("wait for consistency token") == 1

    # The event record carries the publish span's context and the flow's ids.
    events = await read_all(
        kafka_bootstrap,
        topics.events("customer"),
        lambda r: any(json.loads(x.value)["aggregate_id"] == customer for x in r),
        30,
    )
    event = next(e for e in events if json.loads(e.value)["aggregate_id"] == customer)
    headers = {k: v.decode() for k, v in event.headers}
    assert headers["traceparent"] == traceparent(trace_id, publish.span_id)
    assert (headers["correlation_id"], headers["causation_id"]) == ("signup-7", command_id)

    letters = await read_all(kafka_bootstrap, topics.commands_dlq, lambda r: len(r) >= 1, 30)
    command_letter = {k: v.decode() for k, v in letters[0].headers if k.startswith("dlq.")}
    assert command_letter["dlq.reason"] == "no_command_id"
    assert (
        command_letter["dlq.correlation_id"],
        command_letter["dlq.causation_id"],
        command_letter["dlq.trace_id"],
    ) == ("corr-dlq", "cause-dlq", dlq_trace)
    event_letters = await read_all(kafka_bootstrap, topics.events_dlq, lambda r: len(r) >= 1, 30)
    event_letter = {k: v.decode() for k, v in event_letters[0].headers if k.startswith("dlq.")}
    assert event_letter["dlq.reason"] == "rejected" and event_letter["dlq.aggregate_id"] == poisoned
    assert (
        event_letter["dlq.correlation_id"],
        event_letter["dlq.causation_id"],
        event_letter["dlq.trace_id"],
    ) == ("corr-event", "cause-event", event_trace)

    # Log lines name the flow too: both services' warnings about their dead letters.
    dead_lettered = [line for line in json_lines(first.log_path) if line["msg"].startswith("dead-lettered")]
    assert [(line["correlation_id"], line["causation_id"], line["trace_id"]) for line in dead_lettered] == [
        ("corr-dlq", "cause-dlq", dlq_trace)
    ]
    refusals = [line for line in json_lines(projector.log_path) if line["msg"].startswith("dead-lettered")]
    assert [(line["correlation_id"], line["causation_id"], line["trace_id"]) for line in refusals] == [
        ("corr-event", "cause-event", event_trace)
    ]
