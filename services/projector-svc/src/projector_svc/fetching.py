"""One fetch, decoded and checked before the batch's transaction begins.

Decoding envelopes and validating payloads is about half of the projector's CPU per event and
needs no database: done before the transaction, it does not lengthen the time a batch holds its
locks (the payload checks the poison isolation repeats inside the transaction are memo hits).

Fetching the next batch while the current one was in its transaction was tried and measured
(back-to-back drains and rebuilds of 60,000-100,000 events): no throughput gain, 25 % longer
transactions, slightly more CPU. The projector here is bound by its own Python work, which
overlapping does not reduce; see bench/README.md (the projector).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from cqrs_shared.kafka_io import KafkaRecord
from projector_svc.incoming import Incoming, Undecodable, decode
from projector_svc.projection import Projection


@dataclass(frozen=True, slots=True)
class Fetched:
    """One `getmany`, decoded; `epoch` is the runtime's seek epoch when the fetch began."""

    epoch: int
    records: list[KafkaRecord]
    events: list[Incoming]
    undecodable: list[Undecodable]


def checked(projection: Projection, epoch: int, records: list[KafkaRecord]) -> Fetched:
    """Decode `records` and check every event the projection handles (a refusal is decided
    inside the transaction, where the poison isolation checks again; nothing is decided here)."""
    events, undecodable = decode(records)
    for item in events:
        if projection.handles(item.event.type):
            with contextlib.suppress(Exception):
                projection.check(item.event)
    return Fetched(epoch, records, events, undecodable)


async def fetch(
    consumer: AIOKafkaConsumer, projection: Projection, epoch: int, *, max_records: int, timeout_ms: int
) -> Fetched:
    batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    return checked(projection, epoch, [r for partition_records in batch.values() for r in partition_records])
