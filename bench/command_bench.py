"""Command throughput through the topic door, next to the raw limits of the same machine, in one run.

Measures, against the real local stack:
1. raw Kafka: produce N JSON records of command size and consume them back (aiokafka, one process);
2. raw write store: the calls a new command on a fresh aggregate costs (idempotency lookup, head
   read, insert, publish mark), sequentially and with the door's concurrency, straight on pymongo;
3. the real command-svc process: N commands produced onto `commands`, timed until the last outcome
   appears on `command-results`; its /metrics give the share of handling time spent in the store.
Run: `make bench-commands` (or `uv run python -m bench.command_bench --commands 5000`).
`--only-service` skips the raw references; `--profile out.folded` records command-svc alone with
py-spy while it drains (raw folded stacks, summarised as in `bench.profile_query`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from bench.proc_cpu import cpu_seconds
from cqrs_shared.auth import mint_token
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess, free_port
from cqrs_shared.topics import TopicNames, ensure_topics

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
MONGODB_URI = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")


def make_commands(count: int, per_aggregate: int) -> list[dict[str, Any]]:
    out = []
    for a in range(count // per_aggregate):
        customer = f"c-{a}"
        out.append(
            command_record("RegisterCustomer", customer, {"name": "N0", "email": f"{customer}@example.com"})
        )
        out.extend(
            command_record("RenameCustomer", customer, {"name": f"N{i}"}) for i in range(1, per_aggregate)
        )
    return out


def command_record(type_: str, aggregate_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"command_id": str(uuid.uuid4()), "type": type_, "aggregate_id": aggregate_id, "payload": payload}


async def produce(topic: str, values: list[tuple[bytes, bytes]], headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, linger_ms=10, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k, headers=headers) for k, v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_count(topic: str, count: int, *, from_start: bool = True) -> float:
    """Seconds until `count` records were read from the topic's start."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < count:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                seen += len(batch)
    finally:
        await consumer.stop()
    return time.perf_counter() - started


async def raw_kafka(n: int, payload: bytes) -> tuple[float, float]:
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    await ensure_topics(BOOTSTRAP, [topic], partitions=3, replication_factor=1)
    started = time.perf_counter()
    await produce(topic, [(f"k{i % 500}".encode(), payload) for i in range(n)], [])
    produce_s = time.perf_counter() - started
    consume_s = await consume_count(topic, n)
    return n / produce_s, n / consume_s


async def raw_store(n: int, concurrency: int) -> tuple[float, float]:
    """A new command's store calls: find_one x2, insert_one, update_one; per second, serial and concurrent."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URI)
    db = client[f"bench_raw_{uuid.uuid4().hex[:8]}"]
    commits = db["commits"]
    await commits.create_index("command_id", unique=True)
    await commits.create_index([("stream", 1), ("version", 1)], unique=True)

    async def one(i: int) -> None:
        command_id = str(uuid.uuid4())
        await commits.find_one({"command_id": command_id})
        await commits.find_one({"stream": f"s{i}"}, sort=[("version", -1)])
        await commits.insert_one(
            {"_id": f"s{i}@0", "stream": f"s{i}", "version": 1, "command_id": command_id}
        )
        await commits.update_one({"_id": f"s{i}@0"}, {"$set": {"published": True}})

    started = time.perf_counter()
    for i in range(n):
        await one(i)
    serial = n / (time.perf_counter() - started)
    slots = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with slots:
            await one(n + i)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(n)))
    concurrent = n / (time.perf_counter() - started)
    await client.drop_database(db.name)
    await client.close()
    return serial, concurrent


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def bench_token() -> str:
    """A JWT (without the scheme) allowed to send customer commands to a bench's command-svc."""
    return mint_token(
        E2E_SECRET, subject="bench", roles=["customers:write"], issuer=ISSUER, audience=AUDIENCE
    )


def start_command_service(env: dict[str, str], log_name: str) -> ServiceProcess:
    """A ready command-svc process with `env` on a free port, logging to a temporary file."""
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"{log_name}-{port}.log"
    service = ServiceProcess("command_svc", port, {**env, "COMMAND_SVC_PORT": str(port)}, log_path)
    service.start().wait_ready()
    return service


