"""Declarations are checked once, when built: a bad one never reaches a request."""

from __future__ import annotations

import dataclasses

import pytest

from cqrs_shared.read_models.shop import CUSTOMERS, DEFINITION, ORDERS
from query_svc.declarations import (
    Catalog,
    Column,
    ColumnType,
    DeclarationError,
    Filter,
    Index,
    Projection,
    Relation,
    View,
    range_parameters,
)

PROJECTION = Projection("tally", ("tally",))
KEY = Column("id", ColumnType.TEXT)


def view(*columns: Column, **overrides: object) -> View:
    values: dict[str, object] = {
        "name": "tallies",
        "item_name": "Tally",
        "projection": PROJECTION,
        "aggregate_type": "tally",
        "read_role": "tallies:read",
        "columns": (KEY, *columns),
        "default_sort": "id",
        **overrides,
    }
    return View(**values)  # type: ignore[arg-type]  # a deliberately loose builder


def test_a_second_domain_needs_only_a_declaration() -> None:
    tallies = view(
        Column("count", ColumnType.INTEGER, filters=frozenset({Filter.RANGE}), sortable=True),
        indexes=(Index("tallies_count", ("count", "id")),),
    )
    assert tallies.sort_options == ("id", "-id", "count", "-count")
    assert tallies.filter_parameter_names() == ("min_count", "max_count")
    assert Catalog((tallies,)).projections == (PROJECTION,)


def test_range_parameters_are_named_after_the_column() -> None:
    placed, total = ORDERS.column("placed_at"), ORDERS.column("total")
    assert placed is not None and total is not None
    assert [(p.name, p.operator) for p in range_parameters(placed)] == [
        ("placed_after", ">"),
        ("placed_before", "<"),
    ]
    assert [(p.name, p.operator) for p in range_parameters(total)] == [
        ("min_total", ">="),
        ("max_total", "<="),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: view(name="Robert'); DROP TABLE students;--"),
        lambda: view(Column("bad name", ColumnType.TEXT)),
        lambda: view(Column("lines", ColumnType.JSON, sortable=True)),
        lambda: view(Column("lines", ColumnType.JSON, filters=frozenset({Filter.EQUALS}))),
        lambda: view(Column("label", ColumnType.TEXT, filters=frozenset({Filter.RANGE}))),
        lambda: view(Column("limit", ColumnType.TEXT, filters=frozenset({Filter.EQUALS}))),
        lambda: view(default_sort="count"),
        lambda: view(key="missing"),
        lambda: view(aggregate_type="order"),
        lambda: view(changed_by=("order",)),
        lambda: view(default_limit=600),
        lambda: view(Column("count", ColumnType.INTEGER, sortable=True)),
        lambda: view(indexes=(Index("tallies_missing", ("missing", "id")),)),
        lambda: Relation("stream", parent=CUSTOMERS, child=ORDERS, foreign_key="customer_id"),
        lambda: Relation("orders", parent=CUSTOMERS, child=ORDERS, foreign_key="total"),
        lambda: Catalog((CUSTOMERS, CUSTOMERS)),
    ],
)
def test_an_inconsistent_declaration_is_refused(bad: object) -> None:
    with pytest.raises(DeclarationError):
        bad()  # type: ignore[operator]  # each case is a zero-argument builder


def test_the_shop_catalog_sorts_only_on_indexed_columns() -> None:
    # The projector's migration indexes (registered_at, id), (placed_at, id) and (total, id).
    sortable = {(v.name, c.name) for v in DEFINITION.catalog.views for c in v.columns if c.sortable}
    assert sortable == {("customers", "registered_at"), ("orders", "placed_at"), ("orders", "total")}
    assert dataclasses.replace(ORDERS, max_limit=50).max_limit == 50
