"""`python -m query_svc` / `query-svc`: serve the query API."""

from __future__ import annotations

import uvicorn

from cqrs_shared.logging_setup import configure_logging
from cqrs_shared.tracing import configure_tracing, shutdown_tracing
from query_svc.app import create_app
from query_svc.settings import QuerySettings


def main() -> None:
    settings = QuerySettings()
    configure_logging("query-svc", settings.log_level, settings.log_format)
    if configure_tracing("query-svc"):
        # Before the pool exists: the instrumentation wraps asyncpg's connection class.
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        # The instrumentation's constructor carries no annotations.
        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    # uvloop and httptools: the profile of a point read spent about half its CPU in asyncio's
    # selector transport and h11's pure-Python parser (bench/README.md, query path).
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        loop="uvloop",
        http="httptools",
    )
    shutdown_tracing()


if __name__ == "__main__":
    main()
