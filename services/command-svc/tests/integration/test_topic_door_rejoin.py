"""A command-svc process frozen past its consumer session rejoins its group and answers the backlog."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from tests.e2e.command_load import read_all, send_all

from cqrs_shared.testing.service_processes import E2E_SECRET, ServiceProcess, free_port
from cqrs_shared.topics import TopicNames

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SESSION_TIMEOUT_MS = 6000  # the broker's smallest allowed session timeout by default


def registrations(count: int) -> list[dict[str, Any]]:
    return [
        {
            "command_id": str(uuid.uuid4()),
            "type": "RegisterCustomer",
            "aggregate_id": f"c-{uuid.uuid4().hex[:8]}",
            "payload": {"name": "Ada", "email": "ada@example.com"},
        }
        for _ in range(count)
    ]


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """The group's state and how many members the broker still counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [described] = response.groups
    _error, _group, state, _protocol_type, _protocol, members, *_ = described
    return str(state), len(members)


def answered(sent: list[dict[str, Any]]) -> Any:
    wanted = {c["command_id"] for c in sent}
    return lambda records: wanted <= {json.loads(r.value)["command_id"] for r in records}


async def test_a_frozen_replica_rejoins_and_answers_what_was_sent_while_it_was_out(
    kafka_bootstrap: str, topic_prefix: str, unique: str, tmp_path: Path
) -> None:
    topics, group, port = TopicNames(topic_prefix), f"command-svc-{unique}", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMAND_SVC_")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        WRITE_STORE="memory",
        CQRS_TOPIC_PREFIX=topic_prefix,
        CQRS_AUTH_MODE="jwt",
        JWT_SECRET=E2E_SECRET,
        LOG_FORMAT="json",
        COMMAND_SVC_PORT=str(port),
        COMMAND_SVC_CONSUMER_GROUP=group,
        COMMAND_SVC_TOPIC_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        COMMAND_SVC_TOPIC_HEARTBEAT_INTERVAL_MS="1000",
    )
    service = ServiceProcess("command_svc", port, env, tmp_path / "command_svc.log").start()
    assert service.process is not None
    try:
        service.wait_ready()
        before = registrations(20)
        await send_all(kafka_bootstrap, topics, before)
        await read_all(kafka_bootstrap, topics.command_results, answered(before), 30)

        service.process.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        # The broker evicts the silent member once its session times out.
        while (await group_state(kafka_bootstrap, group))[1] > 0:
            assert time.monotonic() - frozen_at < 30, "the frozen member was never evicted"
            await asyncio.sleep(0.5)
        meanwhile = registrations(20)
        await send_all(kafka_bootstrap, topics, meanwhile)

        service.process.send_signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        await read_all(kafka_bootstrap, topics.command_results, answered(before + meanwhile), 30)
        caught_up = time.monotonic() - resumed_at
        print(f"\nfrozen {resumed_at - frozen_at:.1f} s; all answered {caught_up:.1f} s after SIGCONT")
        assert caught_up < 15
        while await group_state(kafka_bootstrap, group) != ("Stable", 1):
            assert time.monotonic() - resumed_at < 30, await group_state(kafka_bootstrap, group)
            await asyncio.sleep(0.2)
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"{service.url}/healthz")).status_code == 200
            assert (await client.get(f"{service.url}/readyz")).status_code == 200
    finally:
        service.process.send_signal(signal.SIGCONT)
        service.stop()
