"""The projector as one startable unit: topics, pool, active build, consumer, dead letters, loop.

`app.py` runs it inside the HTTP service's lifespan; tests and the benchmark run it in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer

from cqrs_shared.kafka_io import RenewingProducer, ask_a_broker, make_producer
from cqrs_shared.liveness import LivenessMonitor
from cqrs_shared.topics import TopicNames
from projector_svc.builds import ensure_active_build
from projector_svc.dead_letters import DeadLetterSink
from projector_svc.declared import projection_named
from projector_svc.event_topics import ensure_kept_forever
from projector_svc.pg import pool_for
from projector_svc.progress_gauges import ProgressGauges
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


class _Lane:
    """One projection inside a replica: its own consumer group, consumer, runtime and loop."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.runtime: ProjectorRuntime | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.gauges_task: asyncio.Task[None] | None = None

    async def start(
        self,
        settings: ProjectorSettings,
        pool: asyncpg.Pool[asyncpg.Record],
        producer: RenewingProducer,
        liveness: LivenessMonitor,
    ) -> None:
        name = self.projection.name
        topics = await prepare_topics(settings, self.projection)
        async with pool.acquire() as connection:
            build = await ensure_active_build(connection, self.projection)
        log.info("projecting %s into %s", name, build.schema)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.group_id_for(name),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.session_timeout_ms // 3,
            # Static membership: restarted under the same id, it takes its partitions back at once.
            group_instance_id=f"{settings.instance_id}.{name}",
        )
        sink = DeadLetterSink(producer, topics.events_dlq, projection=name)
        self.runtime = ProjectorRuntime(
            self.projection, pool, self.consumer, sink, settings=runtime_settings(settings)
        )
        self.consumer.subscribe(
            ProjectorRuntime.source_topics(self.projection, topics),
            listener=self.runtime.rebalance_listener(),
        )
        await self.consumer.start()
        beat = liveness.heartbeat(f"projector-{name}", settings.liveness_seconds)
        self.task = asyncio.create_task(self.runtime.run(beat), name=f"projector-{name}")
        gauges = ProgressGauges(name, self.projection.tables, pool, self.consumer)
        runtime = self.runtime
        self.gauges_task = asyncio.create_task(
            gauges.run(settings.metrics_interval_seconds, lambda: runtime.schema), name=f"gauges-{name}"
        )

    async def stop(self) -> None:
        for task in (self.gauges_task, self.task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.gauges_task = self.task = None
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await consumer.stop()

    async def check(self) -> None:
        name = self.projection.name
        if self.task is None or self.runtime is None or self.consumer is None:
            raise RuntimeError(f"{name}: not started")
        if self.task.done():
            raise RuntimeError(f"{name}: the projector loop stopped: {self.task.exception()!r}")
        if self.runtime.consecutive_failures >= UNHEALTHY_AFTER:
            raise RuntimeError(f"{name}: {self.runtime.consecutive_failures} batches in a row failed")
        await ask_a_broker(self.consumer._client)  # aiokafka's consumer exposes no public round trip


class ProjectorService:
    """One live projector replica running every configured projection (`PROJECTOR_SVC_PROJECTIONS`),
    each in its own consumer group with its own builds and checkpoints, following its active build.
    The replica shares one PostgreSQL pool and one dead-letter producer between them."""

    def __init__(self, settings: ProjectorSettings, projections: Sequence[Projection] = ()) -> None:
        self.settings = settings
        chosen = list(projections) or [projection_named(name) for name in settings.projections]
        self._lanes = [_Lane(p) for p in chosen]
        self.pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._producer: RenewingProducer | None = None
        #: What `/healthz` reports: every projection's loop must keep completing steps.
        self.liveness = LivenessMonitor()

    @property
    def projections(self) -> list[Projection]:
        return [lane.projection for lane in self._lanes]

    def runtime(self, projection: str) -> ProjectorRuntime | None:
        """The running runtime of one projection (tests inspect it)."""
        return next((lane.runtime for lane in self._lanes if lane.projection.name == projection), None)

    async def start(self) -> None:
        settings = self.settings
        self.pool = await pool_for(settings, max_size=settings.pool_size)
        # Dead letters of every projection; renewed after a failed delivery, as command-svc's is
        # (a long Kafka outage otherwise leaves an idempotent producer refusing every later send).
        self._producer = RenewingProducer(
            lambda: make_producer(settings.kafka_bootstrap_servers, client_id="projector-svc")
        )
        await self._producer.start()
        for lane in self._lanes:
            await lane.start(settings, self.pool, self._producer, self.liveness)

    async def stop(self) -> None:
        """Stop consuming, then close the clients; safe to call more than once."""
        for lane in self._lanes:
            await lane.stop()
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
        for lane in self._lanes:
            await lane.check()
