"""The outbox metrics say what a recovery scan found (the pipeline's counters: test_pipeline.py)."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY

from command_svc.metrics import observe_outbox_scan
from cqrs_shared.envelopes import utc_now
from cqrs_shared.testing.write_store_contract import make_commit


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_an_outbox_scan_sets_the_backlog_and_its_oldest_age() -> None:
    now = utc_now()
    old = make_commit("a-1", 1).model_copy(update={"committed_at": now - timedelta(seconds=42)})
    young = make_commit("a-2", 1).model_copy(update={"committed_at": now - timedelta(seconds=3)})
    observe_outbox_scan([young, old], now)
    assert sample("cqrs_command_outbox_unpublished_commits") == 2
    assert sample("cqrs_command_outbox_oldest_unpublished_age_seconds") == 42
    observe_outbox_scan([], now)
    assert sample("cqrs_command_outbox_unpublished_commits") == 0
    assert sample("cqrs_command_outbox_oldest_unpublished_age_seconds") == 0
