"""Producing events the way the outbox relay does (keyed by aggregate id, in order), plus the odd
ways tests need: duplicates, raw bytes, hand-made envelopes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType

from aiokafka import AIOKafkaProducer

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.kafka_io import event_headers, make_producer, send_all, to_json
from cqrs_shared.topics import TopicNames, partitions_of
from projector_svc.event_topics import PartitionEnds, end_offsets, read_all
from projector_svc.service import prepare_topics
from projector_svc.testing.shop_history import ShopHistory

__all__ = [
    "EventFeed",
    "PartitionEnds",
    "end_offsets",
    "keep_sending",
    "partitions_of",
    "prepare_topics",
    "read_all",
]


class EventFeed:
    """An idempotent producer onto the event topics of one topic prefix."""

    def __init__(self, bootstrap: str, topics: TopicNames) -> None:
        self.topics = topics
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer = make_producer(bootstrap, client_id="event-feed", linger_ms=2)

    async def __aenter__(self) -> EventFeed:
        await self._producer.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._producer.stop()

    async def send(self, events: Iterable[EventEnvelope], *, copies: int = 1) -> None:
        """Send events in order; `copies=2` sends each one twice in a row (an at-least-once relay)."""
        await send_all(
            self._producer,
            [
                (
                    self.topics.events(event.aggregate_type),
                    event.aggregate_id.encode(),
                    to_json(event),
                    event_headers(event),
                )
                for event in events
                for _ in range(copies)
            ],
        )

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key)


async def keep_sending(
    feed: EventFeed,
    history: ShopHistory,
    sent: list[EventEnvelope],
    stop: asyncio.Event,
    *,
    per_round: int = 40,
    pause_seconds: float = 0.05,
) -> None:
    """Live load for tests: send the history's next events in small rounds until `stop` is set,
    recording everything sent in `sent`."""
    while not stop.is_set():
        events = history.take(per_round)
        await feed.send(events)
        sent.extend(events)
        await asyncio.sleep(pause_seconds)
