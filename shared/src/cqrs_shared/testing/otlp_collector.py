"""A tiny OTLP/HTTP trace receiver for tests: the services, as separate processes, export their spans to it.

Runs an HTTP server on a thread, decodes every `POST /v1/traces` (protobuf
`ExportTraceServiceRequest`, as `OTLPSpanExporter` sends it) and keeps the spans, each with the
`service.name` of the process that sent it. Point a service at it with `collector.env()`.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

#: OTLP's span kinds by number (the proto enum), as the SDK's `SpanKind` names them.
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One exported span; ids as lower-case hex, `parent_id` empty for a root."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[tuple[str, str], ...]  # (trace id, span id)
    attributes: dict[str, Any]
    #: Wall-clock start and end, nanoseconds since the epoch (the SDK's `time_ns()`).
    start_ns: int = 0
    end_ns: int = 0


def _value(any_value: Any) -> Any:
    field = any_value.WhichOneof("value")
    return getattr(any_value, field) if field else None


def _decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            spans.extend(
                ReceivedSpan(
                    service=str(resource.get("service.name", "")),
                    name=s.name,
                    kind=KINDS.get(s.kind, str(s.kind)),
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_id=s.parent_span_id.hex(),
                    links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links),
                    attributes={a.key: _value(a.value) for a in s.attributes},
                    start_ns=s.start_time_unix_nano,
                    end_ns=s.end_time_unix_nano,
                )
                for s in scope_spans.spans
            )
    return spans


class OtlpCollector:
    """Receives spans over OTLP/HTTP on 127.0.0.1; `spans` holds all received so far."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server dispatches on
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                received = _decode(body) if self.path.rstrip("/") == "/v1/traces" else []
                with collector._lock:
                    collector.spans.extend(received)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # the base class's name
                """Quiet: the test output is not the place for access logs."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-collector", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    def env(self) -> dict[str, str]:
        """The standard variables that make a service export here, promptly (100 ms batches)."""
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    def __enter__(self) -> OtlpCollector:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    async def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], within: float = 30.0
    ) -> list[ReceivedSpan]:
        """The spans received once `found(spans)` holds; fails with what arrived if it never does."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            spans = self.received()
            if found(spans):
                return spans
            await asyncio.sleep(0.1)
        spans = self.received()
        listing = "\n".join(f"{s.service} {s.kind} {s.name} {s.trace_id[:8]} {s.parent_id}" for s in spans)
        raise AssertionError(f"the expected spans did not arrive in {within} s; received:\n{listing}")
