"""py-spy profile of query-svc under a closed-loop read load: where a read's CPU goes.

Starts the service on a fresh seeded database (as `bench.query_bench` does), drives point reads or
pages from this process, and records the service process alone with py-spy for `--seconds`.
Writes py-spy's folded stacks and prints the functions with the largest inclusive and own shares.
Run: `uv run python -m bench.profile_query --kind point` (py-spy needs ptrace rights on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

from bench.http_client import KeepAliveClient
from bench.query_bench import (
    DATABASE_URL,
    create_database,
    measure,
    page_path,
    point_path,
    start_service,
)
from cqrs_shared.testing.postgres import drop_database


def summarize(folded: Path, top: int) -> str:
    """Inclusive and own shares of samples per function (file name without its directory)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
            for f in stack.split(";")
        ]
        total += int(count)
        for name in set(frames):
            inclusive[name] += int(count)
        own[frames[-1]] += int(count)
    lines = [f"{total} samples", "inclusive:"]
    lines += [f"  {n / total:6.1%} {name}" for name, n in inclusive.most_common(top)]
    lines += ["own:"] + [f"  {n / total:6.1%} {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(lines)


async def main(kind: str, seconds: float, out: Path, auth: bool, *, native: bool = False) -> None:
    orders = 20_000
    dsn = await create_database(orders)
    process, token = start_service(dsn, 10, auth=auth)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    clients = [KeepAliveClient("127.0.0.1", process.port, headers) for _ in range(16)]
    path = point_path if kind == "point" else page_path
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    try:
        if process.process is None:
            raise RuntimeError("the service did not start")
        recorder = await asyncio.create_subprocess_exec(
            spy, "record", "-p", str(process.process.pid), "-d", str(int(seconds)), "-r", "200",
            "-f", "raw", "-o", str(out), *(["--native"] if native else ["--nonblocking"]),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

        async def call(rng: random.Random, worker: int) -> None:
            await clients[worker].get(path(rng, orders))

        figures = await measure(call, concurrency=16, seconds=seconds)
        await recorder.wait()
    finally:
        for client in clients:
            await client.close()
        process.stop()
        await drop_database(DATABASE_URL, urlsplit(dsn).path.lstrip("/"))
    print(f"{kind}: {figures['rps']:.0f} req/s while profiled (py-spy shares the cores)")
    print(summarize(out, 40))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", choices=("point", "page"), default="point")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=Path("query-profile.folded"))
    parser.add_argument("--no-auth", action="store_true")
    parser.add_argument("--native", action="store_true", help="C and Cython frames too (pauses the service)")
    args = parser.parse_args()
    uvloop.run(main(args.kind, args.seconds, args.out, not args.no_auth, native=args.native))
