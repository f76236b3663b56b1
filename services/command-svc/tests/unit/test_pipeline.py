"""The command pipeline over the in-memory store: validation, auth, idempotency, concurrency."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from command_svc.domain.decider import AggregateDefinition
from command_svc.domain.shop import SHOP_AGGREGATES
from command_svc.intake import DeadLetter
from command_svc.pipeline import CommandPipeline, IntakePausedError
from command_svc.registry import CommandRegistry
from command_svc.write_store.memory_store import MemoryWriteStore
from cqrs_shared.auth import TokenVerifier
from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.results import Accepted, Rejected, RejectionCode
from cqrs_shared.settings import AuthSettings
from cqrs_shared.write_store import Commit, CommitTooLargeError, ConcurrencyConflictError


def command(type_: str, aggregate_id: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "type": type_,
        "aggregate_id": aggregate_id,
        "payload": payload,
        **extra,
    }


@pytest.fixture
def store() -> MemoryWriteStore:
    return MemoryWriteStore()


@pytest.fixture
def committed() -> list[Commit]:
    return []


@pytest.fixture
def pipeline(
    store: MemoryWriteStore,
    tally: AggregateDefinition[Any],
    auth_settings: AuthSettings,
    committed: list[Commit],
) -> CommandPipeline:
    registry = CommandRegistry([*SHOP_AGGREGATES, tally])
    return CommandPipeline(registry, store, TokenVerifier(auth_settings), on_commit=committed.append)


async def test_an_accepted_command_is_stored_with_its_events_state_and_token(
    pipeline: CommandPipeline, store: MemoryWriteStore, token_for: Any, committed: list[Commit]
) -> None:
    cmd = command("Increment", "t-1", {"by": 3}, metadata={"correlation_id": "corr-1"})
    outcome = await pipeline.handle(json.dumps(cmd).encode(), token_for("tally:write"))
    assert isinstance(outcome, Accepted)
    assert (outcome.aggregate_type, outcome.version, outcome.correlation_id) == ("tally", 1, "corr-1")
    assert ConsistencyToken.decode(outcome.consistency_token) == ConsistencyToken("tally", "t-1", 1)
    head = await store.load_head("tally", "t-1")
    assert head is not None
    assert head.state == {"total": 3, "closed": False}
    assert [(e.type, e.version, e.payload, e.causation_id) for e in head.events] == [
        ("Incremented", 1, {"by": 3}, cmd["command_id"])
    ]
    assert outcome.event_ids == [head.events[0].event_id]
    assert committed == [head]


async def test_the_same_command_id_is_applied_once_and_answered_identically(
    pipeline: CommandPipeline, store: MemoryWriteStore, token_for: Any
) -> None:
    cmd = command("Increment", "t-1", {"by": 1})
    answers = [await pipeline.handle(cmd, token_for("tally:write")) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    head = await store.load_head("tally", "t-1")
    assert head is not None and head.version == 1


async def test_a_repeated_rejection_is_answered_identically(
    pipeline: CommandPipeline, token_for: Any
) -> None:
    auth = token_for("tally:write", "tally:close")
    await pipeline.handle(command("CloseTally", "t-1", {}), auth)
    cmd = command("Increment", "t-1", {"by": 1})
    first = await pipeline.handle(cmd, auth)
    assert isinstance(first, Rejected) and first.code is RejectionCode.RULE_VIOLATED
    assert "tally.closed" in first.message
    assert await pipeline.handle(cmd, auth) == first


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not json", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"type": "Increment"}', "no_command_id"),
        (b'{"command_id": "nope"}', "no_command_id"),
    ],
)
async def test_input_that_names_no_command_is_not_a_command(
    pipeline: CommandPipeline, raw: bytes, reason: str
) -> None:
    outcome = await pipeline.handle(raw, None)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == reason


async def test_invalid_envelope_and_payload_are_rejected_with_field_errors(
    pipeline: CommandPipeline, token_for: Any
) -> None:
    bad_envelope = command("Increment", "", {"by": 1}, colour="red")
    outcome = await pipeline.handle(bad_envelope, token_for("tally:write"))
    assert isinstance(outcome, Rejected) and outcome.code is RejectionCode.INVALID
    assert {e.loc for e in outcome.errors} == {"aggregate_id", "colour"}

    bad_payload = command("Increment", "t-1", {"by": 0, "extra": True})
    outcome = await pipeline.handle(bad_payload, token_for("tally:write"))
    assert isinstance(outcome, Rejected) and outcome.code is RejectionCode.INVALID
    assert {(e.loc, e.type) for e in outcome.errors} == {
        ("payload.by", "greater_than_equal"),
        ("payload.extra", "extra_forbidden"),
    }

    unknown = command("Explode", "t-1", {})
    outcome = await pipeline.handle(unknown, token_for("tally:write"))
    assert isinstance(outcome, Rejected) and outcome.errors[0].loc == "type"


async def test_authorization_is_checked_per_command_type(pipeline: CommandPipeline, token_for: Any) -> None:
    cmd = command("CloseTally", "t-1", {})
    missing = await pipeline.handle(cmd, None)
    assert isinstance(missing, Rejected) and missing.code is RejectionCode.UNAUTHORIZED
    garbage = await pipeline.handle(cmd, "Bearer not.a.jwt")
    assert isinstance(garbage, Rejected) and garbage.code is RejectionCode.UNAUTHORIZED
    wrong_role = await pipeline.handle(cmd, token_for("tally:write"))
    assert isinstance(wrong_role, Rejected) and wrong_role.code is RejectionCode.FORBIDDEN
    assert "tally:close" in wrong_role.message
    assert isinstance(await pipeline.handle(cmd, token_for("tally:close")), Accepted)


async def test_expected_version_mismatch_is_a_conflict(pipeline: CommandPipeline, token_for: Any) -> None:
    auth = token_for("tally:write")
    assert isinstance(
        await pipeline.handle(command("Increment", "t-1", {"by": 1}, expected_version=0), auth), Accepted
    )
    stale = await pipeline.handle(command("Increment", "t-1", {"by": 1}, expected_version=0), auth)
    assert isinstance(stale, Rejected) and stale.code is RejectionCode.CONFLICT
    fresh = await pipeline.handle(command("Increment", "t-1", {"by": 1}, expected_version=1), auth)
    assert isinstance(fresh, Accepted) and fresh.version == 2


async def test_not_found_for_commands_on_missing_aggregates(
    pipeline: CommandPipeline, token_for: Any
) -> None:
    outcome = await pipeline.handle(command("ConfirmOrder", "o-404", {}), token_for("orders:write"))
    assert isinstance(outcome, Rejected) and outcome.code is RejectionCode.NOT_FOUND


async def test_place_order_reads_the_customer_from_the_write_store(
    pipeline: CommandPipeline, token_for: Any
) -> None:
    auth = token_for("orders:write", "customers:write", "customers:erase")
    order = {
        "customer_id": "c-1",
        "currency": "EUR",
        "lines": [{"sku": "A", "quantity": 1, "unit_price": "2.50"}],
    }
    early = await pipeline.handle(command("PlaceOrder", "o-1", order), auth)
    assert isinstance(early, Rejected) and "order.customer_not_registered" in early.message
    await pipeline.handle(
        command("RegisterCustomer", "c-1", {"name": "Ada", "email": "ada@example.com"}), auth
    )
    assert isinstance(await pipeline.handle(command("PlaceOrder", "o-1", order), auth), Accepted)
    await pipeline.handle(command("DeleteCustomer", "c-1", {}), auth)
    late = await pipeline.handle(command("PlaceOrder", "o-2", order), auth)
    assert isinstance(late, Rejected) and "order.customer_deleted" in late.message


async def test_concurrent_commands_on_one_aggregate_get_consecutive_versions(
    pipeline: CommandPipeline, store: MemoryWriteStore, token_for: Any
) -> None:
    auth = token_for("tally:write")
    outcomes = await asyncio.gather(
        *(pipeline.handle(command("Increment", "t-1", {"by": 1}), auth) for _ in range(50))
    )
    assert sorted(o.version for o in outcomes if isinstance(o, Accepted)) == list(range(1, 51))
    versions = [c.version async for c in store.history()]
    assert versions == list(range(1, 51))


class RacingStore(MemoryWriteStore):
    """Loses the first `losses` appends to an imaginary concurrent writer, whose commit (the same
    decision under another command id) is then stored in their place, as a real winner's would be."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses

    async def append(self, commit: Commit) -> None:
        if self.losses:
            self.losses -= 1
            await super().append(commit.model_copy(update={"command_id": uuid.uuid4()}))
            raise ConcurrencyConflictError(commit.commit_id)
        await super().append(commit)


