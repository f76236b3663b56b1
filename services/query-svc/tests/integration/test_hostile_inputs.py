"""Hostile input: every malformed, unknown or tampered parameter is a 4xx problem naming it, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.read_models.shop import ORDERS
from query_svc.app import create_app
from query_svc.cursor import CursorCodec, CursorPosition
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, serve_in_process

pytestmark = pytest.mark.integration

ORDER_TOKEN = ConsistencyToken("order", "o-1", 1).encode()


@pytest.fixture(scope="module")
async def client(
    module_shop_dsn: str,
    settings_for: Callable[..., QuerySettings],
    make_order: Callable[..., dict[str, Any]],
) -> AsyncIterator[httpx.AsyncClient]:
    # One database and app for the module: no test here writes, and each would otherwise pay for both.
    admin = await asyncpg.connect(module_shop_dsn)
    try:
        await insert_rows(admin, "shop_b1", ORDERS, [make_order(f"o-{i}", "c-1", i) for i in range(5)])
    finally:
        await admin.close()
    async with serve_in_process(create_app(settings_for(module_shop_dsn, wait_default_ms=0))) as client:
        yield client


# (request path and query, status, problem location of the offending parameter)
CASES = [
    ("/v1/orders?limit=0", 422, "query.limit"),
    ("/v1/orders?limit=1000000", 422, "query.limit"),
    ("/v1/orders?limit=ten", 422, "query.limit"),
    ("/v1/orders?limit=1&limit=2", 400, "query.limit"),
    ("/v1/orders?sort=email", 422, "query.sort"),
    ("/v1/orders?sort=placed_at%3B%20DROP%20TABLE%20orders", 422, "query.sort"),
    ("/v1/orders?colour=red", 400, "query.colour"),
    ("/v1/customers?email=a%40example.com", 400, "query.email"),
    ("/v1/orders?lines=x", 400, "query.lines"),
    ("/v1/orders?min_total=abc", 422, "query.min_total"),
    ("/v1/orders?min_total=NaN", 422, "query.min_total"),
    ("/v1/orders?min_total=Infinity", 422, "query.min_total"),
    ("/v1/orders?min_total=1e400", 422, "query.min_total"),
    ("/v1/orders?min_total=0.001", 422, "query.min_total"),
    ("/v1/orders?placed_after=yesterday", 422, "query.placed_after"),
    ("/v1/orders?placed_after=2024-01-01T00:00:00", 422, "query.placed_after"),
    ("/v1/orders?placed_after=0001-01-01T00:00:00%2B01:00", 422, "query.placed_after"),
    ("/v1/orders?min_line_count=99999999999", 422, "query.min_line_count"),
    ("/v1/orders?status=lost", 422, "query.status.0"),
    ("/v1/orders?status=", 422, "query.status.0"),
    ("/v1/orders?customer_id=%00", 422, "query.customer_id.0"),
    ("/v1/orders?customer_id=c'%20OR%201%3D1--", 422, "query.customer_id.0"),
    ("/v1/orders?" + "&".join(f"id=o-{i}" for i in range(101)), 422, "query.id"),
    ("/v1/orders?cursor=garbage", 422, "query.cursor"),
    ("/v1/orders?cursor=Z2FyYmFnZQ.Z2FyYmFnZQ", 400, "query.cursor"),
    ("/v1/orders?cursor=" + "a" * 3000, 422, "query.cursor"),
    ("/v1/orders?after=garbage", 400, "query.after"),
    (f"/v1/customers?after={ConsistencyToken('tally', 't-1', 1).encode()}", 400, "query.after"),
    ("/v1/orders?max_wait_ms=60000", 422, "query.max_wait_ms"),
    ("/v1/orders?max_wait_ms=-1", 422, "query.max_wait_ms"),
    ("/v1/orders/%00", 422, "path.item_id"),
    ("/v1/orders/" + "a" * 200, 422, "path.item_id"),
    ("/v1/orders/o-1?status=placed", 400, "query.status"),
    ("/v1/customers/c%20d/orders", 422, "path.item_id"),
]


@pytest.mark.parametrize(("url", "status", "location"), CASES)
async def test_a_bad_parameter_is_a_problem_naming_it(
    client: httpx.AsyncClient, readers: dict[str, str], url: str, status: int, location: str
) -> None:
    response = await client.get(url, headers=readers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert location in [e["loc"] for e in response.json()["errors"]], response.text


async def test_an_unknown_view_is_a_404_problem(client: httpx.AsyncClient, readers: dict[str, str]) -> None:
    response = await client.get("/v1/invoices", headers=readers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("token", "status", "location"),
    [
        ("not a token", 422, "header.x-consistency-token"),
        ("bm90IGEgdG9rZW4", 400, "header.X-Consistency-Token"),
        (ConsistencyToken("order", "o-2", 1).encode(), 400, "header.X-Consistency-Token"),
    ],
)
async def test_a_bad_or_conflicting_token_header_is_a_problem_naming_the_header(
    client: httpx.AsyncClient, readers: dict[str, str], token: str, status: int, location: str
) -> None:
    headers = {**readers, "X-Consistency-Token": token}
    response = await client.get(f"/v1/orders/o-1?after={ORDER_TOKEN}", headers=headers)
    assert response.status_code == status
    assert [e["loc"] for e in response.json()["errors"]] == [location]


async def test_a_tampered_forged_or_reused_cursor_is_a_400_naming_cursor(
    client: httpx.AsyncClient, readers: dict[str, str]
) -> None:
    first = await client.get("/v1/orders?limit=2&sort=placed_at", headers=readers)
    cursor = first.json()["next"].split("cursor=")[1]
    body, mac = cursor.split(".")
    tampered = ("A" if body[0] != "A" else "B") + body[1:] + "." + mac
    forged = CursorCodec(b"someone-elses-secret-0123456789").encode(CursorPosition("x", None, "o-0"))
    for bad in (tampered, forged, body + "." + mac[:-2], body + "." + body):
        response = await client.get(f"/v1/orders?limit=2&sort=placed_at&cursor={bad}", headers=readers)
        assert response.status_code == 400, bad
        assert response.json()["errors"][0]["loc"] == "query.cursor"
    reused = await client.get(f"/v1/orders?limit=2&sort=-placed_at&cursor={cursor}", headers=readers)
    assert reused.status_code == 400
    assert "different query" in reused.json()["detail"]


NAMES = st.sampled_from(
    [
        "limit",
        "cursor",
        "sort",
        "status",
        "id",
        "min_total",
        "placed_after",
        "after",
        "max_wait_ms",
        "zzz",
        "lines",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.lists(st.tuples(NAMES, st.text(max_size=40)), max_size=4), path=st.text(max_size=20))
async def test_no_query_string_or_id_yields_a_server_error(
    client: httpx.AsyncClient, readers: dict[str, str], query: list[tuple[str, str]], path: str
) -> None:
    for url in ("/v1/orders", "/v1/customers/c-1/orders", f"/v1/orders/{quote(path, safe='')}"):
        params: list[tuple[str, str | int | float | bool | None]] = list(query)
        response = await client.get(url, params=params, headers=readers)
        assert response.status_code < 500, (url, query, response.text)
