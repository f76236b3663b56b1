"""A stream whose client stops reading is dropped within the send timeout, and its memory released."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from prometheus_client import REGISTRY

from query_svc.engine import ReadEngine
from query_svc.hub import ChangeHub
from query_svc.positions import ReadPosition
from query_svc.stream import EventStream, Streams, StreamSettings
from query_svc.views.shop import ORDERS, SHOP


class OneRow:
    """Stands in for the engine: the same row on every read."""

    async def item(self, *_args: Any) -> tuple[str, ReadPosition]:
        return '{"id":"o-1","version":1}', ReadPosition("none", 0)


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

    def dropped() -> float:
        return (
            REGISTRY.get_sample_value("query_sse_dropped_total", {"view": "orders", "reason": "send_timeout"})
            or 0
        )

    before = dropped()
    await asyncio.wait_for(stream({"type": "http"}, receive, send), 2)
    assert socket_full.is_set()
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]
    assert all(m.get("more_body", True) for m in sent)  # never claimed to finish on a full socket
    assert b"event: snapshot" in sent[2]["body"]
    assert dropped() == before + 1
    assert hub.subscriber_count == 0
