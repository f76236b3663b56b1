"""The dead-letter path: refused records go to `events.dlq` with why, where from, and the raw value.

Headers follow the platform's `dlq.*` convention (the command side uses the same names), so one
tool reads every dead-letter topic. Letters are sent inside the batch transaction and awaited
before it commits: a batch never commits having lost its dead letters (a retried batch may send a
letter twice, which is the safe side for an operator's queue).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cqrs_shared.kafka_io import Headers, RecordSender, dead_letter_headers, flow_ids, send_all
from cqrs_shared.tracing import trace_id_in_headers
from projector_svc.incoming import Incoming, Origin

#: Dead-letter reasons.
UNDECODABLE = "undecodable"
REJECTED = "rejected"
GAP = "gap"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    origin: Origin
    reason: str
    error: str
    #: The decoded event, when the record was one.
    event: Incoming | None = None


def flow_of(letter: DeadLetter) -> tuple[str | None, str | None, str | None]:
    """The correlation, causation and trace ids of a letter's flow, where known: from the event, or
    for an undecodable record from the headers its publisher wrote."""
    own = dict(letter.origin.headers)
    trace_id = trace_id_in_headers(letter.origin.headers)
    if letter.event is not None:
        return letter.event.event.correlation_id, letter.event.event.causation_id, trace_id
    correlation_id = own["correlation_id"].decode(errors="replace") if "correlation_id" in own else None
    causation_id = own["causation_id"].decode(errors="replace") if "causation_id" in own else None
    return correlation_id, causation_id, trace_id


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

    def __init__(self, producer: RecordSender, topic: str, *, projection: str) -> None:
        self._producer = producer
        self.topic = topic
        self._projection = projection

    def headers(self, letter: DeadLetter, build: str) -> Headers:
        extra = [("projection", self._projection), ("build", build)]
        if letter.event is not None:
            event = letter.event.event
            extra += [
                ("aggregate_type", event.aggregate_type),
                ("aggregate_id", event.aggregate_id),
                ("version", str(event.version)),
            ]
        extra += flow_ids(*flow_of(letter))
        return dead_letter_headers(letter.origin, letter.reason, letter.error, *extra)

    async def send(self, letters: Sequence[DeadLetter], *, build: str) -> None:
        await send_all(
            self._producer,
            [
                (self.topic, letter.origin.key, letter.origin.value, self.headers(letter, build))
                for letter in letters
            ],
        )
