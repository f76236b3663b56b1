"""Values by column type: rendering, filter validation, cursor values."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from cqrs_shared.read_models.shop import ORDERS
from query_svc.codec import cursor_value, parameter_type, parse_cursor_value
from query_svc.declarations import Column, ColumnType


def column(name: str) -> Column:
    found = ORDERS.column(name)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("total", "NaN"),
        ("total", "1e400"),
        ("total", "0.001"),
        ("total", "1" * 37 + ".00"),
        ("line_count", "2147483648"),
        ("placed_at", "2024-01-01T00:00:00"),
        ("placed_at", "0001-01-01T00:00:00+01:00"),
        ("placed_at", "1700000000"),
        ("placed_at", "-0.5"),
        ("placed_at", "2024-13-01T00:00:00Z"),
        ("customer_id", "a\x00b"),
        ("status", "lost"),
    ],
)
def test_filter_values_postgresql_would_refuse_fail_validation(name: str, raw: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(parameter_type(column(name))).validate_python(raw)


def test_money_filters_are_not_bound_to_a_column_precision() -> None:
    amount = TypeAdapter(parameter_type(column("total"))).validate_python("123456789012345678.90")
    assert amount == Decimal("123456789012345678.90")


def test_filter_timestamps_are_normalised_to_utc() -> None:
    value = TypeAdapter(parameter_type(column("placed_at"))).validate_python("2024-01-01T01:00:00+01:00")
    assert value == datetime(2024, 1, 1, tzinfo=UTC)
    assert value.tzinfo == UTC


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("placed_at", datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
        ("total", Decimal("10.05")),
        ("total", Decimal("123456789012345678.90")),
        ("id", "o-1"),
    ],
)
def test_cursor_values_round_trip_exactly(name: str, value: Any) -> None:
    assert parse_cursor_value(column(name), cursor_value(column(name), value)) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("placed_at", "2024-01-01T00:00:00"),
        ("placed_at", None),
        ("total", "Infinity"),
        ("total", 5),
        ("id", 5),
    ],
)
def test_cursor_values_of_the_wrong_shape_are_refused(name: str, raw: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # each case fails with its own message
        parse_cursor_value(column(name), raw)


def test_integer_cursor_values_respect_the_column_range() -> None:
    count = Column("count", ColumnType.INTEGER)
    assert parse_cursor_value(count, 5) == 5
    for bad in (2**31, True, "5"):
        with pytest.raises(ValueError, match=r"not a value|out of range"):
            parse_cursor_value(count, bad)
