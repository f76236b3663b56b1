"""Prometheus metrics of the command service (module-level: one registry per process).

Names follow Prometheus conventions: the unit in the name (`_seconds`), `_total` on counters. The
alert rules (deploy/prometheus/) and the dashboard (deploy/grafana/) use these names; a test checks
that every name they use is declared in a service's metrics module.
"""

from collections.abc import Sequence
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from cqrs_shared.envelopes import utc_now
from cqrs_shared.write_store import Commit

COMMANDS = Counter("cqrs_command_handled_total", "Commands handled, by door and outcome", ["door", "outcome"])
COMMAND_SECONDS = Histogram("cqrs_command_seconds", "Time to handle one command, by door", ["door"])
STORE_SECONDS = Histogram(
    "cqrs_command_store_seconds",
    "Time spent in write store calls while handling commands",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
DEAD_LETTERS = Counter("cqrs_command_dead_letters_total", "Records sent to the commands DLQ", ["reason"])
PRODUCER_RENEWALS = Counter(
    "cqrs_command_kafka_producer_renewals_total", "Kafka producers replaced after a failed delivery"
)
RELAY_PUBLISHED = Counter("cqrs_command_relay_events_published_total", "Events published by the outbox relay")
RELAY_LAG = Gauge(
    "cqrs_command_outbox_unpublished_commits",
    "Outbox backlog: stored, unpublished commits of this replica's shards found by the last recovery "
    "scan (a scan reads at most one relay batch, so the figure is capped at the batch size)",
)
OUTBOX_OLDEST_AGE = Gauge(
    "cqrs_command_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest stored, unpublished commit the last recovery scan found (0: none)",
)
CONFLICTS_RETRIED = Counter(
    "cqrs_command_conflicts_retried_total",
    "Optimistic-concurrency races lost to a concurrent command and retried on fresh state",
)
IDEMPOTENT_REPEATS = Counter(
    "cqrs_command_idempotent_repeats_total",
    "Commands whose id already had a stored outcome: answered with it, nothing changed",
)


def observe_outbox_scan(pending: Sequence[Commit], now: datetime | None = None) -> None:
    """Record what a recovery scan found unpublished: the backlog and its oldest commit's age."""
    now = now or utc_now()
    RELAY_LAG.set(len(pending))
    oldest = min((c.committed_at for c in pending), default=None)
    OUTBOX_OLDEST_AGE.set(max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)


RELAY_SHARDS_OWNED = Gauge("cqrs_command_relay_shards_owned", "Relay shards this replica holds a lease on")
