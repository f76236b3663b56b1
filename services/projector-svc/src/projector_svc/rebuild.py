"""Rebuild a projection without downtime: a fresh build from the full history, caught up, swapped in.

1. A new build schema (`<projection>_b<n>`, status `building`) is created and migrated; readers
   keep reading the active build through `read.*` the whole time.
2. A group-less consumer assigned to every partition of the event topics replays them from offset
   0 (they are kept forever, see `event_topics`) through the same runtime as the live projector,
   into the new build, with its own offsets stored in it.
3. When it is within `catch_up_lag` records of the end, it stops and activates the build: `read.*`
   is repointed in one transaction. Live replicas notice at their next transaction and resume
   from the new build's offsets, so the last records before the swap are projected by them.
A session advisory lock lets only one rebuild per projection run; an interrupted rebuild is resumed
from its stored offsets by the next one (or discarded with `fresh=True`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from cqrs_shared.kafka_io import make_producer
from projector_svc.builds import (
    Build,
    activate,
    create_build,
    drop_build,
    ensure_active_build,
    list_builds,
    migrate_build,
)
from projector_svc.dead_letters import DeadLetterSink
from projector_svc.event_topics import partitions_of
from projector_svc.pg import Connection, create_pool
from projector_svc.projection import Projection
from projector_svc.runtime import ProjectorRuntime
from projector_svc.service import prepare_topics, runtime_settings
from projector_svc.settings import ProjectorSettings

log = logging.getLogger(__name__)

_LOCK_NAMESPACE = 0x43515253


@dataclass(frozen=True, slots=True)
class Progress:
    build: str
    #: `replaying` while catching up, `swapped` once active, `built` when asked not to swap.
    phase: str
    applied: int
    remaining: int
    events_per_second: float
    eta_seconds: float | None
    elapsed_seconds: float


class RebuildAlreadyRunningError(Exception):
    """Another rebuild of this projection holds the rebuild lock."""


async def rebuild(
    settings: ProjectorSettings,
    projection: Projection,
    *,
    catch_up_lag: int = 200,
    fresh: bool = False,
    swap: bool = True,
    report: Callable[[Progress], None] = lambda _: None,
    report_interval: float = 1.0,
) -> Build:
    """Build `projection` again from the event topics' history and (by default) swap it in."""
    topics = await prepare_topics(settings, projection)
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=2)
    try:
        async with pool.acquire() as lock:
            if not await lock.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", _LOCK_NAMESPACE, f"rebuild:{projection.name}"
            ):
                raise RebuildAlreadyRunningError(f"a rebuild of {projection.name} is already running")
            try:
                build = await _target_build(lock, projection, fresh=fresh)
                producer = make_producer(settings.kafka_bootstrap_servers, client_id="projector-rebuild")
                await producer.start()
                try:
                    sink = DeadLetterSink(producer, topics.events_dlq, projection=projection.name)
                    catch_up = _CatchUp(settings, projection, pool, sink, build, report, report_interval)
                    await catch_up.run(ProjectorRuntime.source_topics(projection, topics), catch_up_lag)
                finally:
                    await producer.stop()
                if swap:
                    await activate(lock, projection, build)
                    log.info("swapped in %s", build.schema)
                catch_up.report_now("swapped" if swap else "built", remaining=catch_up.remaining)
                return build
            finally:
                await lock.execute(
                    "SELECT pg_advisory_unlock($1, hashtext($2))",
                    _LOCK_NAMESPACE,
                    f"rebuild:{projection.name}",
                )
    finally:
        await pool.close()


async def _target_build(connection: Connection, projection: Projection, *, fresh: bool) -> Build:
    """The unfinished build to resume, or a new one."""
    await ensure_active_build(connection, projection)
    unfinished = [b.build for b in await list_builds(connection, projection.name) if b.status == "building"]
    if unfinished and not fresh:
        resumed, stale = unfinished[-1], unfinished[:-1]
    else:
        resumed, stale = None, unfinished
    for build in stale:
        await drop_build(connection, build)
    if resumed is not None:
        await migrate_build(connection, projection, resumed)
        log.info("resuming the unfinished rebuild %s", resumed.schema)
        return resumed
    return await create_build(connection, projection)


class _CatchUp:
    """Replays every partition into one build until the remaining lag is small, reporting progress."""

    def __init__(
        self,
        settings: ProjectorSettings,
        projection: Projection,
        pool: asyncpg.Pool[asyncpg.Record],
        sink: DeadLetterSink,
        build: Build,
        report: Callable[[Progress], None],
        report_interval: float,
    ) -> None:
        self._settings = settings
        self._projection = projection
        self._pool = pool
        self._sink = sink
        self._build = build
        self._report = report
        self._interval = report_interval
        self._started = time.monotonic()
        self.applied = 0
        self.remaining = 0
        self._rate = 0.0

    async def run(self, source_topics: list[str], catch_up_lag: int) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            partitions = await partitions_of(self._settings.kafka_bootstrap_servers, source_topics)
            consumer.assign(partitions)
            runtime = ProjectorRuntime(
                self._projection,
                self._pool,
                consumer,
                self._sink,
                schema=self._build.schema,
                settings=runtime_settings(self._settings),
                advisory_commits=False,
            )
            await runtime.seek_to_stored(partitions)
            await self._replay(consumer, runtime, partitions, catch_up_lag)
        finally:
            await consumer.stop()

    async def _replay(
        self,
        consumer: AIOKafkaConsumer,
        runtime: ProjectorRuntime,
        partitions: list[TopicPartition],
        catch_up_lag: int,
    ) -> None:
        window_start, window_applied = time.monotonic(), 0
        while True:
            applied = await runtime.step()
            self.applied += applied
            window_applied += applied
            now = time.monotonic()
            if now - window_start < self._interval and applied:
                continue
            ends = await consumer.end_offsets(partitions)
            self.remaining = 0
            for tp in partitions:
                self.remaining += max(0, ends[tp] - await consumer.position(tp))
            if now > window_start:
                self._rate = window_applied / (now - window_start)
            window_start, window_applied = now, 0
            self.report_now("replaying", remaining=self.remaining)
            if self.remaining <= catch_up_lag and runtime.consecutive_failures == 0:
                return

    def report_now(self, phase: str, *, remaining: int) -> None:
        eta = remaining / self._rate if self._rate > 0 else None
        self._report(
            Progress(
                self._build.schema,
                phase,
                self.applied,
                remaining,
                self._rate,
                eta,
                time.monotonic() - self._started,
            )
        )
