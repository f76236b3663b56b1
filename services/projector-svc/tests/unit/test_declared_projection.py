"""Typed dispatch of a declared projection, without a database: a fake connection records the SQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from cqrs_shared.contracts import shop as c
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.read_models import EventRejectedError, Fact, ProjectionDefinition, Row, RowFold, stamped
from cqrs_shared.read_models.shop import CUSTOMERS, SHOP
from projector_svc.declared import DeclaredProjection


class _RecordingConnection:
    """Every load finds no rows; every statement is kept with its arguments."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return []

    async def execute(self, sql: str, *args: Any) -> str:
        self.statements.append((sql, args))
        return "OK"


def _event(
    payload: Any, ident: str = "c-1", version: int = 1, aggregate_type: str = c.CUSTOMER
) -> EventEnvelope:
    return EventEnvelope(
        event_id=EventEnvelope.id_for(aggregate_type, ident, version),
        type=payload.TYPE,
        schema_version=payload.SCHEMA_VERSION,
        aggregate_type=aggregate_type,
        aggregate_id=ident,
        version=version,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        correlation_id="x",
        causation_id="y",
        payload=payload.model_dump(mode="json"),
    )


def _two_read_models_of_one_aggregate() -> DeclaredProjection:
    """`customers` takes registrations, `renames` (the same aggregate) takes renames."""
    names = RowFold(CUSTOMERS)
    renames = RowFold(dataclasses.replace(CUSTOMERS, name="renames"))

    @names.on(c.CustomerRegistered)
    def _registered(_row: Row | None, fact: Fact[c.CustomerRegistered]) -> Row:
        return stamped({}, fact, id=fact.aggregate_id, name=fact.payload.name, status="registered")

    @renames.on(c.CustomerRenamed)
    def _renamed(_row: Row | None, fact: Fact[c.CustomerRenamed]) -> Row:
        return stamped({}, fact, id=fact.aggregate_id, name=fact.payload.name, status="renamed")

    return DeclaredProjection(ProjectionDefinition(SHOP, (names, renames), migrations=()))


async def test_each_event_reaches_only_the_read_model_whose_fold_registered_its_type() -> None:
    projection = _two_read_models_of_one_aggregate()
    connection = _RecordingConnection()
    events = [
        _event(c.CustomerRegistered(name="Ada", email="a@example.com")),
        _event(c.CustomerRenamed(name="B"), version=2),
    ]
    await projection.apply(connection, events)  # type: ignore[arg-type]  # the fake offers what apply uses
    written = {sql.split('"')[1]: args for sql, args in connection.statements if sql.startswith("INSERT")}
    assert set(written) == {"customers", "renames"}
    names = [c.name for c in CUSTOMERS.columns].index("name")
    assert written["customers"][names] == ["Ada"]
    assert written["renames"][names] == ["B"]


def test_an_unknown_type_is_not_handled_and_a_wrong_aggregate_or_newer_version_is_refused() -> None:
    projection = _two_read_models_of_one_aggregate()
    assert not projection.handles(c.CustomerDeleted.TYPE)
    with pytest.raises(EventRejectedError, match="belongs to customer"):
        projection.check(_event(c.CustomerRenamed(name="B"), aggregate_type=c.ORDER))
    newer = _event(c.CustomerRenamed(name="B")).model_copy(update={"schema_version": 2})
    with pytest.raises(EventRejectedError, match="newer than 1"):
        projection.check(newer)


async def test_apply_uses_the_fact_check_validated_and_validates_an_unchecked_event_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    projection = _two_read_models_of_one_aggregate()
    lifted: list[str] = []
    lift = projection.definition.upcasters.lift

    def counting_lift(model: Any, schema_version: int, payload: dict[str, Any]) -> dict[str, Any]:
        lifted.append(model.TYPE)
        return lift(model, schema_version, payload)

    monkeypatch.setattr(projection.definition.upcasters, "lift", counting_lift)
    checked = _event(c.CustomerRegistered(name="Ada", email="a@example.com"))
    projection.check(checked)
    # Equal to the checked one but another object: its own payload counts, not the memo's.
    twin = checked.model_copy(update={"payload": {"name": "Bea", "email": "b@example.com"}})
    connection = _RecordingConnection()
    await projection.apply(connection, [checked])  # type: ignore[arg-type]  # the fake offers what apply uses
    await projection.apply(connection, [twin])  # type: ignore[arg-type]  # the fake offers what apply uses
    assert lifted == [c.CustomerRegistered.TYPE, c.CustomerRegistered.TYPE]  # check once, twin once
    names = [c.name for c in CUSTOMERS.columns].index("name")
    inserts = [args for sql, args in connection.statements if sql.startswith('INSERT INTO "customers"')]
    assert [args[names] for args in inserts] == [["Ada"], ["Bea"]]
