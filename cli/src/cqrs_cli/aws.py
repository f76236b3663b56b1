"""`cqrs aws`: the AWS side of the platform (tables as code, from the one declaration command-svc uses).

Needs `cqrs-cli[aws]` (command-svc's table declarations and DynamoDB driver); the operator image
installs no extras, so this command explains what is missing there instead of failing at import.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

app = typer.Typer(help="Create and inspect the AWS resources of the write store.", no_args_is_help=True)

EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        envvar="DYNAMODB_ENDPOINT_URL",
        help="DynamoDB endpoint (moto's URL locally); AWS's own when unset.",
    ),
]
RegionOption = Annotated[str, typer.Option(envvar=["AWS_REGION", "AWS_DEFAULT_REGION"])]
PrefixOption = Annotated[str, typer.Option(envvar="DYNAMODB_TABLE_PREFIX", help="Prefix of the table names.")]


@app.command("create-tables")
def create_tables_command(
    endpoint_url: EndpointOption = None,
    region: RegionOption = "us-east-1",
    prefix: PrefixOption = "cqrs-",
    protect: Annotated[
        bool,
        typer.Option(help="Turn on point-in-time recovery and deletion protection (as CloudFormation does)."),
    ] = True,
) -> None:
    """Create the write store's tables that are missing (idempotent) and wait until they are active."""
    try:
        from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb
        from command_svc.write_store.dynamo_tables import TableNames, create_tables, table_definitions
    except ImportError as exc:
        typer.echo(f"`cqrs aws` needs the aws extra: install cqrs-cli[aws] ({exc})", err=True)
        raise typer.Exit(2) from exc
    settings = DynamoSettings(endpoint_url=endpoint_url, region=region, table_prefix=prefix)

    async def run() -> list[str]:
        async with contextlib.AsyncExitStack() as stack:
            client = await open_dynamodb(settings, stack)
            return await create_tables(client, TableNames(prefix), protect=protect)

    created = asyncio.run(run())
    for definition in table_definitions(TableNames(prefix)):
        name = definition["TableName"]
        typer.echo(f"{name}: {'created' if name in created else 'exists'}")
