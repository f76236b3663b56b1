"""The fast read path answers exactly as the FastAPI routes do, and takes only what it can answer.

Every request below goes once through the service as built (FastReads in front) and once through
the same app without FastReads (the FastAPI routes alone); status, body and headers must be equal.
A spy on FastReads' own answering tells which requests it served and which it handed over.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS
from query_svc.app import QueryApp, create_app
from query_svc.engine import ReadEngine
from query_svc.fast_reads import FastReads
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, serve_in_process

pytestmark = pytest.mark.integration

SCHEMA = "shop_b1"
#: Headers that legitimately differ between two answers of the same request.
VOLATILE = {"date", "x-staleness-ms"}
FRESH_TOKEN = ConsistencyToken("order", "o-1", 1).encode()
FOREIGN_TOKEN = ConsistencyToken("invoice", "i-1", 1).encode()

#: (path, extra headers, served by the fast path?)
CASES: list[tuple[str, dict[str, str], bool]] = [
    ("/v1/orders/o-1", {}, True),
    ("/v1/orders/o-404", {}, True),
    ("/v1/orders/o-1", {"X-Consistency-Token": FRESH_TOKEN}, True),
    ("/v1/orders/o-1", {"X-Consistency-Token": FOREIGN_TOKEN}, True),
    ("/v1/orders/o-1", {"X-Consistency-Token": "not base64!"}, False),
    ("/v1/orders/o-1", {"X-Consistency-Token": "bm90LWEtdG9rZW4"}, True),
    ("/v1/orders/o-1", {"If-None-Match": "*"}, True),
    ("/v1/orders/o-1", {"Authorization": "Bearer nonsense"}, True),
    ("/v1/orders/o-1", {"Authorization": ""}, True),
    ("/v1/orders/" + "x" * 300, {}, False),
    ("/v1/orders/o 1", {}, False),
    ("/v1/orders/o-1?after=" + FRESH_TOKEN, {}, False),
    ("/v1/orders/o-1?color=red", {}, False),
    ("/v1/orders", {}, True),
    ("/v1/orders?status=placed&status=shipped&limit=1", {}, True),
    ("/v1/orders?min_total=10&sort=-total", {}, True),
    ("/v1/orders?limit=0", {}, True),
    ("/v1/orders?limit=1&limit=2", {}, True),
    ("/v1/orders?color=red", {}, True),
    ("/v1/orders?customer_name=x", {}, True),
    ("/v1/orders?cursor=a.b", {}, True),
    ("/v1/orders?max_wait_ms=5", {}, False),
    ("/v1/orders?%61fter=" + FRESH_TOKEN, {}, False),
    ("/v1/customers/c-1", {}, True),
    ("/v1/customers/c-1/orders", {}, False),
    ("/v1/nothing/here", {}, False),
]


@pytest.fixture
async def seeded(
    admin: asyncpg.Connection[asyncpg.Record],
    make_customer: Callable[..., dict[str, Any]],
    make_order: Callable[..., dict[str, Any]],
) -> None:
    await insert_rows(admin, SCHEMA, CUSTOMERS, [make_customer("c-1", 1)])
    await insert_rows(
        admin,
        SCHEMA,
        ORDERS,
        [
            make_order("o-1", "c-1", 10, total=Decimal("120.50"), status="placed"),
            make_order("o-2", "c-1", 20, total=Decimal("5.00"), status="shipped"),
            make_order("o-3", "c-1", 30, total=Decimal("42.00"), status="shipped"),
        ],
    )


def _without_fast_reads(app: QueryApp) -> QueryApp:
    app.fast_reads = None
    return app


def _requests_counted(route: str, status: str) -> float:
    labels = {"route": route, "method": "GET", "status": status}
    return REGISTRY.get_sample_value("cqrs_query_http_requests_total", labels) or 0.0


def _comparable(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in VOLATILE}
    return response.status_code, response.content, headers


async def _answers(app: QueryApp, readers: dict[str, str]) -> list[tuple[int, bytes, dict[str, str]]]:
    async with serve_in_process(app) as client:
        out = []
        for path, extra, _fast in CASES:
            response = await client.get(path, headers={**readers, **extra})
            out.append(_comparable(response))
        return out


async def test_fast_reads_answer_every_request_exactly_as_the_fastapi_routes(
    seeded: None,
    shop_dsn: str,
    settings_for: Callable[..., QuerySettings],
    readers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[str] = []
    answer = FastReads._answer

    async def spy(self: FastReads, request: Any, *args: Any) -> Any:
        served.append(str(request.url.path) + ("?" + request.url.query if request.url.query else ""))
        return await answer(self, request, *args)

    monkeypatch.setattr(FastReads, "_answer", spy)
    settings = settings_for(shop_dsn, wait_default_ms=0)
    counted_before = _requests_counted("/v1/orders/{item_id}", "200")
    fast = await _answers(create_app(settings), readers)
    counted = _requests_counted("/v1/orders/{item_id}", "200") - counted_before
    taken = list(served)
    served.clear()
    slow = await _answers(_without_fast_reads(create_app(settings)), readers)
    assert served == []
    for (path, _extra, _f), mine, theirs in zip(CASES, fast, slow, strict=True):
        assert mine == theirs, path
    expected = [path for path, _extra, fast_path in CASES if fast_path]
    assert len(taken) == len(expected)
    statuses = {status for status, _body, _headers in fast}
    assert {200, 304, 400, 401, 404, 422} <= statuses
    # Served in front of the app's metrics middleware, fast reads are counted all the same.
    item_oks = [
        status
        for (path, _extra, _f), (status, _body, _headers) in zip(CASES, fast, strict=True)
        if path.startswith("/v1/orders/o-") and status == 200
    ]
    assert counted == len(item_oks) > 0


async def test_an_unexpected_error_is_answered_counted_and_raised_as_by_the_full_app(
    seeded: None,
    shop_dsn: str,
    settings_for: Callable[..., QuerySettings],
    readers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_args: Any) -> Any:
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr(ReadEngine, "item", broken)
    settings = settings_for(shop_dsn, wait_default_ms=0)
    answers = []
    for app in (create_app(settings), _without_fast_reads(create_app(settings))):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        before = _requests_counted("/v1/orders/{item_id}", "500")
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://query.test") as client,
        ):
            answers.append(_comparable(await client.get("/v1/orders/o-1", headers=readers)))
        assert _requests_counted("/v1/orders/{item_id}", "500") == before + 1
    fast, full = answers
    assert fast == full
    assert fast[0] == 500
    assert fast[2]["content-type"] == "application/problem+json"
    assert json.loads(fast[1])["type"].endswith("/internal")
