"""Both doors against real Kafka and FerretDB: outcomes, rejections, dead letters, idempotency, order."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fastapi import FastAPI

from command_svc.write_store.mongo_store import MongoWriteStore
from cqrs_shared.testing.kafka_client import KafkaClient
from cqrs_shared.write_store import WriteStoreUnavailableError

pytestmark = pytest.mark.integration


def command(type_: str, aggregate_id: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "type": type_,
        "aggregate_id": aggregate_id,
        "payload": payload,
        **extra,
    }


ADA = {"name": "Ada", "email": "ada@example.com"}


async def test_every_rejection_code_reaches_command_results(
    http: httpx.AsyncClient, kafka: KafkaClient, token_for: Any
) -> None:
    write = token_for("customers:write")
    await kafka.send_command(command("RegisterCustomer", "c-1", ADA), token=write)
    cases = {
        "invalid": (command("RegisterCustomer", "c-2", {"name": "", "email": "nope"}), write),
        "unauthorized": (command("RegisterCustomer", "c-3", ADA), None),
        "forbidden": (command("DeleteCustomer", "c-1", {}), write),
        "rule_violated": (command("RegisterCustomer", "c-1", ADA), write),
        "not_found": (command("RenameCustomer", "c-404", {"name": "X"}), write),
        "conflict": (command("RenameCustomer", "c-1", {"name": "B"}, expected_version=7), write),
    }
    for envelope, token in cases.values():
        await kafka.send_command(envelope, token=token)
    outcomes = {o["command_id"]: o for o in await kafka.outcomes(1 + len(cases))}
    for code, (envelope, _) in cases.items():
        outcome = outcomes[envelope["command_id"]]
        assert (outcome["status"], outcome["code"]) == ("rejected", code), outcome
        assert outcome["correlation_id"] == envelope["command_id"]
    invalid = outcomes[cases["invalid"][0]["command_id"]]
    assert {e["loc"] for e in invalid["errors"]} == {"payload.name", "payload.email"}


async def test_records_that_are_not_commands_are_dead_lettered_unchanged_with_the_reason(
    http: httpx.AsyncClient, kafka: KafkaClient
) -> None:
    raw = {
        "not_json": b"\x00\x01 definitely not json",
        "no_command_id": json.dumps({"type": "RegisterCustomer", "aggregate_id": "c-1"}).encode(),
        "too_large": json.dumps(
            command("RegisterCustomer", "c-9", {"name": "x" * 5000, "email": "a@b.co"})
        ).encode(),
    }
    for value in raw.values():
        await kafka.send_command(value, key="k")
    records = await kafka.read(kafka.topics.commands_dlq, len(raw))
    by_reason = {dict(r.headers)["dlq.reason"].decode(): r for r in records}
    assert set(by_reason) == set(raw)
    for reason, value in raw.items():
        record = by_reason[reason]
        headers = dict(record.headers)
        assert record.value == value
        assert record.key == b"k"
        assert headers["dlq.source.topic"].decode() == kafka.topics.commands
        assert int(headers["dlq.source.offset"]) >= 0
        assert headers["dlq.error"]


async def test_the_same_command_three_times_over_both_doors_is_applied_once_and_answered_alike(
    http: httpx.AsyncClient, kafka: KafkaClient, store: MongoWriteStore, token_for: Any
) -> None:
    write = token_for("customers:write")
    envelope = command("RegisterCustomer", "c-1", ADA)
    await kafka.send_command(envelope, token=write)
    first = await kafka.outcomes(1)
    response = await http.post("/v1/commands", json=envelope, headers={"Authorization": write})
    await kafka.send_command(envelope, token=write)
    outcomes = await kafka.outcomes(3)
    assert response.status_code == 200
    assert outcomes[0] == outcomes[1] == outcomes[2] == first[0] == response.json()
    assert outcomes[0]["status"] == "accepted"
    assert [c.version async for c in store.history()] == [1]
    events = await kafka.read(kafka.topics.events("customer"), 1)
    await asyncio.sleep(0.5)  # a second, wrongly published event would be on the topic by now
    assert len(await kafka.read(kafka.topics.events("customer"), 1)) == len(events) == 1


async def test_events_reach_kafka_from_the_store_in_version_order(
    http: httpx.AsyncClient, kafka: KafkaClient, token_for: Any
) -> None:
    write = token_for("customers:write")
    await kafka.send_command(command("RegisterCustomer", "c-1", ADA), token=write)
    for i in range(5):
        await kafka.send_command(command("RenameCustomer", "c-1", {"name": f"Ada {i}"}), token=write)
    await kafka.outcomes(6)
    records = await kafka.read(kafka.topics.events("customer"), 6)
    events = [json.loads(r.value) for r in records]
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert {r.key for r in records} == {b"c-1"}
    assert [e["payload"].get("name") for e in events[1:]] == [f"Ada {i}" for i in range(5)]
    assert dict(records[0].headers)["event_type"] == b"CustomerRegistered"


async def test_http_answers_rejections_as_problem_details(http: httpx.AsyncClient, token_for: Any) -> None:
    write = token_for("customers:write")
    ok = await http.post(
        "/v1/commands", json=command("RegisterCustomer", "c-1", ADA), headers={"Authorization": write}
    )
    assert ok.status_code == 200
    assert ok.json()["version"] == 1
    cases = [
        (command("RegisterCustomer", "c-2", ADA), None, 401, "unauthorized"),
        (command("DeleteCustomer", "c-1", {}), write, 403, "forbidden"),
        (command("RenameCustomer", "c-404", {"name": "X"}), write, 404, "not_found"),
        (command("RenameCustomer", "c-1", {"name": "X"}, expected_version=3), write, 409, "conflict"),
        (command("RegisterCustomer", "c-1", ADA), write, 422, "rule_violated"),
        (command("RegisterCustomer", "c-3", {"name": "A"}), write, 422, "invalid"),
    ]
    for envelope, token, status, code in cases:
        headers = {"Authorization": token} if token else {}
        response = await http.post("/v1/commands", json=envelope, headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert (body["status"], body["code"], body["command_id"]) == (status, code, envelope["command_id"])
    unauthorized = await http.post("/v1/commands", json=command("RegisterCustomer", "c-4", ADA))
    assert unauthorized.headers["www-authenticate"] == "Bearer"


async def test_http_refuses_bodies_that_are_not_commands(http: httpx.AsyncClient) -> None:
    not_json = await http.post("/v1/commands", content=b"{oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["reason"] == "not_json"
    too_large = await http.post("/v1/commands", content=b"x" * 5000)
    assert too_large.status_code == 413
    assert too_large.json()["type"].endswith("/too-large")


class UnreachableStore(MongoWriteStore):
    """Every call the pipeline makes fails as a refused connection does."""

    async def find_outcome(self, command_id: uuid.UUID) -> Any:
        raise WriteStoreUnavailableError("connection refused")

    async def load_head(self, aggregate_type: str, aggregate_id: str) -> Any:
        raise WriteStoreUnavailableError("connection refused")

    async def append(self, commit: Any) -> None:
        raise WriteStoreUnavailableError("connection refused")


async def test_an_unreachable_store_is_a_503_the_client_may_retry(
    app: FastAPI, http: httpx.AsyncClient, store: MongoWriteStore, token_for: Any
) -> None:
    pipeline = app.state.service.pipeline
    pipeline._store = UnreachableStore(store._client, store.database)
    envelope = command("RegisterCustomer", "c-1", ADA)
    response = await http.post(
        "/v1/commands", json=envelope, headers={"Authorization": token_for("customers:write")}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "same command_id" in response.json()["detail"]
    assert await store.find_outcome(uuid.UUID(envelope["command_id"])) is None


async def test_a_paused_intake_is_a_503_that_stored_nothing(
    app: FastAPI, http: httpx.AsyncClient, store: MongoWriteStore, token_for: Any
) -> None:
    pipeline = app.state.service.pipeline
    pipeline._intake_paused = lambda: "the outbox relay has held no valid lease for 3.0 s"
    envelope = command("RegisterCustomer", "c-1", ADA)
    response = await http.post(
        "/v1/commands", json=envelope, headers={"Authorization": token_for("customers:write")}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["title"] == "Intake paused"
    assert "nothing was stored" in response.json()["detail"]
    assert await store.find_outcome(uuid.UUID(envelope["command_id"])) is None


async def test_event_topics_are_created_to_keep_history_forever(app: FastAPI, kafka: KafkaClient) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        names = [kafka.topics.events("customer"), kafka.topics.events("order"), kafka.topics.events_dlq]
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        await admin.close()
    retention = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}["retention.ms"]
        for response in described
        for resource in response.resources
    }
    assert retention == dict.fromkeys(names, "-1")


async def test_http_answers_in_bounded_time_when_the_outcome_record_cannot_even_be_enqueued(
    app: FastAPI, http: httpx.AsyncClient, token_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A freshly renewed producer waits for metadata inside `send` while Kafka is down: the HTTP
    # answer must not wait with it (the outcome is stored; only its notification record is late).
    hung: list[str] = []

    async def send_hangs(outcome: Any) -> asyncio.Future[object]:
        hung.append(str(outcome.command_id))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(app.state.service.results, "send_outcome", send_hangs)
    command = {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterCustomer",
        "aggregate_id": f"c-{uuid.uuid4().hex[:8]}",
        "payload": {"name": "Ada", "email": "ada@example.com"},
    }
    async with asyncio.timeout(8):
        response = await http.post(
            "/v1/commands", json=command, headers={"Authorization": token_for("customers:write")}
        )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1
    assert hung == [command["command_id"]]
