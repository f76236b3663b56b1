"""Commands/s on the DynamoDB write store next to the raw `TransactWriteItems` rate of the same server.

Measures, in one run against the endpoint in `DYNAMODB_ENDPOINT_URL` (moto locally):
1. raw: N two-item transactions shaped like N accepted commands (a commit item and a command-id item,
   both `attribute_not_exists`), straight on aiobotocore, one at a time and 32 at a time, each run on
   fresh tables;
2. command-svc with `WRITE_STORE=dynamodb` as a process: N commands produced onto `commands`, timed
   until the last outcome is on `command-results`, on fresh tables.
moto deep-copies every table a transaction touches, so its rate falls as a table grows: every step
writes the same N commits into tables of its own, and the ratio is the figure to read.
Run: `make bench-dynamodb` (or `uv run python -m bench.dynamo_bench --commands 1000`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bench.command_bench import drive_command_service
from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb
from command_svc.write_store.dynamo_tables import TableNames, create_tables, delete_tables
from cqrs_shared.testing.service_processes import E2E_SECRET
from cqrs_shared.topics import TopicNames

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

ENDPOINT = os.environ.get("DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:5000")


@contextlib.asynccontextmanager
async def fresh_tables(prefix: str) -> AsyncIterator[DynamoDBClient]:
    async with contextlib.AsyncExitStack() as stack:
        client = await open_dynamodb(DynamoSettings(endpoint_url=ENDPOINT, timeout_seconds=60), stack)
        await create_tables(client, TableNames(prefix), protect=False)
        try:
            yield client
        finally:
            await delete_tables(client, TableNames(prefix))


async def raw_transactions(n: int, concurrency: int) -> float:
    """Raw two-item conditional transactions per second, `concurrency` at a time, on fresh tables."""
    prefix = f"rawbench{uuid.uuid4().hex[:6]}-"
    names = TableNames(prefix)
    body = json.dumps({"events": [{"payload": {"name": "N1"}}], "state": {"name": "N1"}})
    limit = asyncio.Semaphore(concurrency)

    async with fresh_tables(prefix) as client:

        async def one(i: int) -> None:
            item = {"stream": {"S": f"raw/{i // 10}"}, "base": {"N": str(i % 10)}, "body": {"S": body}}
            async with limit:
                await client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": names.commits,
                                "Item": item,
                                "ConditionExpression": "attribute_not_exists(#s)",
                                "ExpressionAttributeNames": {"#s": "stream"},
                            }
                        },
                        {
                            "Put": {
                                "TableName": names.outcomes,
                                "Item": {"command_id": {"S": str(uuid.uuid4())}, "outcome": {"S": body}},
                                "ConditionExpression": "attribute_not_exists(command_id)",
                            }
                        },
                    ]
                )

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)


async def command_service(n: int, per_aggregate: int) -> float:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    table_prefix = f"cmdbench{uuid.uuid4().hex[:6]}-"
    env = {
        **os.environ,
        "CQRS_TOPIC_PREFIX": prefix,
        "WRITE_STORE": "dynamodb",
        "DYNAMODB_ENDPOINT_URL": ENDPOINT,
        "DYNAMODB_TABLE_PREFIX": table_prefix,
        "CQRS_AUTH_MODE": "jwt",
        "JWT_SECRET": E2E_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    async with fresh_tables(table_prefix):
        sent, total, _drain, _metrics, _cpu = await drive_command_service(
            env, TopicNames(prefix), n, per_aggregate, "dynamo-bench"
        )
    return sent / total


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--per-aggregate", type=int, default=10)
    args = parser.parse_args()
    serial = await raw_transactions(args.commands, 1)
    concurrent = await raw_transactions(args.commands, 32)
    door = await command_service(args.commands, args.per_aggregate)
    print(f"DynamoDB at {ENDPOINT}: {args.commands} commands, {args.per_aggregate} per aggregate")
    print(f"raw TransactWriteItems (2 items, conditional): {serial:8.0f} /s serial")
    print(f"                                               {concurrent:8.0f} /s at concurrency 32")
    print(f"command-svc topic door on DynamoDB, end to end: {door:7.0f} commands/s")
    print(f"  ratio to raw transactions (best of the two):   {door / max(serial, concurrent):7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
