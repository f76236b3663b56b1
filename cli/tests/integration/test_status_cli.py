"""`cqrs status`: services, views, outbox backlog and dead letters in one table, or as JSON."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from typer.testing import Result

from cqrs_shared.testing.tcp_proxy import free_port
from projector_svc.app import create_app
from projector_svc.settings import ProjectorSettings
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import wait_for_offsets
from query_svc.testing import serve_live

pytestmark = pytest.mark.integration


async def test_status_shows_every_service_view_and_dead_letter_topic_and_fails_unless_all_ready(
    cqrs: Callable[..., Awaitable[Result]],
    feed: EventFeed,
    pool: asyncpg.Pool[asyncpg.Record],
    settings: ProjectorSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await feed.send(ShopHistory(seed=3).take(400))
    await feed.send_raw(feed.topics.events("order"), b"o-x", b"not an event")
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("COMMAND_URL", nowhere)
    monkeypatch.setenv("QUERY_URL", nowhere)
    async with serve_live(create_app(settings)) as projector_url:
        monkeypatch.setenv("PROJECTOR_URL", projector_url)
        topics = [feed.topics.events("customer"), feed.topics.events("order")]
        async with pool.acquire() as connection:
            await wait_for_offsets(connection, await end_offsets(feed.bootstrap, topics))
        report = await cqrs("status", "--json")
        table = await cqrs("status")

    assert report.exit_code == 1, report.output  # command-svc and query-svc do not answer
    data = json.loads(report.stdout)
    states = {s["name"]: s["state"] for s in data["services"]}
    assert states == {"command-svc": "down", "projector-svc": "ready", "query-svc": "down"}
    assert data["ready"] is False and data["outbox_backlog"] is None
    [view] = data["views"]
    assert (view["projection"], view["active_build"], view["lag"], view["parked"]) == (
        "shop",
        "shop_b1",
        0,
        {},
    )
    assert view["staleness_seconds"] >= 0
    assert data["dead_letters"] == {feed.topics.commands_dlq: 0, feed.topics.events_dlq: 1}

    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "LAG", "STALENESS", "DETAIL"]
    assert any(line.startswith("view shop") and " shop_b1 " in line for line in lines)
    assert any(line.startswith("projector-svc") and " ready " in line for line in lines)
    assert any(line.startswith(feed.topics.events_dlq) and "1 record(s)" in line for line in lines)
