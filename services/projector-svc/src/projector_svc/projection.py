"""The projection port: what the generic runtime needs from a set of read-model tables.

A projection owns some tables inside a build schema and is fed decoded, version-checked events in
the order each aggregate produced them. `apply` runs inside the runtime's batch transaction
together with the position bookkeeping, so a batch is either wholly applied or not at all.
Handlers must be deterministic functions of the events and the tables (no clock, no network), so
that replays and rebuilds produce the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.read_models import EventRejectedError
from projector_svc.pg import Connection

__all__ = ["EventRejectedError", "Migration", "Projection"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned SQL file; `version` orders them and is recorded once applied."""

    version: int
    name: str
    sql: str

    @classmethod
    def from_file(cls, version: int, path: Path) -> Migration:
        return cls(version, path.stem, path.read_text())


class Projection(Protocol):
    @property
    def name(self) -> str:
        """Identifier-safe name, also the prefix of its build schemas (`<name>_b<n>`)."""

    @property
    def aggregate_types(self) -> Sequence[str]:
        """Aggregate types whose event topics this projection consumes."""

    @property
    def tables(self) -> Sequence[str]:
        """Tables (inside the build schema) exposed to readers as `read.<table>` views."""

    @property
    def migrations(self) -> Sequence[Migration]:
        """The projection's versioned SQL migrations."""

    def handles(self, event_type: str) -> bool:
        """False for event types this projection does not know (they are counted and skipped)."""

    def check(self, event: EventEnvelope) -> None:
        """Validate the payload against its contract; raise `EventRejectedError` if it does not fit."""

    async def apply(self, connection: Connection, events: Sequence[EventEnvelope]) -> None:
        """Apply events (each aggregate's in version order) to the tables, set-based."""
