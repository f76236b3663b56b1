"""`cqrs setup` (the Helm chart's pre-install/pre-upgrade Job) against a real Kafka."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import Result

from cqrs_shared.topics import TopicNames
from projector_svc.settings import ProjectorSettings

pytestmark = pytest.mark.integration


async def test_setup_creates_every_topic_with_its_partitions_and_retention_and_is_repeatable(
    cqrs: Callable[..., Awaitable[Result]],
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    topics: TopicNames,
) -> None:
    monkeypatch.setenv("CQRS_TOPIC_PARTITIONS", "4")
    first = await cqrs("setup", "shop")
    again = await cqrs("setup", "shop")
    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output

    history = [topics.events("customer"), topics.events("order"), topics.events_dlq]
    wanted = [topics.commands, topics.command_results, topics.commands_dlq, *history]
    migrated = "read model shop: build 1 active and migrated"
    assert sorted(first.stdout.splitlines()) == sorted([*(f"{name}: created" for name in wanted), migrated])
    assert sorted(again.stdout.splitlines()) == sorted([*(f"{name}: exists" for name in wanted), migrated])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(wanted)}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in [*history, topics.commands]]
        )
    finally:
        await admin.close()
    assert {name: len(described[name]["partitions"]) for name in wanted} == dict.fromkeys(wanted, 4)
    retention = {
        topic: {entry[0]: entry[1] for entry in entries}["retention.ms"]
        for response in configs
        for _code, _message, _type, topic, entries in response.resources
    }
    assert {t: retention[t] for t in history} == dict.fromkeys(history, "-1")
    assert retention[topics.commands] != "-1"  # commands are not history


async def test_setup_migrates_the_read_models_before_any_projector_starts(
    cqrs: Callable[..., Awaitable[Result]], settings: ProjectorSettings
) -> None:
    result = await cqrs("setup", "shop")
    assert result.exit_code == 0, result.output
    connection = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        active = await connection.fetch(
            "SELECT projection, build FROM projector.builds WHERE status = 'active' ORDER BY projection"
        )
        applied = await connection.fetchval("SELECT count(*) FROM shop_b1.schema_migrations")
        readable = await connection.fetchval("SELECT count(*) FROM read.customers")
    finally:
        await connection.close()
    assert [(r["projection"], r["build"]) for r in active] == [("shop", 1)]
    assert applied >= 1
    assert readable == 0  # the read views exist, empty, before any projector replica ran


async def test_setup_refuses_an_unknown_view(cqrs: Callable[..., Awaitable[Result]]) -> None:
    result = await cqrs("setup", "nope")
    assert result.exit_code == 2
    assert "nope" in result.output
