"""Prometheus metrics of the projector.

Counters and histograms move as batches are applied; the gauges of lag, view staleness and parked
events are also refreshed on a timer (`progress_gauges`), so a consumer that receives nothing
still shows how far behind it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from cqrs_shared.envelopes import utc_now

if TYPE_CHECKING:
    from projector_svc.batch import Outcome

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


def account(projection: str, outcome: Outcome) -> None:
    """Count what a committed batch did, and observe the staleness of each event it applied."""
    EVENTS.labels(projection, "applied").inc(len(outcome.applied))
    EVENTS.labels(projection, "unknown_type").inc(outcome.unknown)
    EVENTS.labels(projection, "duplicate").inc(outcome.duplicates)
    EVENTS.labels(projection, "parked").inc(outcome.parked)
    EVENTS.labels(projection, "dead_lettered").inc(outcome.dead_letters)
    now, staleness = utc_now(), STALENESS_SECONDS.labels(projection)
    for item in outcome.applied:
        staleness.observe(max(0.0, (now - item.event.occurred_at).total_seconds()))
