"""Distributed tracing (OpenTelemetry) across the doors, the write store, Kafka and the read side.

Off by default, and then free: nothing is installed, the API's no-op tracer answers every span
and no header is read or written. `configure_tracing` turns it on when the standard variables ask
for it: `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) and `OTEL_SDK_DISABLED` is not
`true`. Everything else is the SDK's own standard configuration: `OTEL_EXPORTER_OTLP_ENDPOINT` /
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (OTLP over HTTP/protobuf), `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`, `OTEL_PROPAGATORS`.

How a trace travels (W3C trace context, `traceparent`/`tracestate`):
- into command-svc in the HTTP request's headers or the command record's Kafka headers;
- into the write store with the commit (`Commit.trace_context`), so the relay's publish, in this
  process or in another one after a crash, continues the trace that stored the commit;
- onto the event topics in each event record's Kafka headers (the publish span's context), and
  onto `command-results` in the outcome record's headers;
- into projector-svc, whose span per batch links to every event's publish span (a batch has many
  parents: links, not a parent, as the messaging conventions say for batch consumers).

Kafka is propagated here rather than by an aiokafka instrumentation: that one makes a span per
record at fetch time, ended before the record is handled, and a second producer span per event
under the relay's own, which is the double bookkeeping this module avoids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, Span, SpanKind

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig
    from opentelemetry.sdk.trace.sampling import Sampler

#: The instrumentation scope of every span this code base makes.
SCOPE = "cqrs"
#: Header names of the W3C trace context, on HTTP and on Kafka records alike.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

Headers = list[tuple[str, bytes]]
#: Routes left out of HTTP server spans: probes and scrapes, not requests anyone traces.
OPERATIONS_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

_state = {"enabled": False}
_tracer: dict[str, trace.Tracer] = {}


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard variables ask for traces (the default is no: an exporter must be named)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return env.get("OTEL_TRACES_EXPORTER", "none").strip().lower() not in ("", "none")


def tracing_enabled() -> bool:
    """Whether `configure_tracing` turned tracing on in this process."""
    return _state["enabled"]


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK's tracer provider if the `OTEL_*` variables ask for it; True if they did.

    Idempotent. The service name is `OTEL_SERVICE_NAME` if set, else `service`. Span export is
    batched in the background (`OTEL_BSP_*`); `shutdown_tracing` flushes what is left."""
    env = os.environ if environ is None else environ
    if _state["enabled"] or not tracing_requested(env):
        return _state["enabled"]
    # Imported here: a process with tracing off never loads the SDK or an exporter.
    from opentelemetry.sdk.environment_variables import OTEL_SERVICE_NAME
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({} if env.get(OTEL_SERVICE_NAME) else {"service.name": service})
    # The sampler the standard variables name, read by a provider that is only asked for it.
    configured = TracerProvider(shutdown_on_exit=False).sampler
    provider = TracerProvider(resource=resource, sampler=_no_orphan_client_spans(configured))
    for name in env.get("OTEL_TRACES_EXPORTER", "").split(","):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name.strip().lower())))
    trace.set_tracer_provider(provider)
    _state["enabled"] = True
    return True


def _no_orphan_client_spans(delegate: Sampler) -> Sampler:
    """`delegate`, except that a database call outside any traced work is not recorded.

    The services call their stores in background loops (lease renewals, outbox scans, watchdog
    probes, lag and staleness metrics): with the instrumentations on, each call would be a trace
    of one span every few seconds, drowning the traces of commands. A CLIENT span with no parent
    is such a call."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class NoOrphanClientSpans(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Sequence[Link] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            parent = trace.get_current_span(parent_context).get_span_context()
            if kind is SpanKind.CLIENT and not parent.is_valid:
                return SamplingResult(Decision.DROP)
            return delegate.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"NoOrphanClientSpans{{{delegate.get_description()}}}"

    return NoOrphanClientSpans()


def _exporter(name: str) -> Any:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: this service exports with 'otlp' or 'console'")


def flush_tracing(timeout_millis: int = 5000) -> None:
    """Export the spans ended so far, now (a Lambda invocation's end: the container may be frozen
    before the background exporter's next turn); a no-op when tracing is off."""
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if _state["enabled"] and force_flush is not None:
        force_flush(timeout_millis)


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at a clean shutdown); a no-op when tracing is off."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if _state["enabled"] and shutdown is not None:
        shutdown()


def http_telemetry() -> TelemetryConfig:
    """FastAPI's own telemetry settings for every service's app (`FastAPI(telemetry=...)`).

    FastAPI traces requests itself once a tracer provider is installed (server spans continuing the
    caller's `traceparent`; nothing when tracing is off), so the services use that rather than the
    contrib instrumentation, which would be a second mechanism for the same spans. Left out: the
    operations routes (probes and scrapes are not requests anyone traces), FastAPI's spans per
    dependency and endpoint call (the services' own spans say what the work was), and its metrics
    (Prometheus has those)."""
    return {"exclude": _operations_route, "operation_spans": False, "metrics": False}


