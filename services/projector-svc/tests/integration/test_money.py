"""Money columns wide enough for sums: a customer's lifetime value past twelve digits is projected,
and the widening migration runs under the live `read` views without a reader noticing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from cqrs_shared.contracts import shop as c
from cqrs_shared.kafka_io import to_json
from cqrs_shared.messages import EventPayload
from projector_svc.batch import BatchApplier
from projector_svc.builds import activate, create_build, ensure_active_build
from projector_svc.dead_letters import MemoryDeadLetters
from projector_svc.incoming import Incoming, Origin
from projector_svc.pg import Connection, create_pool
from projector_svc.testing.shop import ShopProjection
from projector_svc.testing.shop_history import envelope, line, total

pytestmark = pytest.mark.integration

_AT = datetime(2026, 5, 1, tzinfo=UTC)
#: The largest order total the contract allows (14 digits, two of them decimals).
_LARGEST_TOTAL_CENTS = 10**14 - 1
#: What query-svc selects for a money column: a two-place decimal string rendered by PostgreSQL.
_RENDERED = "SELECT round(lifetime_value, 2)::text FROM read.customers WHERE id = $1"


class _ShopBeforeWiderMoney(ShopProjection):
    """The shop projection as released before `shop_0002_wider_money`."""

    migrations = ShopProjection.migrations[:1]


@pytest.fixture
async def pool(pg_database: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    pool = await create_pool(pg_database, max_size=2)
    yield pool
    await pool.close()


def _incoming(kind: str, ident: str, version: int, payload: EventPayload) -> Incoming:
    event = envelope(kind, ident, version, payload, _AT)
    return Incoming(event, Origin(f"events.{kind}", 0, 0, to_json(event)))


async def _apply(connection: Connection, schema: str, events: list[Incoming]) -> MemoryDeadLetters:
    letters = MemoryDeadLetters()
    async with connection.transaction(isolation="serializable"):
        await connection.execute("SELECT set_config('search_path', $1, true)", schema)
        await BatchApplier(ShopProjection(), letters).apply(connection, schema, events)
    return letters


async def _column_types(connection: Connection) -> dict[str, str]:
    rows = await connection.fetch(
        """
        SELECT c.relname || '.' || a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'read'::regnamespace
          AND (c.relname, a.attname) IN (('customers', 'lifetime_value'), ('orders', 'total'))
        """
    )
    return {r["name"]: r["type"] for r in rows}


async def test_a_lifetime_value_past_twelve_digits_is_projected_not_parked(
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    lines = [line("gold", 1, _LARGEST_TOTAL_CENTS)]
    events = [_incoming(c.CUSTOMER, "rich", 1, c.CustomerRegistered(name="R", email="r@x.example"))]
    events += [
        _incoming(
            c.ORDER,
            f"o{i}",
            1,
            c.OrderPlaced(customer_id="rich", currency="EUR", lines=lines, total=total(lines)),
        )
        for i in range(3)
    ]
    async with pool.acquire() as connection:
        await ensure_active_build(connection, ShopProjection())
        letters = await _apply(connection, "shop_b1", events)
        assert letters.letters == []
        assert await connection.fetchval("SELECT count(*) FROM read.shop_parked_events") == 0
        assert await connection.fetchval(_RENDERED, "rich") == "2999999999999.97"


async def _read_rendered_money(
    dsn: str, stop: asyncio.Event, seen: list[tuple[str, float]], errors: list[BaseException]
) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with connection.transaction(isolation="repeatable_read", readonly=True):
                    seen.append((await connection.fetchval(_RENDERED, "c1"), time.monotonic() - started))
            except Exception as exc:  # noqa: BLE001  # every failure a reader would see is collected
                errors.append(exc)
            await asyncio.sleep(0.005)
    finally:
        await connection.close()


async def test_the_widening_migration_runs_under_the_live_views_and_readers_never_fail(
    pool: asyncpg.Pool[asyncpg.Record], pg_database: str
) -> None:
    async with pool.acquire() as connection:
        await ensure_active_build(connection, _ShopBeforeWiderMoney())
        await connection.execute(
            "INSERT INTO shop_b1.customers (id, status, updated_at, version, lifetime_value) "
            "VALUES ('c1', 'registered', now(), 1, 123.4)"
        )
        assert await _column_types(connection) == {
            "customers.lifetime_value": "numeric(14,2)",
            "orders.total": "numeric(14,2)",
        }
        stop, seen, errors = asyncio.Event(), list[tuple[str, float]](), list[BaseException]()
        readers = [
            asyncio.create_task(_read_rendered_money(pg_database, stop, seen, errors)) for _ in range(3)
        ]
        try:
            await asyncio.sleep(0.1)
            # Held open a moment after migrating, so readers queue up on the dropped views.
            async with connection.transaction():
                await ensure_active_build(connection, ShopProjection())
                await asyncio.sleep(0.3)
            await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*readers)
        assert errors == []
        assert {money for money, _ in seen} == {"123.40"}
        assert max(seconds for _, seconds in seen) > 0.2, "no reader waited for the migration"
        assert await _column_types(connection) == {
            "customers.lifetime_value": "numeric(20,2)",
            "orders.total": "numeric(16,2)",
        }
        applied = await connection.fetch("SELECT name FROM shop_b1.schema_migrations ORDER BY version")
        assert [r["name"] for r in applied][-1] == "shop_0002_wider_money"


async def test_swapping_between_builds_of_different_money_widths_replaces_the_views(
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    async with pool.acquire() as connection:
        narrow = await ensure_active_build(connection, _ShopBeforeWiderMoney())
        wide = await create_build(connection, ShopProjection())
        await activate(connection, ShopProjection(), wide)
        assert await _column_types(connection) == {
            "customers.lifetime_value": "numeric(20,2)",
            "orders.total": "numeric(16,2)",
        }
        await activate(connection, _ShopBeforeWiderMoney(), narrow)
        assert await _column_types(connection) == {
            "customers.lifetime_value": "numeric(14,2)",
            "orders.total": "numeric(14,2)",
        }
