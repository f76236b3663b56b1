"""`python -m query_svc` / `query-svc`: serve the query API (`QUERY_SVC_WORKERS` processes)."""

from __future__ import annotations

import atexit
import logging

import uvicorn
from fastapi import FastAPI

from cqrs_shared.logging_setup import configure_logging
from cqrs_shared.tracing import configure_tracing, shutdown_tracing
from query_svc.app import create_app
from query_svc.http_protocol import CoalescingHttpToolsProtocol
from query_svc.settings import QuerySettings


def serving_app() -> FastAPI:
    """The app as one server process runs it, logging and tracing set up in that process: a worker
    is a fresh interpreter, so nothing the supervisor configured reaches it."""
    settings = QuerySettings()
    configure_logging("query-svc", settings.log_level, settings.log_format)
    if configure_tracing("query-svc"):
        # Before the pool exists: the instrumentation wraps asyncpg's connection class.
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        # The instrumentation's constructor carries no annotations.
        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
        # Flushes the spans left when this process ends (a no-op once flushed).
        atexit.register(shutdown_tracing)
    return create_app(settings)


def main() -> None:
    settings = QuerySettings()
    # uvloop and httptools: the profile of a point read spent about half its CPU in asyncio's
    # selector transport and h11's pure-Python parser (bench/README.md, the query path).
    if settings.workers == 1:
        app: FastAPI | str = serving_app()
    else:
        configure_logging("query-svc", settings.log_level, settings.log_format)
        app = "query_svc.__main__:serving_app"
    uvicorn.run(
        app,
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        log_config=None,
        # An access line is formatted for every response (its arguments even when the level drops
        # it, a path quoted per request): only when the configured level shows them.
        access_log=logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO),
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
    )


if __name__ == "__main__":
    main()
