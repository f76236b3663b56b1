"""The write store and lease store contracts as abstract pytest classes.

Subclass `WriteStoreContract` with a `store` fixture (and `LeaseStoreContract` with `leases` and
`advance_clock`) for each adapter; every test here must pass for every adapter.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.results import Rejected, RejectionCode
from cqrs_shared.write_store import (
    Commit,
    ConcurrencyConflictError,
    DuplicateCommandError,
    LeaseStore,
    WriteStore,
)


def make_commit(
    aggregate_id: str,
    version: int,
    *,
    aggregate_type: str = "tally",
    shard: int = 0,
    command_id: uuid.UUID | None = None,
) -> Commit:
    now = utc_now().replace(microsecond=0)
    return Commit(
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        base_version=version - 1,
        version=version,
        command_id=command_id or uuid.uuid4(),
        command_type="Increment",
        correlation_id="corr",
        events=[
            EventEnvelope(
                event_id=EventEnvelope.id_for(aggregate_type, aggregate_id, version),
                type="Incremented",
                aggregate_type=aggregate_type,
                aggregate_id=aggregate_id,
                version=version,
                occurred_at=now,
                correlation_id="corr",
                causation_id="cause",
                payload={"by": version, "lines": [{"sku": "A", "quantity": 1}]},
            )
        ],
        state={"total": version, "nested": {"list": [1, 2]}},
        committed_at=now,
        shard=shard,
    )


def rejection(command_id: uuid.UUID, message: str = "no") -> Rejected:
    return Rejected(
        command_id=command_id,
        command_type="Increment",
        aggregate_id="a",
        correlation_id="corr",
        code=RejectionCode.RULE_VIOLATED,
        message=message,
    )


class WriteStoreContract:
    @pytest.fixture
    def store(self) -> WriteStore:
        raise NotImplementedError

    async def test_an_aggregate_without_commits_has_no_head(self, store: WriteStore) -> None:
        assert await store.load_head("tally", "nobody") is None

    async def test_the_head_is_the_latest_commit_exactly_as_stored(self, store: WriteStore) -> None:
        first, second = make_commit("a", 1), make_commit("a", 2)
        await store.append(first)
        await store.append(second)
        head = await store.load_head("tally", "a")
        assert head == second

    async def test_a_second_commit_on_the_same_base_version_is_a_conflict_and_stores_nothing(
        self, store: WriteStore
    ) -> None:
        await store.append(make_commit("a", 1))
        loser = make_commit("a", 1)
        with pytest.raises(ConcurrencyConflictError):
            await store.append(loser)
        assert await store.find_outcome(loser.command_id) is None
        head = await store.load_head("tally", "a")
        assert head is not None and head.command_id != loser.command_id

    async def test_a_repeated_command_id_returns_the_commit_already_stored(self, store: WriteStore) -> None:
        original = make_commit("a", 1)
        await store.append(original)
        with pytest.raises(DuplicateCommandError) as exc:
            await store.append(make_commit("b", 1, command_id=original.command_id))
        assert exc.value.existing == original.outcome()
        assert await store.load_head("tally", "b") is None
        assert await store.find_outcome(original.command_id) == original.outcome()

    async def test_a_repeat_on_the_version_it_already_took_is_a_duplicate_not_a_conflict(
        self, store: WriteStore
    ) -> None:
        # The pipeline stores without asking first whether a command is a repeat; the store's answer
        # to a repeat must be the stored outcome even when the repeat also collides on the version.
        original = make_commit("a", 1)
        await store.append(original)
        with pytest.raises(DuplicateCommandError) as exc:
            await store.append(make_commit("a", 1, command_id=original.command_id))
        assert exc.value.existing == original.outcome()

    async def test_concurrent_appends_on_one_version_have_exactly_one_winner(self, store: WriteStore) -> None:
        contenders = [make_commit("a", 1) for _ in range(10)]
        results = await asyncio.gather(*(store.append(c) for c in contenders), return_exceptions=True)
        assert sum(r is None for r in results) == 1
        assert all(isinstance(r, ConcurrencyConflictError) for r in results if r is not None)

    async def test_many_concurrent_appends_each_get_their_own_answer(self, store: WriteStore) -> None:
        # Adapters may group concurrent writes (the MongoDB one sends them as unordered bulks): a
        # collision of one must never decide the answer of another sent alongside it.
        taken = [make_commit(f"taken-{i}", 1) for i in range(10)]
        await asyncio.gather(*(store.append(c) for c in taken))
        fresh = [make_commit(f"fresh-{i}", 1) for i in range(60)]
        repeats = [make_commit(f"elsewhere-{i}", 1, command_id=c.command_id) for i, c in enumerate(taken[:5])]
        conflicts = [make_commit(c.aggregate_id, 1) for c in taken[5:]]
        mixed = [*fresh, *repeats, *conflicts]
        order = sorted(range(len(mixed)), key=lambda i: (i * 37) % len(mixed))  # interleaved
        results = await asyncio.gather(*(store.append(mixed[i]) for i in order), return_exceptions=True)
        answer = {
            mixed[i].commit_id + str(mixed[i].command_id): r for i, r in zip(order, results, strict=True)
        }
        for commit in fresh:
            assert answer[commit.commit_id + str(commit.command_id)] is None
            assert await store.find_outcome(commit.command_id) == commit.outcome()
        for commit, original in zip(repeats, taken[:5], strict=True):
            error = answer[commit.commit_id + str(commit.command_id)]
            assert isinstance(error, DuplicateCommandError) and error.existing == original.outcome()
            assert await store.load_head("tally", commit.aggregate_id) is None
        for commit in conflicts:
            assert isinstance(answer[commit.commit_id + str(commit.command_id)], ConcurrencyConflictError)
            assert await store.find_outcome(commit.command_id) is None

    async def test_the_first_rejection_recorded_wins(self, store: WriteStore) -> None:
        command_id = uuid.uuid4()
        assert await store.find_outcome(command_id) is None
        first = await store.record_rejection(rejection(command_id, "first"))
        second = await store.record_rejection(rejection(command_id, "second"))
        assert first == second == rejection(command_id, "first")
        assert await store.find_outcome(command_id) == first

    async def test_a_command_id_has_one_outcome_whichever_is_written_first(self, store: WriteStore) -> None:
        accepted = make_commit("a", 1)
        await store.append(accepted)
        assert await store.record_rejection(rejection(accepted.command_id)) == accepted.outcome()
        refused = rejection(uuid.uuid4())
        await store.record_rejection(refused)
        with pytest.raises(DuplicateCommandError) as exc:
            await store.append(make_commit("b", 1, command_id=refused.command_id))
        assert exc.value.existing == refused
        assert await store.load_head("tally", "b") is None
        assert [c.aggregate_id async for c in store.history()] == ["a"]
        assert await store.unpublished({0}, 10) == [accepted]

    async def test_unpublished_commits_come_in_version_order_per_aggregate_and_by_shard(
        self, store: WriteStore
    ) -> None:
        for version in (1, 2, 3):
            await store.append(make_commit("a", version, shard=1))
            await store.append(make_commit("b", version, shard=2))
        pending = await store.unpublished({1}, limit=10)
        assert [(c.aggregate_id, c.version) for c in pending] == [("a", 1), ("a", 2), ("a", 3)]
        both = await store.unpublished({1, 2}, limit=4)
        assert len(both) == 4
        for aggregate in ("a", "b"):
            versions = [c.version for c in both if c.aggregate_id == aggregate]
            assert versions == sorted(versions) and versions[:1] in ([], [1])
        assert await store.unpublished(set(), limit=10) == []

    async def test_marking_published_is_idempotent_and_hides_commits_from_the_scan(
        self, store: WriteStore
    ) -> None:
        commits = [make_commit("a", v, shard=3) for v in (1, 2, 3)]
        for commit in commits:
            await store.append(commit)
        await store.mark_published(commits[:2])
        await store.mark_published(commits[:2])
        assert [c.version for c in await store.unpublished({3}, 10)] == [3]
        assert [c.version for c in await store.unpublished_in_stream("tally", "a")] == [3]
        head = await store.load_head("tally", "a")
        assert head is not None and head.published is False
        await store.mark_published(commits[2:])
        head = await store.load_head("tally", "a")
        assert head is not None and head.published is True

    async def test_a_commits_trace_context_reads_back_wherever_the_publishers_read_it(
        self, store: WriteStore
    ) -> None:
        # The relay continues a command's trace from what the store gives back, after a crash too.
        carrier = {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "k=v",
        }
        traced = make_commit("t", 1, shard=4).model_copy(update={"trace_context": carrier})
        await store.append(traced)
        await store.append(make_commit("t", 2, shard=4))
        scanned = await store.unpublished({4}, 10)
        assert [c.trace_context for c in scanned] == [carrier, None]
        assert [c.trace_context for c in await store.unpublished_in_stream("tally", "t")] == [carrier, None]
        history = [c async for c in store.history({"tally"})]
        assert [c.trace_context for c in history] == [carrier, None]
        assert history[0] == traced

    async def test_history_walks_every_aggregate_in_version_order(self, store: WriteStore) -> None:
        for version in range(1, 12):
            await store.append(make_commit("a", version))
        await store.append(make_commit("b", 1, aggregate_type="other"))
        versions = [c.version async for c in store.history({"tally"})]
        assert versions == list(range(1, 12))
        assert len([c async for c in store.history()]) == 12

    async def test_ping_answers(self, store: WriteStore) -> None:
        await store.ping()


class LeaseStoreContract:
    @pytest.fixture
    def leases(self) -> LeaseStore:
        raise NotImplementedError

    @pytest.fixture
    def advance_clock(self) -> Callable[[float], None]:
        raise NotImplementedError

    async def test_a_free_lease_is_taken_and_renewed_by_its_owner_only(self, leases: LeaseStore) -> None:
        assert await leases.acquire("shard-1", "r1", 10)
        assert await leases.acquire("shard-1", "r1", 10)
        assert not await leases.acquire("shard-1", "r2", 10)

    async def test_an_expired_lease_can_be_taken_over(
        self, leases: LeaseStore, advance_clock: Callable[[float], None]
    ) -> None:
        assert await leases.acquire("shard-1", "r1", 5)
        advance_clock(6)
        assert await leases.acquire("shard-1", "r2", 5)
        assert not await leases.acquire("shard-1", "r1", 5)

    async def test_renewal_extends_only_the_unexpired_leases_the_owner_holds(
        self, leases: LeaseStore, advance_clock: Callable[[float], None]
    ) -> None:
        assert await leases.acquire("s-1", "r1", 10)
        assert await leases.acquire("s-2", "r1", 3)
        assert await leases.acquire("s-3", "r2", 10)
        advance_clock(5)
        assert await leases.renew({"s-1", "s-2", "s-3", "s-4"}, "r1", 10) == {"s-1"}
        advance_clock(8)  # s-1 would have expired at 10 without the renewal
        assert not await leases.acquire("s-1", "r2", 10)
        assert await leases.acquire("s-2", "r2", 10)
        assert await leases.renew(set(), "r1", 10) == set()

    async def test_a_released_lease_is_free_and_others_cannot_release_it(self, leases: LeaseStore) -> None:
        assert await leases.acquire("shard-1", "r1", 10)
        await leases.release("shard-1", "r2")
        assert not await leases.acquire("shard-1", "r2", 10)
        await leases.release("shard-1", "r1")
        assert await leases.acquire("shard-1", "r2", 10)

    async def test_concurrent_acquirers_get_one_owner(self, leases: LeaseStore) -> None:
        results = await asyncio.gather(*(leases.acquire("shard-9", f"r{i}", 10) for i in range(8)))
        assert sum(results) == 1

    async def test_members_are_live_until_their_heartbeat_expires_or_they_leave(
        self, leases: LeaseStore, advance_clock: Callable[[float], None]
    ) -> None:
        await leases.heartbeat("r1", 5)
        await leases.heartbeat("r2", 20)
        await leases.heartbeat("r3", 20)
        assert await leases.live_members() == ["r1", "r2", "r3"]
        advance_clock(6)
        await leases.leave("r3")
        assert await leases.live_members() == ["r2"]
