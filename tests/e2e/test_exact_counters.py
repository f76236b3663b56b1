"""The metrics count what they claim: a scripted mix of commands and events through the three real
services, then the exact value of every counter each process exports (scraped from `/metrics` and
parsed with prometheus_client's own parser).

The mix, and what each service must count for it:
- topic door: accepted, a repeat of it (same command id), rejected as a rule violation, as not
  found, as unauthorized (no token), and two records that are not commands (dead-lettered);
- HTTP door: accepted, a repeat of it, rejected as invalid, a body that is not a command, and a
  rename sent while the projector is stopped;
- events written straight onto the event topic: a version gap (parked) and a record that is not
  JSON (dead-lettered);
- three reads carrying a consistency token: one already applied (immediate), one that cannot be
  applied while the projector is stopped (timeout), one that starts waiting while it is stopped
  and is woken when it resumes (woken).
Every process is fresh, so each counter starts at zero and the figures are exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from cqrs_shared.contracts import shop as c
from cqrs_shared.kafka_io import event_headers, to_json
from cqrs_shared.testing.service_processes import ServiceProcess
from cqrs_shared.topics import TopicNames
from projector_svc.testing.shop_history import envelope
from tests.e2e.harness import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

Labels = frozenset[tuple[str, str]]


def _labels(**labels: str) -> Labels:
    return frozenset(labels.items())


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {
        **service_env,
        # The parked gap must stay parked for the whole test, not be dead-lettered after 60 s.
        "PROJECTOR_SVC_GAP_TIMEOUT_SECONDS": "600",
        "PROJECTOR_SVC_METRICS_INTERVAL_SECONDS": "0.2",
    }


async def scrape(service: ServiceProcess) -> dict[str, dict[Labels, float]]:
    """Every sample of the service's `/metrics`: sample name -> labels -> value."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{service.url}/metrics")
    assert response.status_code == 200, response.text
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


async def until(
    service: ServiceProcess, condition: Callable[[dict[str, dict[Labels, float]]], bool]
) -> dict[str, dict[Labels, float]]:
    """Scrape until `condition` holds (the services count asynchronously); the last scrape."""
    async with asyncio.timeout(60):
        while not condition(samples := await scrape(service)):  # noqa: ASYNC110  # a scrape offers no event
            await asyncio.sleep(0.1)
    return samples


def total(samples: dict[str, dict[Labels, float]], name: str) -> float:
    return sum(samples.get(name, {}).values())


def command(
    kind: str, aggregate_id: str, payload: dict[str, Any], command_id: str | None = None
) -> dict[str, Any]:
    return {
        "command_id": command_id or str(uuid.uuid4()),
        "type": kind,
        "aggregate_id": aggregate_id,
        "payload": payload,
    }


