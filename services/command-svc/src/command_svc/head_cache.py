"""A bounded, least-recently-used cache of aggregate heads (their latest commit)."""

from __future__ import annotations

from collections import OrderedDict

from cqrs_shared.write_store import Commit


class HeadCache:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._heads: OrderedDict[tuple[str, str], Commit] = OrderedDict()

    def get(self, aggregate_type: str, aggregate_id: str) -> Commit | None:
        key = (aggregate_type, aggregate_id)
        head = self._heads.get(key)
        if head is not None:
            self._heads.move_to_end(key)
        return head

    def remember(self, commit: Commit) -> None:
        if self._capacity <= 0:
            return
        key = (commit.aggregate_type, commit.aggregate_id)
        known = self._heads.get(key)
        if known is None or known.version <= commit.version:
            self._heads[key] = commit
        self._heads.move_to_end(key)
        while len(self._heads) > self._capacity:
            self._heads.popitem(last=False)

    def forget(self, aggregate_type: str, aggregate_id: str) -> None:
        self._heads.pop((aggregate_type, aggregate_id), None)

    def __len__(self) -> int:
        return len(self._heads)
