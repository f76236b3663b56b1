"""The `products` read model: its declaration (table, HTTP view) and how each event changes a row."""

from __future__ import annotations

from pathlib import Path

from cqrs_shared.read_models import (
    Column,
    ColumnType,
    Fact,
    Filter,
    Index,
    Projection,
    ProjectionDefinition,
    ReadModel,
    Row,
    RowFold,
    existing,
    stamped,
)
from tests.example_domain import product_contracts as p

PRODUCTS_PROJECTION = Projection("products", aggregate_types=(p.PRODUCT,))

PRODUCTS = ReadModel(
    name="products",
    item_name="Product",
    description="Products and their current price.",
    projection=PRODUCTS_PROJECTION,
    aggregate_type=p.PRODUCT,
    read_role="products:read",
    default_sort="name",
    columns=(
        Column("id", ColumnType.TEXT, "Product id", filters=frozenset({Filter.EQUALS}), max_length=128),
        Column("name", ColumnType.TEXT, "Product name", sortable=True),
        Column("price", ColumnType.MONEY, "Current price", filters=frozenset({Filter.RANGE}), sortable=True),
        Column(
            "currency", ColumnType.TEXT, "ISO 4217 code", filters=frozenset({Filter.EQUALS}), max_length=3
        ),
        Column("registered_at", ColumnType.TIMESTAMP, "When registered"),
        Column("updated_at", ColumnType.TIMESTAMP, "When the product last changed"),
        Column("version", ColumnType.BIGINT, "Aggregate version this row reflects"),
    ),
    indexes=(Index("products_name", ("name", "id")), Index("products_price", ("price", "id"))),
)

products = RowFold(PRODUCTS)


@products.on(p.ProductRegistered)
def _registered(_row: Row | None, fact: Fact[p.ProductRegistered]) -> Row:
    e = fact.payload
    return stamped(
        {},
        fact,
        id=fact.aggregate_id,
        name=e.name,
        price=e.price,
        currency=e.currency,
        registered_at=fact.occurred_at,
    )


@products.on(p.PriceChanged)
def _price_changed(row: Row | None, fact: Fact[p.PriceChanged]) -> Row:
    return stamped(existing(row, fact), fact, price=fact.payload.price)


DEFINITION = ProjectionDefinition(
    projection=PRODUCTS_PROJECTION,
    folds=(products,),
    migrations=(Path(__file__).parent / "products_0001_initial.sql",),
    upcasters=p.UPCASTERS,
)
