"""Reads carrying a consistency token: woken by the projector's NOTIFY, bounded, honest when stale."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.read_models.shop import CUSTOMERS, SHOP
from projector_svc.testing.builds import activate, create_build
from projector_svc.testing.shop import ShopProjection
from query_svc.app import create_app
from query_svc.hub import ChangeHub
from query_svc.listener import ProjectionListener
from query_svc.settings import QuerySettings
from query_svc.testing import NOTIFY_CHANNEL, insert_rows, record_applied, serve_in_process, wait_until

pytestmark = pytest.mark.integration

Row = dict[str, Any]


def _waits(outcome: str) -> float:
    return REGISTRY.get_sample_value("cqrs_query_token_waits_total", {"outcome": outcome}) or 0.0


@pytest.fixture
async def app(
    shop_dsn: str,
    admin: asyncpg.Connection[asyncpg.Record],
    settings_for: Callable[..., QuerySettings],
    make_customer: Callable[..., Row],
) -> FastAPI:
    await insert_rows(admin, "shop_b1", CUSTOMERS, [make_customer("c-1"), make_customer("c-2")])
    await record_applied(
        admin, "shop_b1", SHOP, [("customer", "c-1", 1), ("customer", "c-2", 1)], notify=False
    )
    return create_app(settings_for(shop_dsn))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_in_process(app) as client:
        await app.state.components["listener"].connected.wait()
        yield client


async def _rename(admin: asyncpg.Connection[asyncpg.Record], version: int) -> None:
    async with admin.transaction():
        await admin.execute(
            "UPDATE shop_b1.customers SET name = 'Ada', version = $1 WHERE id = 'c-1'", version
        )
        await record_applied(admin, "shop_b1", SHOP, [("customer", "c-1", version)])


async def _parked(app: FastAPI, *, checks: int, unless_done: asyncio.Task[Any] | None = None) -> None:
    """Until a read of customer c-1 has checked `checks` times and sleeps on its notification: a
    change made after this cannot be seen by a check already in flight."""
    hub: ChangeHub = app.state.components["hub"]

    def parked() -> bool:
        waiters = hub.waiters("shop", "customer", "c-1")
        return any(w.parked and w.checks == checks for w in waiters)

    await wait_until(lambda: parked() or (unless_done is not None and unless_done.done()))
    assert parked(), "the read ended before it slept on its notification"


async def test_a_read_with_a_token_is_woken_by_the_notify_and_returns_the_new_state(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: asyncpg.Connection[asyncpg.Record],
    readers: dict[str, str],
) -> None:
    token = ConsistencyToken("customer", "c-1", 2).encode()
    woken_before = _waits("woken")
    request = asyncio.create_task(
        client.get("/v1/customers/c-1?max_wait_ms=5000", headers={**readers, "X-Consistency-Token": token})
    )
    await _parked(app, checks=1, unless_done=request)
    await _rename(admin, 2)
    response = await request
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["version"]) == ("Ada", 2)
    assert response.headers["x-read-model-stale"] == "false"
    assert response.headers["x-consistency-applied-version"] == "2"
    assert _waits("woken") == woken_before + 1


async def test_a_waiter_checks_once_per_relevant_notification_not_on_a_timer(
    app: FastAPI, client: httpx.AsyncClient, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    waiter = app.state.components["engine"].waiter
    wait = asyncio.create_task(waiter.wait(SHOP, ConsistencyToken("customer", "c-1", 2), 5.0))
    await _parked(app, checks=1, unless_done=wait)
    for i in range(5):
        await record_applied(admin, "shop_b1", SHOP, [("customer", "c-2", 2 + i)])
    await _rename(admin, 2)  # notified after the five above, on the same connection
    result = await wait
    assert (result.outcome, result.applied, result.checks) == ("woken", 2, 2)


async def test_a_notified_version_the_reader_does_not_show_yet_is_re_checked_on_a_timer(
    app: FastAPI, client: httpx.AsyncClient, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    """As on a replica lagging its primary: the notification arrives before the row is visible."""
    waiter = app.state.components["engine"].waiter
    wait = asyncio.create_task(waiter.wait(SHOP, ConsistencyToken("customer", "c-1", 2), 5.0))
    await _parked(app, checks=1, unless_done=wait)
    notice = {"projection": "shop", "schema": "shop_b1", "changes": [["customer", "c-1", 2]]}
    await admin.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, json.dumps(notice))
    hub: ChangeHub = app.state.components["hub"]
    await wait_until(lambda: any(w.checks >= 3 for w in hub.waiters("shop", "customer", "c-1")))
    await record_applied(admin, "shop_b1", SHOP, [("customer", "c-1", 2)], notify=False)
    result = await wait
    assert (result.outcome, result.applied) == ("woken", 2)
    assert result.checks >= 4  # the notified check, then timed ones until the row showed


async def test_a_rebuilds_notifications_wake_one_re_check_each_and_never_timed_ones(
    app: FastAPI, client: httpx.AsyncClient, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    waiter = app.state.components["engine"].waiter
    rebuild = await create_build(admin, ShopProjection())
    wait = asyncio.create_task(waiter.wait(SHOP, ConsistencyToken("customer", "c-1", 2), 0.5))
    await _parked(app, checks=1, unless_done=wait)
    # The rebuild reaches the version first; `read.*` still shows the active build, which has not.
    await record_applied(admin, rebuild.schema, SHOP, [("customer", "c-1", 2)])
    result = await wait
    # The first check, one for the rebuild's notification, one at the deadline: no timer in between.
    assert (result.outcome, result.applied, result.checks) == ("timeout", 1, 3)


async def test_a_rebuild_announcement_counts_once_the_rebuild_is_activated(
    app: FastAPI, client: httpx.AsyncClient, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    waiter = app.state.components["engine"].waiter
    projection = ShopProjection()
    rebuild = await create_build(admin, projection)
    wait = asyncio.create_task(waiter.wait(SHOP, ConsistencyToken("customer", "c-1", 2), 5.0))
    await _parked(app, checks=1, unless_done=wait)
    await record_applied(admin, rebuild.schema, SHOP, [("customer", "c-1", 2)])
    await _parked(app, checks=2, unless_done=wait)
    await activate(admin, projection, rebuild)
    result = await wait
    assert (result.outcome, result.applied, result.checks) == ("woken", 2, 3)


async def test_a_token_not_reached_in_time_answers_what_it_has_and_says_it_is_stale(
    client: httpx.AsyncClient, readers: dict[str, str]
) -> None:
    token = ConsistencyToken("customer", "c-1", 5).encode()
    timeouts_before = _waits("timeout")
    started = time.monotonic()
    item = await client.get(f"/v1/customers/c-1?after={token}&max_wait_ms=300", headers=readers)
    item_seconds = time.monotonic() - started
    page = await client.get(f"/v1/customers?after={token}&max_wait_ms=0", headers=readers)
    page_seconds = time.monotonic() - started - item_seconds
    assert item.status_code == 200
    assert item.json()["version"] == 1
    assert item.headers["x-read-model-stale"] == "true"
    assert item.headers["x-consistency-applied-version"] == "1"
    assert page.headers["x-read-model-stale"] == "true"
    assert item_seconds >= 0.3
    assert page_seconds < 1.5  # far below the default wait (2 s) it must not have taken
    assert _waits("timeout") == timeouts_before + 2


async def test_a_token_already_applied_answers_at_once(
    client: httpx.AsyncClient, readers: dict[str, str]
) -> None:
    token = ConsistencyToken("order", "o-unseen", 1).encode()
    applied = ConsistencyToken("customer", "c-2", 1).encode()
    immediate_before = _waits("immediate")
    fresh = await client.get(f"/v1/customers/c-2?after={applied}", headers=readers)
    # A token for an aggregate of another view of the projection is accepted (and here stale).
    other = await client.get(f"/v1/customers/c-2?after={token}&max_wait_ms=0", headers=readers)
    assert fresh.headers["x-read-model-stale"] == "false"
    assert _waits("immediate") == immediate_before + 1
    assert (other.status_code, other.headers["x-read-model-stale"]) == (200, "true")


async def test_the_listener_reconnects_after_losing_its_connection_and_waiters_still_wake(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: asyncpg.Connection[asyncpg.Record],
    readers: dict[str, str],
) -> None:
    listener: ProjectionListener = app.state.components["listener"]
    old_pid = listener.backend_pid
    reconnects = REGISTRY.get_sample_value("cqrs_query_listener_reconnects_total") or 0.0
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    token = ConsistencyToken("customer", "c-1", 2).encode()
    # The notify may well be sent while the listener is down: the resync after LISTEN covers it.
    response, _ = await asyncio.gather(
        client.get(f"/v1/customers/c-1?after={token}&max_wait_ms=5000", headers=readers),
        _rename(admin, 2),
    )
    assert response.headers["x-read-model-stale"] == "false"
    await wait_until(lambda: listener.backend_pid not in (None, old_pid))
    assert listener.connected.is_set()
    assert (REGISTRY.get_sample_value("cqrs_query_listener_reconnects_total") or 0.0) == reconnects + 1
