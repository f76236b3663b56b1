"""Generated SQL: identifiers from declarations only, every value a bind parameter."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS
from query_svc.sql import Condition, SortOrder, select_item, select_page

HOSTILE = "x'); DROP TABLE read.orders; --"


def test_values_never_appear_in_the_sql_text() -> None:
    status, total = ORDERS.column("status"), ORDERS.column("total")
    assert status is not None and total is not None
    sql, args, outer = select_page(
        ORDERS,
        [Condition(status, "in", [HOSTILE, "placed"]), Condition(total, ">=", Decimal("5.00"))],
        SortOrder.parse(ORDERS, "-placed_at"),
        (datetime(2024, 1, 1, tzinfo=UTC), HOSTILE),
        51,
    )
    assert HOSTILE not in sql
    assert args == [[HOSTILE, "placed"], Decimal("5.00"), datetime(2024, 1, 1, tzinfo=UTC), HOSTILE, 51]
    assert '"status" = ANY($1::text[])' in sql
    assert '("placed_at", "id") < ($3::timestamptz, $4::text)' in sql
    assert sql.endswith('ORDER BY r."placed_at" DESC, r."id" DESC LIMIT $5')
    assert outer == " ORDER BY d._sort DESC, d._key DESC"


def test_an_item_read_renders_declared_columns_by_key() -> None:
    sql = select_item(CUSTOMERS)
    assert 'SELECT r."id" AS "id", r."name" AS "name", r."email" AS "email"' in sql
    assert 'round(r."lifetime_value", 2)::text' in sql
    assert sql.endswith('FROM read."customers" AS r WHERE r."id" = $1')


@pytest.mark.parametrize(
    ("sort", "after", "expected"),
    [
        ("registered_at", (None, "c-1"), '("registered_at" IS NULL AND "id" > $1::text)'),
        (
            "-registered_at",
            (None, "c-1"),
            '(("registered_at" IS NULL AND "id" < $1::text) OR "registered_at" IS NOT NULL)',
        ),
        ("id", (None, "c-1"), '"id" > $1::text'),
    ],
)
def test_nullable_sort_columns_get_a_null_aware_keyset_predicate(
    sort: str, after: tuple[None, str], expected: str
) -> None:
    sql, _, _ = select_page(CUSTOMERS, [], SortOrder.parse(CUSTOMERS, sort), after, 10)
    assert f"WHERE {expected} ORDER BY" in sql


def test_an_undeclared_sort_or_operator_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot sort"):
        SortOrder.parse(ORDERS, "email")
    status = ORDERS.column("status")
    assert status is not None
    with pytest.raises(ValueError, match="operator"):
        Condition(status, "LIKE", "%")
