"""The write store port: where accepted commands become durable facts.

Contract, proven for every adapter by the suite in `cqrs_shared.testing.write_store_contract`:
- One accepted command is one `Commit`, written atomically as one record: its events, the aggregate
  state after them, its command id and a `published` marker. There is no second write that could
  be lost between "stored" and "to be published": the commit *is* the outbox entry.
- Optimistic concurrency: at most one commit per (aggregate, base version). A second one raises
  `ConcurrencyConflictError`; nothing of it is stored.
- Idempotency: at most one outcome per command id, accepted (a commit) or rejected (a recorded
  rejection), decided by the store, not by the caller: a second attempt raises
  `DuplicateCommandError` carrying the outcome already stored.
- History is never rewritten: commits stay, so read models can be rebuilt from them.
- A commit larger than the store can write atomically raises `CommitTooLargeError` (nothing stored).
- Infrastructure failures raise `WriteStoreUnavailableError` (callers retry; the input is kept).
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.results import Accepted, CommandResult, Rejected


def shard_of(aggregate_type: str, aggregate_id: str, shards: int) -> int:
    """The relay shard of an aggregate: stable across processes and versions (crc32, not `hash`)."""
    return zlib.crc32(f"{aggregate_type}/{aggregate_id}".encode()) % shards


class Commit(BaseModel):
    """One accepted command as stored: the unit of atomicity, idempotency and publishing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggregate_type: str
    aggregate_id: str
    base_version: int
    version: int
    command_id: uuid.UUID
    command_type: str
    correlation_id: str
    events: list[EventEnvelope]
    state: dict[str, Any]
    committed_at: datetime
    shard: int
    published: bool = False
    #: The W3C trace context (`traceparent`, `tracestate`) of the command that made this commit, so
    #: that publishing it, in this process or in another after a crash, continues that trace. None
    #: when tracing was off.
    trace_context: dict[str, str] | None = None

    @property
    def commit_id(self) -> str:
        """Unique per (aggregate, base version): the key that makes concurrent commits collide."""
        return f"{self.aggregate_type}/{self.aggregate_id}@{self.base_version}"

    def outcome(self) -> Accepted:
        """The answer to the command this commit accepted; the same every time it is asked."""
        return Accepted(
            command_id=self.command_id,
            command_type=self.command_type,
            aggregate_id=self.aggregate_id,
            correlation_id=self.correlation_id,
            aggregate_type=self.aggregate_type,
            version=self.version,
            event_ids=[e.event_id for e in self.events],
            consistency_token=ConsistencyToken(self.aggregate_type, self.aggregate_id, self.version).encode(),
        )


class ConcurrencyConflictError(Exception):
    """Another commit already holds this aggregate's base version."""


class DuplicateCommandError(Exception):
    """This command id already has an outcome; `existing` is the one stored."""

    def __init__(self, existing: CommandResult) -> None:
        super().__init__(f"command {existing.command_id} was already {existing.status}")
        self.existing = existing


class CommitTooLargeError(Exception):
    """The commit exceeds what the store can hold in one atomic write (DynamoDB: 400 KB per item).

    Nothing is stored; retrying cannot help, so callers reject the command."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the commit would take {size} bytes; the store holds at most {limit} in one write")
        self.size = size
        self.limit = limit


class WriteStoreUnavailableError(Exception):
    """The store could not be reached or answered with an error that retrying may fix."""


class WriteStore(Protocol):
    async def load_head(self, aggregate_type: str, aggregate_id: str) -> Commit | None:
        """The aggregate's latest commit (highest version), or None if it has none."""

    async def append(self, commit: Commit) -> None:
        """Store the commit atomically, or raise `ConcurrencyConflictError` / `DuplicateCommandError`."""

    async def find_outcome(self, command_id: uuid.UUID) -> CommandResult | None:
        """The stored outcome of this command id (its commit's, or its recorded rejection), if any."""

    async def record_rejection(self, rejection: Rejected) -> CommandResult:
        """Record a rejection unless the command id already has an outcome; returns the one that holds."""

    async def unpublished(self, shards: Collection[int], limit: int) -> list[Commit]:
        """Commits of these shards not yet marked published, oldest version first per aggregate."""

    async def unpublished_in_stream(self, aggregate_type: str, aggregate_id: str) -> list[Commit]:
        """One aggregate's commits not yet marked published, in version order."""

    async def mark_published(self, commits: Sequence[Commit]) -> None:
        """Mark commits as published. Idempotent; marking is advisory (publishing is at-least-once)."""

    def history(self, aggregate_types: Collection[str] | None = None) -> AsyncIterator[Commit]:
        """Every commit (of these aggregate types), each aggregate in version order, for rebuilds."""

    async def ping(self) -> None:
        """Raise `WriteStoreUnavailableError` unless the store answers."""


class LeaseStore(Protocol):
    """Time-bounded exclusive ownership of named resources (relay shards), kept in the write store.

    A lease is held by one owner until it expires or is released; `acquire` both takes a free or
    expired lease and renews one the caller already holds. Clocks: expiry is judged by the store's
    caller clock, so replicas need roughly synchronised clocks (NTP), and TTLs of seconds, not ms.
    """

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the lease; True if `owner` holds it afterwards."""

    async def renew(self, names: Collection[str], owner: str, ttl_seconds: float) -> set[str]:
        """Extend the unexpired leases among `names` that `owner` holds; returns those it still holds."""

    async def release(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` holds it."""

    async def heartbeat(self, member: str, ttl_seconds: float) -> None:
        """Announce that `member` is alive for the next `ttl_seconds`."""

    async def leave(self, member: str) -> None:
        """Withdraw `member` at once (a clean shutdown), instead of letting its heartbeat expire."""

    async def live_members(self) -> list[str]:
        """Members whose last heartbeat has not expired, sorted."""
