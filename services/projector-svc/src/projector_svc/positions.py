"""Position bookkeeping inside a build schema: offsets, applied versions and parked events.

Every function runs on a connection whose `search_path` is the build schema, inside the caller's
transaction, and is set-based: one round trip whatever the batch size (`parked_state` takes a
second one when some of the batch's aggregates wait for a gap to close).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from cqrs_shared.envelopes import EventEnvelope
from projector_svc.guard import ParkedState
from projector_svc.incoming import AggregateKey, Incoming, Origin
from projector_svc.pg import Connection

PartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class OffsetRow:
    topic: str
    partition: int
    next_offset: int
    high_watermark: int
    last_event_at: float


def _split(keys: Sequence[AggregateKey]) -> tuple[list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys]


async def applied_versions(connection: Connection, keys: Sequence[AggregateKey]) -> dict[AggregateKey, int]:
    if not keys:
        return {}
    rows = await connection.fetch(
        """
        SELECT v.aggregate_type, v.aggregate_id, v.version
        FROM aggregate_versions v
        JOIN unnest($1::text[], $2::text[]) AS k(t, i) ON v.aggregate_type = k.t AND v.aggregate_id = k.i
        """,
        *_split(keys),
    )
    return {(r["aggregate_type"], r["aggregate_id"]): r["version"] for r in rows}


def incoming_of(row: asyncpg.Record) -> Incoming:
    """A parked row back as the event it was, with its original coordinates."""
    origin = Origin(row["topic"], row["partition"], row["offset"], row["raw_value"])
    return Incoming(EventEnvelope.model_validate(row["envelope"]), origin)


PARKED_COLUMNS = (
    'p.aggregate_type, p.aggregate_id, p.version, p.reason, p.envelope, p.topic, p.partition, p."offset", '
    "p.raw_value"
)

# Per aggregate of the batch that has parked rows: whether it is blocked (a row not waiting for a
# gap; a blocked aggregate's lowest parked version is the refused or expired one, so EXISTS stops
# at its first row) and which of the batch's versions are parked already. Never the whole parked
# history of a long-blocked aggregate, which every batch touching it would otherwise read again.
_PARKED_SUMMARY = """
WITH batch AS (SELECT DISTINCT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS b(t, i, v))
SELECT k.t AS aggregate_type, k.i AS aggregate_id,
       EXISTS (SELECT 1 FROM parked_events p
               WHERE p.aggregate_type = k.t AND p.aggregate_id = k.i AND p.reason <> 'gap') AS blocked,
       ARRAY(SELECT p.version FROM parked_events p JOIN batch b
                 ON p.aggregate_type = b.t AND p.aggregate_id = b.i AND p.version = b.v
             WHERE b.t = k.t AND b.i = k.i) AS parked_versions
