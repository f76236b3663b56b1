"""What the soak's clients sent and every answer they saw: the checker's account of the client side."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from soak.workload import Planned

AckSource = Literal["http", "results-topic"]


@dataclass(frozen=True)
class Ack:
    """An outcome a client saw: an HTTP answer, or a record on `command-results`."""

    command_id: str
    source: AckSource
    status: str  # accepted | rejected | dead-letter
    version: int | None = None
    code: str | None = None
    aggregate_id: str | None = None
    #: Events the command produced (accepted only): 0 means decided as a no-op, stored nowhere.
    events: int | None = None
    at: float = 0.0

    @classmethod
    def from_outcome(cls, outcome: dict[str, Any], source: AckSource, at: float) -> Ack:
        return cls(
            command_id=str(outcome.get("command_id")),
            source=source,
            status=str(outcome.get("status")),
            version=outcome.get("version"),
            code=outcome.get("code"),
            aggregate_id=outcome.get("aggregate_id"),
            events=len(outcome["event_ids"]) if isinstance(outcome.get("event_ids"), list) else None,
            at=at,
        )

    def same_outcome(self, other: Ack) -> bool:
        """Two answers to one command id agree: same status, and same version or rejection code."""
        if self.status != other.status:
            return False
        if self.status == "accepted":
            return (self.version, self.aggregate_id) == (other.version, other.aggregate_id)
        return self.code == other.code


@dataclass(frozen=True)
class ServerError:
    """A 5xx other than 503: a violation wherever it comes from."""

    at: float
    where: str
    status: int
    detail: str


@dataclass
class Ledger:
    sends: list[Planned] = field(default_factory=list)
    #: Command ids (and garbage markers) whose record Kafka acknowledged on the commands topic.
    produced: set[str] = field(default_factory=set)
    #: Topic sends that never got a Kafka acknowledgement before the client gave up.
    unproduced: set[str] = field(default_factory=set)
    http_acks: list[Ack] = field(default_factory=list)
    #: HTTP sends that got no answer but 503s and broken connections until the client gave up.
    http_gave_up: list[str] = field(default_factory=list)
    server_errors: list[ServerError] = field(default_factory=list)
    #: (where, HTTP status or "error") -> count, for the report.
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Arrivals not sent because too many requests were already waiting (open loop back-pressure).
    shed: int = 0

    def status(self, where: str, status: int | str, detail: str = "") -> None:
        self.statuses[(where, str(status))] += 1
        if isinstance(status, int) and status >= 500 and status != 503:
            self.server_errors.append(ServerError(time.monotonic(), where, status, detail[:300]))

    def first_plans(self) -> dict[str, Planned]:
        """The first send of every command id (a duplicate repeats an earlier one)."""
        plans: dict[str, Planned] = {}
        for planned in self.sends:
            plans.setdefault(planned.command_id, planned)
        return plans
