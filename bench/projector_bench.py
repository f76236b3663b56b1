"""Projector throughput and staleness, each next to a raw limit measured in the same run.

Against the real local stack, in a fresh database and topic prefix:
1. raw limits: consuming the event records with a bare aiokafka consumer; decoding them as event
   envelopes; inserting rows shaped like `orders` with one `unnest` statement per 2,000 rows;
2. steady state: a projector process (the real service) drains a backlog of N events produced while
   it runs: events/s from the first record to the last one visible;
3. rebuild: `cqrs projector rebuild shop` (the real CLI) rebuilds the same history; events/s;
4. staleness at a moderate load (`--rate` events/s for `--seconds`): event appended to Kafka ->
   row visible (the transaction's `pg_notify` reaching a listener), p50/p99, next to the raw
   Kafka append -> consume latency of the same records, measured at the same time.
Run: `uv run python -m bench.projector_bench` (`--events 40000 --rate 500 --seconds 10`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench.proc_cpu import BackendsCpu, CpuMeter
from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.read_models.notifications import CHANNEL
from cqrs_shared.read_models.shop import ORDERS
from cqrs_shared.testing.postgres import drop_database
from cqrs_shared.testing.service_processes import ServiceProcess, free_port
from cqrs_shared.topics import TopicNames
from projector_svc.operations import projection_named
from projector_svc.settings import ProjectorSettings
from projector_svc.table_rows import upsert
from projector_svc.testing.kafka_feed import EventFeed, end_offsets, partitions_of, prepare_topics
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import wait_for_offsets

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://cqrs:cqrs@127.0.0.1:5432/cqrs")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def raw_consume(names: list[str], total: int) -> tuple[float, list[bytes]]:
    """Records/s of a bare consumer reading everything from the start; returns the values too."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    consumer.assign(await partitions_of(BOOTSTRAP, names))
    values: list[bytes] = []
    started = time.perf_counter()
    try:
        while len(values) < total:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                values.extend(r.value for r in batch)
    finally:
        await consumer.stop()
    return len(values) / (time.perf_counter() - started), values


def raw_decode(values: list[bytes]) -> float:
    started = time.perf_counter()
    for value in values:
        EventEnvelope.model_validate_json(value)
    return len(values) / (time.perf_counter() - started)


