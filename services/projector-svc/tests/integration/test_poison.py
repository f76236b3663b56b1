"""Poison isolation: a refused event parks only its aggregate, the partition goes on, and a replay
after the fix restores convergence. Undecodable records and version gaps take the same path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from cqrs_shared.contracts import shop as c
from cqrs_shared.envelopes import EventEnvelope
from projector_svc.parked import list_parked, request_replay, wait_for_replay
from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed, end_offsets, read_all
from projector_svc.testing.poison import BuggyShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory, envelope
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = pytest.mark.integration


def _headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers if k.startswith("dlq.")}


def _without_from(
    events: Sequence[EventEnvelope], poisoned: dict[tuple[str, str], int]
) -> list[EventEnvelope]:
    """The events the view can show: a poisoned aggregate stops before its refused version."""
    return [e for e in events if e.version < poisoned.get((e.aggregate_type, e.aggregate_id), 10**9)]


async def test_a_poison_event_parks_only_its_aggregate_and_replay_after_the_fix_converges(
    feed: EventFeed, pool: asyncpg.Pool[asyncpg.Record], start_projector: StartProjector
) -> None:
    history = ShopHistory(seed=3).take(1500)
    bad = next(e for e in history[300:] if e.type == "OrderConfirmed")
    later_of_bad = [e for e in history if e.aggregate_id == bad.aggregate_id and e.version > bad.version]
    # A payload that breaks its contract (no e-mail), then an event behind it, and a newer producer's type.
    invalid = envelope(
        c.CUSTOMER, "px1", 1, c.CustomerRegistered(name="P", email="p@x.example"), history[0].occurred_at
    )
    invalid = invalid.model_copy(update={"payload": {"name": "P"}})
    behind = envelope(c.CUSTOMER, "px1", 2, c.CustomerRenamed(name="Q"), history[1].occurred_at)
    unknown = history[0].model_copy(update={"type": "CustomerLoyaltyTierChanged", "aggregate_id": "px2"})
    projection = BuggyShopProjection([bad.event_id])
    unknown_before = (
        REGISTRY.get_sample_value(
            "cqrs_projector_events_total", {"projection": "shop", "outcome": "unknown_type"}
        )
        or 0.0
    )

    await feed.send(history[:700])
    await feed.send_raw(feed.topics.events("customer"), b"c1", b"{not an envelope")
    await feed.send([invalid, behind, unknown])
    await feed.send(history[700:])
    await start_projector(projection)
    ends = await end_offsets(feed.bootstrap, [feed.topics.events("customer"), feed.topics.events("order")])
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, ends)
        # Every other aggregate flowed past the poison; the poisoned order stopped before it.
        poisoned = {(c.ORDER, bad.aggregate_id): bad.version}
        assert diff(await read_rows(connection), fold(_without_from(history, poisoned))) == []
        parked = await list_parked(connection, "shop")
        assert [(p.aggregate_id, p.version, p.reason) for p in parked] == [
            ("px1", 1, "rejected"),
            ("px1", 2, "blocked"),
            *[
                (bad.aggregate_id, e.version, r)
                for e, r in [(bad, "rejected")] + [(e, "blocked") for e in later_of_bad]
            ],
        ]
        assert "HandlerBugError" in parked[2].error and "payload does not match" in parked[0].error

        letters = [_headers(r) for r in await read_all(feed.bootstrap, feed.topics.events_dlq)]
        assert sorted(h["dlq.reason"] for h in letters) == ["rejected", "rejected", "undecodable"]
        rejected = next(h for h in letters if h.get("dlq.aggregate_id") == bad.aggregate_id)
        assert rejected["dlq.source.topic"] == feed.topics.events("order")
        assert rejected["dlq.version"] == str(bad.version) and "HandlerBugError" in rejected["dlq.error"]
        assert (
            REGISTRY.get_sample_value(
                "cqrs_projector_events_total", {"projection": "shop", "outcome": "unknown_type"}
            )
            == unknown_before + 1
        )

        projection.fixed = True  # the fixed handler is deployed
        marked = await request_replay(connection, "shop")
        assert marked == [("customer", "px1"), ("order", bad.aggregate_id)]
        still = await wait_for_replay(connection, "shop", marked, within=20)
        # The handler bug is gone; the broken payload is still broken, so it stays parked.
        assert [(p.aggregate_id, p.version, p.reason) for p in still] == [
            ("px1", 1, "rejected"),
            ("px1", 2, "blocked"),
        ]
        assert diff(await read_rows(connection), fold(history)) == []


async def test_a_gap_that_never_closes_is_dead_lettered_after_the_bound_and_replay_applies_it(
    feed: EventFeed, pool: asyncpg.Pool[asyncpg.Record], start_projector: StartProjector
) -> None:
    history = ShopHistory(seed=4).take(400)
    target = next(e for e in history if e.type == "CustomerRenamed" and e.version == 2)
    gapped = [e for e in history if e.aggregate_id == target.aggregate_id]
    missing = gapped[1]
    assert len(gapped) >= 3, "the seed must give this customer at least three events"
    await feed.send([e for e in history if e is not missing])
    started = time.monotonic()
    await start_projector(gap_timeout_seconds=1.0)
    async with pool.acquire() as connection:
        parked = await _until(lambda: list_parked(connection, "shop", reason="gap_expired"), within=20)
        assert time.monotonic() - started >= 1.0
        assert [(p.aggregate_id, p.version) for p in parked] == [(target.aggregate_id, 3)]
        behind = await list_parked(connection, "shop", aggregates=[(c.CUSTOMER, target.aggregate_id)])
        assert [p.reason for p in behind] == ["gap_expired"] + ["blocked"] * (len(gapped) - 3)
        letters = [_headers(r) for r in await read_all(feed.bootstrap, feed.topics.events_dlq)]
        assert [(h["dlq.reason"], h["dlq.version"]) for h in letters] == [("gap", "3")]

        await feed.send([missing])  # the lost event turns up (e.g. republished by the relay)
        await _until(
            lambda: list_parked(
                connection, "shop", aggregates=[(c.CUSTOMER, target.aggregate_id)], reason="blocked"
            ),
            within=20,
            count=len(gapped) - 2,
        )
        marked = await request_replay(connection, "shop", [(c.CUSTOMER, target.aggregate_id)])
        assert await wait_for_replay(connection, "shop", marked, within=20) == []
        assert diff(await read_rows(connection), fold(history)) == []


async def _until(probe: Any, *, within: float, count: int = 1) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await probe()
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} results within {within}s")
