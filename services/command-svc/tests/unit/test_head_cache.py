"""The head cache: which aggregates may be guessed new, and what it remembers past its capacity."""

from __future__ import annotations

from command_svc.head_cache import HeadCache
from cqrs_shared.testing.write_store_contract import make_commit


def test_only_an_aggregate_never_seen_may_be_guessed_new() -> None:
    cache = HeadCache(2)
    assert cache.may_be_new("tally", "t-1")
    cache.remember(make_commit("t-1", 1))
    assert not cache.may_be_new("tally", "t-1")
    assert cache.may_be_new("tally", "t-2")


def test_evicted_and_forgotten_aggregates_are_remembered_as_existing() -> None:
    cache = HeadCache(2)
    for name in ("t-1", "t-2", "t-3"):
        cache.remember(make_commit(name, 1))
    assert len(cache) == 2 and cache.get("tally", "t-1") is None
    assert not cache.may_be_new("tally", "t-1")
    cache.forget("tally", "t-2")
    assert cache.get("tally", "t-2") is None and not cache.may_be_new("tally", "t-2")
    cache.forget("tally", "t-9")  # a guess found wrong: t-9 exists though never cached
    assert not cache.may_be_new("tally", "t-9")


def test_the_keys_remembered_are_bounded() -> None:
    cache = HeadCache(1)
    for i in range(100):
        cache.remember(make_commit(f"t-{i}", 1))
    assert not cache.may_be_new("tally", "t-98")
    assert cache.may_be_new("tally", "t-0"), "more than 10 keys per cached head were kept"


def test_without_capacity_nothing_is_guessed() -> None:
    cache = HeadCache(0)
    assert not cache.may_be_new("tally", "t-1")
    cache.remember(make_commit("t-1", 1))
    assert cache.get("tally", "t-1") is None
