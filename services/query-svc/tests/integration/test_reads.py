"""Item, collection and relation reads against a real build schema: values, headers, caching, roles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS
from query_svc.app import create_app
from query_svc.declarations import Catalog, Column, ColumnType, Filter, Index, Projection, View
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, record_offsets, serve_in_process

pytestmark = pytest.mark.integration

Row = dict[str, Any]
SCHEMA = "shop_b1"


@pytest.fixture
async def seeded(
    admin: asyncpg.Connection[asyncpg.Record],
    make_customer: Callable[..., Row],
    make_order: Callable[..., Row],
) -> None:
    await insert_rows(admin, SCHEMA, CUSTOMERS, [make_customer("c-1", 1), make_customer("c-2", 2)])
    await insert_rows(
        admin,
        SCHEMA,
        ORDERS,
        [
            make_order("o-1", "c-1", 10, total=Decimal("120.50"), status="placed"),
            make_order("o-2", "c-1", 20, total=Decimal("5.00"), status="shipped"),
            make_order("o-3", "c-2", 30, total=Decimal("42.00"), status="cancelled", currency="USD"),
        ],
    )


async def test_an_item_renders_money_as_a_decimal_string_and_time_as_rfc3339_utc(
    seeded: None, shop_dsn: str, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        response = await client.get("/v1/orders/o-1", headers=readers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == "120.50"
    assert body["placed_at"] == "2024-01-01T00:00:10.000000Z"
    assert body["lines"] == [{"sku": "sku-1", "quantity": 1, "unit_price": "120.50"}]
    assert set(body) == {c.name for c in ORDERS.columns}
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["x-read-model-position"] == "none"
    assert response.headers["x-staleness-ms"] == "0"


async def test_a_missing_item_is_a_404_problem_with_position_headers(
    seeded: None, shop_dsn: str, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        response = await client.get("/v1/customers/nobody", headers=readers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/not-found")
    assert "x-read-model-position" in response.headers


async def test_if_none_match_with_the_etag_answers_304_until_the_row_changes(
    seeded: None,
    shop_dsn: str,
    admin: asyncpg.Connection[asyncpg.Record],
    settings_for: Callable[..., QuerySettings],
    readers: dict[str, str],
) -> None:
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        first = await client.get("/v1/customers/c-1", headers=readers)
        etag = first.headers["etag"]
        unchanged = await client.get("/v1/customers/c-1", headers={**readers, "If-None-Match": etag})
        page = await client.get("/v1/customers", headers=readers)
        page_again = await client.get(
            "/v1/customers", headers={**readers, "If-None-Match": page.headers["etag"]}
        )
        await admin.execute(f"UPDATE {SCHEMA}.customers SET name = 'Renamed' WHERE id = 'c-1'")  # noqa: S608  # test constant
        changed = await client.get("/v1/customers/c-1", headers={**readers, "If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content, unchanged.headers["etag"]) == (304, b"", etag)
    assert page_again.status_code == 304
    assert changed.status_code == 200
    assert changed.json()["name"] == "Renamed"
    assert changed.headers["etag"] != etag


async def test_filters_combine_equality_in_and_ranges(
    seeded: None, shop_dsn: str, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:

        async def ids(query: str) -> list[str]:
            response = await client.get(f"/v1/orders?{query}", headers=readers)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert await ids("status=placed") == ["o-1"]
        assert await ids("status=placed&status=cancelled&sort=placed_at") == ["o-1", "o-3"]
        assert await ids("min_total=10&sort=total") == ["o-3", "o-1"]
        assert await ids("min_total=5.00&max_total=42&sort=-total") == ["o-3", "o-2"]
        assert await ids("placed_after=2024-01-01T00:00:10Z&sort=placed_at") == ["o-2", "o-3"]
        assert await ids("placed_before=2024-01-01T01:00:20%2B01:00") == ["o-1"]
        assert await ids("currency=USD") == ["o-3"]
        assert await ids("") == ["o-3", "o-2", "o-1"]  # default sort: -placed_at


async def test_a_customers_orders_are_the_joined_history_and_an_unknown_customer_is_404(
    seeded: None, shop_dsn: str, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        history = await client.get("/v1/customers/c-1/orders?sort=placed_at", headers=readers)
        filtered = await client.get("/v1/customers/c-1/orders?status=shipped", headers=readers)
        unknown = await client.get("/v1/customers/c-404/orders", headers=readers)
    assert [o["id"] for o in history.json()["items"]] == ["o-1", "o-2"]
    assert {o["customer_name"] for o in history.json()["items"]} == {"Customer c-1"}
    assert [o["id"] for o in filtered.json()["items"]] == ["o-2"]
    assert unknown.status_code == 404


async def test_pages_link_to_the_next_page_until_the_last(
    seeded: None, shop_dsn: str, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        first = await client.get(
            "/v1/orders?limit=2&sort=placed_at&currency=EUR&currency=USD", headers=readers
        )
        second = await client.get(first.json()["next"], headers=readers)
    assert [o["id"] for o in first.json()["items"]] == ["o-1", "o-2"]
    assert first.headers["link"] == f'<{first.json()["next"]}>; rel="next"'
    assert "currency=EUR&currency=USD" in first.json()["next"]
    assert [o["id"] for o in second.json()["items"]] == ["o-3"]
    assert second.json()["next"] is None
    assert "link" not in second.headers


async def test_roles_are_required_per_view(
    shop_dsn: str, settings_for: Callable[..., QuerySettings], headers_for: Callable[..., dict[str, str]]
) -> None:
    bearer = headers_for
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        anonymous = await client.get("/v1/orders")
        wrong_role = await client.get("/v1/orders", headers=bearer("customers:read"))
        relation = await client.get("/v1/customers/c-1/orders", headers=bearer("orders:read"))
        garbage = await client.get("/v1/orders", headers={"Authorization": "Bearer not-a-jwt"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert wrong_role.status_code == 403
    assert relation.status_code == 403
    assert garbage.status_code == 401


async def test_staleness_is_the_age_of_the_newest_applied_event_on_a_partition_that_was_behind(
    shop_dsn: str,
    admin: asyncpg.Connection[asyncpg.Record],
    settings_for: Callable[..., QuerySettings],
    readers: dict[str, str],
) -> None:
    now = datetime.now(UTC)
    await record_offsets(
        admin,
        SCHEMA,
        [
            ("events.order", 1, 7, 7, now - timedelta(hours=1)),
            ("events.customer", 0, 15, 20, now - timedelta(seconds=3)),
        ],
    )
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        response = await client.get("/v1/customers", headers=readers)
    assert response.headers["x-read-model-position"] == "events.customer/0=15, events.order/1=7"
    assert 3000 <= int(response.headers["x-staleness-ms"]) < 13_000


async def test_openapi_has_a_schema_per_view_and_docs_and_metrics_are_served(
    shop_dsn: str, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        await client.get("/v1/orders/o-x", headers=readers)
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
        metrics = (await client.get("/metrics")).text
    assert {"Customer", "Order", "CustomerPage", "OrderPage"} <= set(spec["components"]["schemas"])
    assert spec["components"]["schemas"]["Order"]["additionalProperties"] is False
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert 'cqrs_query_http_requests_total{method="GET",route="/v1/orders/{item_id}",status="404"}' in metrics
    for family in (
        "cqrs_query_http_request_seconds_bucket",
        "cqrs_query_token_waits_total",
        "cqrs_query_sse_subscribers",
    ):
        assert family in metrics


TALLY = Projection("tally", ("tally",))
TALLIES = View(
    name="tallies",
    item_name="Tally",
    projection=TALLY,
    aggregate_type="tally",
    read_role="tallies:read",
    default_sort="-count",
    columns=(
        Column("id", ColumnType.TEXT),
        Column("count", ColumnType.INTEGER, filters=frozenset({Filter.RANGE}), sortable=True),
    ),
    indexes=(Index("tallies_count", ("count", "id")),),
)


async def test_a_view_of_another_domain_is_served_from_its_declaration_alone(
    pg_database: str, settings_for: Callable[..., QuerySettings], headers_for: Callable[..., dict[str, str]]
) -> None:
    admin = await asyncpg.connect(pg_database)
    try:
        await admin.execute(
            """
            CREATE SCHEMA read;
            CREATE TABLE read.tallies (id text PRIMARY KEY, count integer NOT NULL);
            CREATE TABLE read.tally_partition_offsets (topic text, partition int, next_offset bigint,
                high_watermark bigint, last_event_at timestamptz);
            CREATE TABLE read.tally_aggregate_versions
                (aggregate_type text, aggregate_id text, version bigint);
            INSERT INTO read.tallies VALUES ('a', 3), ('b', 7), ('c', 5);
            """
        )
    finally:
        await admin.close()
    app = create_app(settings_for(pg_database), catalog=Catalog((TALLIES,)))
    async with serve_in_process(app) as client:
        page = await client.get("/v1/tallies?min_count=4", headers=headers_for("tallies:read"))
        spec = (await client.get("/openapi.json")).json()
    assert [t["id"] for t in page.json()["items"]] == ["b", "c"]
    assert "Tally" in spec["components"]["schemas"]
    assert "/v1/customers" not in spec["paths"]