async def raw_unnest(dsn: str, count: int) -> float:
    """Rows/s of one `INSERT ... SELECT FROM unnest(...)` per 2,000 order rows, one transaction each."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE SCHEMA raw")
        await connection.execute("CREATE TABLE raw.orders (LIKE shop_b1.orders INCLUDING ALL)")
        await connection.execute("SET search_path TO raw")
        now = utc_now()
        lines = [{"sku": "a", "quantity": 1, "unit_price": "12.00"}]
        row = {"customer_name": "N", "status": "placed", "currency": "EUR", "total": 12, "line_count": 1}
        row |= {"lines": lines, "placed_at": now, "updated_at": now, "version": 1}
        rows = [{**row, "id": f"o{i}", "customer_id": f"c{i % 997}"} for i in range(count)]
        started = time.perf_counter()
        for start in range(0, count, 2000):
            async with connection.transaction():
                await upsert(connection, ORDERS, rows[start : start + 2000])
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


async def drain(
    pool: asyncpg.Pool[asyncpg.Record], names: list[str], feed: EventFeed, events: list[Any], projector: int
) -> tuple[float, dict[str, float]]:
    """Events/s of the running projector (process `projector`) working off a backlog, and the CPU
    seconds of that process and of its database's PostgreSQL backends while it did.

    A few events first, so the consumer group has assigned the partitions; the rest is produced
    while the projector is stopped (SIGSTOP), so the rate is the projector's, not the producer's."""
    warm, backlog = events[:200], events[200:]
    await feed.send(warm)
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, await end_offsets(BOOTSTRAP, names), within=120)
        database = await connection.fetchval("SELECT current_database()")
    os.kill(projector, signal.SIGSTOP)
    try:
        await feed.send(backlog)
        ends = await end_offsets(BOOTSTRAP, names)
        meter = CpuMeter({"projector": [projector]})
        meter.start()
        backends = BackendsCpu(database)
        backends.start()
        started = time.perf_counter()
    finally:
        os.kill(projector, signal.SIGCONT)
    async with pool.acquire() as connection:
        await wait_for_offsets(connection, ends, within=900)
    rate = len(backlog) / (time.perf_counter() - started)
    own, postgres = meter.stop()["projector"], await backends.stop()
    return rate, {"projector": own, "postgres": postgres, "total": own + postgres}


async def produce_at(
    feed: EventFeed,
    history: ShopHistory,
    rate: int,
    seconds: float,
    sent: dict[tuple[str, str, int], float],
    pending: dict[tuple[str, str], list[int]],
) -> None:
    """Produce `rate` events/s in 20 ms ticks, noting when each one was handed to Kafka."""
    tick, per_tick = 0.02, max(1, int(rate * 0.02))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events = history.take(per_tick)
        for e in events:
            sent[(e.aggregate_type, e.aggregate_id, e.version)] = time.time()
            pending.setdefault((e.aggregate_type, e.aggregate_id), []).append(e.version)
        await feed.send(events)
        await asyncio.sleep(tick)


async def staleness(
    dsn: str, feed: EventFeed, history: ShopHistory, rate: int, seconds: float
) -> dict[str, list[float]]:
    """Append -> row visible (via the projector's notifications) and append -> raw consume, in ms."""
    sent: dict[tuple[str, str, int], float] = {}
    visible: list[float] = []
    raw: list[float] = []
    pending: dict[tuple[str, str], list[int]] = {}

    def on_notify(_c: object, _pid: int, _channel: str, payload: object) -> None:
        now = time.time()
        for kind, ident, version in json.loads(str(payload))["changes"]:
            waiting = pending.get((kind, ident), [])
            while waiting and waiting[0] <= version:  # a batch notifies the last version it applied
                visible.append((now - sent[(kind, ident, waiting.pop(0))]) * 1000)

    listener = await asyncpg.connect(dsn)
    await listener.add_listener(CHANNEL, on_notify)
    names = [feed.topics.events("customer"), feed.topics.events("order")]
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    consumer.assign(await partitions_of(BOOTSTRAP, names))
    await consumer.seek_to_end()
    stop = asyncio.Event()

    async def consume() -> None:
        while not stop.is_set():
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                for r in batch:
                    e = json.loads(r.value)
                    position = (e["aggregate_type"], e["aggregate_id"], e["version"])
                    raw.append((now - sent[position]) * 1000)

    reader = asyncio.create_task(consume())
    await produce_at(feed, history, rate, seconds, sent, pending)
    await asyncio.sleep(2.0)
    stop.set()
    await reader
    await consumer.stop()
    await listener.close()
    return {"visible": visible, "raw": raw, "sent": [float(len(sent))]}


async def measure(events: int, rate: int, seconds: float, live_rate: int = 250) -> dict[str, Any]:
    """Every figure of this benchmark, in one run against fresh topics and a fresh database."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    database = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path=f"/{database}"))
    topics = TopicNames(prefix)
    names = [topics.events("customer"), topics.events("order")]
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "CQRS_TOPIC_PREFIX": prefix,
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
    }
    env |= {"LOG_LEVEL": "WARNING", "PROJECTOR_SVC_PORT": str(free_port())}
    # Outlasts the drain's SIGSTOP while the backlog is produced (a stopped member sends no heartbeat).
    env |= {"PROJECTOR_SVC_SESSION_TIMEOUT_MS": "120000"}
    settings = ProjectorSettings(database_url=dsn, topic_prefix=prefix, kafka_bootstrap_servers=BOOTSTRAP)
    await prepare_topics(settings, projection_named("shop"))
    log = Path(tempfile.mkdtemp()) / "projector.log"
    projector = ServiceProcess("projector_svc", int(env["PROJECTOR_SVC_PORT"]), env, log).start()
    history = ShopHistory(seed=7, clock=utc_now)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await asyncio.to_thread(projector.wait_ready)
        assert projector.process is not None
        # Imported here: bench.rebuild_bench builds on this module's constants and percentile.
        from bench.rebuild_bench import rebuild_under_load

        async with EventFeed(BOOTSTRAP, topics) as feed:
            steady, steady_cpu = await drain(pool, names, feed, history.take(events), projector.process.pid)
            consume_rate, values = await raw_consume(names, events)
            decode_rate = raw_decode(values)
            insert_rate = await raw_unnest(dsn, events)
            lag = await staleness(dsn, feed, history, rate, seconds)
            rebuild = await rebuild_under_load(dsn, env, feed, history, live_rate, baseline_seconds=seconds)
    finally:
        projector.stop()
        await pool.close()
        await admin.close()
        await drop_database(ADMIN_DSN, database)
    return {
        "events": events, "steady": steady, "steady_cpu": steady_cpu, "rebuild": rebuild,
        "consume": consume_rate, "decode": decode_rate, "insert": insert_rate, "lag": lag, "rate": rate,
    }  # fmt: skip


async def main(events: int, rate: int, seconds: float, live_rate: int) -> None:
    report(**await measure(events, rate, seconds, live_rate))


def report(
    events: int, steady: float, steady_cpu: dict[str, float], rebuild: dict[str, Any], consume: float,
    decode: float, insert: float, lag: dict[str, list[float]], rate: int,
) -> None:  # fmt: skip
    visible, raw = lag["visible"], lag["raw"]
    print(f"projector benchmark, {events:,} shop events, 3 partitions per topic, {os.cpu_count()} CPUs")
    print("raw limits (same run):")
    print(f"  bare aiokafka consume          {consume:>10,.0f} records/s")
    print(f"  envelope decode (pydantic)     {decode:>10,.0f} events/s")
    print(f"  asyncpg unnest insert, orders  {insert:>10,.0f} rows/s")
    print("projector:")
    ratios = (
        f"{steady / consume:.2f} x consume, {steady / insert:.2f} x insert, {steady / decode:.2f} x decode"
    )
    print(f"  steady state (live process)    {steady:>10,.0f} events/s   = {ratios}")
    per = ", ".join(f"{role} {1000 * spent / (events - 200):.3f}" for role, spent in steady_cpu.items())
    print(f"    CPU ms per event: {per}")
    print(f"staleness at {rate} events/s ({len(visible):,} of {int(lag['sent'][0]):,} events seen visible):")
    p50, p99 = percentile(visible, 0.5), percentile(visible, 0.99)
    r50, r99 = percentile(raw, 0.5), percentile(raw, 0.99)
    mean = statistics.mean(visible)
    print(f"  append -> row visible          p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   mean {mean:.1f} ms")
    print(f"  append -> raw consume          p50 {r50:7.1f} ms   p99 {r99:7.1f} ms")
    print(f"  ratio                          p50 {p50 / r50:7.1f} x    p99 {p99 / r99:7.1f} x")
    from bench.rebuild_bench import report as rebuild_report  # see measure

    rebuild_report({"events": events, "aggregates": None, **rebuild})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rate", type=int, default=500, help="events/s for the staleness run")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--live-rate", type=int, default=250, help="live events/s during the rebuild")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rate, args.seconds, args.live_rate))
