"""Prometheus metrics of the query service, and the ASGI middleware that records requests.

Latency is measured to the response *start* (status and headers sent): for JSON that is the whole
work of the request, and for a Server-Sent Events stream it is the time to subscribe, not the
lifetime of the connection.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "cqrs_query_http_requests_total",
    "HTTP requests answered, by route template",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "cqrs_query_http_request_seconds",
    "Time from request to response start, by route template",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TOKEN_WAITS = Counter(
    "cqrs_query_token_waits_total",
    "Reads carrying a consistency token, by outcome (immediate, woken, timeout)",
    ["outcome"],
)
TOKEN_WAIT_SECONDS = Histogram(
    "cqrs_query_token_wait_seconds",
    "Time spent waiting for the projector to reach a consistency token",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
SSE_SUBSCRIBERS = Gauge("cqrs_query_sse_subscribers", "Open Server-Sent Events streams, by view", ["view"])
SSE_DROPPED = Counter(
    "cqrs_query_sse_dropped_total",
    "Streams closed because the client was too slow, by reason",
    ["view", "reason"],
)
NOTIFICATIONS = Counter(
    "cqrs_query_notifications_total", "Projector notifications received, by kind", ["kind"]
)
LISTENER_CONNECTED = Gauge("cqrs_query_listener_connected", "1 while the shared LISTEN connection is up")
LISTENER_RECONNECTS = Counter(
    "cqrs_query_listener_reconnects_total", "Times the LISTEN connection was re-established"
)


class RequestRecorder:
    """Records answered requests under their route template (`REQUESTS`, `LATENCY`)."""

    def __init__(self) -> None:
        # The labelled children, looked up once: `labels()` stringifies and locks on every call,
        # a few percent of a point read's CPU. Keys are the same label values as before.
        self._latency: dict[str, Histogram] = {}
        self._requests: dict[tuple[str, str, str], Counter] = {}

    def observe(self, route: str, seconds: float) -> None:
        """Time from the request to its response's start."""
        child = self._latency.get(route)
        if child is None:
            child = self._latency[route] = LATENCY.labels(route)
        child.observe(seconds)

    def count(self, route: str, method: str, status: str) -> None:
        key = (route, method, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = REQUESTS.labels(*key)
        child.inc()


class RequestMetrics:
    """Counts every request and observes its latency under the route template (not the raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._recorder = RequestRecorder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_start(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._recorder.observe(route_label(scope), time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, record_start)
        finally:
            self._recorder.count(route_label(scope), scope["method"], str(status))


def route_label(scope: Scope) -> str:
    """The route template the router (or the fast reads) stored in the scope; unmatched paths share
    one label, so a scan of random URLs cannot grow the label set without bound."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
