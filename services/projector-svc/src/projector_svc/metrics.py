"""Prometheus metrics of the projector."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "cqrs_projector_events_total",
    "Events seen by the projector, by outcome (applied, duplicate, parked, unknown_type, dead_lettered)",
    ["projection", "outcome"],
)
BATCH_SECONDS = Histogram(
    "cqrs_projector_batch_seconds", "Time to apply one batch in PostgreSQL", ["projection"]
)
STALENESS_SECONDS = Histogram(
    "cqrs_projector_staleness_seconds",
    "Event occurred (stored) -> row committed",
    ["projection"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter(
    "cqrs_projector_batch_retries_total", "Batches retried after a serialization failure", ["projection"]
)
LAG = Gauge(
    "cqrs_projector_lag_records",
    "Records behind the high watermark, per partition",
    ["projection", "topic", "partition"],
)
