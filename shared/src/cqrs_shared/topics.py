"""Topic names and their explicit creation.

Topics are created by the project, never by broker auto-creation, so partition counts and retention
are decided here. Every name goes through `TopicNames` so a prefix isolates tenants and tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicNames:
    prefix: str = ""

    @property
    def commands(self) -> str:
        return f"{self.prefix}commands"

    @property
    def command_results(self) -> str:
        return f"{self.prefix}command-results"

    @property
    def commands_dlq(self) -> str:
        return f"{self.prefix}commands.dlq"

    @property
    def events_dlq(self) -> str:
        return f"{self.prefix}events.dlq"

    def events(self, aggregate_type: str) -> str:
        return f"{self.prefix}events.{aggregate_type}"

    def retained_forever(self, aggregate_types: Iterable[str]) -> list[str]:
        """Topics whose records are history: read models are rebuilt by replaying them from offset 0."""
        return [*(self.events(t) for t in sorted(set(aggregate_types))), self.events_dlq]

    def all_for(self, aggregate_types: Iterable[str]) -> list[str]:
        return [
            self.commands,
            self.command_results,
            self.commands_dlq,
            self.events_dlq,
            *(self.events(t) for t in sorted(set(aggregate_types))),
        ]


#: Topic configuration of history topics (whichever service starts first creates them).
RETAIN_FOREVER: Mapping[str, str] = {"retention.ms": "-1", "retention.bytes": "-1"}


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (with `configs[name]` where given); returns the names
    it created. Existing topics are left as they are. Safe to run concurrently."""
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    n,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    topic_configs=dict((configs or {}).get(n, {})),
                )
                for n in missing
            ]
        )
        failures = []
        for topic, code, *rest in response.topic_errors:
            # Another replica may create a topic between our listing and our request: that is the goal.
            if code not in (0, TopicAlreadyExistsError.errno):
                failures.append(f"{topic}: error {code} {rest[0] if rest else ''}".strip())
        if failures:
            raise RuntimeError("could not create Kafka topics: " + "; ".join(failures))
        log.info("created Kafka topics %s", missing)
        return missing
    finally:
        await admin.close()


async def partitions_of(
    bootstrap: str, names: Sequence[str], *, request_timeout_ms: int = 40_000
) -> list[TopicPartition]:
    """Every partition of the topics that exist among `names`, from the broker's metadata (a
    consumer in no group only caches metadata of what it was assigned)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return sorted(TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"])