# The first append decides on a guessed head (the pipeline knows nothing of `t-1`, so it is guessed
# new): its collision shows the guess wrong and is not a lost race. The 5 races allowed follow it.
@pytest.mark.parametrize(("losses", "accepted"), [(2, True), (5, True), (6, False)])
async def test_a_lost_race_is_retried_a_bounded_number_of_times(
    losses: int, accepted: bool, tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    store = RacingStore(losses)
    pipeline = CommandPipeline(CommandRegistry([tally]), store, TokenVerifier(auth_settings), max_attempts=5)
    outcome = await pipeline.handle(command("Increment", "t-1", {"by": 1}), token_for("tally:write"))
    if accepted:
        assert isinstance(outcome, Accepted)
        assert outcome.version == losses + 1
    else:
        assert isinstance(outcome, Rejected) and outcome.code is RejectionCode.CONFLICT
        assert outcome.message == "lost 5 races for this aggregate; send it again"


async def test_a_race_lost_with_a_pinned_version_is_a_conflict_at_once(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    store = RacingStore(0)
    registry = CommandRegistry([tally])
    auth = token_for("tally:write")
    await CommandPipeline(registry, store, TokenVerifier(auth_settings)).handle(
        command("Increment", "t-1", {"by": 1}), auth
    )
    # Another replica: its head of t-1 comes from the store, so the lost race below is a real one.
    pipeline = CommandPipeline(registry, store, TokenVerifier(auth_settings))
    store.losses = 1
    outcome = await pipeline.handle(command("Increment", "t-1", {"by": 1}, expected_version=1), auth)
    assert isinstance(outcome, Rejected) and outcome.code is RejectionCode.CONFLICT
    assert outcome.message == "version 1 was taken by a concurrent command"
    head = await store.load_head("tally", "t-1")
    assert store.losses == 0 and head is not None and head.version == 2


async def test_a_wrong_guess_that_an_aggregate_is_new_is_decided_again_on_its_stored_head(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    shared = MemoryWriteStore()
    registry = CommandRegistry([tally])
    auth = token_for("tally:write")
    first = CommandPipeline(registry, shared, TokenVerifier(auth_settings))
    await first.handle(command("Increment", "t-1", {"by": 2}), auth)
    # A second replica knows nothing of t-1: it guesses it new, and `Increment` is accepted on no
    # state, so the guess is only found wrong by the commit colliding with t-1's first one.
    second = CommandPipeline(registry, shared, TokenVerifier(auth_settings))
    outcome = await second.handle(command("Increment", "t-1", {"by": 3}), auth)
    assert isinstance(outcome, Accepted) and outcome.version == 2
    head = await shared.load_head("tally", "t-1")
    assert head is not None and head.state == {"total": 5, "closed": False}
    pinned = await second.handle(command("Increment", "t-9", {"by": 1}, expected_version=0), auth)
    assert isinstance(pinned, Accepted) and pinned.version == 1


async def test_a_stale_cached_head_never_decides_a_rejection_or_a_commit(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    shared = MemoryWriteStore()
    registry = CommandRegistry([tally])
    replica_a = CommandPipeline(registry, shared, TokenVerifier(auth_settings))
    replica_b = CommandPipeline(registry, shared, TokenVerifier(auth_settings))
    auth = token_for("tally:write", "tally:close")
    assert isinstance(
        await replica_a.handle(command("Increment", "t-1", {"by": 1}), auth), Accepted
    )  # A caches v1
    assert isinstance(
        await replica_b.handle(command("Increment", "t-1", {"by": 1}), auth), Accepted
    )  # v2 behind A

    pinned = await replica_a.handle(command("Increment", "t-1", {"by": 1}, expected_version=2), auth)
    assert isinstance(pinned, Accepted) and pinned.version == 3  # A's stale "v1" did not make it a conflict

    assert isinstance(await replica_b.handle(command("CloseTally", "t-1", {}), auth), Accepted)  # v4, closed
    late = await replica_a.handle(command("Increment", "t-1", {"by": 1}), auth)
    assert isinstance(late, Rejected) and "tally.closed" in late.message  # stale "open" did not accept it
    head = await shared.load_head("tally", "t-1")
    assert head is not None and head.version == 4


def variant(tally: AggregateDefinition[Any], decide: Any) -> AggregateDefinition[Any]:
    return AggregateDefinition(
        aggregate_type="tally",
        state_model=tally.state_model,
        commands=tally.commands,
        events=tally.events,
        decide=decide,
        evolve=tally.evolve,
    )


async def test_a_decision_without_events_is_accepted_unchanged_and_stores_nothing(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    def decide(state: Any, command: Any, related: Any) -> Any:
        return [] if command.by == 7 else tally.decide(state, command, related)

    store = MemoryWriteStore()
    pipeline = CommandPipeline(CommandRegistry([variant(tally, decide)]), store, TokenVerifier(auth_settings))
    auth = token_for("tally:write")
    nothing_yet = await pipeline.handle(command("Increment", "t-1", {"by": 7}), auth)
    assert isinstance(nothing_yet, Rejected) and nothing_yet.code is RejectionCode.NOT_FOUND
    await pipeline.handle(command("Increment", "t-1", {"by": 1}), auth)
    unchanged = await pipeline.handle(command("Increment", "t-1", {"by": 7}), auth)
    assert isinstance(unchanged, Accepted)
    assert (unchanged.version, unchanged.event_ids) == (1, [])
    later = await pipeline.handle(command("Increment", "t-1", {"by": 2}), auth)
    assert isinstance(later, Accepted) and later.version == 2  # the aggregate is not blocked
    assert [c.version async for c in store.history()] == [1, 2]


async def test_a_decision_producing_values_out_of_contract_is_an_invalid_command(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    def decide(state: Any, command: Any, related: Any) -> Any:
        return [tally.events[0].model_validate({"by": "many"})]  # the contract wants an int

    pipeline = CommandPipeline(
        CommandRegistry([variant(tally, decide)]), MemoryWriteStore(), TokenVerifier(auth_settings)
    )
    outcome = await pipeline.handle(command("Increment", "t-1", {"by": 1}), token_for("tally:write"))
    assert isinstance(outcome, Rejected) and outcome.code is RejectionCode.INVALID


async def test_json_nested_beyond_the_parser_is_not_a_command(pipeline: CommandPipeline) -> None:
    deep = b'{"command_id": "%s", "payload": ' % str(uuid.uuid4()).encode() + b"[" * 100_000
    outcome = await pipeline.handle(deep, None)
    assert isinstance(outcome, DeadLetter) and outcome.reason == "not_json"


async def test_an_order_too_large_for_money_is_a_rule_violation_not_a_crash(
    pipeline: CommandPipeline, token_for: Any
) -> None:
    auth = token_for("orders:write", "customers:write")
    await pipeline.handle(
        command("RegisterCustomer", "c-1", {"name": "Ada", "email": "ada@example.com"}), auth
    )
    huge = {"sku": "A", "quantity": 1_000_000, "unit_price": "999999999999.99"}
    outcome = await pipeline.handle(
        command("PlaceOrder", "o-1", {"customer_id": "c-1", "currency": "EUR", "lines": [huge]}), auth
    )
    assert isinstance(outcome, Rejected) and "order.total_too_large" in outcome.message


class CountingStore(MemoryWriteStore):
    """Counts the pipeline's calls to the store (round trips to a real one), not the store's own."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self._inside = False

    async def find_outcome(self, command_id: uuid.UUID) -> Any:
        if not self._inside:
            self.calls.append("find_outcome")
        return await super().find_outcome(command_id)

    async def load_head(self, aggregate_type: str, aggregate_id: str) -> Commit | None:
        self.calls.append("load_head")
        return await super().load_head(aggregate_type, aggregate_id)

    async def append(self, commit: Commit) -> None:
        self.calls.append("append")
        self._inside = True
        try:
            await super().append(commit)
        finally:
            self._inside = False


async def test_a_new_command_on_a_known_head_costs_one_store_call(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    store = CountingStore()
    pipeline = CommandPipeline(CommandRegistry([tally]), store, TokenVerifier(auth_settings))
    auth = token_for("tally:write")
    await pipeline.handle(command("Increment", "t-1", {"by": 1}), auth)
    store.calls.clear()
    outcome = await pipeline.handle(command("Increment", "t-1", {"by": 1}), auth)
    assert isinstance(outcome, Accepted) and outcome.version == 2
    assert store.calls == ["append"]


async def test_a_repeat_that_would_now_change_nothing_gets_its_first_answer(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    # Increment by 5 changes nothing once the total is 5 or more: the repeat decides "no events",
    # stores nothing and collides with nothing, so only asking the store finds the first answer.
    def decide(state: Any, command: Any, related: Any) -> Any:
        if command.by == 5 and state is not None and state.total >= 5:
            return []
        return tally.decide(state, command, related)

    store = MemoryWriteStore()
    pipeline = CommandPipeline(CommandRegistry([variant(tally, decide)]), store, TokenVerifier(auth_settings))
    auth = token_for("tally:write")
    cmd = command("Increment", "t-1", {"by": 5})
    first = await pipeline.handle(cmd, auth)
    assert isinstance(first, Accepted) and first.version == 1 and first.event_ids
    await pipeline.handle(command("Increment", "t-1", {"by": 1}), auth)
    assert await pipeline.handle(cmd, auth) == first


async def test_a_paused_intake_refuses_a_command_before_anything_is_stored(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    reason: list[str] = ["the relay is behind"]
    store = CountingStore()
    pipeline = CommandPipeline(
        CommandRegistry([tally]),
        store,
        TokenVerifier(auth_settings),
        intake_paused=lambda: reason[0] if reason else None,
    )
    cmd = command("Increment", "t-1", {"by": 1})
    with pytest.raises(IntakePausedError, match="the relay is behind"):
        await pipeline.handle(cmd, token_for("tally:write"))
    assert store.calls == []
    reason.clear()
    outcome = await pipeline.handle(cmd, token_for("tally:write"))
    assert isinstance(outcome, Accepted) and outcome.version == 1


class _TinyStore(MemoryWriteStore):
    """A store whose atomic write holds less than any commit (as DynamoDB's 400 KB item limit would)."""

    async def append(self, commit: Commit) -> None:
        raise CommitTooLargeError(500_000, 409_600)


async def test_a_commit_too_large_for_the_store_is_rejected_as_invalid_and_recorded(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    store = _TinyStore()
    pipeline = CommandPipeline(CommandRegistry([tally]), store, TokenVerifier(auth_settings), on_commit=print)
    cmd = command("Increment", "t-1", {"by": 1})
    outcome = await pipeline.handle(cmd, token_for("tally:write"))
    assert isinstance(outcome, Rejected)
    assert outcome.code is RejectionCode.INVALID and "409600" in outcome.message
    assert await store.find_outcome(uuid.UUID(cmd["command_id"])) == outcome
    assert await store.load_head("tally", "t-1") is None


class _SizeCheckedFirstStore(MemoryWriteStore):
    """Once `checking`, refuses a first commit as too large before it could collide (a MongoDB
    client refuses an oversized document before the server sees its keys)."""

    checking = False

    async def append(self, commit: Commit) -> None:
        if self.checking and commit.base_version == 0:
            raise CommitTooLargeError(20_000_000, 16_777_216)
        await super().append(commit)


async def test_a_too_large_commit_decided_on_a_guessed_head_is_decided_again_on_the_stored_one(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    shared = _SizeCheckedFirstStore()
    registry = CommandRegistry([tally])
    first = CommandPipeline(registry, shared, TokenVerifier(auth_settings))
    for cmd, role in (
        (command("Increment", "t-1", {"by": 2}), "tally:write"),
        (command("CloseTally", "t-1", {}), "tally:close"),
    ):
        assert isinstance(await first.handle(cmd, token_for(role)), Accepted)
    shared.checking = True
    # A replica that never saw t-1 guesses it new; the guessed first commit is refused as too large
    # before any collision, but the tally is closed: that is the answer, not "too large".
    second = CommandPipeline(registry, shared, TokenVerifier(auth_settings))
    outcome = await second.handle(command("Increment", "t-1", {"by": 3}), token_for("tally:write"))
    assert isinstance(outcome, Rejected) and outcome.code is RejectionCode.RULE_VIOLATED


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_repeats_of_a_command_id_are_counted_once_each(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    pipeline = CommandPipeline(CommandRegistry([tally]), MemoryWriteStore(), TokenVerifier(auth_settings))
    before = sample("cqrs_command_idempotent_repeats_total")
    cmd = command("Increment", "t-repeat", {"by": 1})
    outcomes = [await pipeline.handle(cmd, token_for("tally:write")) for _ in range(3)]
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert sample("cqrs_command_idempotent_repeats_total") - before == 2
    # Decided again on a closed tally, the repeat would be rejected: it still gets its first answer.
    closed = await pipeline.handle(command("CloseTally", "t-repeat", {}), token_for("tally:close"))
    assert isinstance(closed, Accepted)
    assert await pipeline.handle(cmd, token_for("tally:write")) == outcomes[0]
    assert sample("cqrs_command_idempotent_repeats_total") - before == 3


async def test_lost_races_retried_on_fresh_state_are_counted(
    tally: AggregateDefinition[Any], auth_settings: AuthSettings, token_for: Any
) -> None:
    # Three collisions: the first on the guess that t-race is new (not a race), then two races.
    pipeline = CommandPipeline(CommandRegistry([tally]), RacingStore(3), TokenVerifier(auth_settings))
    before = sample("cqrs_command_conflicts_retried_total")
    outcome = await pipeline.handle(command("Increment", "t-race", {"by": 1}), token_for("tally:write"))
    assert isinstance(outcome, Accepted)
    assert sample("cqrs_command_conflicts_retried_total") - before == 2
