"""The projector runtime: Kafka events -> one PostgreSQL transaction per batch, exactly-once in effect.

- Offsets live in the build schema (`partition_offsets`), written in the same transaction as the
  rows they produced. On assignment the consumer seeks to them; Kafka's committed offsets are only
  advisory (monitoring), so a crash anywhere replays at most an uncommitted batch, which the
  per-aggregate version guard turns into counted duplicates.
- Records that are not event envelopes go to `events.dlq` with the raw value and coordinates; the
  partition moves on. Events a projection refuses park their aggregate (later events of it are
  held behind them, so its order is kept) while other aggregates flow.
- Batches run at SERIALIZABLE isolation and are retried on serialization failures, so replicas
  owning different partitions cannot interleave into a wrong join.
- Each batch notifies `cqrs_projection` with the changed aggregates, for waiting readers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.kafka_io import KafkaRecord
from cqrs_shared.topics import TopicNames
from projector_svc.builds import active_schema
from projector_svc.guard import AggregateKey, key_of, sort_batch
from projector_svc.metrics import BATCH_SECONDS, EVENTS, LAG, RETRIES, STALENESS_SECONDS
from projector_svc.pg import Connection
from projector_svc.projection import EventRejectedError, Projection

log = logging.getLogger(__name__)

Record = KafkaRecord
NOTIFY_CHANNEL = "cqrs_projection"
#: PostgreSQL refuses NOTIFY payloads from 8000 bytes; stay well below and say "overflow" instead.
_NOTIFY_LIMIT = 7000
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    group_id: str = "projector-svc"
    max_records: int = 2000
    fetch_timeout_ms: int = 200
    max_retries: int = 20


class SwitchedBuildError(Exception):
    """The active build changed under us (a rebuild was swapped in): re-seek from its offsets."""


class ProjectorRuntime:
    def __init__(
        self,
        projection: Projection,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        topics: TopicNames,
        *,
        schema: str | None = None,
        settings: RuntimeSettings = RuntimeSettings(),
    ) -> None:
        """`schema=None` follows the active build; a fixed schema is a rebuild writing its own build."""
        self._projection = projection
        self._pool = pool
        self._consumer = consumer
        self._producer = producer
        self._topics = topics
        self._fixed_schema = schema
        self._schema: str | None = schema
        self._settings = settings
        self._batch_lock = asyncio.Lock()
        self.applied_batches = 0

    @property
    def source_topics(self) -> list[str]:
        return [self._topics.events(t) for t in self._projection.aggregate_types]

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        runtime = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
            async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                # Wait for the batch in flight: its offsets are committed with its rows or not at all.
                async with runtime._batch_lock:
                    pass

            async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                await runtime.seek_to_stored(assigned)

        return _Listener()

    async def seek_to_stored(self, partitions: Sequence[TopicPartition]) -> None:
        async with self._pool.acquire() as connection:
            if self._fixed_schema is None:
                self._schema = await active_schema(connection, self._projection.name)
            rows = await connection.fetch(
                f'SELECT topic, partition, next_offset FROM "{self._schema}".partition_offsets',  # noqa: S608  # schema from projector.builds
            )
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset)
        log.info(
            "assigned %s; resuming from stored offsets in %s", [str(tp) for tp in partitions], self._schema
        )

    async def run(self) -> None:
        while True:
            batch = await self._consumer.getmany(
                timeout_ms=self._settings.fetch_timeout_ms, max_records=self._settings.max_records
            )
            records = [r for partition_records in batch.values() for r in partition_records]
            if not records:
                continue
            try:
                await self.process(records)
            except SwitchedBuildError:
                log.info("the active build changed; seeking to its stored offsets")
                await self.seek_to_stored(sorted(self._consumer.assignment()))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError):
                # Nothing of the batch was committed: read it again from the stored offsets.
                log.exception("a batch failed; retrying from the stored offsets")
                await asyncio.sleep(1.0)
                await self._reseek_after_failure()

    async def _reseek_after_failure(self) -> None:
        while True:
            try:
                await self.seek_to_stored(sorted(self._consumer.assignment()))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("PostgreSQL still unavailable; waiting")
                await asyncio.sleep(1.0)
            else:
                return

    async def process(self, records: Sequence[Record]) -> None:
        """Apply one fetched batch; retried whole on serialization failures."""
        started = time.perf_counter()
        async with self._batch_lock, self._pool.acquire() as connection:
            for attempt in range(self._settings.max_retries):
                try:
                    async with connection.transaction(isolation="serializable"):
                        outcome = await self._apply(connection, records)
                    break
                except _RETRYABLE:
                    RETRIES.labels(self._projection.name).inc()
                    await asyncio.sleep(min(0.5, 0.01 * 2**attempt))
            else:
                raise RuntimeError(f"batch still conflicting after {self._settings.max_retries} attempts")
        self._account(outcome, time.perf_counter() - started)
        self.applied_batches += 1

    async def _apply(self, connection: Connection, records: Sequence[Record]) -> _Outcome:
        if self._fixed_schema is None:
            current = await active_schema(connection, self._projection.name)
            if current != self._schema:
                raise SwitchedBuildError(current)
        await connection.execute(f'SET LOCAL search_path TO "{self._schema}"')
        outcome = _Outcome()
        events: list[tuple[EventEnvelope, Record]] = []
        for record in records:
            try:
                events.append((EventEnvelope.model_validate_json(record.value or b""), record))
            except ValidationError as exc:
                outcome.dead_letters.append((record, "undecodable", str(exc)))
        keys = sorted({key_of(e) for e, _ in events})
        applied = await _applied_versions(connection, keys)
        blocked, waiting = await _parked(connection, keys)
        result = sort_batch((e for e, _ in events), applied, blocked, waiting)
        origin = {(key_of(e), e.version): r for e, r in events}
        accepted = await self._apply_isolating_poison(connection, result.apply, origin, outcome)
        outcome.applied = accepted
        outcome.duplicates = result.duplicates
        for event, reason in result.parked:
            await _park(connection, event, origin.get((key_of(event), event.version)), reason, "")
            outcome.parked += 1
        await _unpark(connection, result.unparked)
        advanced = {key_of(e): e.version for e in accepted}
        await _save_versions(connection, advanced)
        await self._save_offsets(connection, records)
        if outcome.dead_letters:
            await self._dead_letter(outcome.dead_letters)
        await _notify(connection, self._projection.name, self._schema or "", advanced)
        return outcome

    async def _apply_isolating_poison(
        self,
        connection: Connection,
        events: list[EventEnvelope],
        origin: dict[tuple[AggregateKey, int], Record],
        outcome: _Outcome,
    ) -> list[EventEnvelope]:
        """Apply all events at once; if that fails, find the poison aggregate by aggregate and park it."""
        known = [e for e in events if self._projection.handles(e.type)]
        outcome.unknown = len(events) - len(known)
        try:
            for event in known:
                self._projection.check(event)
            async with connection.transaction():
                await self._projection.apply(connection, known)
        except (EventRejectedError, ValueError, KeyError, TypeError, asyncpg.DataError):
            log.warning(
                "a batch of %d events failed; isolating the failing aggregate", len(known), exc_info=True
            )
        else:
            return events
        accepted: list[EventEnvelope] = [e for e in events if not self._projection.handles(e.type)]
        by_key: dict[AggregateKey, list[EventEnvelope]] = defaultdict(list)
        for event in known:
            by_key[key_of(event)].append(event)
        for group in by_key.values():
            for i, event in enumerate(group):
                try:
                    self._projection.check(event)
                    async with connection.transaction():
                        await self._projection.apply(connection, [event])
                except (EventRejectedError, ValueError, KeyError, TypeError, asyncpg.DataError) as exc:
                    record = origin.get((key_of(event), event.version))
                    await _park(connection, event, record, "rejected", f"{type(exc).__name__}: {exc}")
                    if record is not None:
                        outcome.dead_letters.append((record, "rejected", f"{type(exc).__name__}: {exc}"))
                    for blocked in group[i + 1 :]:
                        await _park(
                            connection, blocked, origin.get((key_of(blocked), blocked.version)), "blocked", ""
                        )
                        outcome.parked += 1
                    break
                accepted.append(event)
        return accepted

    async def _save_offsets(self, connection: Connection, records: Sequence[Record]) -> None:
        last: dict[tuple[str, int], Record] = {}
        for record in records:
            last[(record.topic, record.partition)] = record
        rows = []
        for (topic, partition), record in sorted(last.items()):
            high = self._consumer.highwater(TopicPartition(topic, partition)) or record.offset + 1
            LAG.labels(self._projection.name, topic, str(partition)).set(max(0, high - record.offset - 1))
            rows.append((topic, partition, record.offset + 1, high, record.timestamp / 1000))
        await connection.execute(
            """
            INSERT INTO partition_offsets
                (topic, partition, next_offset, high_watermark, last_event_at, updated_at)
            SELECT t, p, o, h, to_timestamp(ts), now()
            FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::float8[]) AS x(t, p, o, h, ts)
            ON CONFLICT (topic, partition) DO UPDATE
            SET next_offset = EXCLUDED.next_offset, high_watermark = EXCLUDED.high_watermark,
                last_event_at = EXCLUDED.last_event_at, updated_at = now()
            """,
            *(list(col) for col in zip(*rows, strict=True)),
        )

    async def _dead_letter(self, dead: Sequence[tuple[Record, str, str]]) -> None:
        # Inside the transaction on purpose: the batch commits only once the DLQ has the records.
        deliveries = []
        for record, reason, error in dead:
            headers = [
                *list(record.headers or ()),
                ("dlq.reason", reason.encode()),
                ("dlq.error", error.encode()[:4000]),
                ("dlq.source.topic", record.topic.encode()),
                ("dlq.source.partition", str(record.partition).encode()),
                ("dlq.source.offset", str(record.offset).encode()),
                ("dlq.projection", self._projection.name.encode()),
            ]
            deliveries.append(
                await self._producer.send(
                    self._topics.events_dlq, value=record.value, key=record.key, headers=headers
                )
            )
        await asyncio.gather(*deliveries)

    def _account(self, outcome: _Outcome, seconds: float) -> None:
        name = self._projection.name
        BATCH_SECONDS.labels(name).observe(seconds)
        EVENTS.labels(name, "applied").inc(len(outcome.applied) - outcome.unknown)
        EVENTS.labels(name, "unknown_type").inc(outcome.unknown)
        EVENTS.labels(name, "duplicate").inc(outcome.duplicates)
        EVENTS.labels(name, "parked").inc(outcome.parked)
        EVENTS.labels(name, "dead_lettered").inc(len(outcome.dead_letters))
        now = utc_now()
        for event in outcome.applied:
            STALENESS_SECONDS.labels(name).observe(max(0.0, (now - event.occurred_at).total_seconds()))


@dataclass
class _Outcome:
    applied: list[EventEnvelope] = field(default_factory=list)
    duplicates: int = 0
    parked: int = 0
    unknown: int = 0
    dead_letters: list[tuple[Record, str, str]] = field(default_factory=list)


async def _applied_versions(connection: Connection, keys: Sequence[AggregateKey]) -> dict[AggregateKey, int]:
    if not keys:
        return {}
    rows = await connection.fetch(
        """
        SELECT v.aggregate_type, v.aggregate_id, v.version
        FROM aggregate_versions v
        JOIN unnest($1::text[], $2::text[]) AS k(t, i) ON v.aggregate_type = k.t AND v.aggregate_id = k.i
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["aggregate_type"], r["aggregate_id"]): r["version"] for r in rows}


