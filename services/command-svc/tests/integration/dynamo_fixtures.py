"""Private DynamoDB tables on moto for one test, and the commits stream's records as moto serves them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb, open_dynamodb_streams
from command_svc.write_store.dynamo_store import DynamoWriteStore
from command_svc.write_store.dynamo_tables import TableNames, create_tables, delete_tables
from cqrs_shared.testing.moto_fidelity import require_faithful_moto


@contextlib.asynccontextmanager
async def private_tables(endpoint: str, prefix: str) -> AsyncIterator[DynamoWriteStore]:
    """The write store on fresh tables named `<prefix>*`, deleted afterwards (on the patched moto)."""
    require_faithful_moto(endpoint)
    settings = DynamoSettings(endpoint_url=endpoint, table_prefix=prefix)
    async with contextlib.AsyncExitStack() as stack:
        admin = await open_dynamodb(settings, stack)
        await create_tables(admin, TableNames(prefix), protect=False)
        store = await DynamoWriteStore.open(settings)
        try:
            yield store
        finally:
            await store.close()
            await delete_tables(admin, TableNames(prefix))


async def stream_records(store: DynamoWriteStore) -> list[dict[str, Any]]:
    """Every record of the commits table's stream, shard by shard, in order (as GetRecords returns them)."""
    table = (await store.client.describe_table(TableName=store.names.commits))["Table"]
    arn = table["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        streams = await open_dynamodb_streams(
            DynamoSettings(endpoint_url=store.client.meta.endpoint_url), stack
        )
        for shard in (await streams.describe_stream(StreamArn=arn))["StreamDescription"]["Shards"]:
            iterator: str | None = (
                await streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            while iterator:
                answer = await streams.get_records(ShardIterator=iterator, Limit=1000)
                if not answer["Records"]:
                    break
                records.extend(dict(r) for r in answer["Records"])
                iterator = answer.get("NextShardIterator")
    return records


def as_lambda_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A Lambda event of these records: the same shape, with the timestamp as Lambda sends it (epoch s)."""
    converted = []
    for record in records:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if created is not None and hasattr(created, "timestamp"):
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        converted.append({**record, "dynamodb": dynamodb, "eventSourceARN": "arn:aws:dynamodb:test"})
    return {"Records": converted}
