"""`cqrs dlq` against a running projector: list shows a poisoned aggregate, replay after the fix
brings the view back to the fold of every event."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from cqrs_cli.main import app
from projector_svc.settings import ProjectorSettings
from projector_svc.testing import StartProjector
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.poison import BuggyShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = pytest.mark.integration


@pytest.fixture
def cqrs(settings: ProjectorSettings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("CQRS_TOPIC_PREFIX", settings.topic_prefix)
    return CliRunner()


async def _run(runner: CliRunner, *args: str) -> Result:
    # The commands run their own event loop, so they run in a thread beside the test's loop.
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def test_dlq_list_shows_the_poisoned_aggregate_and_replay_after_the_fix_converges(
    cqrs: CliRunner, feed: EventFeed, pool: asyncpg.Pool[asyncpg.Record], start_projector: StartProjector
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

    listed = await _run(cqrs, "dlq", "list")
    assert listed.exit_code == 0, listed.output
    first = listed.stdout.splitlines()[0]
    assert first.startswith(f"order/{bad.aggregate_id} v{bad.version} OrderLineAdded rejected attempts=0")
    assert "HandlerBugError" in first
    as_json = json.loads((await _run(cqrs, "dlq", "list", "--json", "--reason", "rejected")).stdout)
    assert [(p["aggregate_id"], p["version"]) for p in as_json] == [(bad.aggregate_id, bad.version)]
    letters = await _run(cqrs, "dlq", "topic")
    assert f"rejected from {feed.topics.events('order')}" in letters.stdout

    refused = await _run(cqrs, "dlq", "replay")
    assert refused.exit_code == 2  # neither --aggregate nor --all: nothing is replayed by accident
    still_broken = await _run(cqrs, "dlq", "replay", "--aggregate", f"order/{bad.aggregate_id}")
    assert still_broken.exit_code == 1 and "still parked" in still_broken.stdout

    projection.fixed = True
    replayed = await _run(cqrs, "dlq", "replay", "--aggregate", f"order/{bad.aggregate_id}", "--wait", "20")
    assert replayed.exit_code == 0, replayed.output
    assert "1 aggregate(s) caught up" in replayed.stdout
    assert (await _run(cqrs, "dlq", "list")).stdout == ""
    async with pool.acquire() as connection:
        assert diff(await read_rows(connection), fold(history)) == []
