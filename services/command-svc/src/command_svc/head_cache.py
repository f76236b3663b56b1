"""A bounded, least-recently-used cache of aggregate heads (their latest commit), and which
aggregates are known to exist.

Neither is ever trusted for a rejection. A head is trusted for a commit, because storing on a
stale head collides on its (aggregate, base version) key. For the same reason an aggregate this
process knows nothing of may be assumed not to exist yet: a commit decided on that guess collides
with the aggregate's first commit if it does exist. Aggregates whose heads were evicted are
remembered (by key only, many more of them) as existing, so they are read rather than guessed
wrong: a wrong guess costs a write that fails, more than the read it saved.
"""

from __future__ import annotations

from collections import OrderedDict

from cqrs_shared.write_store import Commit

#: Keys of evicted heads remembered per cached head.
_KNOWN_PER_HEAD = 10


class HeadCache:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._heads: OrderedDict[tuple[str, str], Commit] = OrderedDict()
        self._evicted: OrderedDict[tuple[str, str], None] = OrderedDict()

    def get(self, aggregate_type: str, aggregate_id: str) -> Commit | None:
        key = (aggregate_type, aggregate_id)
        head = self._heads.get(key)
        if head is not None:
            self._heads.move_to_end(key)
        return head

    def may_be_new(self, aggregate_type: str, aggregate_id: str) -> bool:
        """True when this cache knows nothing of the aggregate: worth guessing it does not exist.

        Never with a capacity of 0 (no caching: nothing unconfirmed is used at all)."""
        key = (aggregate_type, aggregate_id)
        return self._capacity > 0 and key not in self._heads and key not in self._evicted

    def remember(self, commit: Commit) -> None:
        if self._capacity <= 0:
            return
        key = (commit.aggregate_type, commit.aggregate_id)
        known = self._heads.get(key)
        if known is None or known.version <= commit.version:
            self._heads[key] = commit
        self._heads.move_to_end(key)
        self._evicted.pop(key, None)
        while len(self._heads) > self._capacity:
            evicted, _ = self._heads.popitem(last=False)
            self._known_to_exist(evicted)

    def forget(self, aggregate_type: str, aggregate_id: str) -> None:
        """Drop a head found stale; the aggregate does exist (a commit collided with its history),
        so it is remembered as existing."""
        key = (aggregate_type, aggregate_id)
        self._heads.pop(key, None)
        if self._capacity > 0:
            self._known_to_exist(key)

    def _known_to_exist(self, key: tuple[str, str]) -> None:
        self._evicted[key] = None
        self._evicted.move_to_end(key)
        while len(self._evicted) > self._capacity * _KNOWN_PER_HEAD:
            self._evicted.popitem(last=False)

    def __len__(self) -> int:
        return len(self._heads)
