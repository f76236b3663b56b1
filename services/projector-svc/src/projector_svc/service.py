"""The projector as one startable unit: topics, pool, active build, consumer, dead letters, loop.

`app.py` runs it inside the HTTP service's lifespan; tests and the benchmark run it in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cqrs_shared.kafka_io import make_producer
from cqrs_shared.liveness import LivenessMonitor
from cqrs_shared.topics import TopicNames
from projector_svc.builds import ensure_active_build
from projector_svc.dead_letters import DeadLetterSink
from projector_svc.declared import projection_named
from projector_svc.event_topics import ensure_kept_forever
from projector_svc.pg import pool_for
from projector_svc.projection import Projection
from projector_svc.runtime import ProjectorRuntime, RuntimeSettings
from projector_svc.settings import ProjectorSettings

log = logging.getLogger(__name__)

#: Consecutive failed batches after which the replica reports itself not ready.
UNHEALTHY_AFTER = 3


def runtime_settings(settings: ProjectorSettings) -> RuntimeSettings:
    return RuntimeSettings(
        max_records=settings.max_batch_records,
        fetch_timeout_ms=settings.fetch_timeout_ms,
        gap_timeout=settings.gap_timeout_seconds,
        maintenance_interval=settings.maintenance_interval_seconds,
    )


async def prepare_topics(settings: ProjectorSettings, projection: Projection) -> TopicNames:
    topics = TopicNames(settings.topic_prefix)
    await ensure_kept_forever(
        settings.kafka_bootstrap_servers,
        [*ProjectorRuntime.source_topics(projection, topics), topics.events_dlq],
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
    )
    return topics


class ProjectorService:
    """One live projector replica: joins the consumer group and follows the active build."""

    def __init__(self, settings: ProjectorSettings, projection: Projection | None = None) -> None:
        self.settings = settings
        self.projection = projection or projection_named(settings.view)
        self.pool: asyncpg.Pool[asyncpg.Record] | None = None
        self.runtime: ProjectorRuntime | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        #: What `/healthz` reports: the projector loop must keep completing steps.
        self.liveness = LivenessMonitor()

    async def start(self) -> None:
        settings = self.settings
        topics = await prepare_topics(settings, self.projection)
        self.pool = await pool_for(settings, max_size=settings.pool_size)
        async with self.pool.acquire() as connection:
            build = await ensure_active_build(connection, self.projection)
        log.info("projecting %s into %s", self.projection.name, build.schema)
        self._producer = make_producer(settings.kafka_bootstrap_servers, client_id="projector-svc")
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.session_timeout_ms // 3,
        )
        sink = DeadLetterSink(self._producer, topics.events_dlq, projection=self.projection.name)
        self.runtime = ProjectorRuntime(
            self.projection, self.pool, self._consumer, sink, settings=runtime_settings(settings)
        )
        self._consumer.subscribe(
            ProjectorRuntime.source_topics(self.projection, topics),
            listener=self.runtime.rebalance_listener(),
        )
        await self._consumer.start()
        beat = self.liveness.heartbeat(f"projector-{self.projection.name}", settings.liveness_seconds)
        self._task = asyncio.create_task(self.runtime.run(beat), name=f"projector-{self.projection.name}")

    async def stop(self) -> None:
        """Stop consuming, then close the clients; safe to call more than once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    async def check_database(self) -> None:
        if self.pool is None:
            raise RuntimeError("not started")
        async with self.pool.acquire() as connection:
            await connection.fetchval("SELECT 1")

    async def check_projecting(self) -> None:
        if self._task is None or self.runtime is None or self._consumer is None:
            raise RuntimeError("not started")
        if self._task.done():
            raise RuntimeError(f"the projector loop stopped: {self._task.exception()!r}")
        if self.runtime.consecutive_failures >= UNHEALTHY_AFTER:
            raise RuntimeError(f"{self.runtime.consecutive_failures} batches in a row failed")
        await self._consumer._client.fetch_all_metadata()  # the one broker round trip aiokafka exposes
