"""Wiring of the projector: PostgreSQL pool, build schema, Kafka consumer and the HTTP operations port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from cqrs_shared.kafka_io import make_producer
from cqrs_shared.problems import install_problem_handlers
from cqrs_shared.service_http import operations_router
from cqrs_shared.topics import TopicNames, ensure_topics
from projector_svc.builds import ensure_active_build
from projector_svc.pg import create_pool
from projector_svc.projection import Projection
from projector_svc.runtime import ProjectorRuntime, RuntimeSettings
from projector_svc.settings import ProjectorSettings
from projector_svc.views.shop import ShopProjection

log = logging.getLogger(__name__)


def _projection_or_default(projection: Projection | None) -> Projection:
    return projection if projection is not None else ShopProjection()


def create_app(
    settings: ProjectorSettings | None = None, *, projection: Projection | None = None, **overrides: Any
) -> FastAPI:
    settings = settings or ProjectorSettings(**overrides)
    projection = _projection_or_default(projection)
    topics = TopicNames(settings.topic_prefix)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            [*(topics.events(t) for t in projection.aggregate_types), topics.events_dlq],
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
        )
        pool = await create_pool(settings.database_url.get_secret_value(), max_size=settings.pool_size)
        async with pool.acquire() as connection:
            build = await ensure_active_build(connection, projection)
        log.info("projecting %s into %s", projection.name, build.schema)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        producer = make_producer(settings.kafka_bootstrap_servers, client_id="projector-svc")
        await producer.start()
        runtime = ProjectorRuntime(
            projection,
            pool,
            consumer,
            producer,
            topics,
            settings=RuntimeSettings(
                group_id=settings.consumer_group, max_records=settings.max_batch_records
            ),
        )
        consumer.subscribe(runtime.source_topics, listener=runtime.rebalance_listener())
        await consumer.start()
        task = asyncio.create_task(runtime.run(), name="projector")
        state.update(pool=pool, consumer=consumer, runtime=runtime, task=task)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()
            await producer.stop()
            await pool.close()

    app = FastAPI(title="projector-svc", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)

    async def database_ready() -> None:
        async with state["pool"].acquire() as connection:
            await connection.fetchval("SELECT 1")

    async def projector_running() -> None:
        task: asyncio.Task[None] = state["task"]
        if task.done():
            raise RuntimeError(f"the projector loop stopped: {task.exception()!r}")
        await state["consumer"]._client.fetch_all_metadata()

    app.include_router(operations_router({"postgres": database_ready, "kafka": projector_running}))
    app.state.components = state
    return app
