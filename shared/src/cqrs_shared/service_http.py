"""The HTTP endpoints every service has: `/healthz` (alive), `/readyz` (dependencies answer), `/metrics`.

`/metrics` runs the readiness checks too before it answers, so `cqrs_service_ready` and
`cqrs_dependency_up` are as fresh as the scrape even where nothing probes `/readyz` (alert rules use
them: a replica that is up but not ready is invisible to Prometheus' `up`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from cqrs_shared.liveness import LivenessMonitor
from cqrs_shared.problems import problem_response

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]

SERVICE_READY = Gauge("cqrs_service_ready", "1 while every dependency of this process answers its check")
DEPENDENCY_UP = Gauge("cqrs_dependency_up", "1 while a dependency answers its check", ["dependency"])


class Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def service_lifespan(service: Startable) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that starts `service` before serving and stops it afterwards, even on error."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    return lifespan


async def _bounded(check: ReadinessCheck, seconds: float) -> None:
    # `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` can swallow a cancellation.
    async with asyncio.timeout(seconds):
        await check()


def operations_router(
    checks: Mapping[str, ReadinessCheck],
    *,
    liveness: LivenessMonitor | None = None,
    timeout_seconds: float = 2.0,
) -> APIRouter:
    """Health, readiness and metrics routes; readiness runs every check concurrently with a timeout.

    `/healthz` fails (503) while `liveness` reports a stalled loop or a wedged client: that is the
    orchestrator's cue to restart the process. It never calls a dependency, so an outage elsewhere
    cannot make every replica restart at once.
    """
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive and making progress", response_model=None)
    async def healthz() -> JSONResponse:
        problems = liveness.problems() if liveness is not None else {}
        if problems:
            log.error("not live: %s", problems)
            return problem_response(
                503, "not-live", "Not live", "the process stopped making progress", checks=problems
            )
        return JSONResponse({"status": "ok"})

    async def readiness() -> dict[str, str]:
        """Run every check concurrently (each bounded); the failures by check name."""
        names = list(checks)
        results = await asyncio.gather(
            *(_bounded(checks[n], timeout_seconds) for n in names), return_exceptions=True
        )
        failures = {
            n: f"{type(r).__name__}: {r}"
            for n, r in zip(names, results, strict=True)
            if isinstance(r, BaseException)
        }
        for name in names:
            DEPENDENCY_UP.labels(name).set(0 if name in failures else 1)
        SERVICE_READY.set(0 if failures else 1)
        return failures

    @router.get("/readyz", summary="Every dependency answers", response_model=None)
    async def readyz() -> JSONResponse:
        names = list(checks)
        failures = await readiness()
        if failures:
            log.warning("not ready: %s", failures)
            return problem_response(
                503,
                "not-ready",
                "Not ready",
                "a dependency does not answer",
                headers={"Retry-After": "1"},
                checks=failures,
            )
        return JSONResponse({"status": "ready", "checks": dict.fromkeys(names, "ok")})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        await readiness()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
