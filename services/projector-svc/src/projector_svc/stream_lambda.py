"""The serverless path for teams without Kafka: DynamoDB stream -> Lambda -> PostgreSQL/Aurora.

`handler(event, context)` is a Lambda function fed by an event source mapping on the commits
table's stream. It applies the projector's own view code to the events the records carry, so the
read models (and query-svc on top of them) are the same as with Kafka:

- One transaction per batch (SERIALIZABLE, retried on serialization conflicts, as the projector's
  runtime does) through the same `BatchApplier`: the per-aggregate version guard (duplicates
  counted, gaps parked until the missing version arrives, an aggregate held behind an event its
  projection refused), the views, and the notifications query-svc waits on.
- Offsets are replaced by the stream's sequence numbers. The event source mapping keeps each
  shard's checkpoint and moves it only when the handler returns, and then only up to the first
  sequence number reported in `batchItemFailures`; what it delivers again (after a crash between
  commit and return, or the records after a reported one) meets the version guard and counts as
  duplicates. Events keep their record's sequence number as their origin (a header, since a
  sequence number of up to 40 digits is no Kafka offset); parked rows name the stream as topic.
- Poison records: a record that is not a commit (undecodable) and one whose event the projection
  refuses (parked, its aggregate held, as in the projector) are reported in `batchItemFailures`
  while the rest of the batch commits. A retry of an undecodable record fails again until the
  mapping's bounded retries hand it to the on-failure destination; a refused event is parked by
  then, so its retry is a duplicate and the shard moves on (`cqrs dlq list` shows it).
- Parked events are looked after here too, as the projector's maintenance does for its
  partitions: in every batch's transaction, gaps of this stream's events that stayed open longer
  than `PROJECTOR_SVC_GAP_TIMEOUT_SECONDS` expire, and aggregates marked by `cqrs dlq replay` are
  applied again with the code deployed now (so a replay runs at the stream's next invocation).
- Failover: a connection on a read-only node or ended by the server is dropped (see
  `cqrs_shared.pg_failover`) and the batch retried on a fresh one, a few times; then the
  invocation fails and Lambda retries the whole batch.

Settings are the projector's (`DATABASE_URL`, `DATABASE_SSLMODE`, `DATABASE_IAM_AUTH`, ...,
`PROJECTOR_SVC_PROJECTIONS`, naming the one projection this function runs); the pool and the
event loop live as long as the execution environment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from cqrs_shared.dynamo_stream import UndecodableRecordError, events_of_record, sequence_number
from cqrs_shared.logging_setup import configure_logging
from cqrs_shared.pg_failover import acquire, is_failover
from projector_svc.batch import BatchApplier, Outcome
from projector_svc.builds import ensure_active_build
from projector_svc.dead_letters import DeadLetter
from projector_svc.declared import projection_named
from projector_svc.incoming import Incoming, Origin, Undecodable
from projector_svc.maintenance import Maintenance
from projector_svc.pg import Connection, pool_for
from projector_svc.projection import Projection
from projector_svc.settings import ProjectorSettings

log = logging.getLogger(__name__)

#: The header that carries an event's stream sequence number in its origin.
SEQUENCE_HEADER = "dynamodb.sequence_number"
#: An origin's offset when it is a stream record: sequence numbers do not fit a Kafka offset.
NO_OFFSET = -1
_CONFLICTS = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
_ENTER_ACTIVE = """
SELECT schema_name, set_config('search_path', quote_ident(schema_name), true)
FROM projector.builds WHERE projection = $1 AND status = 'active'
"""


class BatchNotAppliedError(Exception):
    """The batch kept failing on conflicts or failovers; the invocation fails and Lambda retries."""


@dataclass
class _Letters:
    """The dead letters of one attempt: the records they came from are reported as failures."""

    letters: list[DeadLetter] = field(default_factory=list)

    async def send(self, letters: Sequence[DeadLetter], *, build: str) -> None:
        self.letters.extend(letters)


@dataclass(frozen=True, slots=True)
class Decoded:
    events: list[Incoming]
    undecodable: list[Undecodable]
    #: Every record's sequence number, in delivery order.
    sequence_numbers: list[str]


def _origin(record: Mapping[str, Any], sequence: str) -> Origin:
    return Origin(
        topic=str(record.get("eventSourceARN", "dynamodb-stream")),
        partition=0,
        offset=NO_OFFSET,
        value=json.dumps(record, default=str, separators=(",", ":")).encode(),
        headers=((SEQUENCE_HEADER, sequence.encode()),),
    )


def decode_records(records: Sequence[Mapping[str, Any]]) -> Decoded:
    """Stream records as the applier takes them: events with their origins, and poison records."""
    decoded = Decoded([], [], [])
    for index, record in enumerate(records):
        try:
            sequence = sequence_number(record)
        except UndecodableRecordError:
            # Lambda cannot retry what it cannot name; nothing else of the batch may be lost for it.
            log.exception("stream record %d has no sequence number; it cannot be reported", index)
            continue
        decoded.sequence_numbers.append(sequence)
        origin = _origin(record, sequence)
        try:
            events = events_of_record(record)
        except UndecodableRecordError as exc:
            decoded.undecodable.append(Undecodable(origin, str(exc)))
            continue
        decoded.events.extend(Incoming(event, origin) for event in events)
    return decoded


def _sequence_of(origin: Origin) -> str | None:
    """The stream sequence number of a record of this batch; None for an event read back from the
    parking (a replay, an expired gap), which Lambda delivered long ago."""
    value = dict(origin.headers).get(SEQUENCE_HEADER)
    return value.decode() if value is not None else None


def batch_item_failures(decoded: Decoded, letters: Sequence[DeadLetter]) -> dict[str, list[dict[str, str]]]:
    """Lambda's partial batch response: the records that produced dead letters, in stream order."""
    failed = {_sequence_of(letter.origin) for letter in letters}
    return {
        "batchItemFailures": [
            {"itemIdentifier": sequence} for sequence in decoded.sequence_numbers if sequence in failed
        ]
    }


