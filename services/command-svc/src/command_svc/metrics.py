"""Prometheus metrics of the command service (module-level: one registry per process)."""

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter("cqrs_commands_total", "Commands handled, by door and outcome", ["door", "outcome"])
COMMAND_SECONDS = Histogram("cqrs_command_seconds", "Time to handle one command, by door", ["door"])
STORE_SECONDS = Histogram(
    "cqrs_command_store_seconds",
    "Time spent in write store calls while handling commands",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
DEAD_LETTERS = Counter("cqrs_command_dead_letters_total", "Records sent to the commands DLQ", ["reason"])
PRODUCER_RENEWALS = Counter(
    "cqrs_kafka_producer_renewals_total", "Kafka producers replaced after a failed delivery"
)
RELAY_PUBLISHED = Counter("cqrs_relay_events_published_total", "Events published by the outbox relay")
RELAY_LAG = Gauge("cqrs_relay_unpublished_commits", "Commits found unpublished by the last recovery scan")
RELAY_SHARDS_OWNED = Gauge("cqrs_relay_shards_owned", "Relay shards this replica holds a lease on")
