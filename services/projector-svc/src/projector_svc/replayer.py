"""Replaying the event topics into one fixed build, with progress: the engine of rebuilds.

A group-less consumer is assigned every partition of the source topics and resumes from the
offsets stored in the build (offset 0 for a new build), feeding the same runtime as the live
projector, so a rebuilt view goes through exactly the code the live one does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from cqrs_shared.topics import TopicNames, partitions_of
from projector_svc.builds import Build
from projector_svc.dead_letters import DeadLetters
from projector_svc.pg import Connection
from projector_svc.positions import PartitionKey, stored_offsets
from projector_svc.projection import Projection
from projector_svc.runtime import ProjectorRuntime
from projector_svc.service import runtime_settings
from projector_svc.settings import ProjectorSettings

_FETCH_BYTES_PER_PARTITION = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Progress:
    build: str
    #: `replaying` while catching up, then `swapped` (active) or `built` (left inactive).
    phase: str
    applied: int
    remaining: int
    events_per_second: float
    eta_seconds: float | None
    elapsed_seconds: float


class SwapTimeoutError(Exception):
    """The new build could not reach the live build's offsets while the live build was paused."""


class Replayer:
    """An open consumer plus runtime writing into `build`; use as `async with`."""

    def __init__(
        self,
        settings: ProjectorSettings,
        projection: Projection,
        pool: asyncpg.Pool[asyncpg.Record],
        sink: DeadLetters,
        build: Build,
        topics: TopicNames,
        report: Callable[[Progress], None],
        report_interval: float,
    ) -> None:
        self._settings = settings
        self._projection = projection
        self._build = build
        self._topics = ProjectorRuntime.source_topics(projection, topics)
        self._report = report
        self._interval = report_interval
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",  # the whole history, also for a reset nobody asked for
            enable_auto_commit=False,
            isolation_level="read_committed",
            # A whole rebuild batch in one fetch round (the default is 1 MiB per partition).
            max_partition_fetch_bytes=_FETCH_BYTES_PER_PARTITION,
        )
        self._runtime = ProjectorRuntime(
            projection,
            pool,
            self._consumer,
            sink,
            schema=build.schema,
            settings=replace(
                runtime_settings(settings),
                max_records=settings.rebuild_batch_records,
                synchronous_commit=False,
            ),
            advisory_commits=False,
        )
        self._partitions: list[TopicPartition] = []
        self._starts: dict[TopicPartition, int] = {}
        self._pool = pool
        self._started = time.monotonic()
        self.applied = 0
        self.remaining = 0
        self._rate = 0.0

    async def __aenter__(self) -> Replayer:
        await self._consumer.start()
        self._partitions = await partitions_of(self._settings.kafka_bootstrap_servers, self._topics)
        self._consumer.assign(self._partitions)
        await self._runtime.seek_to_stored(self._partitions)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def until_lag(self, lag: int) -> None:
        """Apply batches until at most `lag` records remain behind the partitions' ends."""
        window_start, window_applied = time.monotonic(), 0
        while True:
            applied = await self._runtime.step()
            self.applied += applied
            window_applied += applied
            now = time.monotonic()
            if applied and now - window_start < self._interval:
                continue
            await self._measure_remaining()
            if now > window_start:
                self._rate = window_applied / (now - window_start)
            window_start, window_applied = now, 0
            self.report_now("replaying")
            if self.remaining <= lag and self._runtime.consecutive_failures == 0:
                return

    async def until_offsets(
        self, connection: Connection, target: Mapping[PartitionKey, int], *, within: float
    ) -> None:
        """Apply batches until the build's stored offsets reach `target` on every partition."""
        deadline = time.monotonic() + within
        while True:
            stored = await stored_offsets(connection, self._build.schema)
            if all(stored.get(k, 0) >= v for k, v in target.items()):
                return
            if time.monotonic() > deadline:
                raise SwapTimeoutError(f"{self._build.schema} did not reach the live offsets in {within}s")
            self.applied += await self._runtime.step()

    async def _measure_remaining(self) -> None:
        # From the offsets the build stored, not the consumer's positions: those are ahead of
        # what is applied while a batch is fetched but not committed (or failed).
        ends = await self._consumer.end_offsets(self._partitions)
        async with self._pool.acquire() as connection:
            stored = await stored_offsets(connection, self._build.schema)
        starts = self._starts or await self._consumer.beginning_offsets(self._partitions)
        self._starts = starts
        self.remaining = sum(
            max(0, ends[tp] - stored.get((tp.topic, tp.partition), starts[tp])) for tp in self._partitions
        )

    def report_now(self, phase: str) -> None:
        eta = self.remaining / self._rate if self._rate > 0 else None
        elapsed = time.monotonic() - self._started
        self._report(
            Progress(self._build.schema, phase, self.applied, self.remaining, self._rate, eta, elapsed)
        )
