"""Keyset pages over 10,000 rows: none missing, none repeated, order kept, while rows are inserted."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
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
ROWS = 10_000
STATUSES = ("placed", "confirmed", "shipped", "cancelled")
CUTOFF = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)


def _seed_orders(make_order: Callable[..., Row]) -> list[Row]:
    # Seven orders share each timestamp and totals repeat every 250: most page boundaries fall
    # inside a group of equal sort values, where only the id tie-break keeps the order total.
    return [
        make_order(
            f"o-{i:05d}",
            f"c-{i % 100}",
            i // 7,
            total=Decimal(i % 250) + Decimal("0.50"),
            status=STATUSES[i % 4],
        )
        for i in range(ROWS)
    ]


class Inserter:
    """New orders, a batch at a time, with sort values spread over the whole range: called between
    two pages of a walk, so rows land on both sides of every cursor (deterministically, where a
    concurrent task would insert only if the scheduler let it)."""

    def __init__(
        self, connection: asyncpg.Connection[asyncpg.Record], make_order: Callable[..., Row]
    ) -> None:
        self._connection = connection
        self._make_order = make_order
        self._rng = random.Random(7)
        self.inserted: list[Row] = []

    async def batch(self) -> None:
        rows = [
            self._make_order(
                f"n-{len(self.inserted) + k:05d}",
                "c-1",
                self._rng.randrange(ROWS // 7),
                total=Decimal(self._rng.randrange(250)),
                status=self._rng.choice(STATUSES),
            )
            for k in range(20)
        ]
        await insert_rows(self._connection, "shop_b1", ORDERS, rows)
        self.inserted.extend(rows)


async def _walk(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    between_pages: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[Row], int]:
    items: list[Row] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        next_url = body["next"]
        pages += 1
        if next_url is not None and between_pages is not None:
            await between_pages()
    return items, pages


def _key(row: Row, column: str) -> tuple[Any, str]:
    value = row[column]
    if column.endswith("_at"):
        value = datetime.fromisoformat(value)
    elif column == "total":
        value = Decimal(value)
    return value, row["id"]


@pytest.fixture
async def orders_10k(admin: asyncpg.Connection[asyncpg.Record], make_order: Callable[..., Row]) -> list[Row]:
    rows = _seed_orders(make_order)
    await insert_rows(admin, "shop_b1", ORDERS, rows)
    await admin.execute("ANALYZE shop_b1.orders")
    return rows


@pytest.fixture
async def client(
    shop_dsn: str, settings_for: Callable[..., QuerySettings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_in_process(create_app(settings_for(shop_dsn))) as client:
        yield client


@pytest.mark.parametrize(
    ("query", "column", "descending", "matches"),
    [
        ("sort=-placed_at", "placed_at", True, lambda r: True),
        (
            "sort=total&status=placed&status=confirmed&min_total=50",
            "total",
            False,
            lambda r: r["status"] in ("placed", "confirmed") and r["total"] >= 50,
        ),
        ("sort=-id&placed_after=2024-01-01T00:05:00Z", "id", True, lambda r: r["placed_at"] > CUTOFF),
    ],
)
async def test_a_walk_sees_every_row_once_in_order_while_rows_are_inserted_between_pages(
    orders_10k: list[Row],
    admin: asyncpg.Connection[asyncpg.Record],
    client: httpx.AsyncClient,
    readers: dict[str, str],
    make_order: Callable[..., Row],
    query: str,
    column: str,
    descending: bool,
    matches: Callable[[Row], bool],
) -> None:
    inserter = Inserter(admin, make_order)
    items, pages = await _walk(client, f"/v1/orders?limit=347&{query}", readers, inserter.batch)
    inserted = inserter.inserted
    ids = [item["id"] for item in items]
    expected = {r["id"] for r in orders_10k if matches(r)}
    assert len(inserted) == 20 * (pages - 1)
    assert len(ids) == len(set(ids)), "a row was repeated across pages"
    assert expected <= set(ids), f"{len(expected - set(ids))} rows missing"
    assert set(ids) - expected <= {r["id"] for r in inserted}
    keys = [_key(item, column) for item in items]
    assert keys == sorted(keys, reverse=descending)
    assert pages >= len(expected) // 347


@pytest.mark.parametrize("sort", ["registered_at", "-registered_at"])
async def test_nulls_in_a_sort_column_are_paged_like_postgresql_orders_them(
    admin: asyncpg.Connection[asyncpg.Record],
    client: httpx.AsyncClient,
    readers: dict[str, str],
    make_customer: Callable[..., Row],
    sort: str,
) -> None:
    rows = [make_customer(f"c-{i:03d}", i % 5) for i in range(60)]
    for row in rows[::3]:
        row["registered_at"] = None
    await insert_rows(admin, "shop_b1", CUSTOMERS, rows)
    direction = "DESC" if sort.startswith("-") else "ASC"
    order = f"registered_at {direction}, id {direction}"
    expected = [r["id"] for r in await admin.fetch(f"SELECT id FROM read.customers ORDER BY {order}")]  # noqa: S608  # test constants
    items, pages = await _walk(client, f"/v1/customers?limit=7&sort={sort}", readers)
    assert [i["id"] for i in items] == expected
    assert pages == 9
