"""Projection definitions are checked when built, and found by name."""

from __future__ import annotations

import dataclasses

import pytest

from cqrs_shared.contracts import shop as c
from cqrs_shared.read_models import DeclarationError, ProjectionDefinition, RowFold, definition_named
from cqrs_shared.read_models.shop import CUSTOMERS, DEFINITION, SHOP


def test_a_projection_is_found_by_name_and_an_unknown_or_unsafe_name_is_refused() -> None:
    assert definition_named("shop") is DEFINITION
    for bad in ("nothing_here", "notifications", "Shop; DROP"):
        with pytest.raises(ValueError, match="projection"):
            definition_named(bad)


def test_the_shop_definition_routes_every_shop_event_to_exactly_one_read_model() -> None:
    routed = [m for fold in DEFINITION.folds for m in fold.events]
    assert sorted(m.TYPE for m in routed) == sorted(m.TYPE for m in (*c.CUSTOMER_EVENTS, *c.ORDER_EVENTS))
    assert [v.name for v in DEFINITION.catalog.views] == ["customers", "orders"]


def test_a_handler_twice_or_an_event_feeding_two_read_models_is_refused() -> None:
    fold = RowFold(CUSTOMERS)
    fold.on(c.CustomerRenamed)(lambda row, fact: row or {})
    with pytest.raises(DeclarationError, match="twice"):
        fold.on(c.CustomerRenamed)(lambda row, fact: row or {})
    other = RowFold(dataclasses.replace(CUSTOMERS, name="people"))
    other.on(c.CustomerRenamed)(lambda row, fact: row or {})
    with pytest.raises(DeclarationError, match="two read models"):
        ProjectionDefinition(SHOP, (fold, other), migrations=())
