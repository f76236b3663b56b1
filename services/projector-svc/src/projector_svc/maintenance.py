"""Periodic work on parked events, done by the replica that owns their partition.

- Gap expiry: an event parked for a gap waits `gap_timeout` seconds for the missing version; then
  the first waiting event goes to the dead-letter path (reason `gap`), its row becomes
  `gap_expired` and the aggregate's later events `blocked`, so the aggregate stays in order and
  waits for an operator (`cqrs dlq replay`) instead of waiting silently forever.
- Replay: `cqrs dlq replay` marks an aggregate's parked rows `replay`; the owner takes them off the
  parking and runs them through the batch path again (with the code it runs now, i.e. after a fix).
Both run inside the runtime's batch transaction, so they serialize with the batches.
"""

from __future__ import annotations

from collections.abc import Sequence

from projector_svc import positions
from projector_svc.batch import BatchApplier, Outcome
from projector_svc.dead_letters import GAP, DeadLetter, DeadLetters
from projector_svc.guard import BLOCKED
from projector_svc.incoming import AggregateKey
from projector_svc.pg import Connection
from projector_svc.positions import PartitionKey

GAP_EXPIRED = "gap_expired"
REPLAY = "replay"
_KEYS_PER_ROUND = 200

_OWNED = """(p.partition < 0 OR (p.topic, p.partition) IN (SELECT * FROM unnest($1::text[], $2::int[])))"""


def _owned(partitions: Sequence[PartitionKey]) -> tuple[list[str], list[int]]:
    return [t for t, _ in partitions], [p for _, p in partitions]


class Maintenance:
    def __init__(self, applier: BatchApplier, sink: DeadLetters, *, gap_timeout: float) -> None:
        self._applier = applier
        self._sink = sink
        self._gap_timeout = gap_timeout

    async def expire_gaps(
        self, connection: Connection, schema: str, partitions: Sequence[PartitionKey]
    ) -> int:
        """Dead-letter the first event of each aggregate whose gap stayed open too long."""
        rows = await connection.fetch(
            f"""
            SELECT {positions.PARKED_COLUMNS}, p.parked_at
            FROM parked_events p
            WHERE p.reason = 'gap'
              AND (p.aggregate_type, p.aggregate_id) IN (
                SELECT p.aggregate_type, p.aggregate_id FROM parked_events p
                WHERE p.reason = 'gap' AND p.parked_at < now() - make_interval(secs => $3) AND {_OWNED}
                LIMIT {_KEYS_PER_ROUND})
            ORDER BY p.aggregate_type, p.aggregate_id, p.version
            FOR UPDATE OF p
            """,  # noqa: S608  # constants only
            *_owned(partitions),
            self._gap_timeout,
        )
        firsts: dict[AggregateKey, int] = {}
        marks: list[tuple[AggregateKey, int, str, str]] = []
        letters: list[DeadLetter] = []
        for row in rows:
            item = positions.incoming_of(row)
            if item.key in firsts:
                held = f"held behind version {firsts[item.key]}, whose gap expired"
                marks.append((item.key, item.version, BLOCKED, held))
                continue
            firsts[item.key] = item.version
            error = (
                f"version {item.version} of {item.key[0]} {item.key[1]} waited more than "
                f"{self._gap_timeout:g}s for an earlier version that never arrived"
            )
            marks.append((item.key, item.version, GAP_EXPIRED, error))
            letters.append(DeadLetter(item.origin, GAP, error, item))
        await _mark(connection, marks)
        await self._sink.send(letters, build=schema)
        return len(letters)

    async def replay_requested(
        self, connection: Connection, schema: str, partitions: Sequence[PartitionKey]
    ) -> Outcome | None:
        """Take the aggregates marked for replay off the parking and apply them again."""
        rows = await connection.fetch(
            f"""
            SELECT DISTINCT p.aggregate_type, p.aggregate_id FROM parked_events p
            WHERE p.reason = 'replay' AND {_OWNED}
            LIMIT {_KEYS_PER_ROUND}
            """,  # noqa: S608  # constants only
            *_owned(partitions),
        )
        if not rows:
            return None
        keys = sorted((r["aggregate_type"], r["aggregate_id"]) for r in rows)
        events = await positions.parked_events(connection, keys, lock=True)
        return await self._applier.apply(connection, schema, events, replay=True)


async def _mark(connection: Connection, marks: Sequence[tuple[AggregateKey, int, str, str]]) -> None:
    if not marks:
        return
    await connection.execute(
        """
        UPDATE parked_events p SET reason = m.r, error = m.e, attempts = p.attempts + 1
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[]) AS m(t, i, v, r, e)
        WHERE p.aggregate_type = m.t AND p.aggregate_id = m.i AND p.version = m.v
        """,
        [k[0] for k, _, _, _ in marks],
        [k[1] for k, _, _, _ in marks],
        [v for _, v, _, _ in marks],
        [r for _, _, r, _ in marks],
        [e for _, _, _, e in marks],
    )
