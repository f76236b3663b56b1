"""Events as the runtime handles them: a decoded envelope plus the Kafka record it came from.

Decoding is the first place a record can be refused: a value that is not an event envelope has no
aggregate and no version, so nothing can wait behind it; it goes straight to the dead-letter path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.kafka_io import KafkaRecord

AggregateKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an event was read: its coordinates and raw bytes, kept for parking and dead letters."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    #: Milliseconds since the epoch; -1 (Kafka's "no timestamp") for an event read back from the
    #: parking table, which does not keep it.
    timestamp: int = -1

    @classmethod
    def of(cls, record: KafkaRecord) -> Origin:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.value,
            record.key,
            tuple(record.headers or ()),
            record.timestamp,
        )


@dataclass(frozen=True, slots=True)
class Incoming:
    event: EventEnvelope
    origin: Origin
    #: Set from `event` on construction: the guard, the poison isolation and the bookkeeping ask
    #: for them several times per event (py-spy: 4-5 % of a batch when they were properties).
    key: AggregateKey = field(init=False)
    version: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.event.aggregate_type, self.event.aggregate_id))
        object.__setattr__(self, "version", self.event.version)


@dataclass(frozen=True, slots=True)
class Undecodable:
    origin: Origin
    error: str


def decode(records: Sequence[KafkaRecord]) -> tuple[list[Incoming], list[Undecodable]]:
    """Split records into decoded events (in record order) and values that are not envelopes."""
    events: list[Incoming] = []
    refused: list[Undecodable] = []
    for record in records:
        origin = Origin.of(record)
        try:
            events.append(Incoming(EventEnvelope.model_validate_json(record.value or b""), origin))
        except ValidationError as exc:
            refused.append(Undecodable(origin, str(exc)))
    return events, refused
