"""Which offsets of its partitions the topic door may commit, and which records a re-read may skip.

Pure bookkeeping for the current assignment: the consumer forgets it all when partitions are revoked,
because the next assignment starts from the committed offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiokafka import TopicPartition


class PartitionProgress:
    """Per partition of the current assignment: offsets done past the first one not done, and
    the offset to commit next."""

    def __init__(self) -> None:
        self._done: dict[TopicPartition, set[int]] = {}
        self._to_commit: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def is_done(self, tp: TopicPartition, offset: int) -> bool:
        return offset in self._done.get(tp, ())

    def settle(self, tp: TopicPartition, offsets: Sequence[int], done: Iterable[int]) -> int | None:
        """Account a batch's records of one partition (offsets in order); return the first offset
        not done, from where the partition must be read again, or None if all are done."""
        known = self._done.get(tp, set()) | set(done)
        first_open = next((offset for offset in offsets if offset not in known), None)
        upto = offsets[-1] + 1 if first_open is None else first_open
        self._done[tp] = {offset for offset in known if offset >= upto}
        if self._committed.get(tp) != upto:
            self._to_commit[tp] = upto
        return first_open

    def to_commit(self) -> dict[TopicPartition, int]:
        return dict(self._to_commit)

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._committed[tp] = offset
            if self._to_commit.get(tp) == offset:
                del self._to_commit[tp]

    def forget(self) -> None:
        self._done.clear()
        self._to_commit.clear()
        self._committed.clear()
