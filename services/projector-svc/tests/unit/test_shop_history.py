"""The generated shop histories the tests and benchmarks feed the projector."""

from __future__ import annotations

from itertools import pairwise

from projector_svc.testing.shop_history import ShopHistory


def test_a_history_capped_at_n_aggregates_keeps_changing_those_n_with_consecutive_versions() -> None:
    events = ShopHistory(seed=3, max_aggregates=50).take(3000)
    versions: dict[tuple[str, str], list[int]] = {}
    for event in events:
        versions.setdefault((event.aggregate_type, event.aggregate_id), []).append(event.version)
    assert len(versions) == 50
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    # Past the cap the existing aggregates go on: the last events are not the first of any.
    assert all(e.version > 1 for e in events[-500:])
    assert sum(1 for a, b in pairwise(events[-500:]) if a.aggregate_id != b.aggregate_id) > 100
