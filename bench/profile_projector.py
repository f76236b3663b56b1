"""py-spy profile of the projector draining a backlog, and of a rebuild of the same history.

Produces `--events` shop events onto fresh topics first, then starts the projector (the real
service process) and records it with py-spy until it has stored the topics' end offsets; then runs
`cqrs projector rebuild shop` under py-spy. Prints, for each, events/s, the CPU of the projector
process and of PostgreSQL per event (from /proc), and py-spy's largest inclusive and own shares.
Run: `uv run python -m bench.profile_projector --events 40000` (py-spy needs ptrace rights on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bench.proc_cpu import BackendsCpu, CpuMeter, cpu_seconds, database_backends
from bench.profile_query import summarize
from bench.projector_bench import ADMIN_DSN, BOOTSTRAP
from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.testing.postgres import drop_database
from cqrs_shared.testing.service_processes import ServiceProcess, free_port
from cqrs_shared.topics import TopicNames
from projector_svc.operations import prepare_topics
from projector_svc.settings import ProjectorSettings
from projector_svc.testing.kafka_feed import EventFeed, end_offsets
from projector_svc.testing.shop_history import ShopHistory
from projector_svc.testing.views_io import wait_for_offsets

NO_SPY = "--no-spy" in sys.argv
SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def _spy(pid_or_argv: int | list[str], out: Path) -> subprocess.Popen[bytes]:
    if NO_SPY:
        return subprocess.Popen(["true"])  # noqa: S607  # a stand-in that records nothing
    target = ["-p", str(pid_or_argv)] if isinstance(pid_or_argv, int) else ["--", *pid_or_argv]
    return subprocess.Popen(  # noqa: S603  # fixed argv
        [SPY, "record", "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking", *target],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def _produce(topics: TopicNames, history: list[EventEnvelope]) -> None:
    async with EventFeed(BOOTSTRAP, topics) as feed:
        for start in range(0, len(history), 10_000):
            await feed.send(history[start : start + 10_000])


def _batch_figures(url: str) -> str:
    """Batches applied so far and their mean transaction time, from the service's metrics."""
    figures = {}
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(("cqrs_projector_batch_seconds_count", "cqrs_projector_batch_seconds_sum")):
            name, value = line.split("{", 1)[0], float(line.rsplit(" ", 1)[1])
            figures[name.rsplit("_", 1)[1]] = value
    count, total = figures.get("count", 0.0), figures.get("sum", 0.0)
    return f"{count:.0f} batches (warm-up included), {1000 * total / max(count, 1):.1f} ms per transaction"


def _rebuild(env: dict[str, str], out: Path) -> tuple[float, float, float, str]:
    """`cqrs projector rebuild shop` (under py-spy unless `--no-spy`): seconds, CPU seconds of the
    children (the CLI and, when it runs, py-spy), of its PostgreSQL backends, and its last line."""
    argv = [str(Path(sys.executable).parent / "cqrs"), "projector", "rebuild", "shop"]
    if not NO_SPY:
        argv = [SPY, "record", "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking", "--", *argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    database = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    backends: dict[int, float] = {}
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) as process:  # noqa: S603  # fixed argv
        while process.poll() is None:
            # The rebuild's PostgreSQL backends end with it: their CPU is read while they run.
            for pid in database_backends(database):
                backends[pid] = cpu_seconds([pid])
            time.sleep(0.2)
        printed = process.stdout.read() if process.stdout else ""
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, sum(backends.values()), printed.strip().splitlines()[-1]


def _line(what: str, events: int, seconds: float, cpu: dict[str, float]) -> str:
    per = {role: f"{1000 * spent / events:.3f}" for role, spent in cpu.items()}
    rate = events / seconds
    return f"{what}: {events:,} events in {seconds:.1f} s = {rate:,.0f} events/s; CPU ms/event {per}"


async def main(events: int, out: Path, rebuild_only: bool, steady_only: bool) -> None:
    prefix = f"prof{uuid.uuid4().hex[:6]}."
    database = f"prof_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path=f"/{database}"))
    topics = TopicNames(prefix)
    names = [topics.events("customer"), topics.events("order")]
    env = {**os.environ, "DATABASE_URL": dsn, "CQRS_TOPIC_PREFIX": prefix, "LOG_LEVEL": "WARNING"}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "PROJECTOR_SVC_PORT": str(free_port())}
    env |= {"PROJECTOR_SVC_SESSION_TIMEOUT_MS": "120000"}
    settings = ProjectorSettings(database_url=dsn, topic_prefix=prefix, kafka_bootstrap_servers=BOOTSTRAP)
    await prepare_topics(settings, "shop")
    history = ShopHistory(seed=7, clock=utc_now).take(events)
    log = Path(tempfile.mkdtemp()) / "projector.log"
    projector = ServiceProcess("projector_svc", int(env["PROJECTOR_SVC_PORT"]), env, log)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        if not rebuild_only:
            projector.start()
            await asyncio.to_thread(projector.wait_ready)
            assert projector.process is not None
            # Warm-up: the consumer group has assigned the partitions and the first batch is applied.
            await _produce(topics, history[:200])
            async with pool.acquire() as connection:
                await wait_for_offsets(connection, await end_offsets(BOOTSTRAP, names), within=120)
            history = history[200:]
            # The backlog is produced while the projector is stopped (SIGSTOP; its session timeout
            # is raised to outlast it), so the drain measures the projector, not the producer.
            os.kill(projector.process.pid, signal.SIGSTOP)
            produced = time.perf_counter()
            await _produce(topics, history)
            print(f"produced {len(history):,} events in {time.perf_counter() - produced:.1f} s")
            ends = await end_offsets(BOOTSTRAP, names)
            meter = CpuMeter({"projector": [projector.process.pid]})
            meter.start()
            backends = BackendsCpu(database)
            backends.start()
            spy = _spy(projector.process.pid, out.with_suffix(".steady.folded"))
            started = time.perf_counter()
            os.kill(projector.process.pid, signal.SIGCONT)
            async with pool.acquire() as connection:
                await wait_for_offsets(connection, ends, within=900)
            seconds = time.perf_counter() - started
            cpu = {**meter.stop(), "postgres": await backends.stop()}
            cpu["total"] = cpu["projector"] + cpu["postgres"]
            batches = _batch_figures(projector.url)
            spy.send_signal(signal.SIGINT)
            spy.wait()
            projector.stop()
            print(_line("drain of the backlog", len(history), seconds, cpu))
            print(f"  {batches}")
            if not NO_SPY:
                print(summarize(out.with_suffix(".steady.folded"), 50))
            if steady_only:
                return
        if rebuild_only:
            await _produce(topics, history)
        folded = out.with_suffix(".rebuild.folded")
        seconds, cli_cpu, pg_cpu, last = await asyncio.to_thread(_rebuild, env, folded)
        cpu = {"cli": cli_cpu, "postgres": pg_cpu}
        print(_line("rebuild (the CLI process, start-up included)", len(history), seconds, cpu))
        print(f"  {last}")
        if not NO_SPY:
            print(summarize(out.with_suffix(".rebuild.folded"), 50))
    finally:
        projector.stop()
        await pool.close()
        await drop_database(ADMIN_DSN, database)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "projector-profile")
    parser.add_argument("--rebuild-only", action="store_true")
    parser.add_argument("--steady-only", action="store_true")
    parser.add_argument("--no-spy", action="store_true", help="measure only (py-spy shares the cores)")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.out, args.rebuild_only, args.steady_only))
