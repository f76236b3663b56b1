"""The next batch, fetched, decoded and checked while the current one is in its transaction.

A batch is Python work (decoding envelopes, validating payloads: about half of the projector's CPU
per event) and then waits on PostgreSQL; in series, each side idles while the other works (py-spy
and /proc of a drain: projector and PostgreSQL CPU add up to its wall time). The runtime starts
fetching the next batch when it begins applying one, so the event loop decodes and checks it
while the transaction awaits the database.

Nothing of a prefetched batch touches the database, so dropping one is free. Each carries the
runtime's seek epoch from before its fetch: after a seek (a failed batch, an assignment, a build
switch) the runtime drops a batch fetched under an older epoch, exactly as it drops a plain fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from cqrs_shared.kafka_io import KafkaRecord
from projector_svc.incoming import Incoming, Undecodable, decode
from projector_svc.projection import Projection

#: Records decoded between two yields to the event loop (a few milliseconds of CPU).
_CHUNK = 250


@dataclass(frozen=True, slots=True)
class Fetched:
    """One `getmany`, decoded; `epoch` is the runtime's seek epoch when the fetch began."""

    epoch: int
    records: list[KafkaRecord]
    events: list[Incoming]
    undecodable: list[Undecodable]


class Prefetcher:
    """At most one fetch in flight ahead of the batch being applied."""

    def __init__(
        self, consumer: AIOKafkaConsumer, projection: Projection, *, max_records: int, timeout_ms: int
    ) -> None:
        self._consumer = consumer
        self._projection = projection
        self._max_records = max_records
        self._timeout_ms = timeout_ms
        self._task: asyncio.Task[Fetched] | None = None

    def start(self, epoch: int) -> None:
        """Begin fetching the next batch in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._fetch(epoch), name="projector-prefetch")

    async def next(self, epoch: int) -> Fetched:
        """The batch fetched in the background, or a fresh fetch when none was started."""
        task, self._task = self._task, None
        if task is not None:
            return await task
        return await self._fetch(epoch)

    async def discard(self) -> None:
        """Wait for a fetch in flight and drop it (before a seek: the consumer's positions move)."""
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception):  # it is dropped; a broken consumer shows on the next fetch
                await task

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _fetch(self, epoch: int) -> Fetched:
        batch = await self._consumer.getmany(timeout_ms=self._timeout_ms, max_records=self._max_records)
        records = [r for partition_records in batch.values() for r in partition_records]
        events: list[Incoming] = []
        undecodable: list[Undecodable] = []
        for start in range(0, len(records), _CHUNK):
            decoded, refused = decode(records[start : start + _CHUNK])
            for item in decoded:
                if self._projection.handles(item.event.type):
                    # Validated now, while the previous batch waits on the database; the poison
                    # isolation checks again inside the transaction (a memo hit for a valid
                    # payload) and refuses what fails there, so nothing is decided here.
                    with contextlib.suppress(Exception):
                        self._projection.check(item.event)
            events += decoded
            undecodable += refused
            # Let the transaction in flight send its next statement: one long stretch of CPU
            # would overlap only the statement PostgreSQL happens to be running.
            await asyncio.sleep(0)
        return Fetched(epoch, records, events, undecodable)
