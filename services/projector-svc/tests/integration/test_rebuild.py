"""A rebuild under live load: readers never fail nor see a half-built view, and the swapped-in
build equals the live one row by row (and both equal the fold of every event)."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg
import pytest

from projector_svc.builds import Build, list_builds
from projector_svc.rebuild import RebuildOptions, catch_up, rebuild
from projector_svc.replayer import Progress
from projector_svc.settings import ProjectorSettings
from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed, end_offsets, keep_sending
from projector_svc.testing.shop import ShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = pytest.mark.integration


async def _query(
    dsn: str, stop: asyncio.Event, counts: list[tuple[int, int, int]], errors: list[BaseException]
) -> None:
    """What query-svc does: read the `read` views, in one snapshot per request."""
    connection = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            try:
                async with connection.transaction(isolation="repeatable_read", readonly=True):
                    customers = await connection.fetchval("SELECT count(*) FROM read.customers")
                    orders = await connection.fetchval("SELECT count(*) FROM read.orders")
                    versions = await connection.fetchval(
                        "SELECT sum(version) FROM read.shop_aggregate_versions"
                    )
                counts.append((customers, orders, versions))
            except Exception as exc:  # noqa: BLE001  # every failure a reader would see is collected
                errors.append(exc)
            await asyncio.sleep(0.005)
    finally:
        await connection.close()


async def test_a_rebuild_under_load_swaps_in_a_copy_equal_to_the_live_view(
    settings: ProjectorSettings,
    feed: EventFeed,
    pool: asyncpg.Pool[asyncpg.Record],
    start_projector: StartProjector,
    pg_database: str,
) -> None:
    history = ShopHistory(seed=5)
    sent = history.take(8000)
    await feed.send(sent)
    topics = [feed.topics.events("customer"), feed.topics.events("order")]
    await start_projector()
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, await end_offsets(feed.bootstrap, topics))

    stop = asyncio.Event()
    counts: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    progress: list[Progress] = []
    background = [
        asyncio.create_task(keep_sending(feed, history, sent, stop)),
        asyncio.create_task(_query(pg_database, stop, counts, errors)),
    ]
    try:
        build = await rebuild(
            settings,
            ShopProjection(),
            RebuildOptions(catch_up_lag=3000, report_interval=0.25),
            progress.append,
        )
        await asyncio.sleep(0.5)  # live traffic continues into the new build
    finally:
        stop.set()
        await asyncio.gather(*background)

    assert build == Build("shop", 2)
    assert errors == []
    assert len(counts) > 50
    # Never a half-built nor an older view: what readers see only grows (the load only adds
    # aggregates and versions), also across the swap.
    regressions = [
        (a, b) for a, b in itertools.pairwise(counts) if any(x > y for x, y in zip(a, b, strict=True))
    ]
    assert regressions == [], "a reader saw the read model go back in time"
    assert progress[-1].phase == "swapped"
    assert any(
        p.phase == "replaying" and p.events_per_second > 0 and p.eta_seconds is not None for p in progress
    )

    ends = await end_offsets(feed.bootstrap, topics)
    async with pool.acquire() as connection:
        assert [(b.build.number, b.status) for b in await list_builds(connection, "shop")] == [
            (1, "retired"),
            (2, "active"),
        ]
        await wait_for_offsets(connection, ends)  # the live replica moved on to the new build
        # Finish the retired live build too, then compare the two row by row.
        await catch_up(settings, ShopProjection(), Build("shop", 1))
        await wait_for_offsets(connection, ends, schema="shop_b1")
        live, rebuilt = await read_rows(connection, "shop_b1"), await read_rows(connection, "shop_b2")
        assert diff(rebuilt, live) == []
        assert diff(rebuilt, fold(sent)) == []
        assert len(rebuilt.orders) > 1000
