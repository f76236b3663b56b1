"""Convergence after the last fault: every command answered, every aggregate's applied version in
PostgreSQL equal to its head in the write store. Cheap enough to poll every second; the full
comparison of the views with a fold of the write store runs once, afterwards, in the checker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from soak.sources import AggregateKey

POLL_S = 1.0


class ConvergenceProbe:
    def __init__(self, mongo_uri: str, database: str, dsn: str) -> None:
        self._mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, timeoutMS=20_000)
        self._commits = self._mongo[database]["commits"]
        self._dsn = dsn

    async def close(self) -> None:
        await self._mongo.close()

    async def heads(self) -> dict[AggregateKey, int]:
        heads: dict[AggregateKey, int] = {}
        cursor = self._commits.find({"version": {"$gte": 1}}, {"stream": 1, "version": 1, "_id": 0})
        async for doc in cursor.batch_size(5000):
            kind, ident = str(doc["stream"]).split("/", 1)
            heads[(kind, ident)] = max(heads.get((kind, ident), 0), int(doc["version"]))
        return heads

    async def applied(self) -> dict[AggregateKey, int]:
        connection = await asyncpg.connect(self._dsn, timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT aggregate_type, aggregate_id, version FROM read.shop_aggregate_versions"
            )
        finally:
            await connection.close()
        return {(r["aggregate_type"], r["aggregate_id"]): r["version"] for r in rows}

    async def behind(self) -> tuple[int | None, str]:
        """Aggregates whose read model is not at their write-store head, or None and why not."""
        try:
            heads = await self.heads()
        except PyMongoError as exc:
            return None, f"the write store did not answer: {str(exc)[:200]}"
        try:
            applied = await self.applied()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            return None, f"PostgreSQL did not answer: {type(exc).__name__}: {str(exc)[:200]}"
        lagging = sum(1 for key in set(heads) | set(applied) if heads.get(key) != applied.get(key))
        return lagging, f"{lagging} aggregates behind their write-store head"


async def wait_converged(
    probe: ConvergenceProbe, pending: Callable[[], int], *, since: float, within: float
) -> tuple[float | None, str]:
    """Seconds from `since` until nothing is `pending` (commands without an outcome, requests in
    flight) and no aggregate is behind; None (and what was still open) if `within` passed first."""
    deadline = since + within
    while True:
        waiting = pending()
        behind, state = await probe.behind() if waiting == 0 else (None, "")
        if waiting == 0 and behind == 0:
            return round(time.monotonic() - since, 2), "converged"
        state = f"{waiting} commands without an outcome or in flight" + (f"; {state}" if state else "")
        if time.monotonic() >= deadline:
            return None, state
        await asyncio.sleep(POLL_S)
