"""Reading the shop views back, and waiting for a build to reach given offsets."""

from __future__ import annotations

import asyncio
import time

from projector_svc.pg import Connection
from projector_svc.testing.kafka_feed import PartitionEnds
from projector_svc.testing.shop_fold import Row, ShopRows


async def read_rows(connection: Connection, schema: str = "read") -> ShopRows:
    """The `customers` and `orders` rows of the active build (`read`) or of one build schema."""
    customers = await connection.fetch(f'SELECT * FROM "{schema}".customers')  # noqa: S608  # test input
    orders = await connection.fetch(f'SELECT * FROM "{schema}".orders')  # noqa: S608  # test input
    return ShopRows({r["id"]: dict(r) for r in customers}, {r["id"]: dict(r) for r in orders})


async def stored_offsets(connection: Connection, schema: str = "read") -> PartitionEnds:
    table = "shop_partition_offsets" if schema == "read" else "partition_offsets"
    rows = await connection.fetch(f'SELECT topic, partition, next_offset FROM "{schema}".{table}')  # noqa: S608  # test input
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def wait_for_offsets(
    connection: Connection, ends: PartitionEnds, *, schema: str = "read", within: float = 60.0
) -> None:
    """Wait until the build has stored offsets at or past `ends` for every partition with records."""
    deadline = time.monotonic() + within
    wanted = {k: v for k, v in ends.items() if v > 0}
    stored: PartitionEnds = {}
    while time.monotonic() < deadline:
        try:
            stored = await stored_offsets(connection, schema)
        except Exception:  # noqa: BLE001  # the schema may not exist yet while the projector starts
            stored = {}
        if all(stored.get(k, 0) >= v for k, v in wanted.items()):
            return
        await asyncio.sleep(0.1)
    behind = {k: (stored.get(k, 0), v) for k, v in wanted.items() if stored.get(k, 0) < v}
    raise AssertionError(f"not caught up within {within}s: (stored, wanted) {behind}")


def diff(actual: ShopRows, expected: ShopRows, *, limit: int = 5) -> list[str]:
    """Human-readable differences, empty when the rows are equal."""
    out: list[str] = []
    for table in ("customers", "orders"):
        got, want = getattr(actual, table), getattr(expected, table)
        for key in sorted(set(got) | set(want)):
            a, b = got.get(key), want.get(key)
            if a != b:
                if a is not None and b is not None:
                    a, b = _differing(a, b), _differing(b, a)
                out.append(f"{table}[{key}]: got {a} want {b}")
                if len(out) >= limit:
                    return out
    return out


def _differing(row: Row, other: Row) -> Row:
    return {k: v for k, v in row.items() if other.get(k) != v}
