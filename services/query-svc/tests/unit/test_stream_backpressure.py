"""Streams and slow parties: a client whose socket stops accepting is dropped within the send
timeout, and its memory released; a healthy client whose stream is slow to re-read (a burst of
signals behind the shared bound on re-reads) is never dropped for it and ends on the latest state."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from prometheus_client import REGISTRY

from cqrs_shared.read_models.shop import ORDERS, SHOP
from query_svc.engine import ReadEngine
from query_svc.hub import ChangeHub
from query_svc.positions import ReadPosition
from query_svc.stream import EventStream, Streams, StreamSettings
from query_svc.testing import wait_until


class OneRow:
    """Stands in for the engine: the same row on every read."""

    async def item(self, *_args: Any) -> tuple[str, ReadPosition]:
        return '{"id":"o-1","version":1}', ReadPosition("none", 0)


class SlowRows:
    """Stands in for the engine: the row at `version`; a read waits while `held` is clear."""

    def __init__(self) -> None:
        self.version = 1
        self.reads = 0
        self.held = asyncio.Event()
        self.held.set()
        self.reading = asyncio.Event()
        self.waiter = self

    async def item(self, *_args: Any) -> tuple[str, ReadPosition]:
        self.reads += 1
        self.reading.set()
        await self.held.wait()
        return json.dumps({"id": "o-1", "version": self.version}), ReadPosition("none", 0)

    async def visible(self, *_args: Any) -> bool:
        return True


def dropped(reason: str | None = "send_timeout") -> float:
    """Orders streams dropped for `reason` (None: for any reason)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "cqrs_query_sse_dropped"
        for sample in metric.samples
        if sample.name == "cqrs_query_sse_dropped_total"
        and sample.labels["view"] == "orders"
        and reason in (None, sample.labels["reason"])
    )


def payload(version: int) -> str:
    return json.dumps({"projection": "shop", "schema": "shop_b1", "changes": [["order", "o-1", version]]})


async def test_a_client_that_stops_reading_is_dropped_and_unsubscribed() -> None:
    hub = ChangeHub([SHOP])
    settings = StreamSettings(heartbeat_seconds=0.01, send_timeout_seconds=0.1)
    streams = Streams(cast(ReadEngine, OneRow()), hub, settings)
    stream = EventStream(streams, ORDERS, "o-1", last_event_id=None, headers={})
    sent: list[dict[str, Any]] = []
    socket_full = asyncio.Event()

    async def send(message: Any) -> None:
        if len(sent) >= 3:  # start, retry, snapshot: then the client's window is full
            socket_full.set()
            await asyncio.Event().wait()
        sent.append(message)

    async def receive() -> Any:
        await asyncio.Event().wait()  # the client never disconnects: it just does not read

    before = dropped()
    async with asyncio.timeout(2):
        await stream({"type": "http"}, receive, send)
    assert socket_full.is_set()
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]
    assert all(m.get("more_body", True) for m in sent)  # never claimed to finish on a full socket
    assert b"event: snapshot" in sent[2]["body"]
    assert dropped() == before + 1
    assert hub.subscriber_count == 0


async def test_a_burst_while_a_re_read_waits_keeps_the_client_and_ends_on_the_latest_state() -> None:
    hub = ChangeHub([SHOP])
    rows = SlowRows()
    streams = Streams(cast(ReadEngine, rows), hub, StreamSettings(heartbeat_seconds=60))
    stream = EventStream(streams, ORDERS, "o-1", last_event_id=None, headers={})
    versions: list[int] = []
    latest_sent = asyncio.Event()
    leave = asyncio.Event()

    async def send(message: Any) -> None:
        for line in message.get("body", b"").splitlines():
            if line.startswith(b"data: "):
                versions.append(json.loads(line.removeprefix(b"data: "))["version"])
                if versions[-1] == 10_001:
                    latest_sent.set()

    async def receive() -> Any:
        await leave.wait()
        return {"type": "http.disconnect"}

    before = dropped(None)
    serving = asyncio.create_task(stream({"type": "http"}, receive, send))
    async with asyncio.timeout(5):
        await wait_until(lambda: versions == [1])  # the snapshot
        rows.held.clear()
        rows.reading.clear()
        rows.version = 2
        hub.dispatch(payload(2))
        await rows.reading.wait()  # the re-read is stuck behind a busy database
        for version in range(3, 10_002):  # far more signals than any queue would have held
            rows.version = version
            hub.dispatch(payload(version))
        assert hub.subscriber_count == 1
        rows.held.set()
        await latest_sent.wait()
        leave.set()
        await serving
    assert versions == [1, 10_001]
    # The snapshot, the stuck re-read, and one more for everything signalled meanwhile.
    assert rows.reads == 3
    assert dropped(None) == before
    assert hub.subscriber_count == 0
