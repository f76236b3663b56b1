"""Does the command side stay as fast with a large history? An empty store next to a full one.

Against the real local stack, for two write-store databases, one empty and one holding
`--history` commits (100,000 customers x 10 commits by default; seeded once, then kept and reused
between runs, since seeding a million commits takes minutes):
1. raw store calls, straight on the adapter: the idempotency lookup, a cold head read of an
   existing aggregate, the relay's recovery scan, a publish mark;
2. the real command-svc process: `--commands` new commands produced onto its topic; commands/s,
   store seconds per command (its /metrics) and relay lag, from commit to the Kafka record
   carrying its event (p50/p99);
3. idle cost: CPU of FerretDB and PostgreSQL (all processes, from /proc) while command-svc sits
   idle on the store for `--idle-seconds` (its relay scans every second).
Run: `make bench-growth` (or `uv run python -m bench.growth_bench --history 1000000`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from bench.command_bench import make_commands, metric
from bench.proc_cpu import cpu_seconds, store_pids
from command_svc.write_store.mongo_store import MongoWriteStore
from cqrs_shared.auth import mint_token
from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess, free_port
from cqrs_shared.topics import TopicNames
from cqrs_shared.write_store import Commit, ConcurrencyConflictError, WriteStoreUnavailableError, shard_of

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
MONGODB_URI = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")
PER_AGGREGATE = 10


def seeded_commit(customer: int, base: int) -> Commit:
    aggregate_id = f"seed-{customer}"
    now = utc_now()
    payload: dict[str, Any] = (
        {"name": "Ada", "email": f"{aggregate_id}@example.com"} if base == 0 else {"name": f"Ada {base}"}
    )
    event = EventEnvelope(
        event_id=EventEnvelope.id_for("customer", aggregate_id, base + 1),
        type="CustomerRegistered" if base == 0 else "CustomerRenamed",
        schema_version=1,
        aggregate_type="customer",
        aggregate_id=aggregate_id,
        version=base + 1,
        occurred_at=now,
        correlation_id=f"seed-{customer}-{base}",
        causation_id=str(uuid.uuid4()),
        payload=payload,
    )
    return Commit(
        aggregate_type="customer",
        aggregate_id=aggregate_id,
        base_version=base,
        version=base + 1,
        command_id=uuid.uuid4(),
        command_type="RegisterCustomer" if base == 0 else "RenameCustomer",
        correlation_id=event.correlation_id,
        events=[event],
        state={"name": f"Ada {base}", "email": f"{aggregate_id}@example.com", "deleted": False},
        committed_at=now,
        shard=shard_of("customer", aggregate_id, 64),
        published=True,
    )


async def seed(store: MongoWriteStore, history: int) -> float:
    """Fill the store up to `history` commits (resuming a partial seed); seconds taken."""
    started = time.perf_counter()
    customers = history // PER_AGGREGATE
    # Not a count: on FerretDB even `estimated_document_count` reads every document. Customers are
    # seeded in order, so the last one's head says whether the history is complete.
    if await store.load_head("customer", f"seed-{customers - 1}") is not None:
        return 0.0
    first = 0
    chunk = 200  # customers per insert: 2,000 commits
    slots = asyncio.Semaphore(2)

    async def insert(start: int) -> None:
        async with slots:
            commits = [
                seeded_commit(c, b)
                for c in range(start, min(start + chunk, customers))
                for b in range(PER_AGGREGATE)
            ]
            for _attempt in range(5):
                try:
                    await store.import_commits(commits)
                except ConcurrencyConflictError:  # a resumed seed re-inserts part of a chunk
                    return
                except WriteStoreUnavailableError as exc:
                    print(f"  (seed chunk at {start}: {exc}; retrying)")
                    await asyncio.sleep(2)
                else:
                    return

    await asyncio.gather(*(insert(s) for s in range(first, customers, chunk)))
    return time.perf_counter() - started


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        await call()
    return 1000 * (time.perf_counter() - started) / repeat


async def raw_calls(store: MongoWriteStore) -> dict[str, float]:
    """The same calls on the same kind of aggregate (10 commits) whatever else the store holds."""
    probe = 10_000_000 + uuid.uuid4().int % 1_000_000  # beyond the seeded customers
    commits = [seeded_commit(probe, b) for b in range(PER_AGGREGATE)]
    await store.import_commits(commits)
    return {
        "find_outcome_ms": await timed(lambda: store.find_outcome(uuid.uuid4()), 200),
        "load_head_ms": await timed(lambda: store.load_head("customer", f"seed-{probe}"), 200),
        "unpublished_scan_ms": await timed(lambda: store.unpublished(range(64), 500), 100),
        "mark_published_ms": await timed(lambda: store.mark_published(commits[-1:]), 200),
    }


async def relay_lags(topic: str, count: int) -> list[float]:
    """Per event: Kafka record time minus the commit time carried in the event (ms)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    lags: list[float] = []
    try:
        while len(lags) < count:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for record in records:
                    occurred = json.loads(record.value or b"{}")["occurred_at"].replace("Z", "+00:00")
                    lags.append(record.timestamp - 1000 * datetime.fromisoformat(occurred).timestamp())
    finally:
        await consumer.stop()
    return lags


