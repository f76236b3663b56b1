"""Read-your-writes across the three services: a command over HTTP, then a query carrying its token
returns the new state on the first call."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

#: Generous on a loaded CI machine; the point is that the *first* query call answers fresh.
WAIT = {"max_wait_ms": "10000"}


async def send(
    client: httpx.AsyncClient, stack: Stack, kind: str, aggregate: str, payload: dict[str, Any]
) -> str:
    """POST one command; its consistency token."""
    roles = ("customers:write", "orders:write")
    command = {"command_id": str(uuid.uuid4()), "type": kind, "aggregate_id": aggregate, "payload": payload}
    response = await client.post(
        f"{stack.command.url}/v1/commands", json=command, headers={"Authorization": stack.token(*roles)}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["consistency_token"])


async def test_a_query_with_the_commands_token_sees_the_write_on_the_first_call(stack: Stack) -> None:
    customer, order = f"c-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    reader = {"Authorization": stack.token("customers:read", "orders:read")}
    async with httpx.AsyncClient(base_url=stack.query.url, timeout=30) as client:
        token = await send(
            client, stack, "RegisterCustomer", customer, {"name": "Ada", "email": "ada@example.com"}
        )
        registered = await client.get(
            f"/v1/customers/{customer}", params=WAIT, headers={**reader, "X-Consistency-Token": token}
        )
        token = await send(client, stack, "RenameCustomer", customer, {"name": "Ada Lovelace"})
        renamed = await client.get(
            f"/v1/customers/{customer}", params={**WAIT, "after": token}, headers=reader
        )
        line = {"sku": "pen", "quantity": 2, "unit_price": "9.95"}
        token = await send(
            client, stack, "PlaceOrder", order, {"customer_id": customer, "currency": "EUR", "lines": [line]}
        )
        history = await client.get(
            f"/v1/customers/{customer}/orders", params={**WAIT, "after": token}, headers=reader
        )
        counted = await client.get(
            f"/v1/customers/{customer}", params={**WAIT, "after": token}, headers=reader
        )

    assert registered.status_code == 200, registered.text
    assert (registered.json()["name"], registered.json()["version"]) == ("Ada", 1)
    assert renamed.json()["name"] == "Ada Lovelace"
    assert [(o["id"], o["customer_name"], o["total"], o["status"]) for o in history.json()["items"]] == [
        (order, "Ada Lovelace", "19.90", "placed")
    ]
    assert (counted.json()["order_count"], counted.json()["lifetime_value"]) == (1, "19.90")
    for response in (registered, renamed, history, counted):
        assert response.headers["x-read-model-stale"] == "false"
        assert response.headers["x-read-model-position"] != "none"
        assert int(response.headers["x-staleness-ms"]) >= 0
