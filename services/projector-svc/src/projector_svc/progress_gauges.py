"""How far behind a projection is, refreshed on a timer: lag per partition, staleness per view and
the number of parked events.

The batch loop updates lag as batches arrive, which says nothing about a consumer that receives no
batches: one whose every batch fails, or one wedged in a fetch, would keep showing the lag of its
last good batch (often zero) while the topic grows. So every `interval_seconds` this asks Kafka
where the replica's partitions end (one ListOffsets round trip) and PostgreSQL where the active
build stands (the offsets stored with the rows, the truth the runtime resumes from). Each replica
reports the partitions it owns; a partition it lost stops being reported by it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer

from cqrs_shared.envelopes import utc_now
from projector_svc.metrics import LAG, PARKED, VIEW_STALENESS
from projector_svc.pg import Connection

log = logging.getLogger(__name__)

PartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class StoredPosition:
    next_offset: int
    last_event_at: datetime | None


async def stored_positions(connection: Connection, schema: str) -> dict[PartitionKey, StoredPosition]:
    rows = await connection.fetch(
        f'SELECT topic, partition, next_offset, last_event_at FROM "{schema}".partition_offsets'  # noqa: S608  # schema from projector.builds
    )
    return {(r["topic"], r["partition"]): StoredPosition(r["next_offset"], r["last_event_at"]) for r in rows}


async def parked_total(connection: Connection, schema: str) -> int:
    return int(await connection.fetchval(f'SELECT count(*) FROM "{schema}".parked_events'))  # noqa: S608  # schema from projector.builds


def staleness_seconds(
    ends: dict[PartitionKey, int], stored: dict[PartitionKey, StoredPosition], now: datetime
) -> float:
    """Seconds since the newest applied event of the most stale partition that is behind its end
    (0 when every owned partition has caught up): the age of what a reader sees while more waits."""
    ages = [
        (now - position.last_event_at).total_seconds()
        for key, end in ends.items()
        if (position := stored.get(key)) is not None
        and position.last_event_at is not None
        and position.next_offset < end
    ]
    return max([0.0, *ages])


class ProgressGauges:
    """Refreshes one projection's progress gauges from Kafka and PostgreSQL, until cancelled."""

    def __init__(
        self,
        projection: str,
        views: Sequence[str],
        pool: asyncpg.Pool[asyncpg.Record],
        consumer: AIOKafkaConsumer,
    ) -> None:
        self._projection = projection
        self._views = list(views)
        self._pool = pool
        self._consumer = consumer
        self._reported: set[PartitionKey] = set()

    async def refresh(self, schema: str | None) -> None:
        """One round: lag of every owned partition, staleness of every view, parked events."""
        if schema is None:
            return  # the runtime has not entered a build yet
        owned = sorted(self._consumer.assignment())
        ends = await self._consumer.end_offsets(owned) if owned else {}
        async with self._pool.acquire() as connection:
            stored = await stored_positions(connection, schema)
            parked = await parked_total(connection, schema)
        # A partition without stored offsets is read from the beginning, so all of it is lag.
        ends_by_key = {(tp.topic, tp.partition): end for tp, end in ends.items()}
        for (topic, partition), end in ends_by_key.items():
            at = stored.get((topic, partition))
            LAG.labels(self._projection, topic, str(partition)).set(
                max(0, end - (at.next_offset if at else 0))
            )
        for topic, partition in self._reported - set(ends_by_key):
            LAG.remove(self._projection, topic, str(partition))  # another replica owns it now
        self._reported = set(ends_by_key)
        stale = staleness_seconds(ends_by_key, stored, utc_now())
        for view in self._views:
            VIEW_STALENESS.labels(self._projection, view).set(stale)
        PARKED.labels(self._projection).set(parked)

    async def run(self, interval_seconds: float, schema: Callable[[], str | None]) -> None:
        """`schema` says where the runtime writes now (it follows rebuild swaps)."""
        while True:
            try:
                await self.refresh(schema())
            except Exception as exc:  # noqa: BLE001  # a dependency down: keep the last figures, try again
                log.warning("progress gauges of %s not refreshed: %r", self._projection, exc)
            await asyncio.sleep(interval_seconds)
