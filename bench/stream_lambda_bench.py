"""The serverless path's apply rate (DynamoDB stream records -> read models), next to raw limits.

Against the local PostgreSQL, in fresh databases:
1. raw limits: decoding the stream records into event envelopes (`cqrs_shared.dynamo_stream`, pure
   CPU); inserting rows shaped like `orders` with one `unnest` statement per 2,000 rows;
2. the Lambda handler's own work (`StreamProjector.handle`: decode, one SERIALIZABLE transaction
   per batch through the version guard and the views) at two event source mapping batch sizes,
   each into a fresh database, in events/s.
Records are built exactly as the table's stream delivers them: the write store's own item for each
commit (`commit_item`) as `NewImage`. Lambda's invocation overhead and the network to Aurora are
not part of it: the figure is what one execution environment can apply.
Run: `uv run python -m bench.stream_lambda_bench` (`--events 20000`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.projector_bench import raw_unnest
from command_svc.write_store.dynamo_items import commit_item
from cqrs_shared.dynamo_stream import events_of_record
from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.testing.postgres import drop_database
from cqrs_shared.write_store.port import Commit, shard_of
from projector_svc.settings import ProjectorSettings
from projector_svc.stream_lambda import StreamProjector
from projector_svc.testing.shop_history import ShopHistory

ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://cqrs:cqrs@127.0.0.1:5432/cqrs")
BATCH_SIZES = (100, 1000)


def records_of(events: list[EventEnvelope]) -> list[dict[str, Any]]:
    """One INSERT record per event (one event per command, as the shop decides them)."""
    records = []
    for number, event in enumerate(events):
        commit = Commit(
            aggregate_type=event.aggregate_type,
            aggregate_id=event.aggregate_id,
            base_version=event.version - 1,
            version=event.version,
            command_id=uuid.uuid4(),
            command_type="Bench",
            correlation_id=event.correlation_id,
            events=[event],
            state={},
            committed_at=datetime.now(UTC),
            shard=shard_of(event.aggregate_type, event.aggregate_id, 64),
        )
        item = commit_item(commit)
        records.append(
            {
                "eventName": "INSERT",
                "eventSourceARN": "arn:aws:dynamodb:local:0:table/bench-commits/stream/bench",
                "dynamodb": {
                    "Keys": {"stream": item["stream"], "base": item["base"]},
                    "NewImage": item,
                    # Real sequence numbers are 21 to 40 digits.
                    "SequenceNumber": str(10**25 + number),
                },
            }
        )
    return records


def raw_decode(records: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for record in records:
        events_of_record(record)
    return len(records) / (time.perf_counter() - started)


async def fresh_database(admin: asyncpg.Connection[asyncpg.Record]) -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    return name, urlunsplit(urlsplit(ADMIN_DSN)._replace(path=f"/{name}"))


async def handler_rate(dsn: str, records: list[dict[str, Any]], batch_size: int) -> float:
    projector = await StreamProjector.open(ProjectorSettings(database_url=dsn))
    try:
        started = time.perf_counter()
        for start in range(0, len(records), batch_size):
            response = await projector.handle({"Records": records[start : start + batch_size]})
            if response["batchItemFailures"]:
                raise RuntimeError(f"unexpected failures: {response}")
        return len(records) / (time.perf_counter() - started)
    finally:
        await projector.close()


async def main(count: int) -> None:
    events = ShopHistory(seed=7, clock=utc_now).take(count)
    records = records_of(events)
    decode = raw_decode(records)
    admin = await asyncpg.connect(ADMIN_DSN)
    databases: list[str] = []
    rates: dict[int, float] = {}
    try:
        for batch_size in BATCH_SIZES:
            name, dsn = await fresh_database(admin)
            databases.append(name)
            rates[batch_size] = await handler_rate(dsn, records, batch_size)
        insert = await raw_unnest(dsn, count)  # the last database has the build schema it copies
    finally:
        await admin.close()
        for name in databases:
            await drop_database(ADMIN_DSN, name)
    print(f"serverless path benchmark, {count:,} shop events (one commit each), {os.cpu_count()} CPUs")
    print("raw limits (same run):")
    print(f"  stream record decode           {decode:>10,.0f} records/s")
    print(f"  asyncpg unnest insert, orders  {insert:>10,.0f} rows/s")
    print("Lambda handler (StreamProjector.handle, one transaction per batch):")
    for batch_size, rate in rates.items():
        ratios = f"{rate / insert:.2f} x insert, {rate / decode:.3f} x decode"
        print(f"  batch size {batch_size:>5}               {rate:>10,.0f} events/s   = {ratios}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.events))
