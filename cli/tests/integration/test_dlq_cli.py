"""`cqrs dlq` against a running projector: list shows a poisoned aggregate, replay after the fix
brings the view back to the fold of every event."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from typer.testing import Result

from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.poison import BuggyShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = pytest.mark.integration


async def test_dlq_list_shows_the_poisoned_aggregate_and_replay_after_the_fix_converges(
    cqrs: Callable[..., Awaitable[Result]],
    feed: EventFeed,
    pool: asyncpg.Pool[asyncpg.Record],
    start_projector: StartProjector,
) -> None:
    history = ShopHistory(seed=11).take(800)
    bad = next(e for e in history[200:] if e.type == "OrderLineAdded")
    projection = BuggyShopProjection([bad.event_id])
    await feed.send(history)
    await start_projector(projection)
    async with pool.acquire() as connection:
        await wait_for_offsets(
            connection,
            await end_offsets(feed.bootstrap, [feed.topics.events("customer"), feed.topics.events("order")]),
        )

    listed = await cqrs("dlq", "list")
    assert listed.exit_code == 0, listed.output
    first = listed.stdout.splitlines()[0]
    assert first.startswith(f"order/{bad.aggregate_id} v{bad.version} OrderLineAdded rejected attempts=0")
    assert "HandlerBugError" in first
    as_json = json.loads((await cqrs("dlq", "list", "--json", "--reason", "rejected")).stdout)
    assert [(p["aggregate_id"], p["version"]) for p in as_json] == [(bad.aggregate_id, bad.version)]
    letters = await cqrs("dlq", "topic")
    assert f"rejected from {feed.topics.events('order')}" in letters.stdout

    refused = await cqrs("dlq", "replay")
    assert refused.exit_code == 2  # neither --aggregate nor --all: nothing is replayed by accident
    still_broken = await cqrs("dlq", "replay", "--aggregate", f"order/{bad.aggregate_id}")
    assert still_broken.exit_code == 1 and "still parked" in still_broken.stdout

    projection.fixed = True
    replayed = await cqrs("dlq", "replay", "--aggregate", f"order/{bad.aggregate_id}", "--wait", "20")
    assert replayed.exit_code == 0, replayed.output
    assert "1 aggregate(s) caught up" in replayed.stdout
    assert (await cqrs("dlq", "list")).stdout == ""
    async with pool.acquire() as connection:
        assert diff(await read_rows(connection), fold(history)) == []
