"""Build schemas: migrations under an advisory lock when replicas start together, and atomic swaps."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence

import asyncpg
import pytest

from projector_svc.builds import Build, activate, create_build, ensure_active_build, list_builds
from projector_svc.pg import create_pool
from projector_svc.projection import Migration
from projector_svc.testing.shop import ShopProjection

pytestmark = pytest.mark.integration


class _ShopWithLoyalty(ShopProjection):
    """The next release of the shop projection: one more migration."""

    migrations = (
        *ShopProjection.migrations,
        Migration(
            3, "shop_0003_loyalty", "ALTER TABLE customers ADD COLUMN loyalty text; SELECT pg_sleep(0.05);"
        ),
    )


async def _start_together(dsn: str, projection: ShopProjection, replicas: int) -> list[Build]:
    connections = [await asyncpg.connect(dsn) for _ in range(replicas)]
    try:
        return await asyncio.gather(*(ensure_active_build(c, projection) for c in connections))
    finally:
        for connection in connections:
            await connection.close()


async def test_replicas_starting_together_create_one_build_and_migrate_it_once(pg_database: str) -> None:
    first = await _start_together(pg_database, ShopProjection(), replicas=8)
    assert set(first) == {Build("shop", 1)}
    upgraded = await _start_together(pg_database, _ShopWithLoyalty(), replicas=8)
    assert set(upgraded) == {Build("shop", 1)}

    connection = await asyncpg.connect(pg_database)
    try:
        applied = await connection.fetch(
            "SELECT version, name FROM shop_b1.schema_migrations ORDER BY version"
        )
        assert [(r["version"], r["name"]) for r in applied] == [
            (0, "runtime_0001_positions"),
            (1, "shop_0001_initial"),
            (2, "shop_0002_wider_money"),
            (3, "shop_0003_loyalty"),
        ]
        assert [b.status for b in await list_builds(connection, "shop")] == ["active"]
        # The view readers use was republished with the new column.
        columns = await connection.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'read' AND table_name = 'customers'"
        )
        assert "loyalty" in {r["column_name"] for r in columns}
    finally:
        await connection.close()


async def _fill(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], schema: str, count: int
) -> None:
    await connection.execute(
        f"""
        INSERT INTO "{schema}".customers (id, name, email, status, updated_at, version)
        SELECT 'c' || i, 'n', 'e', 'registered', now(), 1 FROM generate_series(1, {count}) AS i
        """  # noqa: S608  # test constants
    )


async def _read_continuously(
    dsn: str, stop: asyncio.Event, seen: list[int], errors: list[BaseException]
) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            try:
                # Two statements in one snapshot, like a query page plus its total.
                async with connection.transaction(isolation="repeatable_read", readonly=True):
                    count = await connection.fetchval("SELECT count(*) FROM read.customers")
                    again = await connection.fetchval("SELECT count(*) FROM read.customers WHERE version = 1")
                seen.extend([count, again])
            except Exception as exc:  # noqa: BLE001  # every failure a reader would see is collected
                errors.append(exc)
    finally:
        await connection.close()


async def test_activating_a_build_swaps_what_readers_see_atomically(pg_database: str) -> None:
    projection = ShopProjection()
    pool = await create_pool(pg_database, max_size=2)
    try:
        async with pool.acquire() as connection:
            await ensure_active_build(connection, projection)
            await _fill(connection, "shop_b1", 300)
            second = await create_build(connection, projection)
            await _fill(connection, second.schema, 700)
            stop, seen, errors = asyncio.Event(), list[int](), list[BaseException]()
            readers = [
                asyncio.create_task(_read_continuously(pg_database, stop, seen, errors)) for _ in range(3)
            ]
            try:
                for _ in range(15):
                    await activate(connection, projection, second)
                    await asyncio.sleep(0.01)
                    await activate(connection, projection, Build("shop", 1))
                    await asyncio.sleep(0.01)
            finally:
                # Even when a swap fails, the readers must stop, or they outlive the test.
                stop.set()
                await asyncio.gather(*readers)
    finally:
        with contextlib.suppress(Exception):
            await pool.close()
    assert errors == []
    assert set(seen) == {300, 700}, "readers only ever see one whole build or the other"
    assert _pairs_consistent(seen)


def _pairs_consistent(seen: Sequence[int]) -> bool:
    return all(seen[i] == seen[i + 1] for i in range(0, len(seen), 2))


async def test_activating_a_build_wakes_every_reader_on_commit(pg_database: str) -> None:
    projection = ShopProjection()
    connection = await asyncpg.connect(pg_database)
    listener = await asyncpg.connect(pg_database)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await ensure_active_build(connection, projection)
        await listener.add_listener("cqrs_projection", lambda *args: received.put_nowait(args[-1]))
        rebuilt = await create_build(connection, projection)
        assert received.empty()
        await activate(connection, projection, rebuilt)
        payload = json.loads(await asyncio.wait_for(received.get(), 5))
        assert payload == {"v": 1, "projection": "shop", "schema": rebuilt.schema, "overflow": True}
    finally:
        await listener.close()
        await connection.close()
