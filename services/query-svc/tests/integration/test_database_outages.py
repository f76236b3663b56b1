"""PostgreSQL restarting, crashing or cut off: every answer is 200, 404 or 503 with Retry-After, never
a 500, and reads and readiness recover by themselves within seconds of the database being back.

These tests run their own PostgreSQL cluster (and a TCP proxy in front of it): the shared server
others test against is never stopped.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from cqrs_shared.consistency import ConsistencyToken
from query_svc.app import create_app
from query_svc.listener import ProjectionListener
from query_svc.settings import QuerySettings
from query_svc.testing import serve_in_process, serve_live, wait_until
from query_svc.testing.outages import PrivatePostgres, TcpProxy

pytestmark = pytest.mark.integration

TOKEN = ConsistencyToken("customer", "c-1", 1).encode()
#: Route name, path, and the status it answers while the database is up.
ROUTES = [
    ("item", "/v1/customers/c-1", 200),
    ("missing", "/v1/customers/nobody", 404),
    ("page", "/v1/customers?limit=5", 200),
    ("relation", "/v1/customers/c-1/orders", 200),
    ("token", f"/v1/customers/c-1?after={TOKEN}", 200),
    ("stream", "/v1/customers/c-1/stream", 200),
    ("readyz", "/readyz", 200),
]
RECOVERY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    route: str
    at: float
    status: int
    retry_after: str | None


def _app(settings_for: Callable[..., QuerySettings], dsn: str, **overrides: Any) -> FastAPI:
    return create_app(
        settings_for(
            dsn,
            statement_timeout_ms=1000,
            pool_acquire_timeout_ms=500,
            listener_keepalive_seconds=1.0,
            **overrides,
        )
    )


async def _answer(client: httpx.AsyncClient, route: str, path: str, headers: dict[str, str]) -> Answer:
    async with client.stream("GET", path, headers=headers) as response:
        if route != "stream" or response.status_code != 200:
            await response.aread()
        # A stream that opened is left at once: only its initial read is under test.
        return Answer(route, time.monotonic(), response.status_code, response.headers.get("retry-after"))


class Load:
    """Clients reading every route in a loop until stopped; every answer is kept."""

    def __init__(self, base_url: str, headers: dict[str, str], *, clients: int = 3) -> None:
        self.answers: list[Answer] = []
        self._stop = asyncio.Event()
        self._base_url = base_url
        self._headers = headers
        self._tasks = [asyncio.create_task(self._read(offset)) for offset in range(clients)]

    async def _read(self, offset: int) -> None:
        async with httpx.AsyncClient(base_url=self._base_url, timeout=10) as client:
            for route, path, _status in itertools.islice(itertools.cycle(ROUTES), offset, None):
                if self._stop.is_set():
                    return
                self.answers.append(await _answer(client, route, path, self._headers))

    def recovered_since(self, since: float) -> bool:
        """Every route has answered as it does while the database is up, after `since`."""
        healthy = {route: status for route, _path, status in ROUTES}
        seen = {a.route for a in self.answers if a.at > since and a.status == healthy[a.route]}
        return seen == set(healthy)

    def unavailable_since(self, since: float) -> bool:
        """Every route (readiness included) has answered 503 after `since`."""
        return {a.route for a in self.answers if a.at > since and a.status == 503} == {
            r for r, _p, _s in ROUTES
        }

    async def stop(self) -> list[Answer]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.answers


def assert_never_a_server_error(answers: list[Answer]) -> None:
    unexpected = {
        (a.route, a.status)
        for a in answers
        if a.status not in (200, 503) and (a.route, a.status) != ("missing", 404)
    }
    assert not unexpected, f"answers other than 200, 404 and 503: {sorted(unexpected)}"
    # Readiness (the shared operations router) tells the orchestrator, not a client that retries.
    assert all(a.retry_after for a in answers if a.status == 503 and a.route != "readyz"), (
        "a read answered 503 without Retry-After"
    )


async def through_outage(
    app: FastAPI, headers: dict[str, str], outage: Callable[[Load], Awaitable[None]]
) -> list[Answer]:
    """Read every route in a loop while `outage` runs; return once each recovered after it ended."""
    async with serve_live(app) as url:
        listener: ProjectionListener = app.state.components["listener"]
        await wait_until(listener.connected.is_set)
        load = Load(url, headers)
        try:
            await wait_until(lambda: load.recovered_since(0))
            await outage(load)
            back = time.monotonic()
            await wait_until(lambda: load.recovered_since(back), seconds=RECOVERY_SECONDS)
            await wait_until(listener.connected.is_set, seconds=RECOVERY_SECONDS)
        finally:
            answers = await load.stop()
    return answers


@pytest.mark.parametrize("mode", ["fast", "kill"])
async def test_reads_answer_503_while_postgresql_restarts_and_recover_within_seconds(
    running: PrivatePostgres,
    settings_for: Callable[..., QuerySettings],
    readers: dict[str, str],
    mode: str,
) -> None:
    async def restart(load: Load) -> None:
        stopped = time.monotonic()
        await (running.stop("fast") if mode == "fast" else running.kill())
        await wait_until(lambda: load.unavailable_since(stopped))
        await running.start()

    answers = await through_outage(_app(settings_for, running.dsn), readers, restart)
    assert_never_a_server_error(answers)


async def test_reads_answer_503_while_postgresql_recovers_from_a_crashed_backend(
    running: PrivatePostgres, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    async def crash(_load: Load) -> None:
        # The postmaster ends every other session (57P02) and refuses connections while it
        # recovers (57P03); the restart is quick, so the load may or may not see a 503.
        os.kill(await _reader_backend(running.dsn), signal.SIGKILL)
        await running.wait_accepting()

    answers = await through_outage(_app(settings_for, running.dsn), readers, crash)
    assert_never_a_server_error(answers)


async def test_a_cut_connection_answers_503_and_reads_recover_once_it_is_restored(
    running: PrivatePostgres, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    proxy = TcpProxy(running.port)
    await proxy.start()

    async def cut(load: Load) -> None:
        cut_at = time.monotonic()
        await proxy.cut()
        await wait_until(lambda: load.unavailable_since(cut_at))
        await proxy.restore()

    try:
        answers = await through_outage(_app(settings_for, proxy.dsn(running.dsn)), readers, cut)
    finally:
        await proxy.close()
    assert_never_a_server_error(answers)


async def test_a_half_open_connection_answers_503_in_bounded_time_and_reads_recover(
    running: PrivatePostgres, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    proxy = TcpProxy(running.port)
    await proxy.start()

    async def stall(load: Load) -> None:
        # Nothing is refused and nothing answers: only the client's own time limits end a read.
        stalled = time.monotonic()
        proxy.stall()
        await wait_until(lambda: load.unavailable_since(stalled))
        await proxy.restore()

    try:
        answers = await through_outage(_app(settings_for, proxy.dsn(running.dsn)), readers, stall)
    finally:
        await proxy.close()
    assert_never_a_server_error(answers)


async def test_a_service_started_while_postgresql_is_unreachable_answers_503_until_it_is_back(
    running: PrivatePostgres, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    proxy = TcpProxy(running.port)  # not listening yet: connections are refused
    app = _app(settings_for, proxy.dsn(running.dsn))
    try:
        async with serve_in_process(app) as client:
            item = await client.get("/v1/customers/c-1", headers=readers)
            assert (item.status_code, item.headers.get("retry-after")) == (503, "1")
            assert (await client.get("/readyz")).status_code == 503
            await proxy.start()
            async with asyncio.timeout(RECOVERY_SECONDS):
                await _until_answered(client, "/v1/customers/c-1", readers)
                await _until_answered(client, "/readyz", {})
                await app.state.components["listener"].connected.wait()
    finally:
        await proxy.close()


async def _until_answered(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    """Until `path` answers 200 (the caller bounds the wait)."""
    while (await client.get(path, headers=headers)).status_code != 200:  # noqa: ASYNC110  # polled over HTTP
        await asyncio.sleep(0.05)


async def _reader_backend(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        pid = await connection.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'query-svc' LIMIT 1"
        )
    finally:
        await connection.close()
    if pid is None:
        raise AssertionError("no reader session to kill")
    return int(pid)
