"""`cqrs projector rebuild | status | prune` against a real database and topics."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from typer.testing import Result

from projector_svc.testing import StartProjector
from projector_svc.testing.builds import LOCK_NAMESPACE
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = pytest.mark.integration


async def test_rebuild_shows_progress_swaps_in_and_status_and_prune_follow(
    cqrs: Callable[..., Awaitable[Result]],
    feed: EventFeed,
    pool: asyncpg.Pool[asyncpg.Record],
    start_projector: StartProjector,
) -> None:
    history = ShopHistory(seed=12).take(6000)
    await feed.send(history)
    await start_projector(max_batch_records=500)
    topics = [feed.topics.events("customer"), feed.topics.events("order")]
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, await end_offsets(feed.bootstrap, topics))

    result = await cqrs("projector", "rebuild", "shop")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        r"shop_b2 replaying: [\d,]+ events applied, [\d,]+ to go, [\d,]+ events/s, ETA .+", lines[0]
    )
    assert re.fullmatch(r"shop_b2 swapped in: 6,000 events in [\d.]+s \([\d,]+ events/s\)", lines[-1])

    status = (await cqrs("projector", "status", "shop")).stdout
    assert re.search(r"^shop_b1: retired", status, re.MULTILINE)
    assert re.search(r"^shop_b2: active", status, re.MULTILINE)
    assert status.strip().endswith("parked: none")
    async with pool.acquire() as connection:
        assert diff(await read_rows(connection), fold(history)) == []
        # A second rebuild while one holds the lock is refused instead of racing it.
        await connection.execute("SELECT pg_advisory_lock($1, hashtext('rebuild:shop'))", LOCK_NAMESPACE)
        try:
            busy = await cqrs("projector", "rebuild", "shop")
        finally:
            await connection.execute(
                "SELECT pg_advisory_unlock($1, hashtext('rebuild:shop'))", LOCK_NAMESPACE
            )
        assert busy.exit_code == 1 and "already running" in busy.output

    pruned = await cqrs("projector", "prune", "shop")
    assert pruned.stdout.splitlines() == ["dropped shop_b1"]
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'shop_b1'") == 0
