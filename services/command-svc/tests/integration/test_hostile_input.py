"""Whatever arrives at POST /v1/commands, the answer is a clear 2xx/4xx, never a server error."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

ALLOWED = {200, 400, 401, 403, 404, 409, 413, 422}
TYPES = [
    "RegisterCustomer",
    "RenameCustomer",
    "DeleteCustomer",
    "PlaceOrder",
    "AddOrderLine",
    "ShipOrder",
    "X",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {
        "command_id": st.uuids().map(str) | st.text(max_size=5),
        "type": st.sampled_from(TYPES) | st.text(max_size=8),
        "aggregate_id": st.text(max_size=12) | st.sampled_from(["c-1", "o-1"]),
        "payload": st.dictionaries(
            st.sampled_from(["name", "email", "customer_id", "currency", "lines", "sku", "line", "reason"]),
            json_values,
            max_size=4,
        ),
    },
    optional={"expected_version": st.integers(-2, 3) | st.text(max_size=3), "metadata": json_values},
)
bodies = (
    envelopes.map(lambda e: json.dumps(e).encode())
    | st.binary(max_size=64)
    | json_values.map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
async def test_no_input_yields_a_server_error(http: httpx.AsyncClient, token_for: Any, body: bytes) -> None:
    headers = {
        "Authorization": token_for("customers:write", "customers:erase", "orders:write"),
        "content-type": "application/json",
    }
    response = await http.post("/v1/commands", content=body, headers=headers)
    assert response.status_code in ALLOWED, (response.status_code, body, response.text)
    if response.status_code != 200:
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == response.status_code
        assert problem["type"].startswith("https://")
    else:
        assert uuid.UUID(response.json()["command_id"])


async def test_deep_nesting_and_amounts_beyond_money_are_client_errors(
    http: httpx.AsyncClient, token_for: Any
) -> None:
    headers = {
        "Authorization": token_for("customers:write", "orders:write"),
        "content-type": "application/json",
    }
    deep = b'{"command_id": "%s", "payload": ' % str(uuid.uuid4()).encode() + b"[" * 100_000
    response = await http.post("/v1/commands", content=deep, headers=headers)
    assert response.status_code in (400, 413)
    register = {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterCustomer",
        "aggregate_id": "c-1",
        "payload": {"name": "Ada", "email": "ada@example.com"},
    }
    assert (await http.post("/v1/commands", json=register, headers=headers)).status_code == 200
    huge = {
        "command_id": str(uuid.uuid4()),
        "type": "PlaceOrder",
        "aggregate_id": "o-1",
        "payload": {
            "customer_id": "c-1",
            "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1_000_000, "unit_price": "999999999999.99"}],
        },
    }
    response = await http.post("/v1/commands", json=huge, headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "rule_violated"
