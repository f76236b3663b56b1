"""The HTTP endpoints every service has: `/healthz` (alive), `/readyz` (dependencies answer), `/metrics`.

Readiness is also exported as gauges (`cqrs_service_ready`, `cqrs_dependency_up`), which alert rules
use: a replica that is up but not ready is invisible to Prometheus' `up`. A loop in the router's
lifespan refreshes them every few seconds, and every `/readyz` probe does too; `/metrics` itself only
renders the registry. A scrape that pinged every dependency would multiply the load on them by the
number of scrapers, and a slow dependency would make the scrape itself time out, so Prometheus
would see the replica as down exactly when it most needs its figures.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class ReadinessProbe:
    """Runs every readiness check concurrently (each bounded by a timeout) and publishes the result
    as the readiness gauges; `run` repeats that until cancelled."""

    def __init__(self, checks: Mapping[str, ReadinessCheck], timeout_seconds: float) -> None:
        self._checks = dict(checks)
        self._timeout = timeout_seconds

    async def refresh(self) -> dict[str, str]:
        """The failures by check name (empty: ready); sets the gauges to match."""
        names = list(self._checks)
        results = await asyncio.gather(
            *(_bounded(self._checks[n], self._timeout) for n in names), return_exceptions=True
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

    async def run(self, interval_seconds: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a check that escapes its own error handling must not end the loop
                log.exception("readiness refresh failed")
            await asyncio.sleep(interval_seconds)


def operations_router(
    checks: Mapping[str, ReadinessCheck],
    *,
    liveness: LivenessMonitor | None = None,
    timeout_seconds: float = 2.0,
    refresh_seconds: float = 5.0,
) -> APIRouter:
    """Health, readiness and metrics routes; readiness runs every check concurrently with a timeout.

    `/healthz` fails (503) while `liveness` reports a stalled loop or a wedged client: that is the
    orchestrator's cue to restart the process. It never calls a dependency, so an outage elsewhere
    cannot make every replica restart at once. The router's lifespan refreshes the readiness
    gauges every `refresh_seconds` (the app including the router runs it after its own start-up).
    """
    probe = ReadinessProbe(checks, timeout_seconds)

    @asynccontextmanager
    async def refresh_readiness(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(probe.run(refresh_seconds), name="readiness-gauges")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    router = APIRouter(tags=["operations"], lifespan=refresh_readiness)

    @router.get("/healthz", summary="The process is alive and making progress", response_model=None)
    async def healthz() -> JSONResponse:
        problems = liveness.problems() if liveness is not None else {}
        if problems:
            log.error("not live: %s", problems)
            return problem_response(
                503, "not-live", "Not live", "the process stopped making progress", checks=problems
            )
        return JSONResponse({"status": "ok"})

    @router.get("/readyz", summary="Every dependency answers", response_model=None)
    async def readyz() -> JSONResponse:
        failures = await probe.refresh()
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
        return JSONResponse({"status": "ready", "checks": dict.fromkeys(checks, "ok")})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
