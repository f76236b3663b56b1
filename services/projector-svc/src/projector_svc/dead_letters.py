"""The dead-letter path: refused records go to `events.dlq` with why, where from, and the raw value.

Headers follow the platform's `dlq.*` convention (the command side uses the same names), so one
tool reads every dead-letter topic. Letters are sent inside the batch transaction and awaited
before it commits: a batch never commits having lost its dead letters (a retried batch may send a
letter twice, which is the safe side for an operator's queue).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer

from projector_svc.incoming import Incoming, Origin

#: Dead-letter reasons.
UNDECODABLE = "undecodable"
REJECTED = "rejected"
GAP = "gap"

_ERROR_LIMIT = 4000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    origin: Origin
    reason: str
    error: str
    #: The decoded event, when the record was one.
    event: Incoming | None = None


class DeadLetters(Protocol):
    """Where refused records go. `send` returns once every letter is durably stored (or raises,
    which fails the batch so that nothing of it commits)."""

    async def send(self, letters: Sequence[DeadLetter], *, build: str) -> None: ...


class MemoryDeadLetters:
    """Keeps letters in a list: for tests that drive batches without Kafka."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letters: Sequence[DeadLetter], *, build: str) -> None:
        self.letters.extend(letters)


class DeadLetterSink:
    """Sends dead letters to one Kafka topic, awaiting every acknowledgement."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, *, projection: str) -> None:
        self._producer = producer
        self.topic = topic
        self._projection = projection

    def headers(self, letter: DeadLetter, build: str) -> list[tuple[str, bytes]]:
        origin = letter.origin
        headers = [
            *origin.headers,
            ("dlq.reason", letter.reason.encode()),
            ("dlq.error", letter.error.encode()[:_ERROR_LIMIT]),
            ("dlq.source.topic", origin.topic.encode()),
            ("dlq.source.partition", str(origin.partition).encode()),
            ("dlq.source.offset", str(origin.offset).encode()),
            ("dlq.projection", self._projection.encode()),
            ("dlq.build", build.encode()),
        ]
        if letter.event is not None:
            event = letter.event.event
            headers += [
                ("dlq.aggregate_type", event.aggregate_type.encode()),
                ("dlq.aggregate_id", event.aggregate_id.encode()),
                ("dlq.version", str(event.version).encode()),
            ]
        return headers

    async def send(self, letters: Sequence[DeadLetter], *, build: str) -> None:
        # `send` only enqueues; awaiting the futures afterwards lets the letters share requests.
        deliveries = [
            await self._producer.send(
                self.topic,
                value=letter.origin.value,
                key=letter.origin.key,
                headers=self.headers(letter, build),
            )
            for letter in letters
        ]
        if deliveries:
            await asyncio.gather(*deliveries)
