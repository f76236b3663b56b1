"""pytest fixtures for tests that run projector replicas in-process against real Kafka and
PostgreSQL; a conftest imports the ones it needs. They build on the root conftest's
`kafka_bootstrap`, `pg_database`, `topic_prefix` and `unique`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from cqrs_shared.topics import TopicNames
from projector_svc.pg import create_pool
from projector_svc.projection import Projection
from projector_svc.service import ProjectorService, prepare_topics
from projector_svc.settings import ProjectorSettings
from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed
from projector_svc.testing.shop import ShopProjection


@pytest.fixture
def settings(kafka_bootstrap: str, pg_database: str, topic_prefix: str, unique: str) -> ProjectorSettings:
    return ProjectorSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=pg_database,
        topic_prefix=topic_prefix,
        consumer_group=f"projector-{unique}",
        maintenance_interval_seconds=0.2,
        fetch_timeout_ms=100,
    )


@pytest.fixture
def topics(topic_prefix: str) -> TopicNames:
    return TopicNames(topic_prefix)


@pytest.fixture
async def feed(
    settings: ProjectorSettings, kafka_bootstrap: str, topics: TopicNames
) -> AsyncIterator[EventFeed]:
    await prepare_topics(settings, ShopProjection())
    async with EventFeed(kafka_bootstrap, topics) as feed:
        yield feed


@pytest.fixture
async def pool(pg_database: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    pool = await create_pool(pg_database, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def start_projector(settings: ProjectorSettings) -> AsyncIterator[StartProjector]:
    """Starts in-process replicas (same group unless overridden); all are stopped at the end."""
    started: list[ProjectorService] = []

    async def start(projection: Projection | None = None, **overrides: Any) -> ProjectorService:
        service = ProjectorService(settings.model_copy(update=overrides), [projection or ShopProjection()])
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()