async def _parked(
    connection: Connection, keys: Sequence[AggregateKey]
) -> tuple[set[AggregateKey], dict[AggregateKey, list[EventEnvelope]]]:
    """Aggregates blocked behind a refused event, and events waiting for a gap to close."""
    if not keys:
        return set(), {}
    rows = await connection.fetch(
        """
        SELECT p.aggregate_type, p.aggregate_id, p.reason, p.envelope
        FROM parked_events p
        JOIN unnest($1::text[], $2::text[]) AS k(t, i) ON p.aggregate_type = k.t AND p.aggregate_id = k.i
        ORDER BY p.version
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    blocked: set[AggregateKey] = set()
    waiting: dict[AggregateKey, list[EventEnvelope]] = defaultdict(list)
    for row in rows:
        key = (row["aggregate_type"], row["aggregate_id"])
        if row["reason"] == "gap":
            waiting[key].append(EventEnvelope.model_validate(row["envelope"]))
        else:
            blocked.add(key)
    return blocked, dict(waiting)


async def _park(
    connection: Connection, event: EventEnvelope, record: Record | None, reason: str, error: str
) -> None:
    await connection.execute(
        """
        INSERT INTO parked_events
            (aggregate_type, aggregate_id, version, topic, partition, "offset",
             reason, error, envelope, raw_value)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (aggregate_type, aggregate_id, version) DO UPDATE
        SET reason = EXCLUDED.reason, error = EXCLUDED.error, attempts = parked_events.attempts + 1
        """,
        event.aggregate_type,
        event.aggregate_id,
        event.version,
        record.topic if record else "",
        record.partition if record else -1,
        record.offset if record else -1,
        reason,
        error,
        event.model_dump(mode="json"),
        record.value if record else None,
    )


async def _unpark(connection: Connection, events: Sequence[EventEnvelope]) -> None:
    if events:
        await connection.execute(
            """
            DELETE FROM parked_events p USING unnest($1::text[], $2::text[], $3::bigint[]) AS k(t, i, v)
            WHERE p.aggregate_type = k.t AND p.aggregate_id = k.i AND p.version = k.v
            """,
            [e.aggregate_type for e in events],
            [e.aggregate_id for e in events],
            [e.version for e in events],
        )


async def _save_versions(connection: Connection, advanced: dict[AggregateKey, int]) -> None:
    if not advanced:
        return
    items = sorted(advanced.items())
    await connection.execute(
        """
        INSERT INTO aggregate_versions (aggregate_type, aggregate_id, version, projected_at)
        SELECT t, i, v, now() FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k(t, i, v)
        ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
        SET version = EXCLUDED.version, projected_at = now()
        WHERE aggregate_versions.version < EXCLUDED.version
        """,
        [k[0] for k, _ in items],
        [k[1] for k, _ in items],
        [v for _, v in items],
    )


async def _notify(
    connection: Connection, projection: str, schema: str, advanced: dict[AggregateKey, int]
) -> None:
    if not advanced:
        return
    changes: list[Any] = [[t, i, v] for (t, i), v in sorted(advanced.items())]
    payload = json.dumps(
        {"projection": projection, "schema": schema, "changes": changes}, separators=(",", ":")
    )
    if len(payload.encode()) > _NOTIFY_LIMIT:
        payload = json.dumps({"projection": projection, "schema": schema, "overflow": True})
    await connection.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, payload)
