"""In-memory write store and lease store: the reference behaviour of the ports, for unit tests.

Same guarantees as the real adapters within one process (all operations are atomic because they
never await in the middle); nothing survives a restart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence

from cqrs_shared.results import CommandResult, Rejected
from cqrs_shared.write_store.port import Commit, ConcurrencyConflictError, DuplicateCommandError


class MemoryWriteStore:
    def __init__(self) -> None:
        self._commits: dict[str, Commit] = {}
        self._streams: dict[tuple[str, str], list[str]] = {}
        self._by_command: dict[uuid.UUID, str] = {}
        self._rejections: dict[uuid.UUID, Rejected] = {}
        self._published: set[str] = set()

    def _get(self, commit_id: str) -> Commit:
        commit = self._commits[commit_id]
        return commit.model_copy(update={"published": commit_id in self._published})

    async def load_head(self, aggregate_type: str, aggregate_id: str) -> Commit | None:
        ids = self._streams.get((aggregate_type, aggregate_id))
        return self._get(ids[-1]) if ids else None

    async def append(self, commit: Commit) -> None:
        existing = await self.find_outcome(commit.command_id)
        if existing is not None:
            raise DuplicateCommandError(existing)
        if commit.commit_id in self._commits:
            raise ConcurrencyConflictError(commit.commit_id)
        self._commits[commit.commit_id] = commit.model_copy(update={"published": False})
        stream = self._streams.setdefault((commit.aggregate_type, commit.aggregate_id), [])
        stream.append(commit.commit_id)
        stream.sort(key=lambda cid: self._commits[cid].version)
        self._by_command[commit.command_id] = commit.commit_id

    async def find_outcome(self, command_id: uuid.UUID) -> CommandResult | None:
        commit_id = self._by_command.get(command_id)
        if commit_id is not None:
            return self._commits[commit_id].outcome()
        return self._rejections.get(command_id)

    async def record_rejection(self, rejection: Rejected) -> CommandResult:
        existing = await self.find_outcome(rejection.command_id)
        if existing is not None:
            return existing
        self._rejections[rejection.command_id] = rejection
        return rejection

    async def unpublished(self, shards: Collection[int], limit: int) -> list[Commit]:
        pending = [
            self._get(cid)
            for ids in self._streams.values()
            for cid in ids
            if cid not in self._published and self._commits[cid].shard in shards
        ]
        pending.sort(key=lambda c: (c.aggregate_type, c.aggregate_id, c.version))
        return pending[:limit]

    async def unpublished_in_stream(self, aggregate_type: str, aggregate_id: str) -> list[Commit]:
        ids = self._streams.get((aggregate_type, aggregate_id), [])
        return [self._get(cid) for cid in ids if cid not in self._published]

    async def mark_published(self, commits: Sequence[Commit]) -> None:
        self._published.update(c.commit_id for c in commits)

    async def history(self, aggregate_types: Collection[str] | None = None) -> AsyncIterator[Commit]:
        for (aggregate_type, _), ids in sorted(self._streams.items()):
            if aggregate_types is None or aggregate_type in aggregate_types:
                for cid in ids:
                    yield self._get(cid)

    async def ping(self) -> None:
        return None


class MemoryLeaseStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[str, float]] = {}
        self._members: dict[str, float] = {}

    def _now(self) -> float:
        return self._clock()

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        holder = self._leases.get(name)
        if holder is None or holder[0] == owner or holder[1] <= self._now():
            self._leases[name] = (owner, self._now() + ttl_seconds)
            return True
        return False

    async def renew(self, names: Collection[str], owner: str, ttl_seconds: float) -> set[str]:
        now = self._now()
        held = {n for n in names if (h := self._leases.get(n)) is not None and h[0] == owner and h[1] > now}
        for name in held:
            self._leases[name] = (owner, now + ttl_seconds)
        return held

    async def release(self, name: str, owner: str) -> None:
        if self._leases.get(name, ("", 0.0))[0] == owner:
            del self._leases[name]

    async def heartbeat(self, member: str, ttl_seconds: float) -> None:
        self._members[member] = self._now() + ttl_seconds

    async def leave(self, member: str) -> None:
        self._members.pop(member, None)

    async def live_members(self) -> list[str]:
        now = self._now()
        return sorted(m for m, until in self._members.items() if until > now)
