"""SIGKILL the projector process mid-batch under a load of 20,000 events, restart it: the views
equal a fold of every event, computed independently of the projector."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.testing.service_processes import ServiceProcess
from cqrs_shared.topics import TopicNames
from projector_svc.testing.builds import create_pool
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, stored_offsets, wait_for_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TOTAL = 20_000


@pytest.fixture
async def pool(pg_database: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    pool = await create_pool(pg_database, max_size=2)
    yield pool
    await pool.close()


async def _kill_inside_a_batch(
    projector: ServiceProcess, admin: asyncpg.Connection[asyncpg.Record], db: str
) -> None:
    """SIGKILL at a moment a batch transaction has written rows but not committed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        writing = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_xid IS NOT NULL "
            "AND pid <> pg_backend_pid()",
            db,
        )
        if writing:
            projector.stop(signal.SIGKILL)
            return
    raise AssertionError("never caught the projector inside a batch transaction")


async def test_sigkill_mid_batch_under_load_then_restart_equals_the_fold(
    start_service: Callable[..., ServiceProcess],
    kafka_bootstrap: str,
    topic_prefix: str,
    pool: asyncpg.Pool[asyncpg.Record],
    pg_database: str,
) -> None:
    history = ShopHistory(seed=21)
    events = history.take(TOTAL)
    topics = TopicNames(topic_prefix)
    names = [topics.events("customer"), topics.events("order")]
    env = {"PROJECTOR_SVC_MAX_BATCH_RECORDS": "400"}
    projector = start_service("projector_svc", "PROJECTOR_SVC_PORT", **env)
    await asyncio.to_thread(projector.wait_ready)  # it creates the topics, kept forever
    async with EventFeed(kafka_bootstrap, topics) as feed:
        await feed.send(events[:6000])
        load = asyncio.create_task(_send_slowly(feed, events[6000:]))
        admin = await asyncpg.connect(pg_database)
        try:
            async with pool.acquire() as connection:
                await _until_progress(connection, 4000)
            await _kill_inside_a_batch(projector, admin, pg_database.rsplit("/", 1)[1])
        finally:
            await admin.close()
        async with pool.acquire() as connection:
            at_kill = sum((await stored_offsets(connection)).values())
        await load
    assert at_kill < TOTAL, "the kill came after the projector had finished"

    restarted = start_service("projector_svc", "PROJECTOR_SVC_PORT", **env)
    await asyncio.to_thread(restarted.wait_ready)
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, await end_offsets(kafka_bootstrap, names), within=90)
        assert diff(await read_rows(connection), fold(events)) == []
        versions = await connection.fetch(
            "SELECT aggregate_type, aggregate_id, version FROM read.shop_aggregate_versions"
        )
    latest: dict[tuple[str, str], int] = {}
    for e in events:
        latest[(e.aggregate_type, e.aggregate_id)] = max(
            latest.get((e.aggregate_type, e.aggregate_id), 0), e.version
        )
    assert {(r["aggregate_type"], r["aggregate_id"]): r["version"] for r in versions} == latest


async def _until_progress(connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], applied: int) -> None:
    for _ in range(600):
        if sum((await stored_offsets(connection)).values()) >= applied:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the projector did not reach offset {applied}")


async def _send_slowly(feed: EventFeed, events: list[EventEnvelope]) -> None:
    """The rest of the load arrives while the projector works (and while it is down)."""
    for start in range(0, len(events), 1000):
        await feed.send(events[start : start + 1000])
        await asyncio.sleep(0.05)
