"""Wiring of the command service: HTTP routes, error handling and the lifespan of `CommandService`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from command_svc.domain.decider import AggregateDefinition
from command_svc.domain.shop import SHOP_AGGREGATES
from command_svc.http_door import command_router
from command_svc.pipeline import IntakePausedError
from command_svc.registry import CommandRegistry
from command_svc.service import CommandService
from command_svc.settings import CommandServiceSettings
from cqrs_shared.problems import install_problem_handlers, problem_response
from cqrs_shared.service_http import operations_router, service_lifespan
from cqrs_shared.tracing import http_telemetry
from cqrs_shared.write_store import WriteStoreUnavailableError

log = logging.getLogger(__name__)


def create_app(
    settings: CommandServiceSettings | None = None,
    *,
    aggregates: Sequence[AggregateDefinition[Any]] = SHOP_AGGREGATES,
    **overrides: Any,
) -> FastAPI:
    """Build the service. Nothing connects until the app's lifespan starts."""
    settings = settings or CommandServiceSettings(**overrides)
    service = CommandService(settings, CommandRegistry(aggregates))

    app = FastAPI(
        title="command-svc",
        version="0.1.0",
        lifespan=service_lifespan(service),
        telemetry=http_telemetry(),
    )
    install_problem_handlers(app)
    # Starlette types handlers as taking any Exception; this one is registered for its own class.
    app.add_exception_handler(WriteStoreUnavailableError, _store_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(IntakePausedError, _intake_paused)  # type: ignore[arg-type]
    app.include_router(
        command_router(
            lambda: (service.pipeline, service.results), max_command_bytes=settings.max_command_bytes
        )
    )

    checks = {
        "write_store": service.store_ready,
        "kafka": service.kafka_ready,
        "outbox_relay": service.relay_ready,
    }
    app.include_router(operations_router(checks, liveness=service.liveness))
    app.state.service = service
    return app


async def _intake_paused(request: Request, exc: IntakePausedError) -> JSONResponse:
    log.warning("intake paused on %s: %s", request.url.path, exc)
    return problem_response(
        503,
        "unavailable",
        "Intake paused",
        f"nothing was stored: {exc}",
        headers={"Retry-After": "1"},
        instance=request.url.path,
    )


async def _store_unavailable(request: Request, exc: WriteStoreUnavailableError) -> JSONResponse:
    # The outcome is unknown (the write may or may not have landed); a repeat with the same
    # command id is safe and returns the stored outcome if there is one.
    log.warning("write store unavailable on %s: %s", request.url.path, exc)
    return problem_response(
        503,
        "unavailable",
        "Write store unavailable",
        "the outcome is unknown; send the same command (same command_id) again",
        headers={"Retry-After": "1"},
        instance=request.url.path,
    )
