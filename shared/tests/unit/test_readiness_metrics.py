"""Readiness as metrics: the router's own loop and every `/readyz` keep the gauges fresh, and a
scrape of `/metrics` never calls a dependency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from cqrs_shared.service_http import operations_router


class Dependency:
    def __init__(self) -> None:
        self.answers = True
        self.calls = 0

    async def check(self) -> None:
        self.calls += 1
        if not self.answers:
            raise ConnectionError("refused")


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110  # a gauge offers no event to wait on
            await asyncio.sleep(0.01)


async def test_the_refresh_loop_reports_readiness_per_dependency_and_for_the_service() -> None:
    store, broker = Dependency(), Dependency()
    started: list[str] = []

    @asynccontextmanager
    async def own_lifespan(_app: FastAPI) -> AsyncIterator[None]:
        started.append("service")  # as the services' apps start their service in their own lifespan
        yield

    app = FastAPI(lifespan=own_lifespan)
    app.include_router(
        operations_router({"test-store": store.check, "test-broker": broker.check}, refresh_seconds=0.02)
    )
    async with app.router.lifespan_context(app):
        assert started == ["service"]
        await until(lambda: gauge("cqrs_service_ready") == 1)
        assert gauge("cqrs_dependency_up", dependency="test-store") == 1

        broker.answers = False
        await until(lambda: gauge("cqrs_service_ready") == 0)
        assert gauge("cqrs_dependency_up", dependency="test-broker") == 0
        assert gauge("cqrs_dependency_up", dependency="test-store") == 1

        broker.answers = True
        await until(lambda: gauge("cqrs_service_ready") == 1)
        assert gauge("cqrs_dependency_up", dependency="test-broker") == 1
    calls = store.calls
    await asyncio.sleep(0.1)
    assert store.calls == calls  # the loop ended with the lifespan


async def test_a_scrape_calls_no_dependency_and_readyz_refreshes_the_gauges() -> None:
    store = Dependency()
    app = FastAPI()
    app.include_router(operations_router({"test-scraped-store": store.check}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
        for _ in range(3):
            assert (await http.get("/metrics")).status_code == 200
        assert store.calls == 0

        store.answers = False
        refused = await http.get("/readyz")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        scraped = (await http.get("/metrics")).text
        assert 'cqrs_dependency_up{dependency="test-scraped-store"} 0.0' in scraped
        assert "cqrs_service_ready 0.0" in scraped
        assert store.calls == 1
