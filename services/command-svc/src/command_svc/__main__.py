"""`python -m command_svc` / `command-svc`: serve the command service with uvicorn."""

from __future__ import annotations

import uvicorn

from command_svc.app import create_app
from command_svc.settings import CommandServiceSettings
from cqrs_shared.logging_setup import configure_logging
from cqrs_shared.tracing import configure_tracing, shutdown_tracing


def main() -> None:
    settings = CommandServiceSettings()
    configure_logging("command-svc", settings.log_level, settings.log_format)
    if configure_tracing("command-svc"):
        # Before any client exists: PyMongo's command listeners are registered per new client.
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

        PymongoInstrumentor().instrument()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=20,
        # Pinned: the workspace installs uvloop and httptools for query-svc, and uvicorn's "auto"
        # would switch this service to them untested (its pipeline is measured on asyncio + h11).
        loop="asyncio",
        http="h11",
    )
    shutdown_tracing()


if __name__ == "__main__":
    main()
