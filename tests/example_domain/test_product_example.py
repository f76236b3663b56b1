"""The `Product` example: contracts, one domain module and one read-model declaration (+ its
migration) are all a new aggregate with a read model and an HTTP view takes.

It runs through the real services in-process: command-svc (memory write store) decides and
publishes, one projector process runs the shop and the products projection side by side (each with
its own consumer group, build and checkpoints), query-svc serves `/v1/products` from the declaration.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from command_svc.app import create_app as command_app
from command_svc.settings import CommandServiceSettings
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.read_models.shop import DEFINITION as SHOP
from projector_svc import operations
from projector_svc.app import create_app as projector_app
from projector_svc.settings import ProjectorSettings
from projector_svc.testing.projection_contract import ProjectionContract, Rows
from query_svc.app import create_app as query_app
from query_svc.settings import QuerySettings
from query_svc.testing import serve_in_process
from tests.example_domain import product_contracts as p
from tests.example_domain.product_domain import PRODUCT_AGGREGATE
from tests.example_domain.products_read_model import DEFINITION

pytestmark = pytest.mark.integration

_T0 = datetime(2026, 4, 1, tzinfo=UTC)

#: Every file the example took. A new aggregate with a read model and its HTTP view needs nothing
#: else: a file added here means the platform got harder to extend.
EXAMPLE_FILES = {
    "product_contracts.py": "the commands, events and the upcaster of ProductRegistered v1",
    "product_domain.py": "decide and evolve (command-svc's AggregateDefinition)",
    "products_read_model.py": "table, HTTP view and row handlers",
    "products_0001_initial.sql": "the migration creating the table (checked against the declaration)",
}


def test_the_example_took_exactly_its_contracts_domain_module_read_model_and_migration() -> None:
    here = Path(__file__).parent
    files = {f.name for f in here.iterdir() if f.is_file()} - {"__init__.py", Path(__file__).name}
    assert files == set(EXAMPLE_FILES)


def _event(ident: str, version: int, payload: Any, *, schema_version: int | None = None) -> EventEnvelope:
    body = payload if isinstance(payload, dict) else payload.model_dump(mode="json")
    return EventEnvelope(
        event_id=EventEnvelope.id_for(p.PRODUCT, ident, version),
        type=payload.TYPE if not isinstance(payload, dict) else p.ProductRegistered.TYPE,
        schema_version=schema_version or (1 if isinstance(payload, dict) else payload.SCHEMA_VERSION),
        aggregate_type=p.PRODUCT,
        aggregate_id=ident,
        version=version,
        occurred_at=_T0 + timedelta(seconds=version),
        correlation_id=f"c-{ident}",
        causation_id=f"k-{ident}-{version}",
        payload=body,
    )


def _history(seed: int, size: int) -> list[EventEnvelope]:
    """Products registered (some as schema version 1 events) and repriced, interleaved."""
    rng = random.Random(seed)  # reproducible test data
    versions: dict[str, int] = {}
    out: list[EventEnvelope] = []
    while len(out) < size:
        if not versions or rng.random() < 0.3:
            ident = f"p{len(versions) + 1}"
            versions[ident] = 1
            price = Decimal(rng.randint(100, 99999)) / 100
            if rng.random() < 0.5:  # written by the release before currencies
                out.append(_event(ident, 1, {"name": f"Product {ident}", "price": f"{price:.2f}"}))
            else:
                out.append(
                    _event(
                        ident, 1, p.ProductRegistered(name=f"Product {ident}", price=price, currency="USD")
                    )
                )
            continue
        ident = rng.choice(sorted(versions))
        versions[ident] += 1
        out.append(_event(ident, versions[ident], p.PriceChanged(price=Decimal(rng.randint(1, 9999)) / 100)))
    return out


def _reference(events: Sequence[EventEnvelope]) -> Rows:
    rows: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: (e.aggregate_id, e.version)):
        if e.type == p.ProductRegistered.TYPE:
            rows[e.aggregate_id] = {
                "id": e.aggregate_id,
                "name": e.payload["name"],
                "currency": e.payload.get("currency", "EUR"),
                "registered_at": e.occurred_at,
            }
        rows[e.aggregate_id] |= {
            "price": Decimal(e.payload["price"]),
            "updated_at": e.occurred_at,
            "version": e.version,
        }
    return {"products": rows}


class TestProductsProjection(ProjectionContract):
    """The products projection passes the same contract as the shop's; half of every history is
    schema version 1 `ProductRegistered` events, which the v2 handler only sees lifted."""

    definition = DEFINITION

    def history(self, seed: int) -> list[EventEnvelope]:
        return _history(seed, self.history_size)

    def reference(self, events: Sequence[EventEnvelope]) -> Rows:
        return _reference(events)

    async def test_v1_events_replay_through_the_v2_handler(self, build: tuple[Any, str]) -> None:
        connection, schema = build
        v1 = [
            _event("old", 1, {"name": "Kettle", "price": "19.90"}),
            _event("old", 2, p.PriceChanged(price=Decimal("17.50"))),
        ]
        await self.deliver(connection, schema, v1)
        row = dict(await connection.fetchrow(f'SELECT * FROM "{schema}".products WHERE id = $1', "old"))  # noqa: S608  # the build schema
        assert (row["name"], row["currency"], row["price"], row["version"]) == (
            "Kettle",
            "EUR",
            Decimal("17.50"),
            2,
        )

    async def test_a_newer_schema_version_is_still_refused(self) -> None:
        projection = self.make_projection()
        newer = _event("new", 1, {"name": "Kettle", "price": "1.00", "currency": "EUR"}, schema_version=3)
        with pytest.raises(Exception, match="newer than 2"):
            projection.check(newer)
        assert projection.handles(p.ProductRegistered.TYPE) and not projection.handles("ProductDiscontinued")


async def test_a_product_goes_from_its_command_to_its_http_view_beside_the_shop(
    kafka_bootstrap: str, pg_database: str, topic_prefix: str, unique: str
) -> None:
    commands = command_app(
        CommandServiceSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=topic_prefix,
            write_store="memory",
            auth_mode="disabled",
            relay_scan_interval_seconds=0.2,
            instance_id=f"test-{unique}",
        ),
        aggregates=[PRODUCT_AGGREGATE],
    )
    projector_settings = ProjectorSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=pg_database,
        topic_prefix=topic_prefix,
        consumer_group=f"projector-{unique}",
        fetch_timeout_ms=100,
    )
    projector = projector_app(projector_settings, definitions=[SHOP, DEFINITION])
    queries = query_app(
        QuerySettings(database_url=pg_database, listen_database_url=pg_database, auth_mode="disabled"),
        catalog=DEFINITION.catalog,
    )
    async with (
        commands.router.lifespan_context(commands),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=commands), base_url="http://command") as command,
        projector.router.lifespan_context(projector),
    ):
        registered = await _send(
            command, "RegisterProduct", {"name": "Kettle", "price": "19.90", "currency": "EUR"}
        )
        repriced = await _send(command, "ChangePrice", {"price": "17.50"})
        assert (registered["version"], repriced["version"]) == (1, 2)
        async with serve_in_process(queries) as query:
            read = await query.get("/v1/products/p-1", params={"after": repriced["consistency_token"]})
            page = await query.get("/v1/products", params={"max_price": "20", "sort": "-price"})
            spec = (await query.get("/openapi.json")).json()

        service = projector.state.service
        assert [projection.name for projection in service.projections] == ["shop", "products"]
        # Each projection rebuilds on its own: products gets a second build, shop keeps its first.
        rebuilt = await operations.rebuild(projector_settings, DEFINITION)

    assert read.status_code == 200, read.text
    body = read.json()
    assert (body["name"], body["price"], body["currency"], body["version"]) == ("Kettle", "17.50", "EUR", 2)
    assert [item["id"] for item in page.json()["items"]] == ["p-1"]
    assert "Product" in spec["components"]["schemas"] and "/v1/products/{item_id}" in spec["paths"]
    connection = await asyncpg.connect(pg_database)
    try:
        builds = await connection.fetch(
            "SELECT projection, schema_name, status FROM projector.builds ORDER BY 1, 2"
        )
        # Two projections in one process: each its own build, checkpoints and consumer group.
        assert [tuple(b) for b in builds] == [
            ("products", "products_b1", "retired"),
            ("products", "products_b2", "active"),
            ("shop", "shop_b1", "active"),
        ]
        assert rebuilt.schema == "products_b2"
        assert await connection.fetchval("SELECT count(*) FROM products_b2.products") == 1
        assert await connection.fetchval("SELECT count(*) FROM products_b2.partition_offsets") > 0
        assert await connection.fetchval("SELECT count(*) FROM shop_b1.partition_offsets") == 0
    finally:
        await connection.close()
    assert projector_settings.group_id_for("products") != projector_settings.group_id_for("shop")


async def _send(client: httpx.AsyncClient, kind: str, payload: dict[str, str]) -> dict[str, Any]:
    envelope = {"command_id": str(uuid.uuid4()), "type": kind, "aggregate_id": "p-1", "payload": payload}
    response = await client.post("/v1/commands", json=envelope)
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()
    return outcome
