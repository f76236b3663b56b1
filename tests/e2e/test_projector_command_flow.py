"""Through the real command-svc: the orders view joins the customer's name, follows a rename, and a
deletion erases the name from the customer and from every order; readers are notified."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from cqrs_shared.auth import mint_token
from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.read_models.notifications import CHANNEL
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LINE = {"sku": "a", "quantity": 2, "unit_price": "10.00"}


async def _send(
    client: httpx.AsyncClient, token: str, type_: str, aggregate: str, **payload: Any
) -> ConsistencyToken:
    body = {"command_id": str(uuid.uuid4()), "type": type_, "aggregate_id": aggregate, "payload": payload}
    response = await client.post("/v1/commands", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return ConsistencyToken.decode(response.json()["consistency_token"])


async def _visible(connection: asyncpg.Connection[asyncpg.Record], token: ConsistencyToken) -> None:
    for _ in range(300):
        version = await connection.fetchval(
            "SELECT version FROM read.shop_aggregate_versions "
            "WHERE aggregate_type = $1 AND aggregate_id = $2",
            token.aggregate_type,
            token.aggregate_id,
        )
        if version is not None and version >= token.version:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{token} never became visible")


async def test_orders_carry_the_customer_name_through_a_rename_and_lose_it_on_deletion(
    start_service: Callable[..., ServiceProcess], pg_database: str
) -> None:
    projector = start_service("projector_svc", "PROJECTOR_SVC_PORT")
    command = start_service("command_svc", "COMMAND_SVC_PORT")
    await asyncio.gather(asyncio.to_thread(projector.wait_ready), asyncio.to_thread(command.wait_ready))
    roles = ["customers:write", "customers:erase", "orders:write"]
    token = mint_token(E2E_SECRET, subject="e2e", roles=roles, issuer=ISSUER, audience=AUDIENCE)
    notes: list[dict[str, Any]] = []
    listener = await asyncpg.connect(pg_database)
    await listener.add_listener(CHANNEL, lambda _c, _p, _ch, payload: notes.append(json.loads(payload)))
    connection = await asyncpg.connect(pg_database)
    try:
        async with httpx.AsyncClient(base_url=command.url, timeout=30) as client:
            await _send(client, token, "RegisterCustomer", "c1", name="Ada", email="ada@example.com")
            await _send(client, token, "PlaceOrder", "o1", customer_id="c1", currency="EUR", lines=[LINE])
            await _send(client, token, "RenameCustomer", "c1", name="Ada King")
            await _send(client, token, "PlaceOrder", "o2", customer_id="c1", currency="EUR", lines=[LINE])
            await _send(client, token, "CancelOrder", "o2", reason="duplicate")
            await _visible(connection, await _send(client, token, "ConfirmOrder", "o1"))
            names = await connection.fetch("SELECT id, customer_name FROM read.orders ORDER BY id")
            assert [(r["id"], r["customer_name"]) for r in names] == [("o1", "Ada King"), ("o2", "Ada King")]
            await _visible(connection, await _send(client, token, "DeleteCustomer", "c1"))
        customer = await connection.fetchrow("SELECT * FROM read.customers WHERE id = 'c1'")
        orders = await connection.fetch("SELECT * FROM read.orders ORDER BY id")
    finally:
        await connection.close()
        await listener.close()
    assert customer is not None
    assert (customer["name"], customer["email"], customer["status"], customer["version"]) == (
        None,
        None,
        "deleted",
        3,
    )
    assert (customer["order_count"], customer["open_order_count"]) == (2, 1)
    assert customer["lifetime_value"] == Decimal("20.00")  # the cancelled order does not count
    assert [(o["id"], o["status"], o["customer_name"], o["total"]) for o in orders] == [
        ("o1", "confirmed", None, Decimal("20.00")),
        ("o2", "cancelled", None, Decimal("20.00")),
    ]
    changes = [tuple(change) for note in notes for change in note["changes"]]
    assert ("customer", "c1", 3) in changes
    assert all(note["projection"] == "shop" and note["schema"] == "shop_b1" for note in notes)
