"""The query side cannot write: a read-only role, read-only sessions, a statement timeout."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.problems import ProblemError
from cqrs_shared.read_models.shop import CUSTOMERS, SHOP
from projector_svc.testing.builds import ensure_active_build
from projector_svc.testing.shop import ShopProjection
from query_svc.app import create_app
from query_svc.database import Reader
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, record_applied, serve_in_process

pytestmark = pytest.mark.integration

GRANTS = Path(__file__).parents[2] / "sql" / "reader_grants.sql"
READER_ROLE = "cqrs_reader"


def _with_user(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"))


async def _grant_then_build(dsn: str, customer: dict[str, Any]) -> None:
    """As on a clean machine: grants first, the projector's schema and views afterwards."""
    admin = await asyncpg.connect(dsn)
    try:
        if not await admin.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", READER_ROLE):
            pytest.fail(
                f"role {READER_ROLE} is missing: `scripts/infra/stack.sh up` creates it", pytrace=False
            )
        writer = urlsplit(dsn).username or "cqrs"
        await admin.execute(
            GRANTS.read_text().replace(':"writer"', f'"{writer}"').replace(':"reader"', READER_ROLE)
        )
        await ensure_active_build(admin, ShopProjection())
        await insert_rows(admin, "shop_b1", CUSTOMERS, [customer])
    finally:
        await admin.close()


async def test_the_reader_role_reads_views_created_after_the_grant_and_nothing_else(
    pg_database: str,
    settings_for: Callable[..., QuerySettings],
    make_customer: Callable[..., dict[str, Any]],
    readers: dict[str, str],
) -> None:
    await _grant_then_build(pg_database, make_customer("c-1"))
    reader_dsn = _with_user(pg_database, READER_ROLE, os.environ.get("CQRS_READER_PASSWORD", READER_ROLE))
    reader = await asyncpg.connect(reader_dsn)
    try:
        assert await reader.fetchval("SELECT count(*) FROM read.customers") == 1
        # Even with read-only sessions switched off, the role's privileges refuse every write.
        await reader.execute("SET default_transaction_read_only = off")
        for statement in (
            "SELECT * FROM shop_b1.customers",
            "SELECT * FROM projector.builds",
            "DELETE FROM read.customers",
            "CREATE TABLE public.t (a int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(statement)
    finally:
        await reader.close()

    app = create_app(settings_for(reader_dsn))
    async with serve_in_process(app) as client:
        await app.state.components["listener"].connected.wait()
        admin = await asyncpg.connect(pg_database)
        try:
            await record_applied(admin, "shop_b1", SHOP, [("customer", "c-1", 1)])
        finally:
            await admin.close()
        token = ConsistencyToken("customer", "c-1", 1).encode()
        response = await client.get(f"/v1/customers/c-1?after={token}", headers=readers)
    assert response.status_code == 200
    assert response.headers["x-read-model-stale"] == "false"


async def test_reader_sessions_are_read_only_and_time_limited_whatever_the_role(shop_dsn: str) -> None:
    reader = Reader(shop_dsn, min_size=0, max_size=1, statement_timeout_ms=100, acquire_timeout=1.0)
    await reader.start()
    try:
        async with reader.connection() as connection:
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await connection.execute("CREATE TABLE public.t (a int)")
        with pytest.raises(ProblemError) as timed_out:
            async with reader.connection() as connection:
                await connection.execute("SELECT pg_sleep(2)")
        assert (timed_out.value.status, timed_out.value.kind) == (503, "query-timeout")
        # The pool's one connection is out: the next read waits its acquire timeout, then is refused.
        async with reader.connection():
            with pytest.raises(ProblemError) as busy:
                async with reader.connection():
                    pass
        assert (busy.value.status, busy.value.kind) == (503, "database-busy")
    finally:
        await reader.close()
