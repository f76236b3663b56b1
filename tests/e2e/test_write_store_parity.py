"""The same command script through both write stores: MongoDB (FerretDB) with the outbox relay, and
DynamoDB (moto) publishing from the table's stream. Identical command outcomes, identical read models."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb
from command_svc.write_store.dynamo_tables import TableNames, create_tables, delete_tables
from cqrs_shared.auth import mint_token
from cqrs_shared.testing.moto_fidelity import require_faithful_moto
from cqrs_shared.testing.postgres import fresh_database
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess
from projector_svc.testing.shop_fold import ShopRows
from projector_svc.testing.views_io import diff, read_rows

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_IDS = uuid.UUID("6d1c7e2a-5a43-4d4c-9d0b-0a1f2e3d4c5b")
TOKEN = "Bearer " + mint_token(
    E2E_SECRET,
    subject="parity",
    roles=["customers:write", "customers:erase", "orders:write"],
    issuer=ISSUER,
    audience=AUDIENCE,
)


def _line(sku: str, quantity: int = 1, price: str = "9.50") -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price": price}


def script() -> list[dict[str, Any]]:
    """Accepted commands, every kind of rejection, a conflict and a repeated command id."""
    steps: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("RegisterCustomer", "c-1", {"name": "Ada", "email": "ada@example.com"}, {}),
        ("RegisterCustomer", "c-2", {"name": "Grace", "email": "grace@example.com"}, {}),
        ("RegisterCustomer", "c-1", {"name": "Ada", "email": "ada@example.com"}, {}),
        ("RenameCustomer", "c-1", {"name": "Ada King"}, {}),
        ("RenameCustomer", "c-9", {"name": "Nobody"}, {}),
        ("PlaceOrder", "o-1", {"customer_id": "c-1", "currency": "EUR", "lines": [_line("A")]}, {}),
        ("AddOrderLine", "o-1", {"line": _line("B", 2, "3.25")}, {}),
        ("AddOrderLine", "o-1", {"line": _line("B")}, {}),
        ("RemoveOrderLine", "o-1", {"sku": "A"}, {}),
        ("ConfirmOrder", "o-1", {}, {}),
        ("ShipOrder", "o-1", {"tracking_number": "TRK-1"}, {}),
        ("PlaceOrder", "o-2", {"customer_id": "c-2", "currency": "USD", "lines": [_line("C")]}, {}),
        ("CancelOrder", "o-2", {"reason": "changed mind"}, {}),
        ("ChangeCustomerEmail", "c-2", {"email": "g@example.com"}, {"expected_version": 0}),
        ("ChangeCustomerEmail", "c-2", {"email": "g@example.com"}, {"expected_version": 1}),
        ("DeleteCustomer", "c-2", {}, {}),
        ("PlaceOrder", "o-3", {"customer_id": "c-2", "currency": "EUR", "lines": [_line("D")]}, {}),
        ("RegisterCustomer", "c-3", {"name": "No email"}, {}),
    ]
    commands = [
        {
            "command_id": str(uuid.uuid5(_IDS, str(n))),
            "type": type_,
            "aggregate_id": aggregate,
            "payload": payload,
            **extra,
        }
        for n, (type_, aggregate, payload, extra) in enumerate(steps)
    ]
    return [*commands, commands[3]]  # the rename again, same command id: its first answer


def _without_times(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows minus their timestamps: decision and projection times differ between any two runs."""
    return {k: {c: v for c, v in row.items() if not isinstance(v, datetime)} for k, row in rows.items()}


async def _run(
    start_service: Callable[..., ServiceProcess], database_url: str, env: dict[str, str]
) -> tuple[list[tuple[int, Any]], Any]:
    services = [
        start_service(module, port, **{**env, "DATABASE_URL": database_url})
        for module, port in (
            ("projector_svc", "PROJECTOR_SVC_PORT"),
            ("command_svc", "COMMAND_SVC_PORT"),
            ("query_svc", "QUERY_SVC_PORT"),
        )
    ]
    for service in services:
        service.wait_ready()
    outcomes = []
    async with httpx.AsyncClient(base_url=services[1].url, timeout=30) as client:
        for command in script():
            answer = await client.post("/v1/commands", json=command, headers={"Authorization": TOKEN})
            outcomes.append((answer.status_code, answer.json()))
    # Projected when every aggregate's row has the version of its last accepted command.
    expected: dict[str, int] = {}
    for status, body in outcomes:
        if status == 200:
            expected[body["aggregate_id"]] = max(expected.get(body["aggregate_id"], 0), body["version"])
    connection = await asyncpg.connect(database_url)
    try:
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(asyncpg.UndefinedTableError):  # before the first migration
                    rows = await read_rows(connection)
                    projected = {k: r["version"] for k, r in {**rows.customers, **rows.orders}.items()}
                    if projected == expected:
                        break
                await asyncio.sleep(0.2)
    finally:
        await connection.close()
    for service in services:
        service.stop()
    return outcomes, rows


@contextlib.asynccontextmanager
async def _dynamo_tables(endpoint: str, prefix: str) -> AsyncIterator[None]:
    settings = DynamoSettings(endpoint_url=endpoint)
    async with contextlib.AsyncExitStack() as stack:
        client = await open_dynamodb(settings, stack)
        await create_tables(client, TableNames(prefix), protect=False)
        try:
            yield
        finally:
            await delete_tables(client, TableNames(prefix))


async def test_both_write_stores_give_identical_outcomes_and_read_models(
    start_service: Callable[..., ServiceProcess],
    service_env: dict[str, str],
    database_url: str,
    dynamodb_endpoint: str,
    unique: str,
) -> None:
    require_faithful_moto(dynamodb_endpoint)
    mongo_env = {**service_env, "WRITE_STORE": "mongodb"}
    mongo_outcomes, mongo_rows = await _run(start_service, service_env["DATABASE_URL"], mongo_env)
    assert [status for status, _ in mongo_outcomes] == [
        200, 200, 422, 200, 404, 200, 200, 422, 200, 200, 200, 200, 200, 409, 200, 200, 422, 422, 200,
    ]  # fmt: skip
    assert mongo_outcomes[-1] == mongo_outcomes[3]
    assert set(mongo_rows.customers) == {"c-1", "c-2"} and set(mongo_rows.orders) == {"o-1", "o-2"}
    mongo_view = ShopRows(_without_times(mongo_rows.customers), _without_times(mongo_rows.orders))

    # DynamoDB with each publisher: the outbox relay (its sparse index) and the table's stream.
    for publisher in ("outbox", "dynamodb-stream"):
        run = f"{unique}{publisher[0]}"
        dynamo_env = {
            **service_env,
            "WRITE_STORE": "dynamodb",
            "DYNAMODB_ENDPOINT_URL": dynamodb_endpoint,
            "DYNAMODB_TABLE_PREFIX": f"e2e{run}-",
            "COMMAND_SVC_EVENT_PUBLISHER": publisher,
            "CQRS_TOPIC_PREFIX": f"{publisher[0]}{service_env['CQRS_TOPIC_PREFIX']}",
        }
        async with (
            _dynamo_tables(dynamodb_endpoint, f"e2e{run}-"),
            fresh_database(database_url, f"t_{run}") as dynamo_database,
        ):
            dynamo_outcomes, dynamo_rows = await _run(start_service, dynamo_database, dynamo_env)
        assert dynamo_outcomes == mongo_outcomes, publisher
        dynamo_view = ShopRows(_without_times(dynamo_rows.customers), _without_times(dynamo_rows.orders))
        assert diff(dynamo_view, mongo_view) == [], publisher
