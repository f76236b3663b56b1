"""Query throughput and latency through the real query-svc process, next to raw asyncpg, in one run.

Against the local PostgreSQL, in a fresh database with the projector's real schema:
1. seeds customers and orders (COPY);
2. raw asyncpg: the same SELECTs the service runs (point read by key; a filtered, sorted keyset
   page of 50), from a pool of the service's size at the same client concurrency;
3. the query-svc process (`python -m query_svc`, JWT auth on): `GET /v1/orders/{id}` and
   `GET /v1/orders?status=...&min_total=...&placed_before=...&limit=50`, over keep-alive HTTP.
Each phase runs for `--seconds` after a short warm-up; it prints requests/s, p50 and p99 and the
ratio service/raw. The HTTP client is a minimal keep-alive HTTP/1.1 client on asyncio streams (one
connection per worker), so that as little as possible of the shared cores goes to the client;
it still runs on the same machine as the service and the database.
Run: `uv run python -m bench.query_bench` (the stack must be up: `make up` or `scripts/infra/stack.sh up`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import uvloop

from bench.http_client import KeepAliveClient
from bench.proc_cpu import CpuMeter, Role, descendants
from cqrs_shared.auth import mint_token
from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS
from cqrs_shared.testing.postgres import drop_database
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess, free_port
from projector_svc.operations import projection_named
from projector_svc.testing.builds import ensure_active_build
from query_svc.testing import insert_rows

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://cqrs:cqrs@127.0.0.1:5432/cqrs")
BASE = datetime(2024, 1, 1, tzinfo=UTC)
STATUSES = ("placed", "confirmed", "shipped", "cancelled")
COLUMNS = ", ".join(f'"{c.name}"' for c in ORDERS.columns)
POINT_SQL = f'SELECT {COLUMNS} FROM read."orders" WHERE "id" = $1'  # noqa: S608  # declared identifiers
PAGE_SQL = (
    f'SELECT {COLUMNS} FROM read."orders" WHERE "status" = $1 AND "total" >= $2 AND "placed_at" < $3 '  # noqa: S608  # declared identifiers
    'ORDER BY "placed_at" DESC, "id" DESC LIMIT 51'
)
#: One request: the worker's random source and its index (a worker keeps to its own connection).
Call = Callable[[random.Random, int], Awaitable[None]]
#: Requests prepared before a phase and drawn at random during it, as a load tool replays a
#: prepared request list: building each one's arguments or URL on the fly was client CPU that
#: counted against the measured side (the raw client and the HTTP client alike).
PREPARED = 8192
_T = TypeVar("_T")


def _orders(count: int, customers: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    rows = []
    for i in range(count):
        total = Decimal(rng.randrange(1, 50_000)) / 100
        at = BASE + timedelta(seconds=i * 7)
        rows.append(
            {
                "id": f"o-{i:07d}",
                "customer_id": f"c-{i % customers:06d}",
                "customer_name": f"Customer {i % customers}",
                "status": STATUSES[i % 4],
                "currency": "EUR",
                "total": total,
                "line_count": 1,
                "lines": [{"sku": "sku-1", "quantity": 1, "unit_price": f"{total:.2f}"}],
                "placed_at": at,
                "updated_at": at,
                "version": 1,
            }
        )
    return rows


def _customers(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"c-{i:06d}",
            "name": f"Customer {i}",
            "email": f"c{i}@example.com",
            "status": "registered",
            "registered_at": BASE,
            "updated_at": BASE,
            "version": 1,
            "order_count": 0,
            "open_order_count": 0,
            "lifetime_value": Decimal("0.00"),
        }
        for i in range(count)
    ]


async def create_database(orders: int) -> str:
    name = f"bench_query_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(DATABASE_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = urlunsplit(urlsplit(DATABASE_URL)._replace(path=f"/{name}"))
    connection = await asyncpg.connect(dsn)
    try:
        await ensure_active_build(connection, projection_named("shop"))
        await insert_rows(connection, "shop_b1", CUSTOMERS, _customers(orders // 10))
        await insert_rows(connection, "shop_b1", ORDERS, _orders(orders, orders // 10))
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return dsn


async def measure(
    call: Call, *, concurrency: int, seconds: float, roles: dict[str, Role] | None = None
) -> dict[str, float]:
    """Run `call` from `concurrency` workers for `seconds` (after a 1 s warm-up); with `roles`, also
    the CPU milliseconds of those processes per call."""
    latencies: list[float] = []
    deadline = 0.0

    async def worker(seed: int, record: bool) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call(rng, seed)
            if record:
                latencies.append(time.perf_counter() - started)

    meter = CpuMeter(roles or {})
    for record, duration in ((False, 1.0), (True, seconds)):
        deadline = time.perf_counter() + duration
        meter.start()
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, record) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    cuts = statistics.quantiles(latencies, n=100)
    figures = {"rps": len(latencies) / elapsed, "p50": cuts[49] * 1000, "p99": cuts[98] * 1000}
    if roles:
        figures |= {"cpu_ms_per_op": 1000 * cpu["total"] / len(latencies)}
        figures |= {f"cpu_ms_per_op_{role}": 1000 * cpu[role] / len(latencies) for role in roles}
    return figures


async def on_uvloop(work: Coroutine[Any, Any, _T]) -> _T:
    """`work` run to the end on a uvloop event loop of its own thread. The clients of a capacity
    phase, raw asyncpg and HTTP alike, run on the loop the service runs on (asyncpg's own
    benchmarks use uvloop too), whatever loop the caller has."""
    return await asyncio.to_thread(uvloop.run, work)


async def _no_reset(_connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """The plain way to read: nothing to reset between SELECTs (the service does the same)."""


def page_arguments(rng: random.Random, orders: int) -> tuple[str, Decimal, datetime]:
    return (
        rng.choice(STATUSES),
        Decimal(rng.randrange(0, 400)),
        BASE + timedelta(seconds=rng.randrange(orders) * 7),
    )


def prepared(make: Callable[[random.Random, int], _T], orders: int) -> list[_T]:
    """`PREPARED` requests made by `make` from a fixed seed."""
    rng = random.Random(2)
    return [make(rng, orders) for _ in range(PREPARED)]


def point_key(rng: random.Random, orders: int) -> str:
    return f"o-{rng.randrange(orders):07d}"


def point_path(rng: random.Random, orders: int) -> str:
    """The service's point read of a random seeded order."""
    return f"/v1/orders/{point_key(rng, orders)}"


