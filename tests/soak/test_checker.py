"""The soak's checker on hand-made worlds: a consistent one passes, and each kind of damage is named."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.write_store import Commit
from projector_svc.testing.shop_fold import fold
from soak.checker import check
from soak.ledger import Ack, Ledger
from soak.sources import Observed, TopicEvent
from soak.workload import Planned

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PAYLOADS = [
    ("CustomerRegistered", {"name": "Ada", "email": "ada@example.com"}),
    ("CustomerRenamed", {"name": "Bo"}),
]


def event(version: int) -> EventEnvelope:
    kind, payload = PAYLOADS[version - 1]
    return EventEnvelope(
        event_id=EventEnvelope.id_for("customer", "c-1", version),
        type=kind,
        aggregate_type="customer",
        aggregate_id="c-1",
        version=version,
        occurred_at=AT,
        correlation_id="k",
        causation_id="k",
        payload=payload,
    )


def commit(version: int, command_id: uuid.UUID) -> Commit:
    return Commit(
        aggregate_type="customer",
        aggregate_id="c-1",
        base_version=version - 1,
        version=version,
        command_id=command_id,
        command_type="X",
        correlation_id="k",
        events=[event(version)],
        state={},
        committed_at=AT,
        shard=0,
        published=True,
    )


def accepted(command_id: uuid.UUID, version: int, source: str = "http") -> Ack:
    return Ack(str(command_id), source, "accepted", version, None, "c-1", events=1)  # type: ignore[arg-type]  # a literal in tests


@pytest.fixture
def world() -> tuple[Ledger, Observed]:
    ids = [uuid.uuid4(), uuid.uuid4()]
    ledger = Ledger()
    for i, command_id in enumerate(ids, 1):
        ledger.sends.append(Planned(str(command_id), "http", "normal", "X", "c-1", b"{}"))
        ledger.http_acks.append(accepted(command_id, i))
    commits = [commit(1, ids[0]), commit(2, ids[1])]
    events = [TopicEvent("events.customer", 0, i, event(i + 1)) for i in range(2)]
    observed = Observed(
        commits=commits,
        events=events,
        results=[accepted(ids[0], 1, "results-topic"), accepted(ids[1], 2, "results-topic")],
        rows=fold(e for c in commits for e in c.events),
        applied={("customer", "c-1"): 2},
    )
    return ledger, observed


def kinds(ledger: Ledger, observed: Observed) -> set[str]:
    return {v.kind for v in check(ledger, observed)}


def test_a_consistent_world_has_no_violation(world: tuple[Ledger, Observed]) -> None:
    assert check(*world) == []


def _drop_published_event(ledger: Ledger, observed: Observed) -> None:
    observed.events.pop()


def _leave_an_answered_commit_in_the_outbox(ledger: Ledger, observed: Observed) -> None:
    observed.events.pop()
    observed.commits[1] = observed.commits[1].model_copy(update={"published": False})


def _swap_event_order(ledger: Ledger, observed: Observed) -> None:
    first, second = observed.events
    observed.events[:] = [replace(second, offset=0), replace(first, offset=1)]


def _store_a_second_commit(ledger: Ledger, observed: Observed) -> None:
    observed.commits.append(observed.commits[1].model_copy(update={"base_version": 2, "version": 3}))


def _answer_twice_differently(ledger: Ledger, observed: Observed) -> None:
    observed.results[1] = replace(observed.results[1], version=3)


def _apply_an_event_twice(ledger: Ledger, observed: Observed) -> None:
    observed.rows.customers["c-1"]["version"] = 3


def _lose_an_answered_commit(ledger: Ledger, observed: Observed) -> None:
    observed.commits.pop()


def _answer_with_a_server_error(ledger: Ledger, observed: Observed) -> None:
    ledger.status("query", 500, "Internal Server Error")


def _leave_a_topic_command_unanswered(ledger: Ledger, observed: Observed) -> None:
    ledger.sends.append(Planned("never", "topic", "normal", "X", "c-2", b"{}"))
    ledger.produced.add("never")


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (_drop_published_event, "lost_acknowledged"),
        (_leave_an_answered_commit_in_the_outbox, "stuck_acknowledged"),
        (_swap_event_order, "version_gap"),
        (_store_a_second_commit, "duplicate_effect"),
        (_answer_twice_differently, "conflicting_outcomes"),
        (_apply_an_event_twice, "read_model_mismatch"),
        (_lose_an_answered_commit, "lost_acknowledged"),
        (_answer_with_a_server_error, "server_error"),
        (_leave_a_topic_command_unanswered, "unanswered"),
    ],
)
def test_each_kind_of_damage_is_reported(
    world: tuple[Ledger, Observed], damage: Callable[[Ledger, Observed], None], kind: str
) -> None:
    damage(*world)
    assert kind in kinds(*world)


def test_a_503_is_not_a_server_error(world: tuple[Ledger, Observed]) -> None:
    world[0].status("query", 503, "busy")
    assert check(*world) == []
