"""`cqrs projector rebuild shop` as a real process, beside a live projector process under load:
queries keep succeeding and never go back in time, progress is printed, and the rebuilt build
equals the live one row by row."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from cqrs_shared.testing.service_processes import ServiceProcess
from cqrs_shared.topics import TopicNames
from projector_svc.settings import ProjectorSettings
from projector_svc.testing.builds import Build, catch_up, create_pool
from projector_svc.testing.kafka_feed import EventFeed, end_offsets, keep_sending
from projector_svc.testing.shop import ShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import diff, read_rows, wait_for_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def _query(
    dsn: str, stop: asyncio.Event, seen: list[tuple[int, int]], errors: list[BaseException]
) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            try:
                async with connection.transaction(isolation="repeatable_read", readonly=True):
                    orders = await connection.fetchval("SELECT count(*) FROM read.orders")
                    versions = await connection.fetchval(
                        "SELECT sum(version) FROM read.shop_aggregate_versions"
                    )
                seen.append((orders, versions))
            except Exception as exc:  # noqa: BLE001  # every failure a reader would see is collected
                errors.append(exc)
            await asyncio.sleep(0.01)
    finally:
        await connection.close()


async def test_cqrs_projector_rebuild_under_live_load_swaps_in_an_equal_copy(
    start_service: Callable[..., ServiceProcess],
    service_env: dict[str, str],
    kafka_bootstrap: str,
    topic_prefix: str,
    pg_database: str,
) -> None:
    projector = start_service("projector_svc", "PROJECTOR_SVC_PORT")
    await asyncio.to_thread(projector.wait_ready)
    topics = TopicNames(topic_prefix)
    names = [topics.events("customer"), topics.events("order")]
    history = ShopHistory(seed=41)
    sent = history.take(10_000)
    stop, seen, errors = asyncio.Event(), list[tuple[int, int]](), list[BaseException]()
    async with EventFeed(kafka_bootstrap, topics) as feed:
        await feed.send(sent)
        pool = await create_pool(pg_database, max_size=1)
        connection = await pool.acquire()
        await wait_for_offsets(connection, await end_offsets(kafka_bootstrap, names))
        background = [
            asyncio.create_task(keep_sending(feed, history, sent, stop)),
            asyncio.create_task(_query(pg_database, stop, seen, errors)),
        ]
        try:
            command = ["projector", "rebuild", "shop", "--catch-up-lag", "3000"]
            cli = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "cqrs"),
                *command,
                env={**os.environ, **service_env},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output = (await asyncio.wait_for(cli.communicate(), 90))[0].decode()
            await asyncio.sleep(0.5)  # live traffic goes on into the new build
        finally:
            stop.set()
            await asyncio.gather(*background)
    assert cli.returncode == 0, output
    lines = output.strip().splitlines()
    assert any(re.search(r"replaying: .* events/s, ETA \d", line) for line in lines), output
    swapped = r"shop_b2 swapped in: [\d,]+ events in [\d.]+s \([\d,]+ events/s\)"
    assert re.fullmatch(swapped, lines[-1]), output
    assert errors == []
    assert len(seen) > 20
    assert [(a, b) for a, b in itertools.pairwise(seen) if a[0] > b[0] or a[1] > b[1]] == []

    try:
        await wait_for_offsets(connection, await end_offsets(kafka_bootstrap, names))
        settings = ProjectorSettings(
            database_url=pg_database, topic_prefix=topic_prefix, kafka_bootstrap_servers=kafka_bootstrap
        )
        await catch_up(settings, ShopProjection(), Build("shop", 1))  # finish the retired live build
        live, rebuilt = await read_rows(connection, "shop_b1"), await read_rows(connection, "shop_b2")
        assert diff(rebuilt, live) == []
        assert diff(rebuilt, fold(sent)) == []
        assert diff(await read_rows(connection), rebuilt) == []  # `read` shows the rebuilt build
    finally:
        await pool.release(connection)
        await pool.close()
