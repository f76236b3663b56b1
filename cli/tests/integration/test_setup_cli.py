"""`cqrs setup` (the Helm chart's pre-install/pre-upgrade Job) against real Kafka and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import Result

from cqrs_shared.topics import TopicNames

pytestmark = pytest.mark.integration


async def test_setup_creates_every_topic_and_the_migrated_read_models_and_is_repeatable(
    cqrs: Callable[..., Awaitable[Result]],
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    topics: TopicNames,
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    monkeypatch.setenv("CQRS_TOPIC_PARTITIONS", "4")
    first = await cqrs("setup")
    again = await cqrs("setup", "shop")
    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    assert first.stdout.splitlines() == ["shop: topics ready, active build shop_b1 migrated"]

    history = [topics.events("customer"), topics.events("order"), topics.events_dlq]
    wanted = [topics.commands, topics.command_results, topics.commands_dlq, *history]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(wanted)}
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in history])
    finally:
        await admin.close()
    assert {name: len(described[name]["partitions"]) for name in wanted} == dict.fromkeys(wanted, 4)
    retention = {
        topic: {entry[0]: entry[1] for entry in entries}["retention.ms"]
        for response in configs
        for _code, _message, _type, topic, entries in response.resources
    }
    assert retention == dict.fromkeys(history, "-1")
    async with pool.acquire() as connection:
        builds = await connection.fetch("SELECT projection, build, status FROM projector.builds")
        customers = await connection.fetchval("SELECT count(*) FROM read.customers")
    assert [tuple(b) for b in builds] == [("shop", 1, "active")]
    assert customers == 0


async def test_setup_refuses_an_unknown_view(cqrs: Callable[..., Awaitable[Result]]) -> None:
    result = await cqrs("setup", "nope")
    assert result.exit_code == 2
    assert "unknown view 'nope'" in result.output
