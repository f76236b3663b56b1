"""`python -m projector_svc` / `projector-svc`: run the projector and its operations port."""

from __future__ import annotations

import uvicorn

from cqrs_shared.logging_setup import configure_logging
from projector_svc.app import create_app
from projector_svc.settings import ProjectorSettings


def main() -> None:
    settings = ProjectorSettings()
    configure_logging("projector-svc", settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
