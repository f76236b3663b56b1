"""B3, the query path: query-svc next to raw asyncpg on the same rows, JWT on and off, in one run.

Capacity (closed loop, the same client concurrency for raw and service, so the ratio compares like
with like), then an open-loop ladder of point reads and pages against the JWT-on service for
latency vs offered load (p99 at 1,000 req/s is a target).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from bench.ladder import run_ladder
from bench.proc_cpu import Role, database_backends
from bench.query_bench import DATABASE_URL, create_database, on_uvloop, raw, service, start_service
from cqrs_shared.testing.postgres import drop_database

POOL_SIZE = 10


CONCURRENCY = 16


def _per_read(step: dict[str, Any]) -> dict[str, float]:
    """CPU milliseconds per answered read of one open-loop step, by role."""
    return {role: 1000 * seconds / step["ok"] for role, seconds in step["cpu_s"].items()}


async def query_suite(*, quick: bool) -> dict[str, Any]:
    orders = 20_000 if quick else 100_000
    seconds = 3.0 if quick else 6.0
    rates = [250.0, 500.0, 1000.0, 1500.0] if quick else [250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0]
    dsn = await create_database(orders)
    database = urlsplit(dsn).path.lstrip("/")

    def postgres_pids() -> list[int]:
        # The benchmark database's backends only: the server is shared with other work.
        return database_backends(database)

    roles: dict[str, Role] = {"bench": [os.getpid()], "infra": postgres_pids}
    shape = (dsn, orders, POOL_SIZE, CONCURRENCY, seconds)
    try:
        reference = await on_uvloop(raw(*shape, roles=roles))
        jwt_on = await on_uvloop(service(*shape, auth=True, roles=roles))
        jwt_off = await on_uvloop(service(*shape, auth=False, roles=roles))
        # One server process per core (QUERY_SVC_WORKERS), each with a pool half the size.
        workers = await on_uvloop(
            service(dsn, orders, POOL_SIZE // 2, CONCURRENCY, seconds, workers=2, roles=roles)
        )
        process, token = start_service(dsn, POOL_SIZE, auth=True)
        try:
            pid = process.process.pid if process.process else 0
            config = {"port": process.port, "token": token, "orders": orders, "connections": 32}
            ladders = {
                kind: await run_ladder(
                    f"query-{kind}",
                    config,
                    rates,
                    2.0 if quick else 4.0,
                    {"service": [pid], "infra": postgres_pids},
                )
                for kind in ("point", "page")
            }
        finally:
            process.stop()
    finally:
        await drop_database(DATABASE_URL, database)
    figures: dict[str, Any] = {"orders": orders, "pool": POOL_SIZE, "concurrency": CONCURRENCY}
    for kind in ("point", "page"):
        figures[kind] = {
            "raw": reference[kind],
            "jwt_on": jwt_on[kind],
            "jwt_off": jwt_off[kind],
            "ratio_jwt_on": jwt_on[kind]["rps"] / reference[kind]["rps"],
            "ratio_jwt_off": jwt_off[kind]["rps"] / reference[kind]["rps"],
            "jwt_on_2_workers": workers[kind],
            "ratio_jwt_on_2_workers": workers[kind]["rps"] / reference[kind]["rps"],
            "ladder": ladders[kind],
            "p99_ms_at_1000": next(
                (s["p99_ms"] for s in ladders[kind] if s["offered_per_s"] == 1000.0), None
            ),
            "cpu_ms_per_op_at_1000": next(
                (_per_read(s) for s in ladders[kind] if s["offered_per_s"] == 1000.0 and s["ok"]), None
            ),
        }
    return figures
