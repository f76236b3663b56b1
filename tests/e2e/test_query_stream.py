"""Live updates across the three services: a stream shows the row, then three commands' changes in order."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def send(
    client: httpx.AsyncClient, stack: Stack, kind: str, aggregate: str, payload: dict[str, Any]
) -> Any:
    command = {"command_id": str(uuid.uuid4()), "type": kind, "aggregate_id": aggregate, "payload": payload}
    response = await client.post(
        f"{stack.command.url}/v1/commands",
        json=command,
        headers={"Authorization": stack.token("customers:write")},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def data_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """`(event, data)` of each event carrying data; comments and `retry` are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            yield fields.get("event", "message"), json.loads(fields["data"])
        fields = {}


async def test_a_stream_shows_the_row_then_each_commands_change_in_order(stack: Stack) -> None:
    customer = f"c-{uuid.uuid4().hex[:8]}"
    reader = {"Authorization": stack.token("customers:read")}
    async with httpx.AsyncClient(timeout=30) as client:
        registered = await send(
            client, stack, "RegisterCustomer", customer, {"name": "Grace", "email": "g@example.com"}
        )
        url = f"{stack.query.url}/v1/customers/{customer}/stream"
        params = {"after": registered["consistency_token"], "max_wait_ms": "10000"}
        async with client.stream("GET", url, params=params, headers=reader) as response:
            assert response.status_code == 200
            events = data_events(response)
            seen = [await anext(events)]
            changes = [
                ("RenameCustomer", {"name": "Grace Hopper"}),
                ("ChangeCustomerEmail", {"email": "grace@navy.example"}),
                ("RenameCustomer", {"name": "Rear Admiral Hopper"}),
            ]
            for kind, payload in changes:
                outcome = await send(client, stack, kind, customer, payload)
                async with asyncio.timeout(15):
                    event = await anext(events)
                assert event[1]["version"] == outcome["version"]
                seen.append(event)

    assert [(e, d["version"], d["name"], d["email"]) for e, d in seen] == [
        ("snapshot", 1, "Grace", "g@example.com"),
        ("change", 2, "Grace Hopper", "g@example.com"),
        ("change", 3, "Grace Hopper", "grace@navy.example"),
        ("change", 4, "Rear Admiral Hopper", "grace@navy.example"),
    ]
