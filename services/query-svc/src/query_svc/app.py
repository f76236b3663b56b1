"""Wiring of the query service: reader pool, LISTEN connection, hub, and routes from the catalog.

The catalog is the read models of the projections named in the settings (`QUERY_SVC_PROJECTIONS`,
declared in `cqrs_shared.read_models`), or one given by a test; every module is generic over it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from cqrs_shared.auth import TokenVerifier
from cqrs_shared.problems import install_problem_handlers
from cqrs_shared.read_models import definition_named, merged_catalog
from cqrs_shared.service_http import operations_router
from cqrs_shared.tracing import http_telemetry
from query_svc.access import RememberingVerifier, authorizer_for
from query_svc.consistency import ConsistencyWaiter
from query_svc.cursor import CursorCodec
from query_svc.database import Reader
from query_svc.declarations import Catalog
from query_svc.engine import ReadEngine
from query_svc.fast_reads import FastReads
from query_svc.hub import ChangeHub
from query_svc.listener import ProjectionListener
from query_svc.metrics import RequestMetrics, RequestRecorder
from query_svc.parameters import collection_parameters, read_options_dependency
from query_svc.routes import build_router
from query_svc.settings import QuerySettings
from query_svc.sql import relation
from query_svc.stream import Streams, StreamSettings

log = logging.getLogger(__name__)


def _cursor_codec(settings: QuerySettings) -> CursorCodec:
    if settings.cursor_secret is not None:
        return CursorCodec(settings.cursor_secret.get_secret_value().encode())
    log.warning("QUERY_SVC_CURSOR_SECRET is not set: cursors are signed with a per-process key")
    return CursorCodec(secrets.token_bytes(32))


def _stream_settings(settings: QuerySettings) -> StreamSettings:
    return StreamSettings(
        heartbeat_seconds=settings.sse_heartbeat_seconds,
        send_timeout_seconds=settings.sse_send_timeout_seconds,
        retry_ms=settings.sse_retry_ms,
        visibility_timeout_seconds=settings.wait_default_ms / 1000,
        max_subscribers=settings.sse_max_subscribers,
        read_concurrency=max(1, settings.pool_size // 2),
    )


def _reader(settings: QuerySettings) -> Reader:
    return Reader(
        settings.database_url.get_secret_value(),
        min_size=settings.pool_min_size,
        max_size=settings.pool_size,
        statement_timeout_ms=settings.statement_timeout_ms,
        acquire_timeout=settings.pool_acquire_timeout_ms / 1000,
        connect=settings.connect_options(),
    )


def _readiness(reader: Reader, catalog: Catalog) -> Callable[[], Awaitable[None]]:
    async def views_ready() -> None:
        async with reader.connection() as connection:
            for view in catalog.views:
                if await connection.fetchval("SELECT to_regclass($1)", relation(view)) is None:
                    raise RuntimeError(f"{relation(view)} does not exist yet")

    return views_ready


class QueryApp(FastAPI):
    """The FastAPI app with `fast_reads` in front of it: an HTTP request goes to `fast_reads`
    first, which hands what it does not answer itself to `full_app`, FastAPI's own handling.
    In front rather than as a middleware, the hot reads skip every ASGI layer of the app (error,
    body-limit and telemetry middlewares, metrics), which were a tenth of a point read's CPU."""

    fast_reads: FastReads | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_reads is None or scope["type"] != "http":
            await super().__call__(scope, receive, send)
        else:
            await self.fast_reads(scope, receive, send)

    async def full_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    settings: QuerySettings | None = None, *, catalog: Catalog | None = None, **overrides: Any
) -> QueryApp:
    """The query service for `catalog` (default: the configured projections' read models). Nothing
    connects until start-up."""
    settings = settings or QuerySettings(**overrides)
    catalog = catalog or merged_catalog(definition_named(name) for name in settings.projections)
    reader = _reader(settings)
    hub = ChangeHub(catalog.projections)
    listener = ProjectionListener(
        settings.listen_dsn,
        settings.notify_channel,
        hub,
        keepalive_seconds=settings.listener_keepalive_seconds,
        connect=settings.connect_options(),
    )
    engine = ReadEngine(reader, ConsistencyWaiter(hub, reader), _cursor_codec(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await reader.start()
        listener.start()
        try:
            yield
        finally:
            await listener.stop()
            await reader.close()

    app = QueryApp(
        title="query-svc",
        version="0.2.0",
        description="Read models over HTTP: declared views, keyset pages, read-your-writes, live streams.",
        lifespan=lifespan,
        telemetry=http_telemetry(),
    )
    install_problem_handlers(app)
    read_options = read_options_dependency(settings.wait_default_ms, settings.wait_max_ms)
    authorizer = authorizer_for(RememberingVerifier(TokenVerifier(settings)))
    streams = Streams(engine, hub, _stream_settings(settings))
    specs = {view.name: collection_parameters(view) for view in catalog.views}
    reads = build_router(catalog, engine, authorizer, read_options, streams, specs)
    app.include_router(reads)
    app.fast_reads = FastReads(
        app.full_app,
        owner=app,
        metrics=RequestRecorder(),
        catalog=catalog,
        specs=specs,
        engine=engine,
        authorizer=authorizer,
        read_options=read_options,
        handlers=app.exception_handlers,
        routes=reads.routes,
    )
    app.add_middleware(RequestMetrics)
    app.include_router(operations_router({"postgres": _readiness(reader, catalog)}))
    app.state.components = {"reader": reader, "hub": hub, "listener": listener, "engine": engine}
    return app
