"""SIGKILL command-svc while 2,000 commands are in flight: nothing accepted is lost on the event topics."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest

from cqrs_shared.testing.service_processes import ServiceProcess
from cqrs_shared.topics import TopicNames
from tests.e2e.command_load import COMMANDS_PER_CUSTOMER, CUSTOMERS, commands, read_all, send_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_sigkill_with_commands_in_flight_loses_no_accepted_event(
    start_service: Callable[..., ServiceProcess], kafka_bootstrap: str, topic_prefix: str
) -> None:
    topics = TopicNames(topic_prefix)
    first = start_service("command_svc", "COMMAND_SVC_PORT")
    first.wait_ready()
    sent = commands()
    await send_all(kafka_bootstrap, topics, sent)

    # Kill once a quarter of the outcomes are out: commits, publishes and offset commits are mid-flight.
    await read_all(kafka_bootstrap, topics.command_results, lambda r: len(r) >= len(sent) // 4, 60)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = start_service("command_svc", "COMMAND_SVC_PORT")
    second.wait_ready()

    wanted = {c["command_id"] for c in sent}
    results = await read_all(
        kafka_bootstrap,
        topics.command_results,
        lambda r: wanted <= {json.loads(x.value)["command_id"] for x in r},
        120,
    )
    outcomes = {json.loads(r.value)["command_id"]: json.loads(r.value) for r in results}
    accepted = [o for o in outcomes.values() if o["status"] == "accepted"]
    assert len(accepted) == len(sent), [o for o in outcomes.values() if o["status"] != "accepted"][:3]
    expected = {(o["aggregate_id"], o["version"]) for o in accepted}

    def all_published(records: list[Any]) -> bool:
        return expected <= {
            (json.loads(r.value)["aggregate_id"], json.loads(r.value)["version"]) for r in records
        }

    events = [
        json.loads(r.value)
        for r in await read_all(kafka_bootstrap, topics.events("customer"), all_published, 120)
    ]
    duplicates = 0
    for customer in range(CUSTOMERS):
        versions = [e["version"] for e in events if e["aggregate_id"] == f"c-{customer}"]
        first_seen = list(dict.fromkeys(versions))
        # In version order: each version first appears only after all its predecessors did.
        assert first_seen == list(range(1, COMMANDS_PER_CUSTOMER + 1)), (customer, versions)
        duplicates += len(versions) - len(first_seen)
    print(
        f"\n{len(events)} events for {len(accepted)} accepted commands; {duplicates} duplicates after SIGKILL"
    )
