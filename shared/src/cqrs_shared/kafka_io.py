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
        # `send` only enqueues; awaiting the delivery futures afterwards lets batches form.
        deliveries = [
            await self._producer.send(
                self._topics.events(event.aggregate_type),
                value=to_json(event),
                key=event.aggregate_id.encode(),
                headers=event_headers(event),
            )
            for event in events
        ]
        if deliveries:
            await asyncio.gather(*deliveries)
