"""A session the server ends is never reused: not by a read, not by the listener.

When PostgreSQL ends an idle session (57P01 on a fast shutdown or `pg_terminate_backend`, 57P02
after a crash) it sends a FATAL error and then closes the socket. asyncpg handles the two
separately: reading the FATAL while no statement runs puts the connection in the state it uses to
skip input after an error (2), and only the EOF marks it closed. In between, the pool still hands
the connection out, and its next statement fails with `InternalClientError: cannot switch to state
12; another operation (2) is in progress` (11 when the statement was not prepared yet): the
"operation in progress" is no concurrent use, it is the dead session's error. A proxy that holds
back the EOF widens that window, normally a loop iteration or two, to seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from cqrs_shared.read_models.shop import SHOP
from query_svc.app import create_app
from query_svc.hub import ChangeHub
from query_svc.listener import ProjectionListener
from query_svc.settings import QuerySettings
from query_svc.testing import NOTIFY_CHANNEL, serve_live, wait_until
from query_svc.testing.outages import PrivatePostgres, TcpProxy

pytestmark = pytest.mark.integration

HELD_EOF_SECONDS = 4.0


async def _end_sessions(dsn: str, application_name: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        ended = await connection.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            application_name,
        )
    finally:
        await connection.close()
    assert ended == 1, f"expected one {application_name} session, ended {ended}"


async def _fatal_read_eof_held(proxy: TcpProxy) -> None:
    await wait_until(lambda: proxy.holding == 1)
    # The FATAL is in the client's socket already; the loop reads it on its next turns.
    await asyncio.sleep(0.05)


async def test_a_pooled_session_the_server_ended_answers_503_once_and_is_not_handed_out_again(
    running: PrivatePostgres, settings_for: Callable[..., QuerySettings], readers: dict[str, str]
) -> None:
    proxy = TcpProxy(running.port, hold_eof=HELD_EOF_SECONDS)
    await proxy.start()
    app = create_app(settings_for(proxy.dsn(running.dsn), pool_min_size=1, pool_size=1))
    try:
        async with serve_live(app) as url, httpx.AsyncClient(base_url=url, headers=readers) as client:
            assert (await client.get("/v1/customers/c-1")).status_code == 200
            await _end_sessions(running.dsn, "query-svc")
            await _fatal_read_eof_held(proxy)
            ended = await client.get("/v1/customers/c-1")
            assert (ended.status_code, ended.headers.get("retry-after")) == (503, "1")
            # The EOF is still held back, so only discarding the dead session makes this read work.
            assert proxy.holding == 1
            assert (await client.get("/v1/customers/c-1")).status_code == 200
            proxy.hold_eof = 0.0  # the app's own closes at shutdown need not wait
    finally:
        await proxy.close()


async def test_the_listener_reconnects_when_its_session_is_ended_between_keepalives(
    running: PrivatePostgres,
) -> None:
    proxy = TcpProxy(running.port, hold_eof=HELD_EOF_SECONDS)
    await proxy.start()
    listener = ProjectionListener(
        proxy.dsn(running.dsn), NOTIFY_CHANNEL, ChangeHub([SHOP]), keepalive_seconds=0.05
    )
    listener.start()
    try:
        await wait_until(listener.connected.is_set)
        ended_pid = listener.backend_pid
        await _end_sessions(running.dsn, "query-svc-listener")
        await _fatal_read_eof_held(proxy)
        # The keep-alive meets the dead session long before its EOF: that must mean reconnecting.
        await wait_until(lambda: listener.backend_pid not in (None, ended_pid), seconds=HELD_EOF_SECONDS / 2)
        assert listener.connected.is_set()
        proxy.hold_eof = 0.0
    finally:
        await listener.stop()
        await proxy.close()
