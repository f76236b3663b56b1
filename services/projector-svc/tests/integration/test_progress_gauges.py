"""The lag, view staleness and parked-events gauges come from a timer, not from batches: a replica
whose batches cannot commit still shows exactly how far behind it is, and the figures fall back to
zero once it catches up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import pytest
from prometheus_client import REGISTRY

from cqrs_shared.contracts import shop as c
from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop_history import ShopHistory, envelope
from projector_svc.testing.views_io import wait_for_offsets

pytestmark = pytest.mark.integration


def _lag(topics: list[str]) -> float:
    """This test's lag: the projection's series on this test's own topics only."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "cqrs_projector_lag_records"
        for sample in metric.samples
        if sample.labels["projection"] == "shop" and sample.labels["topic"] in topics
    )


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"projection": "shop", **labels})


async def _until(check: Callable[[], bool], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110  # a gauge offers no event to wait on
            await asyncio.sleep(0.05)


async def test_a_replica_whose_batches_cannot_commit_still_reports_its_lag_and_staleness(
    feed: EventFeed, pg_database: str, start_projector: StartProjector
) -> None:
    history = ShopHistory(seed=5)
    topics = [feed.topics.events("customer"), feed.topics.events("order")]
    await feed.send(history.take(60))
    service = await start_projector(metrics_interval_seconds=0.1)
    admin = await asyncpg.connect(pg_database)
    try:
        await wait_for_offsets(admin, await end_offsets(feed.bootstrap, topics))
        await _until(lambda: _lag(topics) == 0 and _gauge("cqrs_projector_parked_events") == 0)
        runtime = service.runtime("shop")
        assert runtime is not None and runtime.schema is not None

        # Writers of the offsets table wait behind this lock; readers (the gauges) do not.
        locked = admin.transaction()
        await locked.start()
        await admin.execute(f'LOCK TABLE "{runtime.schema}".partition_offsets IN EXCLUSIVE MODE')
        stuck_batches = runtime.applied_batches
        await feed.send(history.take(25))
        # Version 2 of an aggregate whose version 1 never came: parked until the gap closes.
        at = datetime.now(UTC)
        await feed.send([envelope(c.CUSTOMER, "gauge-gap", 2, c.CustomerRenamed(name="Later"), at)])
        await _until(lambda: _lag(topics) == 26)
        assert runtime.applied_batches == stuck_batches  # nothing committed: the lag came from the timer
        await _until(lambda: (_gauge("cqrs_projector_view_staleness_seconds", view="customers") or 0) > 0)
        assert (_gauge("cqrs_projector_view_staleness_seconds", view="orders") or 0) > 0
        await locked.rollback()

        await wait_for_offsets(admin, await end_offsets(feed.bootstrap, topics))
        await _until(lambda: _lag(topics) == 0 and _gauge("cqrs_projector_parked_events") == 1)
        await _until(lambda: _gauge("cqrs_projector_view_staleness_seconds", view="customers") == 0)
    finally:
        await admin.close()
