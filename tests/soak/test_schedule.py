"""The seeded fault schedule: reproducible, and covering every fault kind the issue names."""

from __future__ import annotations

from soak.config import CONSUMER_SESSION_TIMEOUT_S, LONG_KAFKA_OUTAGE_S
from soak.faults import CONSUMERS, INFRA, LINKS, SERVICES, schedule

QUICK_KINDS = {"kill", "stop", "crash", "restart", "cut"}


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert schedule(5, quick=True, minutes=0, settle_mean_s=2) == schedule(
        5, quick=True, minutes=0, settle_mean_s=2
    )
    assert schedule(5, quick=True, minutes=0, settle_mean_s=2) != schedule(
        6, quick=True, minutes=0, settle_mean_s=2
    )


def test_every_quick_schedule_has_each_kind_and_a_stop_past_the_session_timeout() -> None:
    for seed in range(50):
        faults = schedule(seed, quick=True, minutes=0, settle_mean_s=2)
        assert {f.kind for f in faults} == QUICK_KINDS
        assert {f.target for f in faults if f.kind == "kill"} == set(SERVICES)
        assert {f.target for f in faults if f.kind == "stop"} == set(SERVICES)
        assert {f.target for f in faults if f.kind in ("crash", "restart")} == set(INFRA)
        long_stops = [f for f in faults if f.kind == "stop" and f.seconds > CONSUMER_SESSION_TIMEOUT_S]
        assert [f.target for f in long_stops] in ([c] for c in CONSUMERS)
        assert all(10 <= f.seconds <= 30 and f.target in LINKS for f in faults if f.kind == "cut")
        kafka = [f for f in faults if f.target == "kafka"]
        assert len(kafka) == 1
        assert kafka[0].seconds == LONG_KAFKA_OUTAGE_S


def test_a_full_schedule_repeats_rounds_of_every_fault_until_the_minutes_are_filled() -> None:
    faults = schedule(7, quick=False, minutes=30, settle_mean_s=10)
    assert {f.kind for f in faults} == QUICK_KINDS | {"stall"}
    assert sum(f.cost() + 10 for f in faults) >= 30 * 60
    crashes = {f.target for f in faults if f.kind == "crash"}
    restarts = {f.target for f in faults if f.kind == "restart"}
    assert crashes == restarts == set(INFRA)
    assert {f.target for f in faults if f.kind == "cut"} == set(LINKS)
