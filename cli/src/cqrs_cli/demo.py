"""`cqrs demo`: register a customer through the `commands` topic and read it back from query-svc.

This is what `make up` runs: a plain Kafka producer puts a `RegisterCustomer` command on the topic,
the outcome is read from `command-results`, then query-svc is polled until the read model has it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Annotated, Any

import httpx
import typer

from cqrs_cli.commands import send_on_topic


async def _read_back(query_url: str, customer_id: str, token: str | None, within: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=query_url, timeout=5, headers=headers) as client:
        while time.monotonic() < deadline:
            response = await client.get(f"/v1/customers/{customer_id}")
            if response.status_code != 404:
                response.raise_for_status()
                row: dict[str, Any] = response.json()
                return row
            await asyncio.sleep(0.1)
    raise TimeoutError(f"customer {customer_id} did not appear in the read model within {within}s")


def run(
    query_url: Annotated[str, typer.Option(envvar="QUERY_URL")] = "http://127.0.0.1:8080",
    token: Annotated[
        str | None, typer.Option(envvar="CQRS_TOKEN", help="Bearer token when auth is on.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1)] = 30.0,
) -> None:
    """Send one RegisterCustomer through the topic and print the outcome and the read model's row."""
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    envelope = {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterCustomer",
        "aggregate_id": customer_id,
        "payload": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "metadata": {"correlation_id": "demo"},
    }
    started = time.monotonic()
    try:
        outcome = asyncio.run(send_on_topic(envelope, token, timeout))
        typer.echo(f"sent RegisterCustomer for {customer_id} onto the commands topic")
        typer.echo(f"outcome on command-results: {json.dumps(outcome)}")
        row = asyncio.run(_read_back(query_url, customer_id, token, timeout))
    except TimeoutError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(3) from exc
    typer.echo(f"query-svc GET /v1/customers/{customer_id}, {time.monotonic() - started:.2f}s after sending:")
    typer.echo(json.dumps(row, indent=2))
