"""The command service in-process against the real Kafka and MongoDB wire server, one test at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from command_svc.app import create_app
from command_svc.settings import CommandServiceSettings
from command_svc.write_store.mongo_store import MongoWriteStore
from cqrs_shared.testing.kafka_client import KafkaClient
from cqrs_shared.topics import TopicNames

#: The same secret as the parent conftest, so its `token_for` fixture mints tokens this app accepts.
SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def settings(
    kafka_bootstrap: str, mongodb_uri: str, topic_prefix: str, unique: str
) -> CommandServiceSettings:
    return CommandServiceSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        mongodb_uri=mongodb_uri,
        mongodb_database=f"cmd_{unique}",
        auth_mode="jwt",
        jwt_secret=SECRET,
        relay_scan_interval_seconds=0.2,
        instance_id=f"test-{unique}",
        max_command_bytes=4096,
    )


@pytest.fixture
async def app(settings: CommandServiceSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
    store: MongoWriteStore = await MongoWriteStore.open(settings.mongodb_uri, settings.mongodb_database)
    await store.database.client.drop_database(settings.mongodb_database)
    await store.close()


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://command-svc") as client:
        yield client


@pytest.fixture
async def kafka(kafka_bootstrap: str, settings: CommandServiceSettings) -> AsyncIterator[KafkaClient]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    yield KafkaClient(kafka_bootstrap, TopicNames(settings.topic_prefix), producer)
    await producer.stop()


@pytest.fixture
async def store(settings: CommandServiceSettings) -> AsyncIterator[MongoWriteStore]:
    opened = await MongoWriteStore.open(settings.mongodb_uri, settings.mongodb_database)
    yield opened
    await opened.close()


def versions_by_aggregate(events: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for event in events:
        seen.setdefault(event["aggregate_id"], []).append(event["version"])
    return seen
