"""Server-Sent Events: `GET /v1/<view>/{id}/stream`, the current row and then every change.

Protocol (one event per row state, `data` is the row's JSON as the item route returns it):
- `event: snapshot` first (the row when the stream opened), then `event: change` per new state;
  `event: gone` if the row disappears, `event: error` (a problem) if the database fails. Both end
  the stream; the client reconnects (after `retry` ms) as EventSource does.
- `id` is the state's digest, equal to the item route's ETag without quotes. On reconnect,
  `Last-Event-ID` equal to the current state's id skips the snapshot: read models keep current
  state only, so resuming means "send the state if it moved since", never a replay of history.
- `: heartbeat` comments every `heartbeat` seconds keep proxies from closing an idle stream.

Changes come from the shared LISTEN connection through the hub (no connection is held while
idle). Signals are coalesced into one pending flag per stream: a burst of commits costs one
re-read, however long the re-reads queue behind the shared bound on them, and a state is sent only
when it differs from the last one sent. Memory per client is bounded by construction; a client is
dropped only when its socket accepts nothing for `send_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cqrs_shared.problems import PROBLEM_BASE, ProblemError
from query_svc.declarations import View
from query_svc.engine import ReadEngine
from query_svc.http_cache import encode_json, entity_tag
from query_svc.hub import ChangeHub, Signal, Subscription

log = logging.getLogger(__name__)
HEARTBEAT = b": heartbeat\n\n"


@dataclass(frozen=True, slots=True)
class StreamSettings:
    heartbeat_seconds: float = 15.0
    send_timeout_seconds: float = 10.0
    retry_ms: int = 3000
    #: How long to wait for a replica reader to show a notified commit before re-reading anyway.
    visibility_timeout_seconds: float = 2.0
    max_subscribers: int = 1000
    #: Stream re-reads running at once (the rest of the pool stays free for requests).
    read_concurrency: int = 4
    #: Tries of a re-read that met a busy or unavailable database before the stream gives up.
    read_attempts: int = 4


class Streams:
    """What the streams of one app share: engine, hub, settings and a bound on concurrent re-reads."""

    def __init__(self, engine: ReadEngine, hub: ChangeHub, settings: StreamSettings) -> None:
        self.engine = engine
        self.hub = hub
        self.settings = settings
        self._reads = asyncio.Semaphore(settings.read_concurrency)

    @property
    def full(self) -> bool:
        return self.hub.subscriber_count >= self.settings.max_subscribers

    async def read(self, view: View, item_id: str) -> str | None:
        """The row now; a busy or unavailable database is retried with backoff before it is fatal."""
        for attempt in range(self.settings.read_attempts):
            try:
                async with self._reads:
                    row, _position = await self.engine.item(view, item_id, None)
            except ProblemError as exc:
                if exc.status != 503 or attempt == self.settings.read_attempts - 1:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
            else:
                return row
        raise AssertionError("unreachable: the last attempt returns or raises")


class _SlowClientError(Exception):
    """A write to the client did not complete within the send timeout."""


def format_event(event: str, data: bytes, event_id: str | None = None) -> bytes:
    lines = [b"event: " + event.encode()]
    if event_id is not None:
        lines.append(b"id: " + event_id.encode())
    lines.append(b"data: " + data)
    return b"\n".join(lines) + b"\n\n"


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream(StreamingResponse):
    """The ASGI response of one stream; subscribes on start and always unsubscribes on exit."""

    media_type = "text/event-stream"

    def __init__(
        self,
        streams: Streams,
        view: View,
        item_id: str,
        *,
        last_event_id: str | None,
        headers: dict[str, str],
    ) -> None:
        stream_headers = {**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(iter(()), headers=stream_headers)
        self._streams = streams
        self._hub = streams.hub
        self._settings = streams.settings
        self._view = view
        self._item_id = item_id
        self._last_event_id = last_event_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscription = self._hub.subscribe(self._view, self._item_id)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            pump = asyncio.create_task(self._pump(subscription, send))
            watcher = asyncio.create_task(_disconnected(receive))
            try:
                await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, watcher):
                    task.cancel()
                await asyncio.gather(pump, watcher, return_exceptions=True)
            if pump.cancelled():
                return  # the client left
            if pump.exception() is not None:
                log.error("a %s stream failed", self._view.name, exc_info=pump.exception())
            elif pump.result():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            # Otherwise the client was dropped as too slow: a final write could block on its full
            # socket, so the response ends unfinished and the server closes the connection.
        finally:
            self._hub.unsubscribe(subscription)

    async def _send(self, send: Send, chunk: bytes) -> None:
        try:
            async with asyncio.timeout(self._settings.send_timeout_seconds):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except TimeoutError as exc:
            raise _SlowClientError from exc

    async def _read(self) -> str | None:
        return await self._streams.read(self._view, self._item_id)

    async def _pump(self, subscription: Subscription, send: Send) -> bool:
        """Send states until the stream ends; True when it ended cleanly (a final write may follow)."""
        last_id = self._last_event_id
        try:
            await self._send(send, f"retry: {self._settings.retry_ms}\n\n".encode())
            row, event = await self._read(), "snapshot"
            while row is not None:
                data = row.encode()
                event_id = entity_tag(data).strip('"')
                if event_id != last_id:
                    await self._send(send, format_event(event, data, event_id))
                    last_id = event_id
                await self._settle(await self._next_signal(subscription, send))
                row, event = await self._read(), "change"
            await self._send(send, format_event("gone", b"{}"))
        except _SlowClientError:
            subscription.drop("send_timeout")
            return False
        except ProblemError as exc:
            problem = {
                "type": PROBLEM_BASE + exc.kind,
                "title": exc.title,
                "status": exc.status,
                "detail": exc.detail,
            }
            await self._send(send, format_event("error", encode_json(problem)))
        return True

    async def _next_signal(self, subscription: Subscription, send: Send) -> Signal:
        while True:
            signal = await subscription.next(self._settings.heartbeat_seconds)
            if signal is not None:
                return signal
            await self._send(send, HEARTBEAT)

    async def _settle(self, signal: Signal) -> None:
        # On a replica the notified commit may not be visible yet; reading too early would miss it.
        if signal.witness is not None:
            witness = signal.witness
            await self._streams.engine.waiter.visible(
                self._view.projection,
                (witness.aggregate_type, witness.aggregate_id, witness.version),
                self._settings.visibility_timeout_seconds,
            )
