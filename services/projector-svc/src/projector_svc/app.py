"""Wiring of the projector: the projector service inside the HTTP operations port's lifespan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from cqrs_shared.problems import install_problem_handlers
from cqrs_shared.read_models import ProjectionDefinition
from cqrs_shared.service_http import operations_router, service_lifespan
from cqrs_shared.tracing import http_telemetry
from projector_svc.declared import DeclaredProjection
from projector_svc.service import ProjectorService
from projector_svc.settings import ProjectorSettings


def create_app(
    settings: ProjectorSettings | None = None,
    *,
    definitions: Sequence[ProjectionDefinition] = (),
    **overrides: Any,
) -> FastAPI:
    """The projector replica behind its operations port, running the projections named in the
    settings, or the given `definitions` (a test's own domain)."""
    settings = settings or ProjectorSettings(**overrides)
    service = ProjectorService(settings, [DeclaredProjection(d) for d in definitions])

    app = FastAPI(
        title="projector-svc",
        version="0.1.0",
        lifespan=service_lifespan(service),
        telemetry=http_telemetry(),
    )
    install_problem_handlers(app)
    app.include_router(
        operations_router(
            {"postgres": service.check_database, "kafka": service.check_projecting},
            liveness=service.liveness,
        )
    )
    app.state.service = service
    return app
