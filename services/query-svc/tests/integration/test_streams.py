"""Server-Sent Events over a real HTTP server: snapshot, changes in order, resume, heartbeats, cleanup."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS, SHOP
from query_svc.app import create_app
from query_svc.hub import ChangeHub
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, record_applied, serve_live, wait_until

pytestmark = pytest.mark.integration

Row = dict[str, Any]
Event = dict[str, str]


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """Events (`event`, `id`, `data`) and comments (`comment`) as the server sends them."""
    event: Event = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


async def next_event(events: AsyncIterator[Event], *, skip_comments: bool = True) -> Event:
    async with asyncio.timeout(5):
        async for event in events:
            if "comment" in event and skip_comments:
                continue
            if "retry" in event and "data" not in event:
                continue
            return event
    raise AssertionError("the stream ended")


@pytest.fixture
async def app(
    shop_dsn: str,
    admin: asyncpg.Connection[asyncpg.Record],
    settings_for: Callable[..., QuerySettings],
    make_customer: Callable[..., Row],
    make_order: Callable[..., Row],
) -> FastAPI:
    await insert_rows(admin, "shop_b1", CUSTOMERS, [make_customer("c-1"), make_customer("c-2")])
    await insert_rows(admin, "shop_b1", ORDERS, [make_order("o-1", "c-1")])
    return create_app(settings_for(shop_dsn, sse_heartbeat_seconds=0.2))


@pytest.fixture
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve_live(app) as url:
        async with asyncio.timeout(5):
            await app.state.components["listener"].connected.wait()
        yield url


async def change_customer(admin: asyncpg.Connection[asyncpg.Record], customer_id: str, version: int) -> None:
    """What the projector does for a rename: row, applied version and notify in one transaction."""
    async with admin.transaction():
        await admin.execute(
            "UPDATE shop_b1.customers SET name = $2, version = $3 WHERE id = $1",
            customer_id,
            f"v{version}",
            version,
        )
        await admin.execute(
            "UPDATE shop_b1.orders SET customer_name = $2 WHERE customer_id = $1", customer_id, f"v{version}"
        )
        await record_applied(admin, "shop_b1", SHOP, [("customer", customer_id, version)])


async def test_a_stream_sends_the_current_row_then_each_change_in_order(
    base_url: str, admin: asyncpg.Connection[asyncpg.Record], readers: dict[str, str]
) -> None:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        client.stream("GET", "/v1/customers/c-1/stream", headers=readers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        snapshot = await next_event(events)
        assert snapshot["event"] == "snapshot"
        assert json.loads(snapshot["data"])["version"] == 1
        seen = []
        for version in (2, 3, 4):
            await change_customer(admin, "c-1", version)
            change = await next_event(events)
            seen.append(
                (change["event"], json.loads(change["data"])["name"], json.loads(change["data"])["version"])
            )
        item = await client.get("/v1/customers/c-1", headers=readers)
    assert seen == [("change", "v2", 2), ("change", "v3", 3), ("change", "v4", 4)]
    assert change["id"] == item.headers["etag"].strip('"')


async def test_heartbeats_flow_while_nothing_changes(base_url: str, readers: dict[str, str]) -> None:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        client.stream("GET", "/v1/orders/o-1/stream", headers=readers) as response,
    ):
        events = sse_events(response)
        await next_event(events)
        comments = [await next_event(events, skip_comments=False) for _ in range(2)]
    assert comments == [{"comment": "heartbeat"}, {"comment": "heartbeat"}]


async def test_resuming_with_the_current_state_id_skips_the_snapshot_and_an_old_id_does_not(
    app: FastAPI, base_url: str, admin: asyncpg.Connection[asyncpg.Record], readers: dict[str, str]
) -> None:
    hub: ChangeHub = app.state.components["hub"]
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        current = (await client.get("/v1/customers/c-1", headers=readers)).headers["etag"].strip('"')
        async with client.stream(
            "GET", "/v1/customers/c-1/stream", headers={**readers, "Last-Event-ID": current}
        ) as response:
            events = sse_events(response)
            # No snapshot comes to show the stream is live: its subscription does.
            await wait_until(lambda: hub.subscriber_count == 1)
            await change_customer(admin, "c-1", 2)
            first = await next_event(events)
        async with client.stream(
            "GET", "/v1/customers/c-1/stream", headers={**readers, "Last-Event-ID": current}
        ) as response:
            resumed = await next_event(sse_events(response))
    assert (first["event"], json.loads(first["data"])["version"]) == ("change", 2)
    assert (resumed["event"], json.loads(resumed["data"])["version"]) == ("snapshot", 2)


async def test_a_change_to_a_joined_aggregate_reaches_the_rows_it_changes_only(
    base_url: str, admin: asyncpg.Connection[asyncpg.Record], readers: dict[str, str]
) -> None:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        client.stream("GET", "/v1/orders/o-1/stream", headers=readers) as response,
    ):
        events = sse_events(response)
        await next_event(events)
        await change_customer(admin, "c-2", 2)  # not this order's customer: nothing to send
        await change_customer(admin, "c-1", 2)
        change = await next_event(events)
    assert (change["event"], json.loads(change["data"])["customer_name"]) == ("change", "v2")


async def test_a_stream_counts_as_a_subscriber_until_the_client_leaves(
    app: FastAPI, base_url: str, readers: dict[str, str]
) -> None:
    hub: ChangeHub = app.state.components["hub"]

    def subscribers() -> float:
        return REGISTRY.get_sample_value("cqrs_query_sse_subscribers", {"view": "customers"}) or 0.0

    before = subscribers()
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        async with client.stream("GET", "/v1/customers/c-1/stream", headers=readers) as response:
            await next_event(sse_events(response))
            assert (subscribers(), hub.subscriber_count) == (before + 1, 1)
        missing = await client.get("/v1/customers/c-404/stream", headers=readers)
    # The server releases the subscription once it notices the client left.
    await wait_until(lambda: hub.subscriber_count == 0)
    assert subscribers() == before
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
