"""The topic door over the memory store: order per key, dead letters, crashes that must not block, and
failures that must not cost the rest of their batch."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from command_svc.domain.decider import AggregateDefinition
from command_svc.intake import DeadLetter
from command_svc.pipeline import CommandPipeline
from command_svc.registry import CommandRegistry
from command_svc.topic_door import TopicDoor
from command_svc.write_store.memory_store import MemoryWriteStore
from cqrs_shared.auth import TokenVerifier
from cqrs_shared.results import Accepted, CommandResult
from cqrs_shared.settings import AuthSettings
from cqrs_shared.write_store import Commit, WriteStoreUnavailableError


@dataclass
class Record:
    value: bytes | None
    key: bytes | None
    offset: int
    partition: int = 0
    topic: str = "commands"
    timestamp: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class CapturingResults:
    def __init__(self) -> None:
        self.outcomes: list[CommandResult] = []
        self.dead: list[tuple[int, DeadLetter]] = []

    async def send_outcome(self, outcome: CommandResult) -> asyncio.Future[object]:
        self.outcomes.append(outcome)
        return _done()

    async def send_dead_letter(self, record: Any, problem: DeadLetter) -> asyncio.Future[object]:
        self.dead.append((record.offset, problem))
        return _done()


def _done() -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def crashing_on_13(tally: AggregateDefinition[Any]) -> AggregateDefinition[Any]:
    def decide(state: Any, command: Any, related: Any) -> Any:
        if getattr(command, "by", None) == 13:
            raise TypeError("an unlucky bug")
        return tally.decide(state, command, related)

    return AggregateDefinition(
        aggregate_type="tally",
        state_model=tally.state_model,
        commands=tally.commands,
        events=tally.events,
        decide=decide,
        evolve=tally.evolve,
    )


def record(offset: int, aggregate: str, by: int, token: str) -> Record:
    body = {
        "command_id": str(uuid.uuid4()),
        "type": "Increment",
        "aggregate_id": aggregate,
        "payload": {"by": by},
    }
    return Record(
        json.dumps(body).encode(), aggregate.encode(), offset, headers=[("authorization", token.encode())]
    )


@pytest.fixture
def door_parts(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings
) -> tuple[TopicDoor, CapturingResults, MemoryWriteStore]:
    store, results = MemoryWriteStore(), CapturingResults()
    pipeline = CommandPipeline(CommandRegistry([crashing_on_13(tally)]), store, TokenVerifier(auth_settings))
    # A test double with ResultsPublisher's two methods, capturing instead of producing.
    door = TopicDoor(pipeline, results, max_command_bytes=1024, concurrency=8)  # type: ignore[arg-type]
    return door, results, store


async def test_a_crashing_command_is_dead_lettered_and_the_batch_goes_on(
    door_parts: tuple[TopicDoor, CapturingResults, MemoryWriteStore], token_for: Any
) -> None:
    door, results, store = door_parts
    token = token_for("tally:write")
    batch = [
        record(0, "a", 1, token),
        record(1, "a", 13, token),
        record(2, "a", 2, token),
        record(3, "b", 5, token),
    ]
    await door.handle_batch(batch)
    assert [(offset, d.reason) for offset, d in results.dead] == [(1, "handler_error")]
    assert "an unlucky bug" in results.dead[0][1].detail
    assert sorted((o.aggregate_id, o.version) for o in results.outcomes if isinstance(o, Accepted)) == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
    ]
    head = await store.load_head("tally", "a")
    assert head is not None and head.state["total"] == 3


async def test_oversized_and_unreadable_records_are_dead_lettered_with_their_reason(
    door_parts: tuple[TopicDoor, CapturingResults, MemoryWriteStore],
) -> None:
    door, results, _ = door_parts
    await door.handle_batch(
        [Record(b"x" * 2000, None, 7), Record(b"{not json", b"k", 8), Record(None, b"k", 9)]
    )
    assert [(offset, d.reason) for offset, d in results.dead] == [
        (7, "too_large"),
        (8, "not_json"),
        (9, "not_json"),
    ]
    assert results.outcomes == []


async def test_one_aggregates_commands_are_applied_in_topic_order(
    door_parts: tuple[TopicDoor, CapturingResults, MemoryWriteStore], token_for: Any
) -> None:
    door, _, store = door_parts
    token = token_for("tally:write")
    amounts = [by for by in range(1, 22) if by != 13]
    await door.handle_batch([record(i, "a", by, token) for i, by in enumerate(amounts)])
    assert [c.events[0].payload["by"] async for c in store.history()] == amounts


async def test_an_unreachable_store_fails_the_whole_batch_for_a_retry(
    door_parts: tuple[TopicDoor, CapturingResults, MemoryWriteStore], token_for: Any
) -> None:
    door, _, store = door_parts

    async def unreachable(*_: Any) -> None:
        raise WriteStoreUnavailableError("down")

    store.find_outcome = unreachable  # type: ignore[method-assign,assignment]  # broken on purpose
    with pytest.raises(WriteStoreUnavailableError):
        await door.handle_batch([record(0, "a", 1, token_for("tally:write"))])


class FlakyStore(MemoryWriteStore):
    """Appends of the aggregates in `failing` fail; those in `slow` wait for `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()
        self.slow: set[str] = set()
        self.release = asyncio.Event()
        self.appended: list[tuple[str, int]] = []
        self.cancelled = 0

    async def append(self, commit: Commit) -> None:
        if commit.aggregate_id in self.failing:
            raise WriteStoreUnavailableError("timed out")
        if commit.aggregate_id in self.slow:
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        await super().append(commit)
        self.appended.append((commit.aggregate_id, commit.version))


@pytest.fixture
def flaky_door(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings
) -> tuple[TopicDoor, CapturingResults, FlakyStore]:
    store, results = FlakyStore(), CapturingResults()
    pipeline = CommandPipeline(CommandRegistry([tally]), store, TokenVerifier(auth_settings))
    door = TopicDoor(
        pipeline,
        results,  # type: ignore[arg-type]  # CapturingResults stands in for ResultsPublisher
        max_command_bytes=1024,
        concurrency=8,
        command_timeout_seconds=0.5,
    )
    return door, results, store


async def test_a_failing_aggregate_does_not_cancel_or_undo_the_others(
    flaky_door: tuple[TopicDoor, CapturingResults, FlakyStore], token_for: Any
) -> None:
    door, results, store = flaky_door
    token = token_for("tally:write")
    store.failing.add("a")
    store.slow.add("b")
    batch = [record(0, "a", 1, token), record(1, "b", 1, token), record(2, "a", 2, token)]
    batch += [record(3, "b", 2, token), record(4, "c", 1, token)]
    # "b" is still storing when "a" fails: it must be allowed to finish.
    asyncio.get_running_loop().call_later(0.1, store.release.set)
    progress = await door.handle_records(batch)
    assert progress.done == {("commands", 0, offset) for offset in (1, 3, 4)}
    assert [type(f) for f in progress.failures] == [WriteStoreUnavailableError]
    assert store.cancelled == 0
    assert sorted(store.appended) == [("b", 1), ("b", 2), ("c", 1)]
    assert sorted(o.aggregate_id for o in results.outcomes) == ["b", "b", "c"]


async def test_a_command_outliving_the_bound_is_left_to_finish_and_its_aggregate_stops(
    flaky_door: tuple[TopicDoor, CapturingResults, FlakyStore], token_for: Any
) -> None:
    door, _, store = flaky_door
    token = token_for("tally:write")
    store.slow.add("b")
    batch = [record(0, "b", 1, token), record(1, "b", 2, token), record(2, "c", 1, token)]
    progress = await door.handle_records(batch)
    assert progress.done == {("commands", 0, 2)}
    assert [type(f) for f in progress.failures] == [TimeoutError]
    store.release.set()
    await door.drain(within=5)
    # The abandoned command finished (stored, not cancelled); the next one of "b" waits for a re-read.
    assert store.cancelled == 0
    assert sorted(store.appended) == [("b", 1), ("c", 1)]


async def test_abandoning_a_batch_stops_each_aggregate_after_its_current_command(
    flaky_door: tuple[TopicDoor, CapturingResults, FlakyStore], token_for: Any
) -> None:
    door, _, store = flaky_door
    token = token_for("tally:write")
    store.slow.add("b")
    abandon = asyncio.Event()
    batch = [record(0, "b", 1, token), record(1, "b", 2, token), record(2, "c", 1, token)]
    handling = asyncio.create_task(door.handle_records(batch, abandon=abandon))
    await asyncio.sleep(0.05)
    abandon.set()
    store.release.set()
    progress = await handling
    assert progress.done == {("commands", 0, 0), ("commands", 0, 2)}
    assert progress.failures == []
    assert sorted(store.appended) == [("b", 1), ("c", 1)]
