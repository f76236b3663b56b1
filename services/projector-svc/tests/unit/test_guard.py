import uuid
from datetime import UTC, datetime

from cqrs_shared.envelopes import EventEnvelope
from projector_svc.guard import sort_batch


def ev(aggregate_id: str, version: int, aggregate_type: str = "customer") -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        type="CustomerRenamed",
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        version=version,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        correlation_id="c",
        causation_id="c",
    )


def versions(events: list[EventEnvelope]) -> list[tuple[str, int]]:
    return [(e.aggregate_id, e.version) for e in events]


def test_next_versions_apply_and_repeats_are_duplicates() -> None:
    result = sort_batch([ev("a", 1), ev("a", 2), ev("a", 2), ev("b", 4)], {("customer", "b"): 3})
    assert versions(result.apply) == [("a", 1), ("a", 2), ("b", 4)]
    assert result.duplicates == 1
    assert result.advanced == {("customer", "a"): 2, ("customer", "b"): 4}


def test_a_gap_parks_the_event_and_closing_it_in_the_same_batch_applies_both() -> None:
    result = sort_batch([ev("a", 2), ev("a", 1)], {})
    assert versions(result.apply) == [("a", 1), ("a", 2)]
    assert result.parked == []


def test_a_gap_left_open_parks_only_the_events_after_it() -> None:
    result = sort_batch([ev("a", 1), ev("a", 3), ev("b", 1)], {})
    assert versions(result.apply) == [("a", 1), ("b", 1)]
    assert [(versions([e]), why) for e, why in result.parked] == [([("a", 3)], "gap")]


def test_events_parked_earlier_are_applied_when_their_gap_closes() -> None:
    waiting = {("customer", "a"): [ev("a", 3), ev("a", 4)]}
    result = sort_batch([ev("a", 2), ev("a", 3)], {("customer", "a"): 1}, waiting=waiting)
    assert versions(result.apply) == [("a", 2), ("a", 3), ("a", 4)]
    assert versions(result.unparked) == [("a", 3), ("a", 4)]
    assert result.duplicates == 1


def test_a_blocked_aggregate_parks_new_events_and_others_flow() -> None:
    result = sort_batch(
        [ev("a", 5), ev("b", 1), ev("a", 4)], {("customer", "a"): 4}, blocked={("customer", "a")}
    )
    assert versions(result.apply) == [("b", 1)]
    assert [(e.version, why) for e, why in result.parked] == [(5, "blocked")]
    assert result.duplicates == 1
