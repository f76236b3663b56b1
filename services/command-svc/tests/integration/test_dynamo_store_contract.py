"""The write store and lease store contracts against DynamoDB (moto's server locally)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from command_svc.write_store.dynamo_leases import DynamoLeaseStore
from command_svc.write_store.dynamo_store import DynamoWriteStore
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.testing.write_store_contract import LeaseStoreContract, WriteStoreContract, make_commit
from cqrs_shared.write_store import CommitTooLargeError, ConcurrencyConflictError

from .dynamo_fixtures import private_tables

pytestmark = pytest.mark.integration


@pytest.fixture
async def dynamo_store(dynamodb_endpoint: str, unique: str) -> AsyncIterator[DynamoWriteStore]:
    async with private_tables(dynamodb_endpoint, f"t{unique}-") as store:
        yield store


class TestDynamoWriteStore(WriteStoreContract):
    @pytest.fixture
    def store(self, dynamo_store: DynamoWriteStore) -> DynamoWriteStore:
        return dynamo_store


class TestDynamoLeaseStore(LeaseStoreContract):
    @pytest.fixture
    def clock(self) -> list[float]:
        return [1000.0]

    @pytest.fixture
    def leases(self, dynamo_store: DynamoWriteStore, clock: list[float]) -> DynamoLeaseStore:
        return DynamoLeaseStore(dynamo_store.client, dynamo_store.names.leases, clock=lambda: clock[0])

    @pytest.fixture
    def advance_clock(self, clock: list[float]) -> Callable[[float], None]:
        def advance(seconds: float) -> None:
            clock[0] += seconds

        return advance


async def test_a_commit_over_the_item_limit_is_refused_before_writing(dynamo_store: DynamoWriteStore) -> None:
    commit = make_commit("big", 1)
    event = commit.events[0]
    huge = EventEnvelope.model_validate({**event.model_dump(), "payload": {"blob": "x" * 420_000}})
    with pytest.raises(CommitTooLargeError) as exc:
        await dynamo_store.append(commit.model_copy(update={"events": [huge]}))
    assert exc.value.size > exc.value.limit
    assert await dynamo_store.load_head("tally", "big") is None
    assert await dynamo_store.find_outcome(commit.command_id) is None


async def test_a_commit_just_under_the_limit_is_stored(dynamo_store: DynamoWriteStore) -> None:
    commit = make_commit("large", 1)
    event = commit.events[0]
    large = EventEnvelope.model_validate({**event.model_dump(), "payload": {"blob": "y" * 390_000}})
    await dynamo_store.append(commit.model_copy(update={"events": [large]}))
    head = await dynamo_store.load_head("tally", "large")
    assert head is not None and head.events[0].payload == {"blob": "y" * 390_000}


async def test_the_relay_backlog_is_read_from_the_sparse_index_only(dynamo_store: DynamoWriteStore) -> None:
    commits = [make_commit("a", v, shard=5) for v in (1, 2, 3)]
    for commit in commits:
        await dynamo_store.append(commit)
    await dynamo_store.mark_published(commits[:2])
    answer = await dynamo_store.client.query(
        TableName=dynamo_store.names.commits,
        IndexName="unpublished",
        KeyConditionExpression="pending_shard = :s",
        ExpressionAttributeValues={":s": {"N": "5"}},
    )
    assert [json.loads(i["body"]["S"])["version"] for i in answer["Items"]] == [3]


async def test_a_conflict_and_a_duplicate_in_one_transaction_report_the_duplicate(
    dynamo_store: DynamoWriteStore,
) -> None:
    first = make_commit("a", 1)
    await dynamo_store.append(first)
    # Same base version and same command id: the outcome decides (the command already has one).
    from cqrs_shared.write_store import DuplicateCommandError

    with pytest.raises(DuplicateCommandError):
        await dynamo_store.append(make_commit("a", 1, command_id=first.command_id))
    with pytest.raises(ConcurrencyConflictError):
        await dynamo_store.append(make_commit("a", 1, command_id=uuid.uuid4()))