def _operations_route(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in OPERATIONS_ROUTES


def tracer() -> trace.Tracer:
    """The tracer of this code base's spans (made once: the SDK builds a new one per request)."""
    made = _tracer.get("tracer")
    if made is None:
        made = _tracer["tracer"] = trace.get_tracer(SCOPE)
    return made


class _HeaderGetter(Getter[Sequence[tuple[str, bytes]]]):
    """Reads W3C headers from Kafka's (name, bytes) pairs."""

    def get(self, carrier: Sequence[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [v.decode(errors="replace") for k, v in carrier if k == key and v is not None]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, bytes]]) -> list[str]:
        return [k for k, _ in carrier]


_GETTER = _HeaderGetter()


def context_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> Context | None:
    """The trace context a Kafka record carries, or None when tracing is off or it carries none."""
    if not _state["enabled"] or not headers:
        return None
    return propagate.extract(headers, getter=_GETTER)


def context_from_mapping(carrier: Mapping[str, str] | None) -> Context | None:
    """The trace context of a stored carrier (`Commit.trace_context`), or None."""
    if not _state["enabled"] or not carrier:
        return None
    return propagate.extract(dict(carrier))


def current_carrier() -> dict[str, str] | None:
    """The current span's context as W3C headers (to store or send), or None without one."""
    if not _state["enabled"] or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_headers() -> Headers:
    """The current span's context as Kafka headers; empty when tracing is off."""
    carrier = current_carrier()
    return [(k, v.encode()) for k, v in carrier.items()] if carrier else []


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits), or None outside a recorded span."""
    if not _state["enabled"]:
        return None
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def trace_id_of(traceparent: str | bytes | None) -> str | None:
    """The trace id in a W3C `traceparent` value (`00-<trace id>-<span id>-<flags>`), or None.

    Works with tracing off too: logs and dead letters name the caller's trace whenever one came in."""
    if traceparent is None:
        return None
    text = traceparent.decode(errors="replace") if isinstance(traceparent, bytes) else traceparent
    parts = text.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1].lower()


def trace_id_in_headers(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The trace id of a Kafka record's `traceparent` header (event, outcome or command records)."""
    for name, value in headers or ():
        if name == TRACEPARENT:
            return trace_id_of(value)
    return None


class _NoSpan:
    """The context manager `span` gives with tracing off: one shared object, no generator per call."""

    def __enter__(self) -> Span:
        return trace.INVALID_SPAN

    def __exit__(self, *_: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    links: Sequence[Link] = (),
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Span]:
    """A span made current for the block (a shared no-op when tracing is off).

    `parent` replaces the current context (a remote parent from headers or the store)."""
    if not _state["enabled"]:
        return _NO_SPAN
    return tracer().start_as_current_span(
        name, context=parent, kind=kind, links=links, attributes=dict(attributes or {})
    )


def link_to(parent: Context | None) -> Link | None:
    """A link to the span a context names (a batch's link to one record's producer span)."""
    if parent is None:
        return None
    span_context = trace.get_current_span(parent).get_span_context()
    return Link(span_context) if span_context.is_valid else None


def links_from(records_headers: Iterable[Sequence[tuple[str, bytes]] | None]) -> list[Link]:
    """Links to the producer spans of a batch's records (those that carry a `traceparent`)."""
    if not _state["enabled"]:
        return []
    links = (link_to(context_from_headers(headers)) for headers in records_headers)
    return [link for link in links if link is not None]


@contextmanager
def producer_spans(
    sends: Sequence[tuple[str, Mapping[str, str] | None]], attributes: Mapping[str, Any] | None = None
) -> Iterator[list[Headers]]:
    """One PRODUCER span per (name, stored parent carrier), open for the block; yields each span's
    context as Kafka headers, in order (empty lists when tracing is off).

    The spans are not made current: a batch sends for many traces at once, each under its own
    stored parent. They end when the block does, after the sends were acknowledged, marked as
    errors if it raised."""
    if not _state["enabled"]:
        yield [[] for _ in sends]
        return
    opened: list[Span] = []
    headers: list[Headers] = []
    for name, carrier in sends:
        started = tracer().start_span(
            name,
            context=context_from_mapping(carrier) or Context(),
            kind=SpanKind.PRODUCER,
            attributes=dict(attributes or {}),
        )
        opened.append(started)
        carried: dict[str, str] = {}
        propagate.inject(carried, context=trace.set_span_in_context(started))
        headers.append([(k, v.encode()) for k, v in carried.items()])
    try:
        yield headers
    except BaseException as exc:
        for started in opened:
            started.record_exception(exc)
            started.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for started in opened:
            started.end()
