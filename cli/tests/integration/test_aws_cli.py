"""`cqrs aws create-tables` against moto: the declared tables, protected, and idempotent."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from typer.testing import CliRunner

from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb
from command_svc.write_store.dynamo_tables import TableNames, table_definitions
from cqrs_cli.main import app

pytestmark = pytest.mark.integration


async def test_create_tables_creates_the_declared_tables_protected_and_is_idempotent(
    dynamodb_endpoint: str, unique: str
) -> None:
    prefix = f"cli{unique}-"
    args = ["aws", "create-tables", "--endpoint-url", dynamodb_endpoint, "--prefix", prefix]
    first = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 3
    again = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert again.exit_code == 0 and again.output.count("exists") == 3
    async with contextlib.AsyncExitStack() as stack:
        client = await open_dynamodb(DynamoSettings(endpoint_url=dynamodb_endpoint), stack)
        for definition in table_definitions(TableNames(prefix)):
            table = (await client.describe_table(TableName=definition["TableName"]))["Table"]
            assert table["KeySchema"] == definition["KeySchema"]
            assert {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])} == {
                i["IndexName"] for i in definition.get("GlobalSecondaryIndexes", [])
            }
            assert table.get("DeletionProtectionEnabled") is True
            backups = await client.describe_continuous_backups(TableName=definition["TableName"])
            pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
            assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
        commits = (await client.describe_table(TableName=TableNames(prefix).commits))["Table"]
        assert commits["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
