"""Readiness as metrics: every scrape of `/metrics` runs the checks, so the gauges are never stale."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from cqrs_shared.service_http import operations_router


class Dependency:
    def __init__(self) -> None:
        self.answers = True

    async def check(self) -> None:
        if not self.answers:
            raise ConnectionError("refused")


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_a_scrape_reports_readiness_per_dependency_and_for_the_service() -> None:
    store, broker = Dependency(), Dependency()
    app = FastAPI()
    app.include_router(operations_router({"test-store": store.check, "test-broker": broker.check}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
        assert (await http.get("/metrics")).status_code == 200
        assert gauge("cqrs_service_ready") == 1
        assert gauge("cqrs_dependency_up", dependency="test-store") == 1

        broker.answers = False
        scraped = (await http.get("/metrics")).text
        assert 'cqrs_dependency_up{dependency="test-broker"} 0.0' in scraped
        assert "cqrs_service_ready 0.0" in scraped
        assert gauge("cqrs_dependency_up", dependency="test-store") == 1

        broker.answers = True
        assert (await http.get("/readyz")).status_code == 200
        assert gauge("cqrs_service_ready") == 1
        assert gauge("cqrs_dependency_up", dependency="test-broker") == 1
