"""`python -m projector_svc` / `projector-svc`: run the projector and its operations port."""

from __future__ import annotations

import uvicorn

from cqrs_shared.logging_setup import configure_logging
from cqrs_shared.tracing import configure_tracing, shutdown_tracing
from projector_svc import gc_tuning
from projector_svc.app import create_app
from projector_svc.settings import ProjectorSettings


def main() -> None:
    settings = ProjectorSettings()
    configure_logging("projector-svc", settings.log_level, settings.log_format)
    if configure_tracing("projector-svc"):
        # Before the pool exists: the instrumentation wraps asyncpg's connection class.
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        # The instrumentation's constructor carries no annotations.
        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    gc_tuning.tune()
    # Pinned: the workspace installs uvloop and httptools for query-svc, and uvicorn's "auto" would
    # switch the projector's runtime to them untested (its figures are measured on asyncio + h11).
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        loop="asyncio",
        http="h11",
    )
    shutdown_tracing()


if __name__ == "__main__":
    main()
