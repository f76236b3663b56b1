"""B4's rebuild under live load: its rate, its progress over time, and what it does to live staleness.

Against the local stack, in a fresh database and topic prefix:
1. a history of `--rebuild-events` shop events over `--aggregates` aggregates is produced and the
   live projector (the real service process) projects it;
2. live events then arrive at `--live-rate` events/s for the rest of the run, and their staleness
   (appended to Kafka -> the live projector's NOTIFY of its row) is measured: first for
   `--baseline-seconds` without a rebuild, then while `cqrs projector rebuild shop` (the real CLI)
   rebuilds the whole history beside the live build and swaps it in;
3. figures: the rebuild's events/s (as it reports them: applied / seconds from its own start to
   the swap, without the command's start-up), its progress
   lines (applied events over time, for the plot), staleness p50/p99 before and during the rebuild
   and their ratio (the issue's target: at most 2x).
A notification counts only from the build readers see: the rebuild's own batches notify for its
schema before the swap; at the swap (the activation's overflow notification) the live events it
had already applied become visible.
Run: `uv run python -m bench.rebuild_bench --rebuild-events 1000000` (`make bench-rebuild`); writes
`bench/results/<timestamp>-rebuild/` (`results.json`, `rebuild_progress.png`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.projector_bench import ADMIN_DSN, BOOTSTRAP, percentile
from bench.report import RESULTS, rebuild_plot
from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.read_models.notifications import CHANNEL, decode
from cqrs_shared.testing.postgres import drop_database
from cqrs_shared.testing.service_processes import ServiceProcess, free_port
from cqrs_shared.topics import TopicNames
from projector_svc.operations import prepare_topics
from projector_svc.settings import ProjectorSettings
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import wait_for_offsets

Position = tuple[str, str, int]
_APPLIED = re.compile(r"replaying: ([\d,]+) events applied")
_SWAPPED = re.compile(r"swapped in: ([\d,]+) events in ([\d.]+)s")


class Visibility:
    """When each live event became visible to readers, from the projector's notifications."""

    def __init__(self, active: str) -> None:
        self.active = active
        self.sent: dict[Position, float] = {}
        #: (sent at, milliseconds until visible), per event seen visible.
        self.seen: list[tuple[float, float]] = []
        self._waiting: dict[tuple[str, str], list[int]] = {}
        #: Versions a build that is not active yet notified, shown at its activation.
        self._shadow: dict[str, dict[tuple[str, str], int]] = {}

    def sending(self, events: list[EventEnvelope]) -> None:
        now = time.time()
        for e in events:
            self.sent[(e.aggregate_type, e.aggregate_id, e.version)] = now
            self._waiting.setdefault((e.aggregate_type, e.aggregate_id), []).append(e.version)

    def on_notify(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        note = decode(str(payload))
        if note is None:
            return
        now = time.time()
        if note.overflow:  # an activation: every row of that build is what readers see now
            self.active = note.schema
            for key, version in self._shadow.pop(note.schema, {}).items():
                self._show(key, version, now)
            return
        for change in note.changes:
            key = (change.aggregate_type, change.aggregate_id)
            if note.schema == self.active:
                self._show(key, change.version, now)
            else:
                shadow = self._shadow.setdefault(note.schema, {})
                shadow[key] = max(change.version, shadow.get(key, 0))

    def _show(self, key: tuple[str, str], version: int, now: float) -> None:
        waiting = self._waiting.get(key, [])
        while waiting and waiting[0] <= version:  # a batch notifies the last version it applied
            sent = self.sent[(*key, waiting.pop(0))]
            self.seen.append((sent, (now - sent) * 1000))


async def live_load(
    feed: EventFeed, history: ShopHistory, rate: int, visibility: Visibility, stop: asyncio.Event
) -> None:
    """`rate` events/s in 20 ms ticks until `stop` is set."""
    tick, per_tick = 0.02, max(1, int(rate * 0.02))
    started, ticks = time.monotonic(), 0
    while not stop.is_set():
        events = history.take(per_tick)
        visibility.sending(events)
        await feed.send(events)
        ticks += 1
        await asyncio.sleep(max(0.0, started + ticks * tick - time.monotonic()))


async def run_rebuild(env: dict[str, str]) -> dict[str, Any]:
    """`cqrs projector rebuild shop` as a process; its progress lines with the seconds they came at."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "cqrs"), "projector", "rebuild", "shop",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    progress: list[tuple[float, int]] = [(0.0, 0)]
    last = ""
    async for raw in process.stdout:
        line = raw.decode().strip()
        at = time.monotonic() - started
        if found := _APPLIED.search(line):
            progress.append((at, int(found[1].replace(",", ""))))
        elif found := _SWAPPED.search(line):
            progress.append((at, int(found[1].replace(",", ""))))
            last = line
    _, errors = await process.communicate()
    if process.returncode != 0 or not last:
        raise RuntimeError(f"the rebuild failed ({process.returncode}): {errors.decode()[-2000:]}")
    seconds = time.monotonic() - started
    swapped = _SWAPPED.search(last)
    assert swapped is not None
    applied, own_seconds = int(swapped[1].replace(",", "")), float(swapped[2])
    return {
        "seconds": seconds,
        "applied": applied,
        # As the rebuild reports it: from its own start to the swap, without the CLI's start-up.
        "rate": applied / own_seconds,
        "line": last,
        "progress": progress,
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "count": 0}
    return {"p50_ms": percentile(values, 0.5), "p99_ms": percentile(values, 0.99), "count": len(values)}


async def _projected(pool: asyncpg.Pool[asyncpg.Record], names: list[str]) -> None:
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, await end_offsets(BOOTSTRAP, names), within=3600)


async def measure(events: int, aggregates: int, live_rate: int, baseline_seconds: float) -> dict[str, Any]:
    """Every figure of this benchmark, in one run against fresh topics and a fresh database."""
    prefix = f"rbench{uuid.uuid4().hex[:6]}."
    database = f"rbench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path=f"/{database}"))
    topics = TopicNames(prefix)
    names = [topics.events("customer"), topics.events("order")]
    env = {**os.environ, "DATABASE_URL": dsn, "CQRS_TOPIC_PREFIX": prefix, "LOG_LEVEL": "WARNING"}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "PROJECTOR_SVC_PORT": str(free_port())}
    settings = ProjectorSettings(database_url=dsn, topic_prefix=prefix, kafka_bootstrap_servers=BOOTSTRAP)
    await prepare_topics(settings, "shop")
    log = Path(tempfile.mkdtemp()) / "projector.log"
    projector = ServiceProcess("projector_svc", int(env["PROJECTOR_SVC_PORT"]), env, log).start()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    history = ShopHistory(seed=11, clock=utc_now, max_aggregates=aggregates)
    try:
        await asyncio.to_thread(projector.wait_ready)
        async with EventFeed(BOOTSTRAP, topics) as feed:
            for start in range(0, events, 20_000):
                await feed.send(history.take(min(20_000, events - start)))
            await _projected(pool, names)
            figures = await rebuild_under_load(dsn, env, feed, history, live_rate, baseline_seconds)
            await _projected(pool, names)
    finally:
        projector.stop()
        await pool.close()
        await drop_database(ADMIN_DSN, database)
    return {"events": events, "aggregates": aggregates, **figures}


async def rebuild_under_load(
    dsn: str,
    env: dict[str, str],
    feed: EventFeed,
    history: ShopHistory,
    live_rate: int,
    baseline_seconds: float,
    active: str = "shop_b1",
) -> dict[str, Any]:
    """Live load and its staleness for `baseline_seconds`, then `cqrs projector rebuild shop`
    under the same load; `active` is the build readers see when it starts."""
    visibility = Visibility(active)
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener(CHANNEL, visibility.on_notify)
        stop = asyncio.Event()
        load = asyncio.create_task(live_load(feed, history, live_rate, visibility, stop))
        await asyncio.sleep(baseline_seconds)
        began = time.time()
        try:
            rebuild = await run_rebuild(env)
        finally:
            ended = time.time()
            stop.set()
            await load
        await asyncio.sleep(2.0)  # the last live events' notifications
    finally:
        await listener.close()
    before = [ms for sent, ms in visibility.seen if sent < began]
    during = [ms for sent, ms in visibility.seen if began <= sent <= ended]
    before_p, during_p = _percentiles(before), _percentiles(during)
    return {
        "live_rate": live_rate,
        "rebuild_events_per_s": rebuild["rate"], "rebuild_seconds": rebuild["seconds"],
        "rebuild_applied": rebuild["applied"], "rebuild_line": rebuild["line"],
        "progress": rebuild["progress"],
        "live_sent": len(visibility.sent), "live_seen": len(visibility.seen),
        "staleness_before": before_p, "staleness_during": during_p,
        "staleness_p50_ratio": _ratio(during_p["p50_ms"], before_p["p50_ms"]),
        "staleness_p99_ratio": _ratio(during_p["p99_ms"], before_p["p99_ms"]),
    }  # fmt: skip


def _ratio(during: float | None, before: float | None) -> float | None:
    return during / before if during is not None and before else None


def report(figures: dict[str, Any]) -> None:
    over = f" over {figures['aggregates']:,} aggregates" if figures["aggregates"] else ""
    print(f"rebuild under live load: {figures['events']:,} events{over}, "
          f"live load {figures['live_rate']} events/s, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"  rebuild (cqrs projector rebuild)  {figures['rebuild_events_per_s']:>10,.0f} events/s "
          f"({figures['rebuild_seconds']:.1f} s with the command's start-up)")  # fmt: skip
    print(f"    {figures['rebuild_line']}")
    for label, key in (
        ("before the rebuild", "staleness_before"),
        ("during the rebuild", "staleness_during"),
    ):
        p = figures[key]
        p50, p99 = p["p50_ms"] or 0.0, p["p99_ms"] or 0.0
        print(f"  live staleness {label}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
              f"({p['count']:,} events)")  # fmt: skip
    p50, p99 = figures["staleness_p50_ratio"], figures["staleness_p99_ratio"]
    print(f"  during / before  p50 {p50 or 0:.2f}x  p99 {p99 or 0:.2f}x  (target at most 2x)")
    print(f"  live events seen visible: {figures['live_seen']:,} of {figures['live_sent']:,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rebuild-events", type=int, default=1_000_000)
    parser.add_argument("--aggregates", type=int, default=100_000)
    parser.add_argument("--live-rate", type=int, default=250, help="live events/s during the run")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(measure(args.rebuild_events, args.aggregates, args.live_rate, args.baseline_seconds))
    report(result)
    folder = RESULTS / (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-rebuild")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    rebuild_plot(
        {"rebuild_progress": result["progress"], "rebuild_events_per_s": result["rebuild_events_per_s"],
         "rebuild_live_rate": result["live_rate"]},
        folder,
    )  # fmt: skip
    print(f"results: {folder}")
