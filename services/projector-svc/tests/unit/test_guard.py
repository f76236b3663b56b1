import uuid
from datetime import UTC, datetime

from cqrs_shared.envelopes import EventEnvelope
from projector_svc.guard import ParkedState, sort_batch
from projector_svc.incoming import Incoming, Origin


def ev(aggregate_id: str, version: int, aggregate_type: str = "customer") -> Incoming:
    event = EventEnvelope(
        event_id=uuid.uuid4(),
        type="CustomerRenamed",
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        version=version,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        correlation_id="c",
        causation_id="c",
    )
    return Incoming(event, Origin("events.customer", 0, version, b""))


def versions(events: list[Incoming]) -> list[tuple[str, int]]:
    return [(e.event.aggregate_id, e.version) for e in events]


def parked(result_parked: list[tuple[Incoming, str]]) -> list[tuple[str, int, str]]:
    return [(e.event.aggregate_id, e.version, why) for e, why in result_parked]


def test_next_versions_apply_and_repeats_are_duplicates() -> None:
    result = sort_batch([ev("a", 1), ev("a", 2), ev("a", 2), ev("b", 4)], {("customer", "b"): 3})
    assert versions(result.apply) == [("a", 1), ("a", 2), ("b", 4)]
    assert result.duplicates == 1


def test_versions_at_or_below_the_applied_one_are_duplicates() -> None:
    result = sort_batch([ev("a", 1), ev("a", 3), ev("a", 4)], {("customer", "a"): 3})
    assert versions(result.apply) == [("a", 4)]
    assert result.duplicates == 2


def test_a_gap_parks_the_event_and_closing_it_in_the_same_batch_applies_both() -> None:
    result = sort_batch([ev("a", 2), ev("a", 1)], {})
    assert versions(result.apply) == [("a", 1), ("a", 2)]
    assert result.parked == []


def test_a_gap_left_open_parks_only_the_events_after_it() -> None:
    result = sort_batch([ev("a", 1), ev("a", 3), ev("a", 4), ev("b", 1)], {})
    assert versions(result.apply) == [("a", 1), ("b", 1)]
    assert parked(result.parked) == [("a", 3, "gap"), ("a", 4, "gap")]


def test_events_parked_earlier_are_applied_when_their_gap_closes() -> None:
    waiting = {("customer", "a"): [ev("a", 3), ev("a", 4)]}
    state = ParkedState(waiting=waiting, versions=frozenset({(("customer", "a"), 3), (("customer", "a"), 4)}))
    result = sort_batch([ev("a", 2), ev("a", 3)], {("customer", "a"): 1}, state)
    assert versions(result.apply) == [("a", 2), ("a", 3), ("a", 4)]
    assert result.duplicates == 1
    assert result.parked == []


def test_a_blocked_aggregate_parks_new_events_and_others_flow() -> None:
    state = ParkedState(blocked=frozenset({("customer", "a")}), versions=frozenset({(("customer", "a"), 5)}))
    result = sort_batch([ev("a", 6), ev("b", 1), ev("a", 4), ev("a", 5)], {("customer", "a"): 4}, state)
    assert versions(result.apply) == [("b", 1)]
    assert parked(result.parked) == [("a", 6, "blocked")]
    # Version 4 was applied and version 5 is already parked (with its own reason, kept as it is).
    assert result.duplicates == 2


def test_the_same_version_twice_in_one_batch_is_parked_once() -> None:
    result = sort_batch([ev("a", 3), ev("a", 3)], {})
    assert parked(result.parked) == [("a", 3, "gap")]
    assert result.duplicates == 1


def test_aggregates_with_the_same_id_but_different_types_are_independent() -> None:
    result = sort_batch([ev("x", 1, "customer"), ev("x", 1, "order")], {})
    assert [(e.event.aggregate_type, e.version) for e in result.apply] == [("customer", 1), ("order", 1)]
