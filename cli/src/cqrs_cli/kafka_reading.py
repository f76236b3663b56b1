"""Reading topics for the operator tools: a consumer outside any group, errors an operator can act
on, and finding a keyed record without reading whole topics.

Every producer of the platform keys its records (aggregate id for events, command id for outcomes)
and uses the default partitioner, so a keyed record lives in the partition murmur2 of its key names:
the lookups read that partition first and the others only if it was not there (a producer with
another partitioner), and they start from a timestamp where one is known.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from cqrs_shared import topics
from cqrs_shared.kafka_io import KafkaRecord

#: Bounded, so an unreachable broker is reported in seconds rather than after aiokafka's 40 s.
REQUEST_TIMEOUT_MS = 10_000


# aiokafka logs each failed connection attempt; the tools report an unreachable broker once, in
# their own words (`BrokerUnavailableError`), so its warnings would only repeat that.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


class BrokerUnavailableError(Exception):
    """Kafka could not be reached, or refused a request; the message says which and where."""


@asynccontextmanager
async def reading(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer in no group (it commits nothing and joins nobody), stopped afterwards."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise BrokerUnavailableError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    # aiokafka 0.14 starts a background task in `start` and awaits its cancellation in `stop`: a
    # consumer stopped before that task first ran raises CancelledError from `stop`. One turn of
    # the loop lets it run.
    await asyncio.sleep(0)
    try:
        yield consumer
    except KafkaError as exc:
        raise BrokerUnavailableError(f"Kafka at {bootstrap} failed a request: {exc!r}") from exc
    finally:
        await consumer.stop()


async def partitions_of(bootstrap: str, names: Sequence[str]) -> list[TopicPartition]:
    """`cqrs_shared.topics.partitions_of` with the CLI's short request timeout."""
    return await topics.partitions_of(bootstrap, names, request_timeout_ms=REQUEST_TIMEOUT_MS)


def home_partition(key: bytes, partitions: list[TopicPartition]) -> TopicPartition:
    """The partition the default partitioner gives `key` (the Java client's murmur2)."""
    numbers = [tp.partition for tp in partitions]
    return TopicPartition(partitions[0].topic, DefaultPartitioner()(key, numbers, numbers))


async def _start_offset(consumer: AIOKafkaConsumer, tp: TopicPartition, since_ms: int | None) -> int:
    if since_ms is not None:
        found = (await consumer.offsets_for_times({tp: since_ms}))[tp]
        if found is None:  # nothing that recent: the partition's end
            return int((await consumer.end_offsets([tp]))[tp])
        return int(found.offset)
    return int((await consumer.beginning_offsets([tp]))[tp])


async def scan(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    visit: Callable[[KafkaRecord], None],
    *,
    since_ms: int | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Read `tp` from `since_ms` (or its beginning) to the end it has now, calling `visit` on every
    record, until `stop()` says everything sought was found."""
    # Assigned first: offset lookups need the topic in the consumer's metadata, which an
    # assignment adds (without it they fail as stale metadata until they time out).
    consumer.assign([tp])
    end = int((await consumer.end_offsets([tp]))[tp])
    position = await _start_offset(consumer, tp, since_ms)
    if position >= end:
        return
    consumer.seek(tp, position)
    while position < end and not stop():
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
        for record in batch.get(tp, []):
            position = record.offset + 1
            if record.offset < end:
                visit(record)
            if stop():
                return
        if not batch:
            # Only control records (transaction markers) may be left: they are never returned.
            position = max(position, await consumer.position(tp))


async def find_keyed(
    consumer: AIOKafkaConsumer,
    bootstrap: str,
    topic: str,
    key: bytes,
    visit: Callable[[KafkaRecord], None],
    *,
    since_ms: int | None = None,
    stop: Callable[[], bool],
) -> None:
    """Visit the records keyed `key`: the key's home partition of `topic` first, then (while
    `stop()` is false) the others."""
    partitions = await partitions_of(bootstrap, [topic])
    if not partitions:
        return
    home = home_partition(key, partitions)
    for tp in [home, *(p for p in partitions if p != home)]:
        if stop():
            return

        def keyed(record: KafkaRecord) -> None:
            if record.key == key:
                visit(record)

        await scan(consumer, tp, keyed, since_ms=since_ms, stop=stop)
