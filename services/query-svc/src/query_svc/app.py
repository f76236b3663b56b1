"""Wiring of the query service: a read-only PostgreSQL pool and the HTTP API over the `read` views."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Header, Path

from cqrs_shared.auth import AuthError, TokenVerifier
from cqrs_shared.problems import ProblemError, install_problem_handlers
from cqrs_shared.service_http import operations_router
from query_svc.settings import QuerySettings

log = logging.getLogger(__name__)

AggregateIdPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
]


async def _init_connection(connection: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _render(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if hasattr(value, "isoformat"):
            out[key] = value.isoformat().replace("+00:00", "Z")
        elif type(value).__name__ == "Decimal":
            out[key] = f"{value:.2f}"
        else:
            out[key] = value
    return out


def create_app(settings: QuerySettings | None = None, **overrides: Any) -> FastAPI:
    settings = settings or QuerySettings(**overrides)
    verifier = TokenVerifier(settings)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            settings.database_url.get_secret_value(),
            min_size=1,
            max_size=settings.pool_size,
            init=_init_connection,
            server_settings={
                "statement_timeout": str(settings.statement_timeout_ms),
                "default_transaction_read_only": "on",
            },
        )
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="query-svc", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)

    def authorize(authorization: str | None, role: str) -> None:
        try:
            verifier.verify(authorization).require(role)
        except AuthError as exc:
            if exc.forbidden:
                raise ProblemError(403, "forbidden", "Forbidden", exc.message) from exc
            raise ProblemError(
                401, "unauthorized", "Unauthorized", exc.message, headers={"WWW-Authenticate": "Bearer"}
            ) from exc

    @app.get("/v1/customers/{customer_id}", tags=["customers"], summary="One customer")
    async def get_customer(
        customer_id: AggregateIdPath, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        authorize(authorization, "customers:read")
        async with state["pool"].acquire() as connection:
            row = await connection.fetchrow("SELECT * FROM read.customers WHERE id = $1", customer_id)
        if row is None:
            raise ProblemError(404, "not-found", "Not found", f"no customer {customer_id!r}")
        return _render(row)

    async def database_ready() -> None:
        async with state["pool"].acquire() as connection:
            await connection.fetchval("SELECT 1")

    app.include_router(operations_router({"postgres": database_ready}))
    return app
