"""`python -m command_svc` / `command-svc`: serve the command service with uvicorn."""

from __future__ import annotations

import uvicorn

from command_svc.app import create_app
from command_svc.settings import CommandServiceSettings
from cqrs_shared.logging_setup import configure_logging


def main() -> None:
    settings = CommandServiceSettings()
    configure_logging("command-svc", settings.log_level, settings.log_format)
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


if __name__ == "__main__":
    main()
