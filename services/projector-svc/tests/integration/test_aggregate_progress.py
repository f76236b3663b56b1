"""`operations.aggregate_progress` (what `cqrs command trace` shows per projection): the applied
version of one aggregate in the active build, and which of its later events are parked or pending."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from cqrs_shared.contracts import shop as c
from projector_svc import operations
from projector_svc.settings import ProjectorSettings
from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed
from projector_svc.testing.shop_history import envelope

pytestmark = pytest.mark.integration

_AT = datetime(2026, 5, 1, tzinfo=UTC)


async def test_applied_parked_and_pending_versions_of_one_aggregate(
    feed: EventFeed, settings: ProjectorSettings, start_projector: StartProjector
) -> None:
    with pytest.raises(operations.NoActiveBuildError):
        await operations.aggregate_progress(settings, "shop", (c.CUSTOMER, "p-1"))
    await start_projector()
    await feed.send(
        [
            envelope(c.CUSTOMER, "p-1", 1, c.CustomerRegistered(name="Ada", email="ada@example.com"), _AT),
            envelope(c.CUSTOMER, "p-1", 2, c.CustomerRenamed(name="Ada King"), _AT),
            # Version 3 never comes: 4 waits for it.
            envelope(c.CUSTOMER, "p-1", 4, c.CustomerRenamed(name="Ada Lovelace"), _AT),
        ]
    )
    async with asyncio.timeout(30):
        progress = await operations.aggregate_progress(settings, "shop", (c.CUSTOMER, "p-1"))
        while not progress.parked:
            await asyncio.sleep(0.1)  # PostgreSQL offers no event to wait on
            progress = await operations.aggregate_progress(settings, "shop", (c.CUSTOMER, "p-1"))

    assert progress.projection == "shop" and progress.build == "shop_b1"
    assert progress.applied_version == 2
    assert [(p.version, p.reason) for p in progress.parked] == [(4, "gap")]
    assert [progress.state_of(v) for v in (1, 2, 3, 4)] == ["applied", "applied", "pending", "parked (gap)"]
    untouched = await operations.aggregate_progress(settings, "shop", (c.CUSTOMER, "p-none"))
    assert (untouched.applied_version, untouched.parked) == (0, [])
