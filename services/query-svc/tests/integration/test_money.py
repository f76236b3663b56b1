"""Money wider than numeric(14,2) (the projector widens totals to (16,2) and lifetime values to
(20,2)): rendered to the cent, filtered by and paged through without any assumed precision."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS
from query_svc.app import create_app
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, serve_in_process

pytestmark = pytest.mark.integration

Row = dict[str, Any]
#: The widened precisions: orders.total numeric(16,2), customers.lifetime_value numeric(20,2).
WIDENED = (("orders", "total", 16), ("customers", "lifetime_value", 20))


async def _widen_money(admin: asyncpg.Connection[asyncpg.Record]) -> None:
    """What the projector's widening migration does to build `shop_b1`, where it has not yet run."""
    async with admin.transaction():
        for table, column, precision in WIDENED:
            current = await admin.fetchval(
                "SELECT numeric_precision FROM information_schema.columns "
                "WHERE table_schema = 'shop_b1' AND table_name = $1 AND column_name = $2",
                table,
                column,
            )
            if current >= precision:
                continue
            # A view pins its columns' types: the migration recreates `read.<table>` the same way.
            await admin.execute(f'DROP VIEW read."{table}"')
            await admin.execute(
                f'ALTER TABLE shop_b1."{table}" ALTER COLUMN "{column}" TYPE numeric({precision}, 2)'
            )
            await admin.execute(f'CREATE VIEW read."{table}" AS SELECT * FROM shop_b1."{table}"')  # noqa: S608  # test constants


@pytest.fixture
async def client(
    shop_dsn: str,
    admin: asyncpg.Connection[asyncpg.Record],
    settings_for: Callable[..., QuerySettings],
    make_customer: Callable[..., Row],
    make_order: Callable[..., Row],
) -> AsyncIterator[httpx.AsyncClient]:
    await _widen_money(admin)
    customers = [
        make_customer("c-big", lifetime_value=Decimal("123456789012345678.90")),
        make_customer("c-small", lifetime_value=Decimal("12.00")),
    ]
    orders = [
        make_order("o-top", "c-big", 1, total=Decimal("99999999999999.99")),
        make_order("o-mid", "c-big", 2, total=Decimal("12345678901234.56")),
        make_order("o-low", "c-small", 3, total=Decimal("5.00")),
    ]
    await insert_rows(admin, "shop_b1", CUSTOMERS, customers)
    await insert_rows(admin, "shop_b1", ORDERS, orders)
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        yield client


async def test_wide_amounts_are_rendered_to_the_cent(
    client: httpx.AsyncClient, readers: dict[str, str]
) -> None:
    customer = await client.get("/v1/customers/c-big", headers=readers)
    order = await client.get("/v1/orders/o-top", headers=readers)
    assert customer.json()["lifetime_value"] == "123456789012345678.90"
    assert order.json()["total"] == "99999999999999.99"


async def test_range_filters_take_amounts_of_any_width_the_columns_hold(
    client: httpx.AsyncClient, readers: dict[str, str]
) -> None:
    async def ids(query: str) -> list[str]:
        response = await client.get(query, headers=readers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids("/v1/orders?min_total=10000000000000.00&sort=total") == ["o-mid", "o-top"]
    assert await ids("/v1/orders?max_total=99999999999999.98&sort=total") == ["o-low", "o-mid"]
    assert await ids("/v1/customers?min_lifetime_value=100000000000000000") == ["c-big"]
    # Wider than any column: a valid comparison that matches nothing, not an error.
    assert await ids(f"/v1/orders?min_total={'9' * 36}.99") == []


async def test_an_amount_beyond_the_request_bound_is_a_422_naming_its_parameter(
    client: httpx.AsyncClient, readers: dict[str, str]
) -> None:
    response = await client.get(f"/v1/orders?min_total={'9' * 37}.00", headers=readers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "query.min_total"


async def test_pages_sorted_by_a_wide_amount_carry_it_in_their_cursors(
    client: httpx.AsyncClient, readers: dict[str, str]
) -> None:
    seen: list[str] = []
    next_url: str | None = "/v1/orders?sort=-total&limit=1"
    while next_url is not None:
        response = await client.get(next_url, headers=readers)
        assert response.status_code == 200, response.text
        seen += [item["total"] for item in response.json()["items"]]
        next_url = response.json()["next"]
    assert seen == ["99999999999999.99", "12345678901234.56", "5.00"]
