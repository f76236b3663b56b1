"""The DynamoDB tables of the write store, declared once.

`cqrs aws create-tables` creates them from these declarations against any endpoint, and a test
keeps `deploy/aws/cqrs-platform.yaml` (CloudFormation) in agreement with them.

- `commits`: one item per accepted command. Key (`stream`, `base`): the aggregate and the version
  the commit was decided on, so the key itself refuses a second commit on the same base version.
  The sparse index `unpublished` holds only items still carrying `pending_shard` (removed when
  published), keyed by relay shard and sorted by `position` (aggregate, then version): the relay's
  scan reads exactly its backlog, never the history. The sparse index `streams` holds one item per
  aggregate (its first commit), so rebuilds walk aggregates without a table scan. The table's stream
  (`NEW_IMAGE`) feeds the stream publisher and the Lambda handlers.
- `outcomes`: one item per command id (accepted or rejected): every command id has one outcome.
- `leases`: relay shard leases, replica heartbeats and stream checkpoints (key `kind`, `name`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

UNPUBLISHED_INDEX = "unpublished"
STREAMS_INDEX = "streams"


@dataclass(frozen=True, slots=True)
class TableNames:
    """The physical names of the write store's tables: one prefix per deployment (or per test)."""

    prefix: str = "cqrs-"

    @property
    def commits(self) -> str:
        return f"{self.prefix}commits"

    @property
    def outcomes(self) -> str:
        return f"{self.prefix}outcomes"

    @property
    def leases(self) -> str:
        return f"{self.prefix}leases"


def _key(*parts: tuple[str, str, str]) -> dict[str, Any]:
    """`(name, attribute type, key type)` triples to a key schema and its attribute definitions."""
    return {
        "KeySchema": [{"AttributeName": name, "KeyType": kind} for name, _, kind in parts],
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": typ} for name, typ, _ in parts],
    }


def _index(name: str, projection: str, *parts: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": _key(*parts)["KeySchema"],
        "Projection": {"ProjectionType": projection},
    }


def table_definitions(names: TableNames) -> list[dict[str, Any]]:
    """`CreateTable` requests for every table (on-demand billing, streams where consumed)."""
    commit_keys = _key(("stream", "S", "HASH"), ("base", "N", "RANGE"))
    unpublished = (("pending_shard", "N", "HASH"), ("position", "S", "RANGE"))
    streams = (("first_of", "S", "HASH"), ("stream", "S", "RANGE"))
    attributes = {a["AttributeName"]: a for a in commit_keys["AttributeDefinitions"]}
    for parts in (unpublished, streams):
        for a in _key(*parts)["AttributeDefinitions"]:
            attributes[a["AttributeName"]] = a
    return [
        {
            "TableName": names.commits,
            "KeySchema": commit_keys["KeySchema"],
            "AttributeDefinitions": [attributes[n] for n in sorted(attributes)],
            "GlobalSecondaryIndexes": [
                # ALL: the relay publishes from the index without a second read per commit.
                _index(UNPUBLISHED_INDEX, "ALL", *unpublished),
                _index(STREAMS_INDEX, "KEYS_ONLY", *streams),
            ],
            "BillingMode": "PAY_PER_REQUEST",
            # NEW_IMAGE: a commit is immutable apart from its publish marker, so the new image is all
            # a stream consumer needs, at half the record size of NEW_AND_OLD_IMAGES.
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        },
        {
            "TableName": names.outcomes,
            **_key(("command_id", "S", "HASH")),
            "BillingMode": "PAY_PER_REQUEST",
        },
        {
            "TableName": names.leases,
            **_key(("kind", "S", "HASH"), ("name", "S", "RANGE")),
            "BillingMode": "PAY_PER_REQUEST",
        },
    ]


async def create_tables(
    client: DynamoDBClient, names: TableNames, *, protect: bool = True, wait_seconds: float = 120.0
) -> list[str]:
    """Create the tables that do not exist yet and wait until they are active; returns those created.

    `protect` turns on point-in-time recovery and deletion protection (as the CloudFormation
    template does); tests leave it off so they can delete their tables.
    """
    created: list[str] = []
    for definition in table_definitions(names):
        name = definition["TableName"]
        try:
            await client.create_table(**definition)
            created.append(name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
    async with asyncio.timeout(wait_seconds):
        for definition in table_definitions(names):
            await _wait_active(client, definition["TableName"])
    if protect:
        for definition in table_definitions(names):
            name = definition["TableName"]
            await client.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
            description = await client.describe_table(TableName=name)
            if not description["Table"].get("DeletionProtectionEnabled"):
                await client.update_table(TableName=name, DeletionProtectionEnabled=True)
    return created


async def _wait_active(client: DynamoDBClient, name: str) -> None:
    while True:
        table = (await client.describe_table(TableName=name))["Table"]
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table.get("TableStatus") == "ACTIVE" and all(i.get("IndexStatus") == "ACTIVE" for i in indexes):
            return
        await asyncio.sleep(0.5)


async def delete_tables(client: DynamoDBClient, names: TableNames) -> None:
    """Delete the tables (tests and throwaway environments; protected tables refuse)."""
    for definition in table_definitions(names):
        try:
            await client.delete_table(TableName=definition["TableName"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