def page_path(rng: random.Random, orders: int) -> str:
    """The service's filtered page of 50, with the raw SELECT's random arguments."""
    state, total, before = page_arguments(rng, orders)
    query = {"status": state, "min_total": str(total), "placed_before": before.isoformat(), "limit": "50"}
    return f"/v1/orders?{urlencode(query)}"


async def raw(
    dsn: str,
    orders: int,
    pool_size: int,
    concurrency: int,
    seconds: float,
    *,
    roles: dict[str, Role] | None = None,
) -> dict[str, dict[str, float]]:
    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size, reset=_no_reset)
    if pool is None:  # asyncpg's typing allows it; an awaited create_pool always returns the pool
        raise RuntimeError("asyncpg.create_pool returned no pool")

    keys, pages = prepared(point_key, orders), prepared(page_arguments, orders)

    async def point(rng: random.Random, _worker: int) -> None:
        async with pool.acquire() as connection:
            await connection.fetchrow(POINT_SQL, rng.choice(keys))

    async def page(rng: random.Random, _worker: int) -> None:
        async with pool.acquire() as connection:
            await connection.fetch(PAGE_SQL, *rng.choice(pages))

    try:
        return {
            "point": await measure(point, concurrency=concurrency, seconds=seconds, roles=roles),
            "page": await measure(page, concurrency=concurrency, seconds=seconds, roles=roles),
        }
    finally:
        await pool.close()


def _expect_ok(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"the query service answered {status}")


def start_service(
    dsn: str, pool_size: int, *, auth: bool = True, workers: int = 1
) -> tuple[ServiceProcess, str | None]:
    """A running query-svc (`workers` processes) on `dsn`, JWT auth on or off, and a token with
    the read role."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QUERY_SVC_")},
        "DATABASE_URL": dsn,
        "CQRS_AUTH_MODE": "jwt" if auth else "disabled",
        "JWT_SECRET": E2E_SECRET,
        "LOG_LEVEL": "WARNING",
        "QUERY_SVC_PORT": str(port),
        "QUERY_SVC_POOL_SIZE": str(pool_size),
        "QUERY_SVC_WORKERS": str(workers),
        "QUERY_SVC_CURSOR_SECRET": uuid.uuid4().hex,
    }
    process = ServiceProcess("query_svc", port, env, Path(tempfile.gettempdir()) / f"query-bench-{port}.log")
    process.start().wait_ready()
    if not auth:
        return process, None
    token = mint_token(E2E_SECRET, subject="bench", roles=["orders:read"], issuer=ISSUER, audience=AUDIENCE)
    return process, token


async def service(
    dsn: str,
    orders: int,
    pool_size: int,
    concurrency: int,
    seconds: float,
    *,
    auth: bool = True,
    workers: int = 1,
    roles: dict[str, Role] | None = None,
) -> dict[str, dict[str, float]]:
    process, token = start_service(dsn, pool_size, auth=auth, workers=workers)
    if roles is not None and process.process is not None:
        pid = process.process.pid
        roles = {**roles, "service": lambda: descendants(pid)}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    clients = [KeepAliveClient("127.0.0.1", process.port, headers) for _ in range(concurrency)]
    points, pages = prepared(point_path, orders), prepared(page_path, orders)

    async def point(rng: random.Random, worker: int) -> None:
        _expect_ok(await clients[worker].get(rng.choice(points)))

    async def page(rng: random.Random, worker: int) -> None:
        _expect_ok(await clients[worker].get(rng.choice(pages)))

    try:
        return {
            "point": await measure(point, concurrency=concurrency, seconds=seconds, roles=roles),
            "page": await measure(page, concurrency=concurrency, seconds=seconds, roles=roles),
        }
    finally:
        for client in clients:
            await client.close()
        process.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    dsn = await create_database(args.orders)
    try:
        shape = (dsn, args.orders, args.pool_size, args.concurrency, args.seconds)
        baseline = await raw(*shape)
        served = await service(*shape)
    finally:
        await drop_database(DATABASE_URL, urlsplit(dsn).path.lstrip("/"))
    print(
        f"machine: {os.cpu_count()} cores; {args.orders} orders, {args.orders // 10} customers; "
        f"concurrency {args.concurrency}, pool {args.pool_size}, {args.seconds:.0f} s per phase"
    )
    print(f"{'':48} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, label in (("point", "point read (order by id)"), ("page", "filtered page (50 orders)")):
        for source, figures in (
            ("raw asyncpg SELECT", baseline[kind]),
            ("query-svc over HTTP", served[kind]),
        ):
            row = f"{label}, {source}"
            print(f"{row:48} {figures['rps']:8.0f} {figures['p50']:8.2f} {figures['p99']:8.2f}")
        ratio = served[kind]["rps"] / baseline[kind]["rps"]
        print(f"  query-svc / raw: {ratio:.1%} of the requests/s")


if __name__ == "__main__":
    uvloop.run(main())
