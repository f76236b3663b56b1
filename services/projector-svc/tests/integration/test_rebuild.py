"""A rebuild under live load: readers never fail nor see a half-built view, and the swapped-in
build equals the live one row by row (and both equal the fold of every event)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import asyncpg
import pytest

from cqrs_shared.envelopes import EventEnvelope
from projector_svc import bulk_load
from projector_svc.builds import Build, create_build, ensure_active_build, list_builds
from projector_svc.pg import Connection
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


class _CommitModes(ShopProjection):
    """The shop projection, noting the `synchronous_commit` each batch runs with."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[str] = []

    async def apply(self, connection: Connection, events: Sequence[EventEnvelope]) -> None:
        self.modes.append(await connection.fetchval("SHOW synchronous_commit"))
        await super().apply(connection, events)


async def test_a_rebuild_swaps_in_only_once_it_applied_every_event_and_commits_asynchronously_alone(
    settings: ProjectorSettings,
    feed: EventFeed,
    pool: asyncpg.Pool[asyncpg.Record],
    start_projector: StartProjector,
) -> None:
    """No live replica runs, so nothing but the rebuild's own count of what remains holds the swap
    back: counted from the consumer's positions, which run ahead of what is committed, it swapped
    in builds a batch short (with batches fetched ahead of their transaction)."""
    history = ShopHistory(seed=6)
    sent = history.take(3000)
    await feed.send(sent)
    topics = [feed.topics.events("customer"), feed.topics.events("order")]
    rebuilt = _CommitModes()
    # Counting what remains after every batch.
    options = RebuildOptions(catch_up_lag=0, report_interval=0.0)
    build = await rebuild(settings.model_copy(update={"rebuild_batch_records": 400}), rebuilt, options)
    assert build == Build("shop", 2)
    async with pool.acquire() as connection:
        assert diff(await read_rows(connection), fold(sent)) == []
    assert rebuilt.modes
    assert set(rebuilt.modes) == {"off"}

    live = _CommitModes()
    await start_projector(live)
    more = history.take(100)
    await feed.send(more)
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, await end_offsets(feed.bootstrap, topics))
        assert diff(await read_rows(connection), fold(sent + more)) == []
    assert live.modes
    assert set(live.modes) == {"on"}


async def _secondary_indexes(connection: Connection, schema: str) -> list[str]:
    rows = await connection.fetch(
        "SELECT replace(indexdef, $1, 'build.') AS d FROM pg_indexes "
        "WHERE schemaname = $2 AND tablename IN ('customers', 'orders') AND indexname NOT LIKE '%pkey' "
        "ORDER BY indexname",
        f"{schema}.",
        schema,
    )
    return [r["d"] for r in rows]


async def test_an_interrupted_bulk_load_is_resumed_and_ends_with_the_indexes_and_joins_of_a_live_build(
    settings: ProjectorSettings, feed: EventFeed, pool: asyncpg.Pool[asyncpg.Record]
) -> None:
    sent = ShopHistory(seed=8).take(2000)
    await feed.send(sent)
    async with pool.acquire() as connection:
        await ensure_active_build(connection, ShopProjection())
        # What a rebuild interrupted in its bulk phase leaves: a building build without its
        # secondary indexes, their definitions kept in it.
        interrupted = await create_build(connection, ShopProjection())
        await bulk_load.begin(connection, ShopProjection(), interrupted)
        assert await _secondary_indexes(connection, interrupted.schema) == []
        wanted = await _secondary_indexes(connection, "shop_b1")
    assert len(wanted) == 6

    build = await rebuild(settings, ShopProjection(), RebuildOptions(catch_up_lag=0))

    assert build == interrupted
    async with pool.acquire() as connection:
        assert await _secondary_indexes(connection, build.schema) == wanted
        assert await connection.fetchval("SELECT to_regclass('shop_b2.deferred_indexes')") is None
        # Joined columns (order counts, customer names on orders) derived once at the end.
        assert diff(await read_rows(connection), fold(sent)) == []