async def _py_spy(pid: int, out: Path) -> asyncio.subprocess.Process:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return await asyncio.create_subprocess_exec(
        spy, "record", "-p", str(pid), "-r", "100", "-f", "raw", "-o", str(out), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def drive_command_service(
    env: dict[str, str],
    topics: TopicNames,
    n: int,
    per_aggregate: int,
    log_name: str,
    *,
    profile: Path | None = None,
) -> tuple[int, float, float, str, float]:
    """Start command-svc with `env`, produce `n` commands onto its topic door with a bench token and
    wait for every outcome: (commands sent, total seconds, drain seconds, its /metrics text, its CPU
    seconds over the run). With `profile`, py-spy records the service meanwhile."""
    service = start_command_service(env, log_name)
    pid = service.process.pid if service.process else 0
    recorder = await _py_spy(pid, profile) if profile is not None else None
    try:
        token = "Bearer " + bench_token()
        commands = make_commands(n, per_aggregate)
        cpu_before = cpu_seconds([pid])
        started = time.perf_counter()
        await produce(
            topics.commands,
            [(c["aggregate_id"].encode(), json.dumps(c).encode()) for c in commands],
            [("authorization", token.encode())],
        )
        elapsed = await consume_count(topics.command_results, len(commands))
        total = time.perf_counter() - started
        cpu = cpu_seconds([pid]) - cpu_before
        async with httpx.AsyncClient(timeout=5) as client:
            metrics = (await client.get(f"{service.url}/metrics")).text
    finally:
        if recorder is not None and recorder.returncode is None:
            recorder.send_signal(2)  # SIGINT: py-spy writes what it recorded and exits
            await recorder.wait()
        service.stop()
    return len(commands), total, elapsed, metrics, cpu


async def command_service(n: int, per_aggregate: int, profile: Path | None = None) -> dict[str, float]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    env = {
        **os.environ,
        "CQRS_TOPIC_PREFIX": prefix,
        "MONGODB_DATABASE": f"bench_{uuid.uuid4().hex[:8]}",
        "CQRS_AUTH_MODE": "jwt",
        "JWT_SECRET": E2E_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    sent, total, elapsed, metrics, cpu = await drive_command_service(
        env, TopicNames(prefix), n, per_aggregate, "command-bench", profile=profile
    )
    handled = metric(metrics, 'cqrs_command_seconds_sum{door="topic"}')
    in_store = metric(metrics, "cqrs_command_store_seconds_sum")
    return {
        "commands_per_s": sent / total,
        "drain_s": elapsed,
        "store_share": in_store / handled if handled else 0.0,
        "mean_handle_ms": 1000 * handled / sent,
        "service_cpu_ms_per_command": 1000 * cpu / sent,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--per-aggregate", type=int, default=10)
    parser.add_argument("--only-service", action="store_true", help="skip the raw references")
    parser.add_argument("--profile", type=Path, help="py-spy's raw folded stacks of command-svc")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.commands} commands, {args.per_aggregate} per aggregate")
    if not args.only_service:
        sample = json.dumps(make_commands(10, 10)[1]).encode()
        produce_rate, consume_rate = await raw_kafka(args.commands * 4, sample)
        store_serial, store_concurrent = await raw_store(min(args.commands, 2000), 64)
        print(f"raw kafka produce (acks=all, idempotent): {produce_rate:10.0f} records/s")
        print(f"raw kafka consume:                        {consume_rate:10.0f} records/s")
        print(f"raw store, one accepted command's calls:  {store_serial:10.0f} commands/s serial")
        print(f"{'':42}{store_concurrent:10.0f} commands/s at concurrency 64")
    door = await command_service(args.commands, args.per_aggregate, args.profile)
    print(f"command-svc topic door, end to end:       {door['commands_per_s']:10.0f} commands/s")
    print(f"  command-svc CPU per command:            {door['service_cpu_ms_per_command']:10.3f} ms")
    print(f"  mean handling time per command:         {door['mean_handle_ms']:10.2f} ms")
    print(f"  share of handling time in the store:    {door['store_share']:10.1%}")
    if not args.only_service:
        print(f"  ratio to raw store (concurrent):        {door['commands_per_s'] / store_concurrent:10.2f}")
        print(f"  ratio to raw kafka consume:             {door['commands_per_s'] / consume_rate:10.4f}")
    if args.profile is not None:
        from bench.profile_query import summarize

        print(summarize(args.profile, 50))


if __name__ == "__main__":
    asyncio.run(main())
