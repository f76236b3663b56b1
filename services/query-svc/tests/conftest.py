"""Fixtures of the query service's tests: a real shop build schema, rows, apps and tokens.

`shop_dsn` is a fresh database with the projector's own migrations applied (build `shop_b1`,
views in `read`), so the query service reads exactly the relations it reads in production.
`private_postgres` is a PostgreSQL cluster of the tests' own, for tests that stop, crash or cut
it: the shared server others test against is never touched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from cqrs_shared.auth import mint_token
from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS, SHOP
from cqrs_shared.testing.postgres import drop_database
from projector_svc.testing.builds import ensure_active_build
from projector_svc.testing.shop import ShopProjection
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, record_applied
from query_svc.testing.outages import PrivatePostgres

SECRET = "query-test-secret-0123456789abcdef0123456789"
CURSOR_SECRET = "query-test-cursor-secret-0123456789"
SCHEMA = "shop_b1"
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
Row = dict[str, Any]
RowFactory = Callable[..., Row]


def bearer(*roles: str) -> dict[str, str]:
    token = mint_token(
        SECRET, subject="test", roles=list(roles), issuer="cqrs-platform", audience="cqrs-platform"
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def headers_for() -> Callable[..., dict[str, str]]:
    """Headers carrying a token with the given roles."""
    return bearer


@pytest.fixture(scope="session")
def readers() -> dict[str, str]:
    """Headers of a caller holding both read roles."""
    return bearer("customers:read", "orders:read")


async def _build(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await ensure_active_build(connection, ShopProjection())
        # These short-lived tables never need autovacuum, and a worker in the database would
        # make the teardown's DROP DATABASE wait for it.
        for table in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", SCHEMA):
            await connection.execute(f'ALTER TABLE {SCHEMA}."{table[0]}" SET (autovacuum_enabled = off)')
    finally:
        await connection.close()


@pytest.fixture
async def shop_dsn(pg_database: str) -> str:
    await _build(pg_database)
    return pg_database


@pytest.fixture(scope="module")
async def module_shop_dsn(database_url: str) -> AsyncIterator[str]:
    """Like `shop_dsn`, but one database for a whole module: only for tests that never write."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    await _build(dsn)
    yield dsn
    await drop_database(database_url, name)


@pytest.fixture
async def admin(shop_dsn: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A read-write connection to the test database (no JSON codec: jsonb travels as text)."""
    connection = await asyncpg.connect(shop_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def settings_for() -> Callable[..., QuerySettings]:
    def make(dsn: str, **overrides: Any) -> QuerySettings:
        values: dict[str, Any] = {
            "database_url": dsn,
            "listen_database_url": dsn,
            "auth_mode": "jwt",
            "jwt_secret": SECRET,
            "cursor_secret": CURSOR_SECRET,
            "pool_size": 4,
            **overrides,
        }
        return QuerySettings(**values)

    return make


@pytest.fixture(scope="session")
def make_customer() -> RowFactory:
    def make(customer_id: str, n: int = 0, **overrides: Any) -> Row:
        at = BASE_TIME + timedelta(seconds=n)
        return {
            "id": customer_id,
            "name": f"Customer {customer_id}",
            "email": f"{customer_id}@example.com",
            "status": "registered",
            "registered_at": at,
            "updated_at": at,
            "version": 1,
            "order_count": 0,
            "open_order_count": 0,
            "lifetime_value": Decimal("0.00"),
            **overrides,
        }

    return make


@pytest.fixture(scope="session")
def make_order() -> RowFactory:
    def make(order_id: str, customer_id: str, n: int = 0, **overrides: Any) -> Row:
        at = BASE_TIME + timedelta(seconds=n)
        total = overrides.pop("total", Decimal("9.95"))
        return {
            "id": order_id,
            "customer_id": customer_id,
            "customer_name": f"Customer {customer_id}",
            "status": "placed",
            "currency": "EUR",
            "total": total,
            "line_count": 1,
            "lines": [{"sku": "sku-1", "quantity": 1, "unit_price": f"{total:.2f}"}],
            "placed_at": at,
            "updated_at": at,
            "version": 1,
            **overrides,
        }

    return make


@pytest.fixture(scope="session")
async def private_postgres(
    make_customer: Callable[..., Row], make_order: Callable[..., Row]
) -> AsyncIterator[PrivatePostgres]:
    """Customer c-1 (applied at version 1) with order o-1, in the active build `shop_b1`."""
    server = PrivatePostgres()
    await server.init()
    await server.start()
    connection = await asyncpg.connect(server.dsn)
    try:
        await ensure_active_build(connection, ShopProjection())
        await insert_rows(connection, "shop_b1", CUSTOMERS, [make_customer("c-1")])
        await insert_rows(connection, "shop_b1", ORDERS, [make_order("o-1", "c-1")])
        await record_applied(connection, "shop_b1", SHOP, [("customer", "c-1", 1)], notify=False)
    finally:
        await connection.close()
    yield server
    await server.destroy()


@pytest.fixture
async def running(private_postgres: PrivatePostgres) -> PrivatePostgres:
    """The private server, started if an earlier test left it down."""
    if not private_postgres.running:
        await private_postgres.start()
    return private_postgres
