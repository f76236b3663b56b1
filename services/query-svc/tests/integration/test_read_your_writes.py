"""Reads carrying a consistency token: woken by the projector's NOTIFY, bounded, honest when stale."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from cqrs_shared.consistency import ConsistencyToken
from query_svc.app import create_app
from query_svc.listener import ProjectionListener
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, record_applied, serve_in_process
from query_svc.views.shop import CUSTOMERS, SHOP

pytestmark = pytest.mark.integration

Row = dict[str, Any]


def _waits(outcome: str) -> float:
    return REGISTRY.get_sample_value("query_token_waits_total", {"outcome": outcome}) or 0.0


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


async def _rename_later(admin: asyncpg.Connection[asyncpg.Record], delay: float, version: int) -> None:
    await asyncio.sleep(delay)
    async with admin.transaction():
        await admin.execute(
            "UPDATE shop_b1.customers SET name = 'Ada', version = $1 WHERE id = 'c-1'", version
        )
        await record_applied(admin, "shop_b1", SHOP, [("customer", "c-1", version)])


async def test_a_read_with_a_token_is_woken_by_the_notify_and_returns_the_new_state(
    client: httpx.AsyncClient, admin: asyncpg.Connection[asyncpg.Record], readers: dict[str, str]
) -> None:
    token = ConsistencyToken("customer", "c-1", 2).encode()
    woken_before = _waits("woken")
    started = time.monotonic()
    response, _ = await asyncio.gather(
        client.get("/v1/customers/c-1?max_wait_ms=5000", headers={**readers, "X-Consistency-Token": token}),
        _rename_later(admin, 0.3, 2),
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["version"]) == ("Ada", 2)
    assert response.headers["x-read-model-stale"] == "false"
    assert response.headers["x-consistency-applied-version"] == "2"
    assert 0.3 <= elapsed < 2.0
    assert _waits("woken") == woken_before + 1


async def test_a_waiter_checks_once_per_relevant_notification_not_on_a_timer(
    app: FastAPI, client: httpx.AsyncClient, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    waiter = app.state.components["engine"].waiter

    async def unrelated_then_relevant() -> None:
        for i in range(5):
            await asyncio.sleep(0.05)
            await record_applied(admin, "shop_b1", SHOP, [("customer", "c-2", 2 + i)])
        await _rename_later(admin, 0.2, 2)

    result, _ = await asyncio.gather(
        waiter.wait(SHOP, ConsistencyToken("customer", "c-1", 2), 5.0), unrelated_then_relevant()
    )
    assert (result.outcome, result.applied, result.checks) == ("woken", 2, 2)
    assert 0.4 <= result.seconds < 2.0


async def test_a_token_not_reached_in_time_answers_what_it_has_and_says_it_is_stale(
    client: httpx.AsyncClient, readers: dict[str, str]
) -> None:
    token = ConsistencyToken("customer", "c-1", 5).encode()
    timeouts_before = _waits("timeout")
    started = time.monotonic()
    item = await client.get(f"/v1/customers/c-1?after={token}&max_wait_ms=300", headers=readers)
    page = await client.get(f"/v1/customers?after={token}&max_wait_ms=0", headers=readers)
    elapsed = time.monotonic() - started
    assert item.status_code == 200
    assert item.json()["version"] == 1
    assert item.headers["x-read-model-stale"] == "true"
    assert item.headers["x-consistency-applied-version"] == "1"
    assert page.headers["x-read-model-stale"] == "true"
    assert 0.3 <= elapsed < 1.5
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
    reconnects = REGISTRY.get_sample_value("query_listener_reconnects_total") or 0.0
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    token = ConsistencyToken("customer", "c-1", 2).encode()
    # The notify may well be sent while the listener is down: the resync after LISTEN covers it.
    response, _ = await asyncio.gather(
        client.get(f"/v1/customers/c-1?after={token}&max_wait_ms=5000", headers=readers),
        _rename_later(admin, 0.0, 2),
    )
    assert response.headers["x-read-model-stale"] == "false"
    await asyncio.wait_for(listener.connected.wait(), 5)
    assert listener.backend_pid not in (None, old_pid)
    assert (REGISTRY.get_sample_value("query_listener_reconnects_total") or 0.0) == reconnects + 1
