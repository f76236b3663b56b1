"""Exactly-once effect: redelivered events and batches replayed from old offsets change nothing."""

from __future__ import annotations

import asyncpg
import pytest
from prometheus_client import REGISTRY

from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = pytest.mark.integration


def _counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "cqrs_projector_events_total", {"projection": "shop", "outcome": outcome}
    )
    return value or 0.0


async def test_every_event_delivered_twice_projects_as_once(
    feed: EventFeed, pool: asyncpg.Pool[asyncpg.Record], start_projector: StartProjector
) -> None:
    events = ShopHistory(seed=1).take(3000)
    await feed.send(events, copies=2)
    applied_before, duplicates_before = _counted("applied"), _counted("duplicate")
    await start_projector()
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, await end_offsets(feed.bootstrap, _event_topics(feed)))
        assert diff(await read_rows(connection), fold(events)) == []
        versions = await connection.fetch(
            "SELECT aggregate_type, aggregate_id, version FROM read.shop_aggregate_versions"
        )
    expected: dict[tuple[str, str], int] = {}
    for e in events:
        expected[(e.aggregate_type, e.aggregate_id)] = max(
            e.version, expected.get((e.aggregate_type, e.aggregate_id), 0)
        )
    assert {(r["aggregate_type"], r["aggregate_id"]): r["version"] for r in versions} == expected
    # Each distinct event applied exactly once; every copy (and any redelivery) counted as a duplicate.
    assert _counted("applied") - applied_before == len(events)
    assert _counted("duplicate") - duplicates_before >= len(events)


def _event_topics(feed: EventFeed) -> list[str]:
    return [feed.topics.events("customer"), feed.topics.events("order")]


async def _versions(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
) -> dict[tuple[str, str], int]:
    rows = await connection.fetch(
        "SELECT aggregate_type, aggregate_id, version FROM read.shop_aggregate_versions"
    )
    return {(r["aggregate_type"], r["aggregate_id"]): r["version"] for r in rows}


async def test_batches_replayed_from_old_offsets_leave_the_views_unchanged(
    feed: EventFeed, pool: asyncpg.Pool[asyncpg.Record], start_projector: StartProjector
) -> None:
    events = ShopHistory(seed=2).take(2500)
    await feed.send(events)
    ends = await end_offsets(feed.bootstrap, _event_topics(feed))
    first = await start_projector(max_batch_records=300)
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, ends)
        rows, versions = await read_rows(connection), await _versions(connection)
        assert diff(rows, fold(events)) == []
        await first.stop()
        # Rewind: customers to the very beginning, orders to the middle of their history, so
        # replayed batches start inside earlier batches and span their boundaries.
        await connection.execute(
            """
            UPDATE shop_b1.partition_offsets
            SET next_offset = CASE WHEN topic LIKE '%customer' THEN 0 ELSE next_offset / 2 END
            """
        )
        applied_before, duplicates_before = _counted("applied"), _counted("duplicate")
        await start_projector(max_batch_records=170)
        await wait_for_offsets(connection, ends)
        assert diff(await read_rows(connection), rows) == []
        assert await _versions(connection) == versions
    assert _counted("applied") == applied_before
    assert _counted("duplicate") - duplicates_before >= len(events) // 2
