"""The serverless path end to end: commits in DynamoDB (moto), their stream read back from moto's
DynamoDB Streams API, the Lambda handler invoked with those records, and the read models checked
against the same reference fold the projector's tests use.

Commits are written as the DynamoDB write store writes them (`_put_commit` mirrors its
`commit_item`: the commit as a JSON `body` beside its key, `pending_shard` until published), and
some are then marked published (a `MODIFY` on the stream that must not deliver events again).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiobotocore.session import get_session
from prometheus_client import REGISTRY

from cqrs_shared.contracts import shop as c
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.write_store.port import Commit, shard_of
from projector_svc.settings import ProjectorSettings
from projector_svc.stream_lambda import Environment, StreamProjector
from projector_svc.testing.builds import create_pool
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory, envelope
from projector_svc.testing.views_io import diff, read_rows

pytestmark = pytest.mark.integration

Record = dict[str, Any]
#: Records per invocation, as an event source mapping's BatchSize would deliver them.
BATCH_SIZE = 100


class StreamTable:
    """A commits table with a NEW_IMAGE stream on moto, written and read the way AWS would be."""

    def __init__(self, dynamodb: Any, streams: Any, name: str) -> None:
        self.dynamodb, self.streams, self.name = dynamodb, streams, name
        self.stream_arn = ""

    async def create(self) -> None:
        answer = await self.dynamodb.create_table(
            TableName=self.name,
            KeySchema=[
                {"AttributeName": "stream", "KeyType": "HASH"},
                {"AttributeName": "base", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "stream", "AttributeType": "S"},
                {"AttributeName": "base", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        self.stream_arn = answer["TableDescription"]["LatestStreamArn"]

    async def put_commit(self, commit: Commit) -> None:
        body = commit.model_dump(mode="json", exclude={"published"})
        await self.dynamodb.put_item(
            TableName=self.name,
            Item={
                "stream": {"S": f"{commit.aggregate_type}/{commit.aggregate_id}"},
                "base": {"N": str(commit.base_version)},
                "version": {"N": str(commit.version)},
                "command_id": {"S": str(commit.command_id)},
                "pending_shard": {"N": str(commit.shard)},
                "body": {"S": json.dumps(body, separators=(",", ":"))},
            },
            ConditionExpression="attribute_not_exists(#s)",
            ExpressionAttributeNames={"#s": "stream"},
        )

    async def put_raw(self, stream: str, base: int, body: str) -> None:
        await self.dynamodb.put_item(
            TableName=self.name, Item={"stream": {"S": stream}, "base": {"N": str(base)}, "body": {"S": body}}
        )

    async def mark_published(self, commit: Commit) -> None:
        await self.dynamodb.update_item(
            TableName=self.name,
            Key={
                "stream": {"S": f"{commit.aggregate_type}/{commit.aggregate_id}"},
                "base": {"N": str(commit.base_version)},
            },
            UpdateExpression="REMOVE pending_shard",
        )

    async def read_stream(self) -> list[Record]:
        """Every record of every shard from the trim horizon, shaped as Lambda delivers them."""
        description = (await self.streams.describe_stream(StreamArn=self.stream_arn))["StreamDescription"]
        records: list[Record] = []
        for shard in description["Shards"]:
            iterator = (
                await self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            while iterator:
                answer = await self.streams.get_records(ShardIterator=iterator, Limit=1000)
                records.extend(self._as_lambda_record(r) for r in answer["Records"])
                if not answer["Records"]:
                    break
                iterator = answer.get("NextShardIterator")
        return records

    def _as_lambda_record(self, record: Mapping[str, Any]) -> Record:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):  # botocore parses it; Lambda delivers epoch seconds
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        return {**record, "dynamodb": dynamodb, "eventSourceARN": self.stream_arn}


@pytest.fixture
async def table(dynamodb_endpoint: str, unique: str) -> AsyncIterator[StreamTable]:
    session = get_session()
    region = "us-east-1"
    async with (
        session.create_client("dynamodb", endpoint_url=dynamodb_endpoint, region_name=region) as dynamodb,
        session.create_client(
            "dynamodbstreams", endpoint_url=dynamodb_endpoint, region_name=region
        ) as streams,
    ):
        table = StreamTable(dynamodb, streams, f"serverless-{unique}-commits")
        await table.create()
        yield table
        await dynamodb.delete_table(TableName=table.name)


def _commit(events: Sequence[EventEnvelope]) -> Commit:
    first, last = events[0], events[-1]
    return Commit(
        aggregate_type=first.aggregate_type,
        aggregate_id=first.aggregate_id,
        base_version=first.version - 1,
        version=last.version,
        command_id=uuid.uuid4(),
        command_type="Test",
        correlation_id=first.correlation_id,
        events=list(events),
        state={},
        committed_at=datetime.now(UTC),
        shard=shard_of(first.aggregate_type, first.aggregate_id, 64),
    )


def _batches(records: Sequence[Record]) -> list[dict[str, list[Record]]]:
    return [{"Records": list(records[i : i + BATCH_SIZE])} for i in range(0, len(records), BATCH_SIZE)]


async def _rows(dsn: str) -> Any:
    pool = await create_pool(dsn, max_size=1)
    try:
        async with pool.acquire() as connection:
            return await read_rows(connection)
    finally:
        await pool.close()


async def test_stream_records_project_to_the_reference_fold_and_redelivery_changes_nothing(
    table: StreamTable, pg_database: str
) -> None:
    events = ShopHistory(seed=21).take(300)
    commits = [_commit([e]) for e in events]
    for commit in commits:
        await table.put_commit(commit)
    for commit in commits[::3]:  # the relay's publication marks: MODIFY records without events
        await table.mark_published(commit)
    records = await table.read_stream()
    assert [r["eventName"] for r in records].count("MODIFY") == len(commits[::3])

    projector = await StreamProjector.open(ProjectorSettings(database_url=pg_database))
    try:
        for batch in _batches(records):
            assert await projector.handle(batch) == {"batchItemFailures": []}
        assert diff(await _rows(pg_database), fold(events)) == []
        # Lambda delivers a batch again after a timeout or crash: duplicates, nothing changes.
        for batch in _batches(records[: BATCH_SIZE * 2]):
            assert await projector.handle(batch) == {"batchItemFailures": []}
    finally:
        await projector.close()
    assert diff(await _rows(pg_database), fold(events)) == []


async def test_poison_records_are_reported_alone_while_the_rest_of_the_batch_goes_through(
    table: StreamTable, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ShopHistory(seed=22).take(150)
    good = [_commit([e]) for e in events]
    for commit in good[:60]:
        await table.put_commit(commit)
    # Not a commit the store would write: undecodable.
    await table.put_raw("customer/p-1", 0, "{not json")
    # A well-formed commit whose event breaks its contract (no e-mail): refused by the projection,
    # and the aggregate's next event is held behind it.
    at = datetime(2026, 1, 1, tzinfo=UTC)
    registered = envelope("customer", "p-2", 1, c.CustomerRegistered(name="P", email="p@example.com"), at)
    broken = registered.model_copy(update={"payload": {"name": "P"}})
    renamed = envelope("customer", "p-2", 2, c.CustomerRenamed(name="Q"), at)
    await table.put_commit(_commit([broken]))
    for commit in good[60:]:
        await table.put_commit(commit)
    await table.put_commit(_commit([renamed]))
    records = await table.read_stream()
    poison = [
        r["dynamodb"]["SequenceNumber"]
        for r in records
        if r["dynamodb"]["Keys"]["stream"]["S"] in ("customer/p-1", "customer/p-2")
        and r["dynamodb"]["Keys"]["base"]["N"] == "0"
    ]

    # The sync entry point, as Lambda calls it, on its own event loop (here in a worker thread).
    monkeypatch.setenv("DATABASE_URL", pg_database)
    environment = Environment()
    try:
        response = await asyncio.to_thread(environment.run, {"Records": records})
        assert response == {"batchItemFailures": [{"itemIdentifier": s} for s in poison]}
        assert diff(await _rows(pg_database), fold(events)) == []
        # Lambda retries from the first reported record: the undecodable one fails again (until
        # the mapping's retries send it to the on-failure destination), the refused one is parked.
        retry = records[[r["dynamodb"]["SequenceNumber"] for r in records].index(poison[0]) :]
        again = await asyncio.to_thread(environment.run, {"Records": retry})
        assert again == {"batchItemFailures": [{"itemIdentifier": poison[0]}]}
    finally:
        await asyncio.to_thread(environment.close)
    assert diff(await _rows(pg_database), fold(events)) == []
    pool = await create_pool(pg_database, max_size=1)
    try:
        async with pool.acquire() as connection:
            parked = await connection.fetch(
                "SELECT aggregate_id, version, reason FROM read.shop_parked_events ORDER BY version"
            )
    finally:
        await pool.close()
    assert [tuple(r) for r in parked] == [("p-2", 1, "rejected"), ("p-2", 2, "blocked")]


def _dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("cqrs_postgres_connections_dropped_total", {"reason": reason}) or 0.0


async def test_a_batch_that_meets_a_failover_is_retried_within_the_invocation(
    table: StreamTable, pg_database: str
) -> None:
    events = ShopHistory(seed=23).take(120)
    for event in events:
        await table.put_commit(_commit([event]))
    records = await table.read_stream()
    projector = await StreamProjector.open(ProjectorSettings(database_url=pg_database))
    admin = await asyncpg.connect(pg_database)
    try:
        # Aurora's failover as the handler's warm connection sees it: its session ends, and the
        # next sessions land on a read-only node until DNS moves on to the new writer.
        database = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        read_only_before = _dropped("25006")
        invocation = asyncio.create_task(projector.handle({"Records": records}))
        async with asyncio.timeout(10):
            while _dropped("25006") == read_only_before:  # noqa: ASYNC110  # a metric has no event
                await asyncio.sleep(0.01)
        await admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        assert await invocation == {"batchItemFailures": []}
    finally:
        await admin.close()
        await projector.close()
    assert diff(await _rows(pg_database), fold(events)) == []