async def through_service(database: str, commands: int, idle_seconds: float) -> dict[str, float]:
    prefix = f"growth{uuid.uuid4().hex[:6]}."
    topics = TopicNames(prefix)
    port = free_port()
    env = {
        **os.environ,
        "CQRS_TOPIC_PREFIX": prefix,
        "MONGODB_DATABASE": database,
        "CQRS_AUTH_MODE": "jwt",
        "JWT_SECRET": E2E_SECRET,
        "LOG_LEVEL": "WARNING",
        "COMMAND_SVC_PORT": str(port),
    }
    service = ServiceProcess("command_svc", port, env, Path(tempfile.gettempdir()) / f"growth-{port}.log")
    service.start().wait_ready()
    try:
        token = "Bearer " + mint_token(
            E2E_SECRET, subject="bench", roles=["customers:write"], issuer=ISSUER, audience=AUDIENCE
        )
        batch = [{**c, "aggregate_id": f"{prefix}{c['aggregate_id']}"} for c in make_commands(commands, 10)]
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=10, acks="all")
        await producer.start()
        started = time.perf_counter()
        try:
            sent = [
                await producer.send(
                    topics.commands,
                    json.dumps(c).encode(),
                    key=c["aggregate_id"].encode(),
                    headers=[("authorization", token.encode())],
                )
                for c in batch
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        lags = await relay_lags(topics.events("customer"), len(batch))
        elapsed = time.perf_counter() - started
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"{service.url}/metrics")).text
        pids = store_pids()
        before = cpu_seconds(pids)
        await asyncio.sleep(idle_seconds)
        idle_cpu = (cpu_seconds(pids) - before) / idle_seconds
    finally:
        service.stop()
    lags.sort()
    return {
        "commands_per_s": len(batch) / elapsed,
        "store_ms_per_command": 1000 * metric(text, "cqrs_command_store_seconds_sum") / len(batch),
        "relay_lag_p50_ms": statistics.median(lags),
        "relay_lag_p99_ms": lags[int(len(lags) * 0.99) - 1],
        "idle_store_cpu_pct": 100 * idle_cpu,
    }


async def measure(database: str, history: int, commands: int, idle_seconds: float) -> dict[str, float]:
    store = await MongoWriteStore.open(MONGODB_URI, database)
    try:
        if history:
            took = await seed(store, history)
            print(f"  {database}: {history:,} commits ({took:.0f} s to seed now)", flush=True)
        figures = await raw_calls(store)
    finally:
        await store.close()
    figures.update(await through_service(database, commands, idle_seconds))
    return figures


async def compare(history: int, commands: int, idle_seconds: float) -> dict[str, Any]:
    """The same figures on an empty store and on one holding `history` commits (kept for reuse)."""
    empty_db = f"growth_empty_{uuid.uuid4().hex[:6]}"
    empty = await measure(empty_db, 0, commands, idle_seconds)
    full = await measure(f"bench_growth_{history}", history, commands, idle_seconds)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URI)
    await client.drop_database(empty_db)
    await client.close()
    return {"history": history, "commands": commands, "empty": empty, "full": full}


async def growth_suite(*, quick: bool) -> dict[str, Any]:
    """For `python -m bench`: 1,000,000 commits (30,000 quick), seeded on the first run and reused."""
    return await compare(30_000 if quick else 1_000_000, 1000 if quick else 3000, 3.0 if quick else 10.0)


def table(result: dict[str, Any]) -> str:
    empty, full = result["empty"], result["full"]
    lines = [
        f"Growth: the same work on an empty write store and on one holding {result['history']:,} commits "
        f"({result['commands']:,} new commands through command-svc)",
        f"| figure | empty | {result['history']:,} commits | ratio |",
        "|---|---|---|---|",
    ]
    for name in empty:
        ratio = full[name] / empty[name] if empty[name] else float("nan")
        lines.append(f"| {name.replace('_', ' ')} | {empty[name]:,.2f} | {full[name]:,.2f} | {ratio:.2f} |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--seed-only", action="store_true", help="only fill the history database")
    args = parser.parse_args()
    if args.seed_only:
        store = await MongoWriteStore.open(MONGODB_URI, f"bench_growth_{args.history}")
        print(f"seeded in {await seed(store, args.history):.0f} s")
        await store.close()
        return
    print(f"machine: {os.cpu_count()} cores; history {args.history:,} commits; {args.commands} new commands")
    print(table(await compare(args.history, args.commands, args.idle_seconds)))


if __name__ == "__main__":
    asyncio.run(main())
