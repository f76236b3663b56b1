"""schemathesis against the live OpenAPI of a running query service: no server error, every response
conforms to the documented schema (status, content type, headers, body)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS
from query_svc.app import create_app
from query_svc.settings import QuerySettings
from query_svc.testing import insert_rows, serve_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture
async def seeded_dsn(
    shop_dsn: str,
    admin: asyncpg.Connection[asyncpg.Record],
    make_customer: Callable[..., dict[str, Any]],
    make_order: Callable[..., dict[str, Any]],
) -> str:
    await insert_rows(admin, "shop_b1", CUSTOMERS, [make_customer(f"c-{i}", i) for i in range(30)])
    await insert_rows(admin, "shop_b1", ORDERS, [make_order(f"o-{i}", f"c-{i % 30}", i) for i in range(120)])
    return shop_dsn


@pytest.fixture
def live_url(seeded_dsn: str, settings_for: Callable[..., QuerySettings]) -> Iterator[str]:
    # Token waits are bounded short so generated tokens cannot slow the run down.
    app = create_app(settings_for(seeded_dsn, wait_default_ms=50, wait_max_ms=100))
    with serve_in_thread(app) as url:
        yield url


def test_the_live_api_conforms_to_its_openapi(live_url: str, readers: dict[str, str]) -> None:
    # `positive_data_acceptance` is left out on purpose: a cursor or consistency token that matches
    # its documented pattern is still refused (400) unless this service signed or issued it.
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    # Streams never end by design; they have their own tests.
    results = list(schema.exclude(path_regex=r"/stream$").get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the live OpenAPI has operations schemathesis cannot read"
    assert {op.path for op in operations} >= {
        "/v1/orders",
        "/v1/customers/{item_id}/orders",
        "/v1/orders/{item_id}",
    }
    for operation in operations:
        documented = schema.raw_schema["paths"][operation.path][operation.method.lower()]
        # Operations without parameters have no invalid input to generate.
        modes = [GenerationMode.POSITIVE] + (
            [GenerationMode.NEGATIVE] if documented.get("parameters") else []
        )
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def conforms(case: Any) -> None:
                case.call_and_validate(headers=readers, excluded_checks=[positive_data_acceptance])

            conforms()
