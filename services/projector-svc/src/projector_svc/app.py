"""Wiring of the projector: the projector service inside the HTTP operations port's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from cqrs_shared.problems import install_problem_handlers
from cqrs_shared.service_http import operations_router
from projector_svc.projection import Projection
from projector_svc.service import ProjectorService
from projector_svc.settings import ProjectorSettings


def create_app(
    settings: ProjectorSettings | None = None, *, projection: Projection | None = None, **overrides: Any
) -> FastAPI:
    settings = settings or ProjectorSettings(**overrides)
    service = ProjectorService(settings, projection)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="projector-svc", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)
    app.include_router(
        operations_router({"postgres": service.check_database, "kafka": service.check_projecting})
    )
    app.state.service = service
    return app
