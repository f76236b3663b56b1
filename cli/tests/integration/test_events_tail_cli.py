"""`cqrs events tail` on real topics: filters, JSON lines, undecodable records, following from now,
and a clear exit when Kafka cannot be reached."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import Result

from cqrs_cli import events
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.testing.service_processes import free_port
from projector_svc.testing.kafka_feed import EventFeed
from projector_svc.testing.shop_history import ShopHistory

pytestmark = pytest.mark.integration

Cqrs = Callable[..., Awaitable[Result]]


def _busiest_aggregate(history: list[EventEnvelope]) -> list[EventEnvelope]:
    by_id: dict[str, list[EventEnvelope]] = {}
    for event in history:
        by_id.setdefault(event.aggregate_id, []).append(event)
    return max(by_id.values(), key=len)


async def test_tail_of_one_aggregate_shows_its_history_in_order(cqrs: Cqrs, feed: EventFeed) -> None:
    history = ShopHistory(seed=21).take(120)
    await feed.send(history)
    mine = _busiest_aggregate(history)
    assert len(mine) > 2

    result = await cqrs(
        "events", "tail", "--from-beginning", "--aggregate", mine[0].aggregate_id, "--count", str(len(mine))
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(mine)
    for line, event in zip(lines, mine, strict=True):
        topic = feed.topics.events(event.aggregate_type)
        assert f" {topic}[" in line
        assert f" {event.aggregate_type}/{event.aggregate_id} v{event.version} {event.type} " in line
        assert f" correlation={event.correlation_id} trace=-" in line


async def test_tail_of_one_type_as_json_lines(cqrs: Cqrs, feed: EventFeed) -> None:
    history = ShopHistory(seed=22).take(80)
    await feed.send(history)
    placed = [e for e in history if e.type == "OrderPlaced"]
    assert placed

    result = await cqrs(
        "events", "tail", "--from-beginning", "--type", "OrderPlaced", "--json", "--count", str(len(placed))
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["event"]["event_id"] for line in lines) == sorted(str(e.event_id) for e in placed)
    assert {line["topic"] for line in lines} == {feed.topics.events("order")}
    assert all(isinstance(line["offset"], int) and line["trace_id"] is None for line in lines)


async def test_a_record_that_is_not_an_event_is_shown_as_undecodable(cqrs: Cqrs, feed: EventFeed) -> None:
    await feed.send(ShopHistory(seed=23).take(5))
    await feed.send_raw(feed.topics.events("customer"), b"junk-1", b"{not json")

    pretty = await cqrs("events", "tail", "--from-beginning", "--aggregate", "junk-1", "--count", "1")
    assert pretty.exit_code == 0, pretty.output
    assert "undecodable (1 validation error(s): Invalid JSON" in pretty.stdout
    as_json = await cqrs(
        "events", "tail", "--from-beginning", "--aggregate", "junk-1", "--json", "--count", "1"
    )
    line = json.loads(as_json.stdout)
    assert line["value"] == "{not json" and "event" not in line


async def test_without_from_beginning_only_new_events_are_shown(cqrs: Cqrs, feed: EventFeed) -> None:
    history = ShopHistory(seed=24)
    old = history.take(30)
    await feed.send(old)
    tail: asyncio.Future[Result] = asyncio.ensure_future(cqrs("events", "tail", "--json", "--count", "1"))
    sent: set[str] = set()
    async with asyncio.timeout(60):
        while not tail.done():  # the tail starts at the end: keep writing until it has seen one
            fresh = history.take(1)
            sent |= {str(e.event_id) for e in fresh}
            await feed.send(fresh)
            await asyncio.wait({tail}, timeout=0.3)
    result = tail.result()
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["event"]["event_id"]
    assert shown in sent
    assert shown not in {str(e.event_id) for e in old}


async def test_an_unreachable_broker_is_reported_without_a_traceback(
    cqrs: Cqrs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    result = await cqrs("events", "tail")
    assert result.exit_code == 4
    assert "cannot reach Kafka at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.output


async def test_no_event_topics_under_the_prefix_is_an_error(
    cqrs: Cqrs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CQRS_TOPIC_PREFIX", "no-such-prefix-anywhere.")
    result = await cqrs("events", "tail")
    assert result.exit_code == 4
    assert "no event topics (no-such-prefix-anywhere.events.*)" in result.stderr


async def test_help_shows_examples(cqrs: Cqrs) -> None:
    result = await cqrs("events", "tail", "--help")
    assert result.exit_code == 0
    assert "cqrs events tail --aggregate c-42 --from-beginning" in result.stdout
    assert "topic[partition]@offset" in result.stdout


async def test_an_event_topic_created_during_the_tail_is_followed_from_its_beginning(
    feed: EventFeed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "NEW_TOPICS_SECONDS", 0.2)
    seen: list[EventEnvelope | str] = []
    tail = asyncio.ensure_future(
        events.tail(feed.bootstrap, feed.topics, events.Filters(), lambda _r, e: seen.append(e), count=2)
    )
    history = ShopHistory(seed=25)
    async with asyncio.timeout(60):
        while not seen:  # the tail starts at the end: once it shows one event, it is following
            await feed.send(history.take(1))
            await asyncio.wait({tail}, timeout=0.3)

    gizmos = feed.topics.events("gizmo")
    admin = AIOKafkaAdminClient(bootstrap_servers=feed.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(gizmos, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    made = EventEnvelope(
        event_id=EventEnvelope.id_for("gizmo", "g-1", 1),
        type="GizmoMade",
        schema_version=1,
        aggregate_type="gizmo",
        aggregate_id="g-1",
        version=1,
        occurred_at=datetime.now(UTC),
        correlation_id="gizmo-flow",
        causation_id="cmd-gizmo",
        payload={},
    )
    await feed.send([made])
    assert await asyncio.wait_for(tail, 60) == 2
    assert isinstance(seen[1], EventEnvelope) and seen[1].event_id == made.event_id
