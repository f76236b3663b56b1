"""What the commits table's stream holds: one INSERT per stored commit, nothing for a refused one.

Real DynamoDB streams only what a transaction wrote; the local moto is patched to do the same
(infra/moto/moto_server_serial.py). A reader that keeps its iterator across a refused transaction
must see neither a phantom record nor lose the records after it.
"""

from __future__ import annotations

import contextlib

import pytest

from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb_streams
from cqrs_shared.dynamo_stream import commit_of_record
from cqrs_shared.testing.write_store_contract import make_commit
from cqrs_shared.write_store import ConcurrencyConflictError, DuplicateCommandError

from .dynamo_fixtures import private_tables

pytestmark = pytest.mark.integration


async def test_a_refused_transaction_leaves_no_record_and_a_live_reader_sees_what_follows(
    dynamodb_endpoint: str, unique: str
) -> None:
    async with (
        private_tables(dynamodb_endpoint, f"t{unique}-") as store,
        contextlib.AsyncExitStack() as stack,
    ):
        streams = await open_dynamodb_streams(DynamoSettings(endpoint_url=dynamodb_endpoint), stack)
        first = make_commit("a", 1)
        await store.append(first)
        arn = (await store.client.describe_table(TableName=store.names.commits))["Table"]["LatestStreamArn"]
        shard = (await streams.describe_stream(StreamArn=arn))["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = (
            await streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        )["ShardIterator"]
        answer = await streams.get_records(ShardIterator=iterator)
        assert [commit_of_record(r) for r in answer["Records"]] == [first]
        with pytest.raises(DuplicateCommandError):
            await store.append(make_commit("a", 2, command_id=first.command_id))
        with pytest.raises(ConcurrencyConflictError):
            await store.append(make_commit("a", 1))
        second = make_commit("a", 2)
        await store.append(second)
        answer = await streams.get_records(ShardIterator=answer["NextShardIterator"])
        assert [commit_of_record(r) for r in answer["Records"]] == [second]
