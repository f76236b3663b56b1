"""Helpers for testing a query service against a real database: serving it, and playing projector.

- `serve_in_process(app)`: runs the lifespan and yields an httpx client over ASGI (no sockets).
- `serve_live(app)`: a real uvicorn server on a free loopback port in the running event loop, for
  what ASGI transports cannot do (streams, slow clients); `serve_in_thread(app)` runs one in a
  thread with its own loop, for synchronous clients (schemathesis).
- `insert_rows`, `record_applied`, `record_offsets`: write a build schema the way the projector
  does (rows, applied versions with their `pg_notify`, partition offsets), using declarations
  only, so a test can stand in for the projector without running Kafka.
- `wait_until(condition)`: order a test on observable state (a stream subscribed, a read parked
  on its notification) rather than on sleeps, which a loaded machine outlasts.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from cqrs_shared.read_models.notifications import CHANNEL, encode_changes
from cqrs_shared.testing.tcp_proxy import free_port
from query_svc.database import Connection
from query_svc.declarations import ColumnType, Projection, View
from query_svc.http_protocol import CoalescingHttpToolsProtocol

#: Where the projector notifies (the shared contract's channel).
NOTIFY_CHANNEL = CHANNEL


@asynccontextmanager
async def serve_in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query.test") as client,
    ):
        yield client


async def wait_until(condition: Callable[[], bool], *, seconds: float = 10.0) -> None:
    """Return once `condition()` holds; TimeoutError if it does not within `seconds`."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110  # the state has no event to wait on
            await asyncio.sleep(0.002)


def _server(app: FastAPI, port: int) -> uvicorn.Server:
    """A uvicorn server for `app` with the HTTP protocol the service runs (`python -m query_svc`)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        ws="none",
        http=CoalescingHttpToolsProtocol,
    )
    return uvicorn.Server(config)


@asynccontextmanager
async def serve_live(app: FastAPI) -> AsyncIterator[str]:
    """The app behind a real HTTP server on 127.0.0.1; yields its base URL."""
    port = free_port()
    server = _server(app, port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextmanager
def serve_in_thread(app: FastAPI, *, timeout: float = 30.0) -> Iterator[str]:
    """The app behind a real HTTP server in a background thread; yields its base URL."""
    port = free_port()
    server = _server(app, port)
    thread = threading.Thread(target=server.run, name="query-svc-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def _copy_value(column_type: ColumnType, value: Any) -> Any:
    if value is not None and column_type is ColumnType.JSON:
        return json.dumps(value)
    return value


async def insert_rows(
    connection: Connection, schema: str, view: View, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert rows of `view` into its table in build `schema` (COPY: 10,000 rows in milliseconds)."""
    columns = [c.name for c in view.columns]
    records = [tuple(_copy_value(c.type, row.get(c.name)) for c in view.columns) for row in rows]
    # JSON values travel as text: the connection is expected to have no JSON codec of its own.
    await connection.copy_records_to_table(view.name, records=records, columns=columns, schema_name=schema)


async def record_applied(
    connection: Connection,
    schema: str,
    projection: Projection,
    changes: Iterable[tuple[str, str, int]],
    *,
    notify: bool = True,
) -> None:
    """Record applied versions as the projector does, and notify in the same transaction."""
    changes = list(changes)
    async with connection.transaction():
        await connection.execute(
            f"""
            INSERT INTO "{schema}".aggregate_versions (aggregate_type, aggregate_id, version)
            SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
            ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = EXCLUDED.version
            """,  # noqa: S608  # a test-controlled schema name
            [c[0] for c in changes],
            [c[1] for c in changes],
            [c[2] for c in changes],
        )
        if notify:
            for payload in encode_changes(projection.name, schema, {(t, i): v for t, i, v in changes}):
                await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


async def record_offsets(
    connection: Connection, schema: str, offsets: Iterable[tuple[str, int, int, int, datetime]]
) -> None:
    """Upsert `(topic, partition, next_offset, high_watermark, last_event_at)` rows."""
    for topic, partition, next_offset, high_watermark, last_event_at in offsets:
        await connection.execute(
            f"""
            INSERT INTO "{schema}".partition_offsets
                (topic, partition, next_offset, high_watermark, last_event_at)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,
                high_watermark = EXCLUDED.high_watermark, last_event_at = EXCLUDED.last_event_at
            """,  # noqa: S608  # a test-controlled schema name
            topic,
            partition,
            next_offset,
            high_watermark,
            last_event_at,
        )