async def run_topic_mix(stack: Stack, kafka_bootstrap: str, tag: str) -> None:
    topics = TopicNames(stack.topic_prefix)
    writer = [("authorization", stack.token("customers:write").encode())]
    registered = command("RegisterCustomer", f"{tag}-a", {"name": "Ada", "email": "ada@example.com"})
    records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = [
        (topics.commands, b"a", json.dumps(registered).encode(), writer),
        # Same aggregate, new command id: the customer exists already.
        (
            topics.commands,
            b"a",
            json.dumps(
                command("RegisterCustomer", f"{tag}-a", {"name": "Ada", "email": "a@example.com"})
            ).encode(),
            writer,
        ),
        (topics.commands, b"a", json.dumps(registered).encode(), writer),  # the repeat
        (
            topics.commands,
            b"g",
            json.dumps(command("RenameCustomer", f"{tag}-ghost", {"name": "X"})).encode(),
            writer,
        ),
        (
            topics.commands,
            b"b",
            json.dumps(
                command("RegisterCustomer", f"{tag}-b", {"name": "Bo", "email": "bo@example.com"})
            ).encode(),
            [],
        ),
        (topics.commands, b"x", b"not json at all", writer),
        (topics.commands, b"y", json.dumps({"type": "RegisterCustomer"}).encode(), writer),
        # Straight onto the event topic: version 2 of an aggregate whose version 1 never comes.
        (
            topics.events(c.CUSTOMER),
            f"{tag}-gap".encode(),
            to_json(
                gap := envelope(
                    c.CUSTOMER, f"{tag}-gap", 2, c.CustomerRenamed(name="Late"), datetime.now(UTC)
                )
            ),
            event_headers(gap),
        ),
        (topics.events(c.CUSTOMER), b"junk", b"{not an event", []),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for topic, key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def run_http_mix(client: httpx.AsyncClient, stack: Stack, tag: str) -> str:
    """The HTTP door's share of the mix; the accepted registration's consistency token."""
    writer = {"Authorization": stack.token("customers:write")}
    registered = command("RegisterCustomer", f"{tag}-c", {"name": "Cy", "email": "cy@example.com"})
    first = await client.post(f"{stack.command.url}/v1/commands", json=registered, headers=writer)
    assert first.status_code == 200, first.text
    repeat = await client.post(f"{stack.command.url}/v1/commands", json=registered, headers=writer)
    assert repeat.json() == first.json()
    invalid = command("RegisterCustomer", f"{tag}-d", {"name": "Di"})
    assert (
        await client.post(f"{stack.command.url}/v1/commands", json=invalid, headers=writer)
    ).status_code == 422
    not_a_command = await client.post(f"{stack.command.url}/v1/commands", json=[1, 2], headers=writer)
    assert not_a_command.status_code == 400
    return str(first.json()["consistency_token"])


async def wait_for_woken_read(database_url: str, started_after: datetime) -> None:
    """Until query-svc has checked a token's applied version once after `started_after`: its
    consistency waiter's check reads the view's source schema from pg_rewrite, which nothing else
    in query-svc does, so that statement in pg_stat_activity marks a wait that has begun."""
    connection = await asyncpg.connect(database_url)
    try:
        async with asyncio.timeout(30):
            while not await connection.fetchval(  # noqa: ASYNC110  # pg_stat_activity offers no event
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'query-svc'"
                " AND query LIKE '%pg_rewrite%' AND query_start > $1",
                started_after,
            ):
                await asyncio.sleep(0.02)
    finally:
        await connection.close()


async def run_token_reads(client: httpx.AsyncClient, stack: Stack, tag: str, token: str) -> None:
    reader = {"Authorization": stack.token("customers:read")}
    url = f"{stack.query.url}/v1/customers/{tag}-c"
    immediate = await client.get(url, params={"after": token, "max_wait_ms": "10000"}, headers=reader)
    assert immediate.status_code == 200, immediate.text

    writer = {"Authorization": stack.token("customers:write")}
    assert stack.projector.process is not None
    os.kill(stack.projector.process.pid, signal.SIGSTOP)
    try:
        renamed = await client.post(
            f"{stack.command.url}/v1/commands",
            json=command("RenameCustomer", f"{tag}-c", {"name": "Cyrus"}),
            headers=writer,
        )
        assert renamed.status_code == 200, renamed.text
        after = renamed.json()["consistency_token"]
        timed_out = await client.get(url, params={"after": after, "max_wait_ms": "200"}, headers=reader)
        assert timed_out.headers["X-Read-Model-Stale"] == "true"
        probe = await asyncpg.connect(stack.database_url)
        try:
            started_after = await probe.fetchval("SELECT now()")
        finally:
            await probe.close()
        woken = asyncio.create_task(
            client.get(url, params={"after": after, "max_wait_ms": "10000"}, headers=reader)
        )
        await wait_for_woken_read(stack.database_url, started_after)
    finally:
        os.kill(stack.projector.process.pid, signal.SIGCONT)
    answer = await woken
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "Cyrus"


async def test_each_service_counts_a_scripted_mix_exactly(stack: Stack, kafka_bootstrap: str) -> None:
    tag = f"mx-{uuid.uuid4().hex[:8]}"
    await run_topic_mix(stack, kafka_bootstrap, tag)
    async with httpx.AsyncClient(timeout=30) as client:
        token = await run_http_mix(client, stack, tag)
        # Both doors done, and the projector has seen all it will of the first part.
        await until(stack.command, lambda s: total(s, "cqrs_command_handled_total") == 11)
        await until(stack.projector, lambda s: total(s, "cqrs_projector_events_total") == 4)
        await run_token_reads(client, stack, tag, token)

    commands = await until(
        stack.command, lambda s: total(s, "cqrs_command_relay_events_published_total") == 3
    )
    assert commands["cqrs_command_handled_total"] == {
        _labels(door="topic", outcome="accepted"): 2,
        _labels(door="topic", outcome="rejected_rule_violated"): 1,
        _labels(door="topic", outcome="rejected_not_found"): 1,
        _labels(door="topic", outcome="rejected_unauthorized"): 1,
        _labels(door="topic", outcome="dead_lettered"): 2,
        _labels(door="http", outcome="accepted"): 3,
        _labels(door="http", outcome="rejected_invalid"): 1,
        _labels(door="http", outcome="dead_lettered"): 1,
    }
    assert commands["cqrs_command_dead_letters_total"] == {
        _labels(reason="not_json"): 1,
        _labels(reason="no_command_id"): 1,
    }
    assert commands["cqrs_command_idempotent_repeats_total"] == {_labels(): 2}
    assert commands["cqrs_command_conflicts_retried_total"] == {_labels(): 0}
    assert commands["cqrs_command_relay_events_published_total"] == {_labels(): 3}

    projector = await until(
        stack.projector,
        lambda s: (
            total(s, "cqrs_projector_events_total") == 5
            and s.get("cqrs_projector_parked_events", {}).get(_labels(projection="shop")) == 1
        ),
    )
    events = {
        dict(labels)["outcome"]: value
        for labels, value in projector["cqrs_projector_events_total"].items()
        if dict(labels)["projection"] == "shop"
    }
    # Applied: Ada's and Cy's registrations and Cy's rename; parked: the gap; dead-lettered: the junk.
    assert events == {"applied": 3, "parked": 1, "dead_lettered": 1, "duplicate": 0, "unknown_type": 0}

    reads = await scrape(stack.query)
    assert reads["cqrs_query_token_waits_total"] == {
        _labels(outcome="immediate"): 1,
        _labels(outcome="timeout"): 1,
        _labels(outcome="woken"): 1,
    }
    customer_reads = {
        dict(labels)["status"]: value
        for labels, value in reads["cqrs_query_http_requests_total"].items()
        if dict(labels)["route"] == "/v1/customers/{item_id}"
    }
    assert customer_reads == {"200": 3}
