"""Prometheus metrics of the projector.

Counters and histograms move as batches are applied; the gauges of lag, view staleness and parked
events are also refreshed on a timer (`progress_gauges`), so a consumer that receives nothing
still shows how far behind it is.
"""

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
    "Records behind the end of the partition (last stable offset), per owned partition",
    ["projection", "topic", "partition"],
)
VIEW_STALENESS = Gauge(
    "cqrs_projector_view_staleness_seconds",
    "Age of the newest event a view shows while its projection is behind (0: caught up), per view",
    ["projection", "view"],
)
PARKED = Gauge(
    "cqrs_projector_parked_events",
    "Events parked in the active build (waiting for a version gap to close, or refused), per "
    "projection; every replica reports the whole build's count (aggregate with max)",
    ["projection"],
)
