"""Kafka producing the way every service here needs it: idempotent, `acks=all`, JSON, keyed.

Ordering: one producer with idempotence keeps each partition's records in send order even across
retries, so sending an aggregate's events in version order and awaiting all acknowledgements keeps
them in that order on the topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.topics import TopicNames

Headers = list[tuple[str, bytes]]


class KafkaRecord(Protocol):
    """The fields of a consumed record the services read (aiokafka's `ConsumerRecord` has them)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


#: Kafka headers are not meant for essays; long error texts are cut to this many bytes.
DLQ_ERROR_LIMIT = 4000


def dead_letter_headers(record: KafkaRecord, reason: str, error: str, *extra: tuple[str, str]) -> Headers:
    """The record's own headers plus the `dlq.*` ones every dead letter here carries: the reason,
    the error, the source coordinates, and any `extra` (name, value) pairs as `dlq.<name>`."""
    return [
        *list(record.headers or ()),
        ("dlq.reason", reason.encode()),
        ("dlq.error", error.encode()[:DLQ_ERROR_LIMIT]),
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
        *((f"dlq.{name}", value.encode()) for name, value in extra),
    ]


async def send_all(
    producer: AIOKafkaProducer, records: Sequence[tuple[str, bytes | None, bytes | None, Headers]]
) -> None:
    """Send (topic, key, value, headers) records and return once Kafka acknowledged all of them.

    `send` only enqueues; awaiting the delivery futures afterwards lets the records share requests,
    and the idempotent producer keeps their order per partition.
    """
    deliveries = [
        await producer.send(topic, value=value, key=key, headers=headers)
        for topic, key, value, headers in records
    ]
    if deliveries:
        await asyncio.gather(*deliveries)


def make_producer(bootstrap_servers: str, *, client_id: str, linger_ms: int = 5) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
    )


def to_json(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


def event_headers(event: EventEnvelope) -> Headers:
    return [
        ("event_type", event.type.encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("correlation_id", event.correlation_id.encode()),
    ]


class KafkaEventPublisher:
    """Publishes events to `events.<aggregate type>`, keyed by aggregate id, and awaits every ack."""

    def __init__(self, producer: AIOKafkaProducer, topics: TopicNames) -> None:
        self._producer = producer
        self._topics = topics

    async def publish(self, events: Sequence[EventEnvelope]) -> None:
        await send_all(
            self._producer,
            [
                (
                    self._topics.events(event.aggregate_type),
                    event.aggregate_id.encode(),
                    to_json(event),
                    event_headers(event),
                )
                for event in events
            ],
        )
