"""The serverless path end to end: commands into DynamoDB (moto) through command-svc, the commits
table's stream read back from moto's DynamoDB Streams API, the Lambda handler invoked with those
records, and the read models checked against the same reference fold the projector's tests use.

Tables come from command-svc's own declarations and commits are written by its DynamoDB write
store, so the records are exactly what AWS would deliver to the function.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from command_svc.app import create_app
from command_svc.settings import CommandServiceSettings
from command_svc.write_store.dynamo_client import (
    DynamoSettings,
    open_dynamodb,
    open_dynamodb_streams,
)
from command_svc.write_store.dynamo_store import DynamoWriteStore
from command_svc.write_store.dynamo_tables import TableNames, create_tables, delete_tables
from cqrs_shared.auth import mint_token
from cqrs_shared.contracts import shop as c
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.write_store.port import Commit, shard_of
from projector_svc.operations import list_parked, replay
from projector_svc.settings import ProjectorSettings
from projector_svc.stream_lambda import Environment, StreamProjector
from projector_svc.testing.builds import create_pool
from projector_svc.testing.poison import BuggyShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory, envelope
from projector_svc.testing.views_io import diff, read_rows

pytestmark = pytest.mark.integration

Record = dict[str, Any]
#: Records per invocation, as an event source mapping's BatchSize would deliver them.
BATCH_SIZE = 100
SECRET = "serverless-test-secret-that-is-long-enough-for-hs256"


@dataclass
class Dynamo:
    """The write store's tables on moto, its store, and a client of the commits table's stream."""

    settings: DynamoSettings
    names: TableNames
    client: Any
    streams: Any
    store: DynamoWriteStore

    async def put_raw(self, stream: str, base: int, body: str) -> None:
        """An item in the commits table that the store would never write (a poison record)."""
        await self.client.put_item(
            TableName=self.names.commits,
            Item={"stream": {"S": stream}, "base": {"N": str(base)}, "body": {"S": body}},
        )

    async def read_stream(self) -> list[Record]:
        """Every record of every shard from the trim horizon, shaped as Lambda delivers them."""
        table = (await self.client.describe_table(TableName=self.names.commits))["Table"]
        arn = table["LatestStreamArn"]
        description = (await self.streams.describe_stream(StreamArn=arn))["StreamDescription"]
        records: list[Record] = []
        for shard in description["Shards"]:
            iterator = (
                await self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            while iterator:
                answer = await self.streams.get_records(ShardIterator=iterator, Limit=1000)
                records.extend(_as_lambda_record(r, arn) for r in answer["Records"])
                if not answer["Records"]:
                    break
                iterator = answer.get("NextShardIterator")
        return records


def _as_lambda_record(record: Mapping[str, Any], arn: str) -> Record:
    dynamodb = dict(record["dynamodb"])
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):  # botocore parses it; Lambda delivers epoch seconds
        dynamodb["ApproximateCreationDateTime"] = created.timestamp()
    return {**record, "dynamodb": dynamodb, "eventSourceARN": arn}


@pytest.fixture
async def dynamo(dynamodb_endpoint: str, unique: str) -> AsyncIterator[Dynamo]:
    settings = DynamoSettings(endpoint_url=dynamodb_endpoint, table_prefix=f"sl-{unique}-")
    names = TableNames(settings.table_prefix)
    async with contextlib.AsyncExitStack() as stack:
        client = await open_dynamodb(settings, stack)
        streams = await open_dynamodb_streams(settings, stack)
        await create_tables(client, names, protect=False)
        store = await DynamoWriteStore.open(settings)
        try:
            yield Dynamo(settings, names, client, streams, store)
        finally:
            await store.close()
            await delete_tables(client, names)


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


def _command(type_: str, aggregate_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"command_id": str(uuid.uuid4()), "type": type_, "aggregate_id": aggregate_id, "payload": payload}


def _script() -> list[dict[str, Any]]:
    """A shop's day: registrations, renames, e-mail changes, a deletion, orders through their
    lifecycle, and one command the domain rejects (an order for a customer who never registered)."""
    script = [
        _command("RegisterCustomer", f"c-{i}", {"name": f"Customer {i}", "email": f"c{i}@example.com"})
        for i in range(12)
    ]
    script += [_command("RenameCustomer", f"c-{i}", {"name": f"Renamed {i}"}) for i in range(0, 12, 2)]
    script += [_command("ChangeCustomerEmail", f"c-{i}", {"email": f"new{i}@example.com"}) for i in (1, 5)]
    line = {"sku": "sku-1", "quantity": 2, "unit_price": "4.50"}
    script += [
        _command("PlaceOrder", f"o-{i}", {"customer_id": f"c-{i % 12}", "currency": "EUR", "lines": [line]})
        for i in range(16)
    ]
    script += [_command("AddOrderLine", f"o-{i}", {"line": {**line, "sku": "sku-2"}}) for i in (0, 3)]
    script += [_command("ConfirmOrder", f"o-{i}", {}) for i in range(8)]
    script += [_command("ShipOrder", f"o-{i}", {"tracking_number": f"t-{i}"}) for i in range(4)]
    script += [_command("CancelOrder", f"o-{i}", {"reason": "changed mind"}) for i in (8, 9)]
    script += [_command("DeleteCustomer", "c-11", {})]
    script += [_command("PlaceOrder", "o-x", {"customer_id": "c-nobody", "currency": "EUR", "lines": [line]})]
    return script


def _batches(records: Sequence[Record]) -> list[dict[str, list[Record]]]:
    return [{"Records": list(records[i : i + BATCH_SIZE])} for i in range(0, len(records), BATCH_SIZE)]


async def _rows(dsn: str) -> Any:
    pool = await create_pool(dsn, max_size=1)
    try:
        async with pool.acquire() as connection:
            return await read_rows(connection)
    finally:
        await pool.close()


async def _stored_events(store: DynamoWriteStore) -> list[EventEnvelope]:
    return [event async for commit in store.history() for event in commit.events]


async def test_commands_into_dynamodb_project_through_the_stream_handler_to_the_reference_fold(
    dynamo: Dynamo, pg_database: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = CommandServiceSettings(
        write_store="dynamodb",
        dynamodb_endpoint_url=dynamo.settings.endpoint_url,
        dynamodb_table_prefix=dynamo.settings.table_prefix,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        auth_mode="jwt",
        jwt_secret=SECRET,
    )
    roles = ["customers:write", "customers:erase", "orders:write"]
    token = "Bearer " + mint_token(
        SECRET, subject="e2e", roles=roles, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    script = _script()
    command_svc = create_app(settings)
    async with (
        command_svc.router.lifespan_context(command_svc),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=command_svc), base_url="http://command-svc"
        ) as client,
    ):
        answers = [
            (await client.post("/v1/commands", json=command, headers={"Authorization": token})).json()
            for command in script
        ]
    statuses = [a.get("status", a.get("code")) for a in answers]
    assert statuses.count("accepted") == len(script) - 1, answers
    assert answers[-1]["code"] == "rule_violated"

    events = await _stored_events(dynamo.store)
    assert len(events) == len(script) - 1
    records = await dynamo.read_stream()
    inserts = [r for r in records if r["eventName"] == "INSERT"]
    assert len(inserts) == len(events)  # one commit per accepted command; the relay's marks are MODIFYs

    projector = await StreamProjector.open(ProjectorSettings(database_url=pg_database))
    try:
        for batch in _batches(records):
            assert await projector.handle(batch) == {"batchItemFailures": []}
        assert diff(await _rows(pg_database), fold(events)) == []
        # Lambda delivers a batch again after a timeout or a crash: duplicates, nothing changes.
        for batch in _batches(records[: BATCH_SIZE * 2]):
            assert await projector.handle(batch) == {"batchItemFailures": []}
    finally:
        await projector.close()
    assert diff(await _rows(pg_database), fold(events)) == []


async def test_poison_records_are_reported_alone_while_the_rest_of_the_batch_goes_through(
    dynamo: Dynamo, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ShopHistory(seed=22).take(150)
    good = [_commit([e]) for e in events]
    for commit in good[:60]:
        await dynamo.store.append(commit)
    # Not a commit the store would write: undecodable.
    await dynamo.put_raw("customer/p-1", 0, "{not json")
    # A well-formed commit whose event breaks its contract (no e-mail): refused by the projection,
    # and the aggregate's next event is held behind it.
    at = datetime(2026, 1, 1, tzinfo=UTC)
    registered = envelope("customer", "p-2", 1, c.CustomerRegistered(name="P", email="p@example.com"), at)
    broken = registered.model_copy(update={"payload": {"name": "P"}})
    renamed = envelope("customer", "p-2", 2, c.CustomerRenamed(name="Q"), at)
    await dynamo.store.append(_commit([broken]))
    for commit in good[60:]:
        await dynamo.store.append(commit)
    await dynamo.store.append(_commit([renamed]))
    records = await dynamo.read_stream()
    poison = [
        r["dynamodb"]["SequenceNumber"]
        for r in records
        if r["dynamodb"]["Keys"]["stream"]["S"] in ("customer/p-1", "customer/p-2")
        and r["dynamodb"]["Keys"]["base"]["N"] == "0"
    ]
    assert len(poison) == 2

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
    dynamo: Dynamo, pg_database: str
) -> None:
    events = ShopHistory(seed=23).take(120)
    for event in events:
        await dynamo.store.append(_commit([event]))
    records = await dynamo.read_stream()
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


async def test_an_event_refused_by_a_handler_bug_is_replayed_after_the_fix(
    dynamo: Dynamo, pg_database: str
) -> None:
    events = ShopHistory(seed=24).take(120)
    for event in events:
        await dynamo.store.append(_commit([event]))
    records = await dynamo.read_stream()
    first = next(e for e in events if e.type == "CustomerRegistered")
    buggy = BuggyShopProjection([first.event_id])
    settings = ProjectorSettings(database_url=pg_database)
    projector = await StreamProjector.open(settings, buggy)
    try:
        response = await projector.handle({"Records": records})
        [failure] = response["batchItemFailures"]
        sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
        held = [e for e in events if (e.aggregate_type, e.aggregate_id) == ("customer", first.aggregate_id)]
        assert diff(await _rows(pg_database), fold(events)) != []  # the customer is held back

        # The fix is deployed; the operator asks for a replay; the stream's next invocation (here
        # Lambda's retry from the reported record) applies the parked events with the fixed code.
        buggy.fixed = True
        marked, _ = await replay(settings, "shop")
        assert marked == [("customer", first.aggregate_id)]
        again = await projector.handle({"Records": records[sequences.index(failure["itemIdentifier"]) :]})
        assert again == {"batchItemFailures": []}
    finally:
        await projector.close()
    assert len(held) >= 1
    assert diff(await _rows(pg_database), fold(events)) == []
    assert await list_parked(settings, "shop") == []


async def test_shards_applied_concurrently_by_two_execution_environments_converge(
    dynamo: Dynamo, pg_database: str
) -> None:
    """Customers and orders on different shards, each with its own Lambda execution environment:
    their batches meet in the joined columns (serialization conflicts, retried) and converge."""
    events = ShopHistory(seed=25).take(240)
    for event in events:
        await dynamo.store.append(_commit([event]))
    records = await dynamo.read_stream()
    shards = [
        [r for r in records if r["dynamodb"]["Keys"]["stream"]["S"].startswith(prefix)]
        for prefix in ("customer/", "order/")
    ]
    settings = ProjectorSettings(database_url=pg_database)
    environments = [await StreamProjector.open(settings) for _ in shards]

    async def run(projector: StreamProjector, shard: list[Record]) -> None:
        for start in range(0, len(shard), 20):
            assert await projector.handle({"Records": shard[start : start + 20]}) == {"batchItemFailures": []}

    try:
        await asyncio.gather(*(run(p, s) for p, s in zip(environments, shards, strict=True)))
    finally:
        for projector in environments:
            await projector.close()
    assert diff(await _rows(pg_database), fold(events)) == []