class StreamProjector:
    """Applies batches of stream records to one projection in one PostgreSQL database."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        projection: Projection,
        *,
        gap_timeout: float = 60.0,
        attempts: int = 8,
    ) -> None:
        self._pool = pool
        self.projection = projection
        self._gap_timeout = gap_timeout
        self._attempts = attempts

    @classmethod
    async def open(cls, settings: ProjectorSettings, projection: Projection | None = None) -> StreamProjector:
        """Connect (TLS and IAM as configured) and make sure the projection's active build exists."""
        if projection is None:
            if len(settings.projections) != 1:
                raise ValueError(
                    "one stream handler runs one projection: name one in PROJECTOR_SVC_PROJECTIONS"
                )
            projection = projection_named(settings.projections[0])
        # One batch at a time per execution environment: one connection is all it uses.
        pool = await pool_for(settings, max_size=1)
        try:
            async with acquire(pool) as connection:
                await ensure_active_build(connection, projection)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, projection, gap_timeout=settings.gap_timeout_seconds)

    async def close(self) -> None:
        await self._pool.close()

    async def handle(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        """Apply one Lambda event's records; returns the partial batch response."""
        decoded = decode_records(event.get("Records", []))
        outcome, letters = await self._apply(decoded)
        response = batch_item_failures(decoded, letters)
        log.info(
            "stream batch applied",
            extra={
                "records": len(decoded.sequence_numbers),
                "applied": len(outcome.applied),
                "duplicates": outcome.duplicates,
                "parked": outcome.parked,
                "reported": len(response["batchItemFailures"]),
            },
        )
        return response

    async def _apply(self, decoded: Decoded) -> tuple[Outcome, list[DeadLetter]]:
        # Parked rows keep the stream as their topic and 0 as their partition (see `_origin`).
        origins = [i.origin for i in decoded.events] + [u.origin for u in decoded.undecodable]
        streams = sorted({(origin.topic, 0) for origin in origins})
        for attempt in range(self._attempts):
            sink = _Letters()
            applier = BatchApplier(self.projection, sink)
            maintenance = Maintenance(applier, sink, gap_timeout=self._gap_timeout)
            try:
                async with (
                    acquire(self._pool) as connection,
                    connection.transaction(isolation="serializable"),
                ):
                    schema = await self._enter_active(connection)
                    outcome = await applier.apply(connection, schema, decoded.events, decoded.undecodable)
                    await maintenance.expire_gaps(connection, schema, streams)
                    await maintenance.replay_requested(connection, schema, streams)
            except _CONFLICTS as exc:
                # Another shard's batch met this one in a joined row; the loser starts over.
                log.info("batch conflicted with a concurrent one (%s); retrying", type(exc).__name__)
            except Exception as exc:
                if not is_failover(exc):
                    raise
                log.warning(
                    "batch met a failover (%s: %s); retrying on a fresh connection", type(exc).__name__, exc
                )
            else:
                return outcome, sink.letters
            jitter = 0.5 + random.random()  # noqa: S311  # jitter, not security
            await asyncio.sleep(min(2.0, 0.01 * 2**attempt) * jitter)
        raise BatchNotAppliedError(f"the batch failed {self._attempts} times on conflicts or failovers")

    async def _enter_active(self, connection: Connection) -> str:
        row = await connection.fetchrow(_ENTER_ACTIVE, self.projection.name)
        if row is None:
            raise RuntimeError(f"{self.projection.name} has no active build")
        return str(row["schema_name"])


class Environment:
    """What outlives one invocation in a Lambda execution environment: the event loop the pool
    belongs to, and the projector (opened on the first invocation, from the environment)."""

    def __init__(self, *, owns_logging: bool = False) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.projector: StreamProjector | None = None
        #: Lambda's process is ours to configure; a test's or a host process's logging is not.
        self._owns_logging = owns_logging

    def run(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        """Handle one invocation's event on this environment's loop."""
        if self.loop is None:
            if self._owns_logging:
                settings = ProjectorSettings()
                configure_logging("projector-stream-lambda", settings.log_level, settings.log_format)
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(self._handle(event))

    async def _handle(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        if self.projector is None:
            self.projector = await StreamProjector.open(ProjectorSettings())
        return await self.projector.handle(event)

    def close(self) -> None:
        """Close the pool and the loop (Lambda never does; tests and local runs do)."""
        if self.loop is None:
            return
        if self.projector is not None:
            self.loop.run_until_complete(self.projector.close())
            self.projector = None
        self.loop.close()
        self.loop = None


_ENVIRONMENT = Environment(owns_logging=True)


def handler(event: Mapping[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    """The Lambda entry point (`projector_svc.stream_lambda.handler`); see the module docstring."""
    return _ENVIRONMENT.run(event)
