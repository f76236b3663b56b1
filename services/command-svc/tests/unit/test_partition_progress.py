"""Which offsets the topic door may commit, and which records a re-read may skip."""

from __future__ import annotations

from aiokafka import TopicPartition

from command_svc.partition_progress import PartitionProgress

TP = TopicPartition("commands", 0)


def test_a_fully_done_batch_commits_past_its_last_record() -> None:
    progress = PartitionProgress()
    assert progress.settle(TP, [10, 11, 12], done=[10, 11, 12]) is None
    assert progress.to_commit() == {TP: 13}


def test_only_the_done_prefix_commits_and_done_records_beyond_it_are_remembered() -> None:
    progress = PartitionProgress()
    # 11 failed (aggregate a); 12 and 14 belong to other aggregates and are done; 13 is a's next.
    assert progress.settle(TP, [10, 11, 12, 13, 14], done=[10, 12, 14]) == 11
    assert progress.to_commit() == {TP: 11}
    assert [o for o in range(10, 15) if progress.is_done(TP, o)] == [12, 14]
    # The re-read from 11 skips 12 and 14; once 11 and 13 are done the whole batch is.
    assert progress.settle(TP, [11, 12, 13, 14, 15], done=[11, 13, 15]) is None
    assert progress.to_commit() == {TP: 16}
    assert not any(progress.is_done(TP, o) for o in range(10, 16))


def test_done_records_past_a_shorter_re_read_are_kept() -> None:
    progress = PartitionProgress()
    progress.settle(TP, [0, 1, 2, 3], done=[1, 2, 3])
    assert progress.settle(TP, [0, 1], done=[0]) is None
    assert progress.to_commit() == {TP: 2}
    assert progress.is_done(TP, 2)
    assert progress.is_done(TP, 3)


def test_a_committed_offset_is_not_committed_again() -> None:
    progress = PartitionProgress()
    progress.settle(TP, [5, 6], done=[])
    progress.committed(progress.to_commit())
    assert progress.to_commit() == {}
    progress.settle(TP, [5, 6], done=[6])
    assert progress.to_commit() == {}


def test_forgetting_the_assignment_drops_everything() -> None:
    progress = PartitionProgress()
    progress.settle(TP, [0, 1, 2], done=[1, 2])
    progress.forget()
    assert progress.to_commit() == {}
    assert not progress.is_done(TP, 1)