FROM (SELECT DISTINCT t, i FROM batch) AS k
WHERE EXISTS (SELECT 1 FROM parked_events p WHERE p.aggregate_type = k.t AND p.aggregate_id = k.i)
"""
_PARKED_OF = f"""
SELECT {PARKED_COLUMNS}
FROM parked_events p
JOIN unnest($1::text[], $2::text[]) AS k(t, i) ON p.aggregate_type = k.t AND p.aggregate_id = k.i
ORDER BY p.aggregate_type, p.aggregate_id, p.version
"""  # noqa: S608  # a constant column list


async def parked_state(connection: Connection, events: Sequence[Incoming]) -> ParkedState:
    """What the version guard needs to know about the parking for these events: which of their
    aggregates are blocked, which of the events are parked already, and the events parked for a
    gap of the other aggregates (to apply once the gap closes)."""
    positions = sorted({(e.key, e.version) for e in events})
    if not positions:
        return ParkedState()
    rows = await connection.fetch(
        _PARKED_SUMMARY, [k[0] for k, _ in positions], [k[1] for k, _ in positions], [v for _, v in positions]
    )
    blocked = frozenset((r["aggregate_type"], r["aggregate_id"]) for r in rows if r["blocked"])
    versions = {((r["aggregate_type"], r["aggregate_id"]), v) for r in rows for v in r["parked_versions"]}
    # An aggregate with parked rows that is not blocked has only rows waiting for a gap.
    gapped = sorted((r["aggregate_type"], r["aggregate_id"]) for r in rows if not r["blocked"])
    waiting: dict[AggregateKey, list[Incoming]] = defaultdict(list)
    for item in await parked_events(connection, gapped):
        waiting[item.key].append(item)
        versions.add((item.key, item.version))
    return ParkedState(blocked, dict(waiting), frozenset(versions))


async def parked_events(
    connection: Connection, keys: Sequence[AggregateKey], *, lock: bool = False
) -> list[Incoming]:
    """Every parked event of these aggregates, in version order; `lock` locks their rows."""
    if not keys:
        return []
    rows = await connection.fetch(_PARKED_OF + (" FOR UPDATE OF p" if lock else ""), *_split(keys))
    return [incoming_of(r) for r in rows]


async def park(connection: Connection, items: Sequence[tuple[Incoming, str, str]]) -> None:
    """Park events with a reason and error; a row parked again keeps its first `parked_at`,
    except a row that goes back to waiting for a gap, whose wait starts over."""
    if not items:
        return
    await connection.execute(
        """
        INSERT INTO parked_events AS p
            (aggregate_type, aggregate_id, version, topic, partition, "offset",
             reason, error, envelope, raw_value)
        SELECT t, i, v, tp, pa, o, r, e, env::jsonb, raw
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::bigint[],
                    $7::text[], $8::text[], $9::text[], $10::bytea[])
            AS x(t, i, v, tp, pa, o, r, e, env, raw)
        ON CONFLICT (aggregate_type, aggregate_id, version) DO UPDATE
        SET reason = EXCLUDED.reason, error = EXCLUDED.error, attempts = p.attempts + 1,
            parked_at = CASE WHEN EXCLUDED.reason = 'gap' AND p.reason <> 'gap' THEN now()
                             ELSE p.parked_at END
        """,
        [i.event.aggregate_type for i, _, _ in items],
        [i.event.aggregate_id for i, _, _ in items],
        [i.version for i, _, _ in items],
        [i.origin.topic for i, _, _ in items],
        [i.origin.partition for i, _, _ in items],
        [i.origin.offset for i, _, _ in items],
        [reason for _, reason, _ in items],
        [error for _, _, error in items],
        [i.event.model_dump_json() for i, _, _ in items],
        [i.origin.value for i, _, _ in items],
    )


async def unpark(connection: Connection, positions: Sequence[tuple[AggregateKey, int]]) -> None:
    if not positions:
        return
    await connection.execute(
        """
        DELETE FROM parked_events p USING unnest($1::text[], $2::text[], $3::bigint[]) AS k(t, i, v)
        WHERE p.aggregate_type = k.t AND p.aggregate_id = k.i AND p.version = k.v
        """,
        [k[0] for k, _ in positions],
        [k[1] for k, _ in positions],
        [v for _, v in positions],
    )


async def save_versions(connection: Connection, advanced: Mapping[AggregateKey, int]) -> None:
    """Raise each aggregate's applied version; never lowers one (a late replica cannot undo)."""
    if not advanced:
        return
    items = sorted(advanced.items())
    await connection.execute(
        """
        INSERT INTO aggregate_versions AS a (aggregate_type, aggregate_id, version, projected_at)
        SELECT t, i, v, now() FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k(t, i, v)
        ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
        SET version = EXCLUDED.version, projected_at = now()
        WHERE a.version < EXCLUDED.version
        """,
        [k[0] for k, _ in items],
        [k[1] for k, _ in items],
        [v for _, v in items],
    )


async def claim_offsets(
    connection: Connection, firsts: Mapping[PartitionKey, int]
) -> dict[PartitionKey, int]:
    """Lock the rows of the batch's partitions and return where each resumes: its stored offset,
    or the batch's first offset (given per partition) where none is stored yet.

    A write, not a read: at SERIALIZABLE a SELECT takes predicate locks, on the whole table when
    the planner scans it sequentially (which it always does for a table this small), so replicas
    on different partitions would always conflict; the ON CONFLICT arbiter takes none. The row
    locks make two replicas briefly owning the same partition meet at the start of the batch, and
    the later one fails on the concurrent update and is retried."""
    if not firsts:
        return {}
    items = sorted(firsts.items())
    rows = await connection.fetch(
        """
        INSERT INTO partition_offsets AS o (topic, partition, next_offset)
        SELECT t, p, n FROM unnest($1::text[], $2::int[], $3::bigint[]) AS x(t, p, n)
        ON CONFLICT (topic, partition) DO UPDATE
        SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset)
        RETURNING topic, partition, next_offset
        """,
        [k[0] for k, _ in items],
        [k[1] for k, _ in items],
        [v for _, v in items],
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def save_offsets(connection: Connection, rows: Sequence[OffsetRow]) -> None:
    """Store where each partition resumes; offsets only move forward, so a replica that lost its
    partition in a rebalance and commits late cannot rewind the one that took it over."""
    if not rows:
        return
    await connection.execute(
        """
        INSERT INTO partition_offsets AS o
            (topic, partition, next_offset, high_watermark, last_event_at, updated_at)
        SELECT t, p, n, h, to_timestamp(ts), now()
        FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::float8[]) AS x(t, p, n, h, ts)
        ON CONFLICT (topic, partition) DO UPDATE
        SET next_offset = EXCLUDED.next_offset, high_watermark = EXCLUDED.high_watermark,
            last_event_at = EXCLUDED.last_event_at, updated_at = now()
        WHERE o.next_offset <= EXCLUDED.next_offset
        """,
        [r.topic for r in rows],
        [r.partition for r in rows],
        [r.next_offset for r in rows],
        [r.high_watermark for r in rows],
        [r.last_event_at for r in rows],
    )


async def stored_offsets(connection: Connection, schema: str) -> dict[PartitionKey, int]:
    rows = await connection.fetch(
        f'SELECT topic, partition, next_offset FROM "{schema}".partition_offsets'  # noqa: S608  # schema from projector.builds
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
