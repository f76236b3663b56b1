"""DynamoDB write store (tested against moto's server; tables in `dynamo_tables`).

- An accepted command is one `TransactWriteItems`: the commit item (condition: no commit on this
  base version yet) and the command-id item (condition: no outcome for this command id yet). Both
  conditions are the table's, so they hold across replicas. The cancellation reasons say which one
  failed: the command-id item means `DuplicateCommandError` (with the outcome stored, returned by
  the failed condition itself), else the commit item means `ConcurrencyConflictError`.
- A rejection is the command-id item alone, written with the same condition.
- Reads on the hot path are by key (`GetItem`, `Query` on a partition, newest first, `Limit=1`),
  strongly consistent. The relay's backlog comes from the sparse index `unpublished`, one `Query`
  per shard, so its cost follows the backlog, never the history. Indexes are eventually consistent:
  a commit just written may be missing from one scan (the next finds it; fresh commits reach the
  relay in memory anyway) and one just marked may appear once more (a counted duplicate).
- Every call is bounded and retried by botocore (`dynamo_client`); what still fails is
  `WriteStoreUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from command_svc.write_store.dynamo_client import (
    DynamoSettings,
    error_code,
    open_dynamodb,
    open_dynamodb_streams,
    store_errors,
)
from command_svc.write_store.dynamo_items import (
    commit_item,
    outcome_from_item,
    outcome_item,
    stream_key,
)
from command_svc.write_store.dynamo_leases import DynamoLeaseStore
from command_svc.write_store.dynamo_tables import STREAMS_INDEX, UNPUBLISHED_INDEX, TableNames
from cqrs_shared.dynamo_stream import commit_from_image as commit_from_item
from cqrs_shared.results import CommandResult, Rejected
from cqrs_shared.write_store.port import (
    Commit,
    ConcurrencyConflictError,
    DuplicateCommandError,
    WriteStoreUnavailableError,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

#: A transaction that meets another one on the same item is cancelled with `TransactionConflict`
#: (neither condition was evaluated): it is tried again this many times before giving up.
_TRANSACTION_ATTEMPTS = 5
#: Concurrent single-item writes of one `mark_published` (DynamoDB has no multi-item update).
_MARK_CONCURRENCY = 16
#: Relay shards queried at once by one `unpublished` scan.
_SCAN_CONCURRENCY = 8
_NO_OUTCOME = "attribute_not_exists(command_id)"


class DynamoWriteStore:
    """The write store on DynamoDB. Create with `await DynamoWriteStore.open(settings)`."""

    def __init__(
        self,
        client: DynamoDBClient,
        names: TableNames,
        stack: contextlib.AsyncExitStack,
        settings: DynamoSettings | None = None,
    ) -> None:
        self._client = client
        self.names = names
        self._stack = stack
        self._settings = settings or DynamoSettings(table_prefix=names.prefix)

    @classmethod
    async def open(cls, settings: DynamoSettings) -> DynamoWriteStore:
        """Connect (the tables must exist: `cqrs aws create-tables` or CloudFormation make them)."""
        stack = contextlib.AsyncExitStack()
        client = await open_dynamodb(settings, stack)
        store = cls(client, TableNames(settings.table_prefix), stack, settings)
        try:
            await store.ping()
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def client(self) -> DynamoDBClient:
        return self._client

    def leases(self) -> DynamoLeaseStore:
        return DynamoLeaseStore(self._client, self.names.leases)

    async def streams_client(self) -> DynamoDBStreamsClient:
        """A DynamoDB Streams client with this store's settings, closed with the store."""
        return await open_dynamodb_streams(self._settings, self._stack)

    async def close(self) -> None:
        await self._stack.aclose()

    async def load_head(self, aggregate_type: str, aggregate_id: str) -> Commit | None:
        with store_errors():
            answer = await self._client.query(
                TableName=self.names.commits,
                KeyConditionExpression="#s = :s",
                ExpressionAttributeNames={"#s": "stream"},
                ExpressionAttributeValues={":s": {"S": stream_key(aggregate_type, aggregate_id)}},
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            )
        items = answer.get("Items", [])
        return commit_from_item(items[0]) if items else None

    async def append(self, commit: Commit) -> None:
        commit_put = commit_item(commit)
        outcome_put = outcome_item(commit.outcome())
        request: dict[str, Any] = {
            "TransactItems": [
                {
                    "Put": {
                        "TableName": self.names.commits,
                        "Item": commit_put,
                        "ConditionExpression": "attribute_not_exists(#s)",
                        "ExpressionAttributeNames": {"#s": "stream"},
                    }
                },
                {
                    "Put": {
                        "TableName": self.names.outcomes,
                        "Item": outcome_put,
                        "ConditionExpression": _NO_OUTCOME,
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ],
            # No ClientRequestToken: a repeated command arrives as a new decision (another
            # `committed_at`), which DynamoDB would refuse as a token mismatch instead of a
            # duplicate. A botocore retry of a call that did succeed finds its own outcome stored
            # and reports it as the duplicate it is; the answer to the caller is the same.
        }
        for attempt in range(_TRANSACTION_ATTEMPTS):
            try:
                with store_errors():
                    await self._transact(request, commit)
            except _TransactionConflictError:
                await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311  # jitter, not crypto
            else:
                return
        raise WriteStoreUnavailableError(f"{commit.commit_id}: transactions kept meeting each other")

    async def _transact(self, request: dict[str, Any], commit: Commit) -> None:
        try:
            await self._client.transact_write_items(**request)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
            if len(reasons) != 2:
                raise
            commit_reason, outcome_reason = reasons
            if outcome_reason == "ConditionalCheckFailed":
                old = exc.response["CancellationReasons"][1].get("Item")
                existing = outcome_from_item(old) if old else await self.find_outcome(commit.command_id)
                if existing is None:
                    raise  # the outcome was there a moment ago; never deleted, so this is a bug
                raise DuplicateCommandError(existing) from None
            if commit_reason == "ConditionalCheckFailed":
                raise ConcurrencyConflictError(commit.commit_id) from None
            if "TransactionConflict" in reasons:
                raise _TransactionConflictError from exc
            raise  # throttled or failed inside the transaction: unavailable, retried by the caller

    async def find_outcome(self, command_id: uuid.UUID) -> CommandResult | None:
        with store_errors():
            answer = await self._client.get_item(
                TableName=self.names.outcomes,
                Key={"command_id": {"S": str(command_id)}},
                ConsistentRead=True,
            )
        item = answer.get("Item")
        return outcome_from_item(item) if item else None

    async def record_rejection(self, rejection: Rejected) -> CommandResult:
        with store_errors():
            try:
                await self._client.put_item(
                    TableName=self.names.outcomes,
                    Item=outcome_item(rejection),
                    ConditionExpression=_NO_OUTCOME,
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
            else:
                return rejection
        existing = await self.find_outcome(rejection.command_id)
        return existing or rejection

    async def unpublished(self, shards: Collection[int], limit: int) -> list[Commit]:
        found: list[Commit] = []
        ordered = sorted(shards)
        # A few shards at a time: one round trip per group instead of per shard, while a large
        # backlog in the first shards still stops the reading early.
        for start in range(0, len(ordered), _SCAN_CONCURRENCY):
            if len(found) >= limit:
                break
            wanted = limit - len(found)
            group = ordered[start : start + _SCAN_CONCURRENCY]
            for commits in await asyncio.gather(*(self._unpublished_in_shard(s, wanted) for s in group)):
                found.extend(commits[: limit - len(found)])
        return found

    async def _unpublished_in_shard(self, shard: int, limit: int) -> list[Commit]:
        commits: list[Commit] = []
        request: dict[str, Any] = {
            "TableName": self.names.commits,
            "IndexName": UNPUBLISHED_INDEX,
            "KeyConditionExpression": "pending_shard = :shard",
            "ExpressionAttributeValues": {":shard": {"N": str(shard)}},
        }
        while len(commits) < limit:
            with store_errors():
                answer = await self._client.query(**request, Limit=limit - len(commits))
            commits.extend(commit_from_item(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return commits

    async def unpublished_in_stream(self, aggregate_type: str, aggregate_id: str) -> list[Commit]:
        # The aggregate's partition, oldest first; only called when a predecessor's fate is unknown.
        return [
            commit
            async for commit in self._stream(stream_key(aggregate_type, aggregate_id), pending_only=True)
        ]

    async def mark_published(self, commits: Sequence[Commit]) -> None:
        limit = asyncio.Semaphore(_MARK_CONCURRENCY)

        async def mark(commit: Commit) -> None:
            async with limit:
                await self._client.update_item(
                    TableName=self.names.commits,
                    Key={
                        "stream": {"S": stream_key(commit.aggregate_type, commit.aggregate_id)},
                        "base": {"N": str(commit.base_version)},
                    },
                    # Out of the sparse index; the condition keeps a mark from creating an item.
                    UpdateExpression="REMOVE pending_shard",
                    ConditionExpression="attribute_exists(#s)",
                    ExpressionAttributeNames={"#s": "stream"},
                )

        with store_errors():
            await asyncio.gather(*(mark(c) for c in commits))

    async def history(self, aggregate_types: Collection[str] | None = None) -> AsyncIterator[Commit]:
        async for stream in self._streams(aggregate_types):
            async for commit in self._stream(stream, pending_only=False):
                yield commit

    async def _streams(self, aggregate_types: Collection[str] | None) -> AsyncIterator[str]:
        """Every aggregate (of these types), from the sparse `streams` index: one item each."""
        base: dict[str, Any] = {"TableName": self.names.commits, "IndexName": STREAMS_INDEX}
        requests: list[tuple[str, dict[str, Any]]]
        if aggregate_types is None:
            requests = [("scan", base)]
        else:
            requests = [
                (
                    "query",
                    {
                        **base,
                        "KeyConditionExpression": "first_of = :t",
                        "ExpressionAttributeValues": {":t": {"S": t}},
                    },
                )
                for t in sorted(aggregate_types)
            ]
        for operation, request in requests:
            async for item in self._pages(operation, request):
                yield str(item["stream"]["S"])

    async def _stream(self, stream: str, *, pending_only: bool) -> AsyncIterator[Commit]:
        request: dict[str, Any] = {
            "TableName": self.names.commits,
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "stream"},
            "ExpressionAttributeValues": {":s": {"S": stream}},
            "ConsistentRead": True,
        }
        if pending_only:
            request["FilterExpression"] = "attribute_exists(pending_shard)"
        async for item in self._pages("query", request):
            yield commit_from_item(item)

    async def _pages(self, operation: str, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        call = self._client.query if operation == "query" else self._client.scan
        request = dict(request)
        while True:
            with store_errors():
                answer = await call(**request)
            for item in answer.get("Items", []):
                yield item
            if "LastEvaluatedKey" not in answer:
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    async def ping(self) -> None:
        with store_errors():
            await self._client.get_item(TableName=self.names.outcomes, Key={"command_id": {"S": "ping"}})


class _TransactionConflictError(Exception):
    """Another transaction held one of the items: neither condition was decided, so try again."""
