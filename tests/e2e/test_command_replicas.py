"""Two command-svc replicas in one consumer group: every command answered, events in order, shards split."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cqrs_shared.testing.service_processes import ServiceProcess
from cqrs_shared.topics import TopicNames
from tests.e2e.command_load import COMMANDS_PER_CUSTOMER, CUSTOMERS, commands, read_all, send_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_two_replicas_share_the_work_and_keep_each_aggregate_in_order(
    start_service: Callable[..., ServiceProcess], kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = TopicNames(topic_prefix)
    replicas = [start_service("command_svc", "COMMAND_SVC_PORT") for _ in range(2)]
    for replica in replicas:
        replica.wait_ready()
    sent = commands()
    await send_all(kafka_bootstrap, topics, sent)

    wanted = {c["command_id"] for c in sent}
    results = await read_all(
        kafka_bootstrap,
        topics.command_results,
        lambda r: wanted <= {json.loads(x.value)["command_id"] for x in r},
        120,
    )
    outcomes = {json.loads(r.value)["command_id"]: json.loads(r.value) for r in results}

    def every_version_seen(records: Any) -> bool:
        # Distinct (aggregate, version) pairs: delivery is at-least-once, so counting records would
        # stop early when a shard's handover between the replicas republished a few events.
        return len({(e["aggregate_id"], e["version"]) for e in map(_event, records)}) >= len(sent)

    assert all(o["status"] == "accepted" for o in outcomes.values())
    events = [
        json.loads(r.value)
        for r in await read_all(kafka_bootstrap, topics.events("customer"), every_version_seen, 120)
    ]
    for customer in range(CUSTOMERS):
        versions = [e["version"] for e in events if e["aggregate_id"] == f"c-{customer}"]
        assert list(dict.fromkeys(versions)) == list(range(1, COMMANDS_PER_CUSTOMER + 1)), (
            customer,
            versions,
        )

    owned = []
    async with httpx.AsyncClient(timeout=5) as client:
        for replica in replicas:
            metrics = (await client.get(f"{replica.url}/metrics")).text
            owned.append(
                sum(
                    float(line.split()[-1])
                    for line in metrics.splitlines()
                    if line.startswith("cqrs_command_relay_shards_owned")
                )
            )
    assert sum(owned) == 64
    assert min(owned) > 0, f"one replica owns no relay shard: {owned}"


def _event(record: Any) -> dict[str, Any]:
    return dict(json.loads(record.value))
