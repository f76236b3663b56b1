"""Liveness: `/healthz` fails while a loop is silent past its bound or a wedge is reported."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from cqrs_shared.liveness import LivenessMonitor
from cqrs_shared.service_http import operations_router


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def client_for(liveness: LivenessMonitor) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(operations_router({}, liveness=liveness))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_healthz_fails_while_a_loop_is_silent_past_its_bound_and_recovers_when_it_beats() -> None:
    clock = Clock()
    liveness = LivenessMonitor(clock)
    beat = liveness.heartbeat("door", max_silence_seconds=10)
    http = client_for(liveness)
    clock.now = 10
    assert (await http.get("/healthz")).status_code == 200
    clock.now = 10.5
    stalled = await http.get("/healthz")
    assert stalled.status_code == 503
    assert stalled.headers["content-type"] == "application/problem+json"
    assert "door" in stalled.json()["checks"]
    beat.beat()
    assert (await http.get("/healthz")).status_code == 200


async def test_a_retired_loop_no_longer_counts_and_a_wedge_counts_until_cleared() -> None:
    clock = Clock()
    liveness = LivenessMonitor(clock)
    liveness.heartbeat("relay", max_silence_seconds=1)
    clock.now = 5
    liveness.retire("relay")
    http = client_for(liveness)
    assert (await http.get("/healthz")).status_code == 200
    liveness.report_wedge("client", "fails while the server answers")
    assert (await http.get("/healthz")).json()["checks"] == {"client": "fails while the server answers"}
    liveness.clear_wedge("client")
    assert (await http.get("/healthz")).status_code == 200
