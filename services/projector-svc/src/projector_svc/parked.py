"""Operator actions on parked events of a running projection: list them, ask for their replay, wait.

These act on the *active* build through PostgreSQL only; the replica owning each partition does the
actual replay (see `maintenance`), with the code it runs now, so "replay after the fix" means:
deploy the fixed projector, then request the replay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from projector_svc.builds import active_schema
from projector_svc.incoming import AggregateKey
from projector_svc.maintenance import REPLAY
from projector_svc.pg import Connection


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    reason: str
    error: str
    attempts: int
    topic: str
    partition: int
    offset: int
    parked_at: datetime


class NoActiveBuildError(Exception):
    """The projection has never run against this database."""


async def _schema(connection: Connection, projection: str) -> str:
    schema = await active_schema(connection, projection)
    if schema is None:
        raise NoActiveBuildError(f"{projection} has no active build in this database")
    return schema


async def list_parked(
    connection: Connection,
    projection: str,
    *,
    reason: str | None = None,
    aggregates: Sequence[AggregateKey] = (),
    limit: int = 1000,
) -> list[ParkedEvent]:
    """Parked events of the active build, oldest aggregate first, each aggregate in version order."""
    schema = await _schema(connection, projection)
    rows = await connection.fetch(
        f"""
        SELECT p.*, p.envelope ->> 'type' AS event_type FROM "{schema}".parked_events p
        WHERE ($1::text IS NULL OR p.reason = $1)
          AND (cardinality($2::text[]) = 0
               OR (p.aggregate_type, p.aggregate_id) IN (SELECT * FROM unnest($2::text[], $3::text[])))
        ORDER BY p.aggregate_type, p.aggregate_id, p.version
        LIMIT $4
        """,  # noqa: S608  # schema from projector.builds
        reason,
        [k[0] for k in aggregates],
        [k[1] for k in aggregates],
        limit,
    )
    return [
        ParkedEvent(
            r["aggregate_type"],
            r["aggregate_id"],
            r["version"],
            r["event_type"] or "?",
            r["reason"],
            r["error"],
            r["attempts"],
            r["topic"],
            r["partition"],
            r["offset"],
            r["parked_at"],
        )
        for r in rows
    ]


async def parked_counts(connection: Connection, projection: str) -> dict[str, int]:
    """How many events are parked in the active build, by reason."""
    schema = await _schema(connection, projection)
    rows = await connection.fetch(
        f'SELECT reason, count(*) AS n FROM "{schema}".parked_events GROUP BY reason'  # noqa: S608  # schema from projector.builds
    )
    return {r["reason"]: r["n"] for r in rows}


async def request_replay(
    connection: Connection, projection: str, aggregates: Sequence[AggregateKey] = ()
) -> list[AggregateKey]:
    """Mark every parked event of these aggregates (all parked aggregates if none given) for
    replay; returns the aggregates marked."""
    schema = await _schema(connection, projection)
    rows = await connection.fetch(
        f"""
        UPDATE "{schema}".parked_events p SET reason = $3
        WHERE cardinality($1::text[]) = 0
           OR (p.aggregate_type, p.aggregate_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
        RETURNING p.aggregate_type, p.aggregate_id
        """,  # noqa: S608  # schema from projector.builds
        [k[0] for k in aggregates],
        [k[1] for k in aggregates],
        REPLAY,
    )
    return sorted({(r["aggregate_type"], r["aggregate_id"]) for r in rows})


async def wait_for_replay(
    connection: Connection, projection: str, aggregates: Sequence[AggregateKey], *, within: float
) -> list[ParkedEvent]:
    """Wait until a replica has replayed the aggregates; returns what is parked again afterwards.

    Raises `TimeoutError` if events are still waiting for a replica (none may be running)."""
    deadline = time.monotonic() + within
    while True:
        parked = await list_parked(connection, projection, aggregates=aggregates)
        if all(p.reason != REPLAY for p in parked):
            return parked
        if time.monotonic() > deadline:
            pending = sum(p.reason == REPLAY for p in parked)
            raise TimeoutError(f"{pending} events still wait for a projector replica to replay them")
        await asyncio.sleep(0.2)
