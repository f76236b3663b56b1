"""The projector runtime: Kafka events -> one PostgreSQL transaction per batch, exactly-once in effect.

- Offsets live in the build schema (`partition_offsets`), written in the same transaction as the
  rows they produced. On assignment the consumer seeks to them; Kafka's committed offsets are only
  advisory (for lag monitoring), so a crash anywhere replays at most an uncommitted batch, which
  the per-aggregate version guard turns into counted duplicates.
- After any failed batch, and after a seek on assignment that failed, the consumer is sought back
  to the stored offsets before it fetches again: a batch is never skipped because a later one
  succeeded, nor applied from Kafka's advisory offsets.
- Batches run at SERIALIZABLE isolation and are retried on serialization failures, so replicas
  owning different partitions cannot interleave into a wrong join, and two replicas briefly owning
  the same partition during a rebalance cannot both apply it (a batch first locks its own
  partitions' offset rows; see `positions.claim_offsets`).
- `schema=None` follows the active build (the live projector): when a rebuild is swapped in, the
  next transaction notices and the consumer re-seeks to the new build's offsets. A fixed schema is
  a rebuild writing its own build.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind

from cqrs_shared.kafka_io import KafkaRecord
from cqrs_shared.liveness import Heartbeat
from cqrs_shared.pg_failover import acquire
from cqrs_shared.topics import TopicNames
from cqrs_shared.tracing import links_from, span
from projector_svc import positions
from projector_svc.batch import BatchApplier, Outcome
from projector_svc.dead_letters import DeadLetters
from projector_svc.fetching import Fetched, checked, fetch
from projector_svc.maintenance import Maintenance
from projector_svc.metrics import BATCH_SECONDS, LAG, RETRIES, account
from projector_svc.pg import Connection
from projector_svc.positions import OffsetRow, PartitionKey
from projector_svc.projection import Projection

log = logging.getLogger(__name__)

T = TypeVar("T")
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
_ENTER_ACTIVE = """
SELECT schema_name, set_config('search_path', quote_ident(schema_name), true)
FROM projector.builds WHERE projection = $1 AND status = 'active'
"""


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    max_records: int = 2000
    fetch_timeout_ms: int = 200
    max_retries: int = 30
    #: Seconds between rounds of gap expiry, replay requests and advisory Kafka commits.
    maintenance_interval: float = 1.0
    #: Seconds an event parked for a gap waits for the missing version before it is dead-lettered.
    gap_timeout: float = 60.0
    #: False for a build that is not active (a rebuild): its batches commit without waiting for
    #: the WAL flush. A server crash may then lose the last batches, but rows and offsets together,
    #: so the build resumes from the offsets that survived; activating it (a synchronous commit)
    #: flushes every earlier commit first. Only with a fixed schema.
    synchronous_commit: bool = True


class SwitchedBuildError(Exception):
    """The active build changed under us (a rebuild was swapped in): re-seek from its offsets."""


class BatchConflictError(Exception):
    """A batch kept failing on serialization conflicts; it is retried from the stored offsets."""


class ProjectorRuntime:
    def __init__(
        self,
        projection: Projection,
        pool: asyncpg.Pool[asyncpg.Record],
        consumer: AIOKafkaConsumer,
        sink: DeadLetters,
        *,
        schema: str | None = None,
        settings: RuntimeSettings = RuntimeSettings(),
        advisory_commits: bool = True,
    ) -> None:
        self.projection = projection
        self._pool = pool
        self._consumer = consumer
        self._fixed_schema = schema
        self._schema = schema
        self._settings = settings
        self._advisory_commits = advisory_commits
        self._applier = BatchApplier(projection, sink)
        #: Next offset per partition of the batches this runtime committed (advisory Kafka commits).
        self._applied: dict[TopicPartition, int] = {}
        self._maintenance = Maintenance(self._applier, sink, gap_timeout=settings.gap_timeout)
        self._batch_lock = asyncio.Lock()
        self._needs_seek = False
        self._seek_epoch = 0
        self._last_maintenance = 0.0
        self.consecutive_failures = 0
        self.applied_batches = 0

    @property
    def schema(self) -> str | None:
        return self._schema

    @staticmethod
    def source_topics(projection: Projection, topics: TopicNames) -> list[str]:
        return [topics.events(t) for t in projection.aggregate_types]

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        runtime = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
            async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                # Let the batch in flight finish: its offsets commit with its rows or not at all.
                async with runtime._batch_lock:
                    pass

            async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                try:
                    await runtime.seek_to_stored(assigned)
                except Exception:
                    # aiokafka logs and swallows a listener's exception, then fetches from Kafka's
                    # advisory offsets, which may be ahead of the build's (after a rebuild swap):
                    # the run loop must seek before it applies anything.
                    runtime.require_seek()
                    log.exception(
                        "seeking %s to the stored offsets failed; retrying before the next fetch", assigned
                    )

        return _Listener()

    def require_seek(self) -> None:
        """Seek to the stored offsets before the next fetch, and drop a batch fetched meanwhile."""
        self._needs_seek = True
        self._seek_epoch += 1

    async def seek_to_stored(self, partitions: Sequence[TopicPartition]) -> None:
        epoch = self._seek_epoch
        async with self._pool.acquire() as connection:
            if self._fixed_schema is None:
                self._schema = await connection.fetchval(
                    "SELECT schema_name FROM projector.builds WHERE projection = $1 AND status = 'active'",
                    self.projection.name,
                )
            if self._schema is None:
                raise RuntimeError(f"{self.projection.name} has no active build")
            stored = await positions.stored_offsets(connection, self._schema)
        unstored = [tp for tp in partitions if (tp.topic, tp.partition) not in stored]
        # Explicit offsets and a synchronous `seek`, never `seek_to_beginning`: that one only
        # requests a reset, and a reset the fetcher had in flight for the fresh assignment (with
        # the consumer's own `auto_offset_reset`) can land after it and win, so a partition of a
        # new build would silently start at its end (seen in rebuilds under CPU load).
        beginnings = await self._consumer.beginning_offsets(unstored) if unstored else {}
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            self._consumer.seek(tp, beginnings[tp] if offset is None else offset)
        self._applied.clear()
        if self._seek_epoch == epoch:  # else a seek was required meanwhile, maybe of other partitions
            self._needs_seek = False
        self._seek_epoch += 1
        log.info("resuming %s from the offsets stored in %s", [str(tp) for tp in partitions], self._schema)

    async def run(self, heartbeat: Heartbeat | None = None) -> None:
        while True:
            await self.step()
            if heartbeat is not None:
                heartbeat.beat()

    async def step(self) -> int:
        """Fetch and apply one batch, then the periodic work; returns the records applied.

        Failures are logged and retried from the stored offsets; they never escape, because a
        projector that stops on a bad minute would need a human to restart it."""
        try:
            if self._needs_seek:
                await self.seek_to_stored(sorted(self._consumer.assignment()))
            fetched = await fetch(
                self._consumer,
                self.projection,
                self._seek_epoch,
                max_records=self._settings.max_records,
                timeout_ms=self._settings.fetch_timeout_ms,
            )
            records = fetched.records
            if records and (self._needs_seek or fetched.epoch != self._seek_epoch):
                # An assignment sought the partitions (or failed to) while this batch was fetched:
                # it may come from the wrong offsets. Drop it; the next step seeks first.
                self._needs_seek = True
                return 0
            if records:
                await self._traced(fetched)
            await self._maybe_maintain()
        except SwitchedBuildError as exc:
            log.info("the active build is now %s; seeking to its stored offsets", exc)
            self._needs_seek = True
            return 0
        except Exception:  # whatever failed, nothing of the batch was committed
            self._needs_seek = True
            self.consecutive_failures += 1
            log.exception(
                "a batch failed (%d in a row); retrying from the stored offsets", self.consecutive_failures
            )
            await asyncio.sleep(min(5.0, 0.1 * 2 ** min(self.consecutive_failures, 6)))
            return 0
        self.consecutive_failures = 0
        return len(records)

    async def process(self, records: Sequence[KafkaRecord]) -> Outcome:
        """Apply one fetched batch and store its offsets, in one transaction."""
        return await self._traced(checked(self.projection, self._seek_epoch, list(records)))

    async def _traced(self, fetched: Fetched) -> Outcome:
        """Traced as one span per batch, linked to each event's publish span: a batch continues many
        traces at once, so it has links where a single message would have a parent."""
        records = fetched.records
        with span(
            f"{self.projection.name} process",
            kind=SpanKind.CONSUMER,
            links=links_from(r.headers for r in records),
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.batch.message_count": len(records),
                "cqrs.projection": self.projection.name,
            },
        ):
            return await self._process(fetched)

    async def _process(self, fetched: Fetched) -> Outcome:
        records, events, undecodable = fetched.records, fetched.events, fetched.undecodable
        offsets = self._offset_rows(records)
        firsts: dict[PartitionKey, int] = {}
        for record in records:
            firsts.setdefault((record.topic, record.partition), record.offset)

        async def work(connection: Connection, schema: str) -> Outcome:
            # Records below the stored offsets were committed by an earlier batch (a redelivery
            # after a rebalance or a crash): skipping them keeps undecodable records, which have
            # no version to deduplicate by, from being dead-lettered twice.
            resume = await positions.claim_offsets(connection, firsts)
            fresh = [e for e in events if e.origin.offset >= resume[(e.origin.topic, e.origin.partition)]]
            new_refused = [
                u for u in undecodable if u.origin.offset >= resume[(u.origin.topic, u.origin.partition)]
            ]
            outcome = await self._applier.apply(connection, schema, fresh, new_refused)
            outcome.duplicates += len(events) - len(fresh)
            await positions.save_offsets(connection, offsets)
            return outcome

        started = time.perf_counter()
        outcome = await self._transact(work)
        BATCH_SECONDS.labels(self.projection.name).observe(time.perf_counter() - started)
        # Only once committed: a batch stuck in its transaction has not caught anything up.
        for row in offsets:
            self._applied[TopicPartition(row.topic, row.partition)] = row.next_offset
            LAG.labels(self.projection.name, row.topic, str(row.partition)).set(
                max(0, row.high_watermark - row.next_offset)
            )
        account(self.projection.name, outcome)
        self.applied_batches += 1
        return outcome

    async def maintain(self) -> None:
        """Gap expiry and replay requests for the partitions this replica owns."""
        owned = sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())
        if not owned:
            return
        await self._transact(lambda c, s: self._maintenance.expire_gaps(c, s, owned))
        replayed = await self._transact(lambda c, s: self._maintenance.replay_requested(c, s, owned))
        if replayed is not None:
            account(self.projection.name, replayed)

    async def _maybe_maintain(self) -> None:
        now = time.monotonic()
        if now - self._last_maintenance < self._settings.maintenance_interval:
            return
        self._last_maintenance = now
        await self.maintain()
        # The offsets this replica applied, not the consumer's positions: those may be ahead
        # (a batch fetched but dropped, or one that failed).
        applied = {tp: n for tp, n in self._applied.items() if tp in self._consumer.assignment()}
        if self._advisory_commits and applied:
            try:
                await self._consumer.commit(applied)
            except KafkaError as exc:  # advisory only: a rebalance in progress refuses commits
                log.debug("advisory offset commit skipped: %r", exc)

    async def _transact(self, work: Callable[[Connection, str], Awaitable[T]]) -> T:
        # A connection on a read-only node or ended by a failover is dropped (`acquire`) and the
        # batch retried by `step` on a fresh one.
        async with self._batch_lock, acquire(self._pool) as connection:
            for attempt in range(self._settings.max_retries):
                try:
                    async with connection.transaction(isolation="serializable"):
                        schema = await self._enter_build(connection)
                        return await work(connection, schema)
                except _RETRYABLE:
                    RETRIES.labels(self.projection.name).inc()
                    jitter = 0.5 + random.random()  # noqa: S311  # jitter, not security
                    await asyncio.sleep(min(0.5, 0.005 * 2**attempt) * jitter)
        raise BatchConflictError(f"still conflicting after {self._settings.max_retries} attempts")

    async def _enter_build(self, connection: Connection) -> str:
        """Point the transaction at the build, checking in the same round trip that it is current."""
        if self._fixed_schema is not None:
            await connection.execute(
                "SELECT set_config('search_path', quote_ident($1), true), "
                "set_config('synchronous_commit', $2, true)",
                self._fixed_schema,
                "on" if self._settings.synchronous_commit else "off",
            )
            return self._fixed_schema
        row = await connection.fetchrow(_ENTER_ACTIVE, self.projection.name)
        current: str | None = row["schema_name"] if row else None
        if current is None or current != self._schema:
            raise SwitchedBuildError(current)
        return current

    def _offset_rows(self, records: Sequence[KafkaRecord]) -> list[OffsetRow]:
        last: dict[tuple[str, int], KafkaRecord] = {}
        for record in records:
            last[(record.topic, record.partition)] = record
        rows = []
        for (topic, partition), record in sorted(last.items()):
            high = self._consumer.highwater(TopicPartition(topic, partition)) or record.offset + 1
            rows.append(OffsetRow(topic, partition, record.offset + 1, high, record.timestamp / 1000))
        return rows
