"""SQL for declared views. Identifiers come only from declarations; every value is a bind parameter.

Pages use keyset pagination: `ORDER BY <column> <dir>, <key> <dir>` and a predicate "strictly
after the last row" on the same pair, so a page boundary never repeats or skips a row that existed
when the walk started and kept its sort value, however many rows are inserted meanwhile. NULLs
sort as PostgreSQL's defaults do (last ascending, first descending), so a `(column, key)` index
serves both directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cqrs_shared.read_models.notifications import READ_SCHEMA, read_view_name
from query_svc.declarations import Column, ColumnType, View

#: Comparison operators a condition may use (never taken from a request).
OPERATORS = frozenset({"=", "in", ">", ">=", "<", "<="})


def quote(identifier: str) -> str:
    """A declared identifier, quoted (declarations guarantee `[a-z][a-z0-9_]*`)."""
    return f'"{identifier}"'


def relation(view: View) -> str:
    """The view's relation for readers (`read.<table>`, the shared naming rule)."""
    return f"{READ_SCHEMA}.{quote(read_view_name(view.projection.name, view.name))}"


@dataclass(frozen=True, slots=True)
class Condition:
    """`column <operator> value`; `in` takes a list of values."""

    column: Column
    operator: str
    value: Any

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"unsupported operator {self.operator!r}")


@dataclass(frozen=True, slots=True)
class SortOrder:
    """Order by `column` (then the view's key) in one direction."""

    column: Column
    descending: bool

    @classmethod
    def parse(cls, view: View, text: str) -> SortOrder:
        """`placed_at` or `-placed_at`; ValueError for anything `view.sort_options` lacks."""
        if text not in view.sort_options:
            raise ValueError(f"cannot sort {view.name} by {text!r}")
        return cls(view.declared(text.removeprefix("-")), text.startswith("-"))

    @property
    def text(self) -> str:
        return f"-{self.column.name}" if self.descending else self.column.name


@dataclass
class _Arguments:
    #: Parameters before these (`$1 .. $offset`) belong to the statement this one is joined into.
    offset: int = 0
    values: list[Any] = field(default_factory=list)

    def add(self, value: Any, column: Column, *, array: bool = False) -> str:
        self.values.append(value)
        return f"${self.offset + len(self.values)}::{column.type.value}{'[]' if array else ''}"


#: RFC 3339 in UTC with microseconds: fixed width, so equal instants render equal text.
_TIMESTAMP_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def _rendered(column: Column) -> str:
    name = f"r.{quote(column.name)}"
    if column.type is ColumnType.MONEY:
        return f"round({name}, 2)::text"
    if column.type is ColumnType.TIMESTAMP:
        return f"to_char({name} AT TIME ZONE 'UTC', '{_TIMESTAMP_FORMAT}')"
    return name


def _select_list(view: View, sort: Column) -> str:
    """`_json`: the row as the API shows it (declared columns only, money as a two-place decimal
    string, time as RFC 3339 UTC), rendered by PostgreSQL so Python never touches the values;
    `_key` and `_sort`: the raw key and sort value, for cursors."""
    rendered = ", ".join(f"{_rendered(c)} AS {quote(c.name)}" for c in view.columns)
    return (
        f"(SELECT row_to_json(j) FROM (SELECT {rendered}) AS j)::text AS _json, "  # noqa: S608  # declared identifiers
        f"r.{quote(view.key)} AS _key, r.{quote(sort.name)} AS _sort"
    )


def select_item(view: View, *, parameter: int = 1) -> str:
    """One row by key (`$<parameter>`), as `_json`, `_key`, `_sort`."""
    columns = _select_list(view, view.key_column)
    return f"SELECT {columns} FROM {relation(view)} AS r WHERE r.{quote(view.key)} = ${parameter}"  # noqa: S608  # declared identifiers


def exists_item(view: View, *, parameter: int = 1) -> str:
    """A boolean expression: the view has a row with key `$<parameter>`."""
    return f"EXISTS (SELECT 1 FROM {relation(view)} WHERE {quote(view.key)} = ${parameter})"  # noqa: S608  # declared identifiers


def joined_to(head: str, data: str, order_by: str = "") -> str:
    """`head` (one row) left-joined laterally to `data`: one statement, one snapshot. When `data`
    yields nothing, a single row with NULL data columns comes back."""
    return f"SELECT h.*, d.* FROM ({head}) AS h LEFT JOIN LATERAL ({data}) AS d ON true{order_by}"  # noqa: S608  # generated from declarations


def joined_to_page(head: str, data: str, order_by: str, limit_parameter: str) -> str:
    """`head` (one row) with one page of `data` (which fetches up to `limit_parameter` rows, the
    page size plus one) folded by PostgreSQL into one row: `_items`, the page's rows' `_json`
    joined by commas as UTF-8 bytes (NULL when empty), `_rows` (how many `data` found, so
    `_rows` = `limit_parameter` means another page follows), and `_last_key` / `_last_sort` of
    the page's last row, for its cursor. One statement, one snapshot; the response body is
    spliced from `_items` without decoding a row in Python. `order_by` is the one `select_page`
    returns: the rows are numbered in the page's own order."""
    numbered = f"SELECT d.*, row_number() OVER ({order_by.strip()}) AS _n FROM ({data}) AS d"  # noqa: S608  # generated from declarations
    last = f"{limit_parameter} - 1"
    page_rows = f"FILTER (WHERE n._n <= {last})"
    folded = ", ".join(
        (
            f"convert_to(string_agg(n._json, ',' ORDER BY n._n) {page_rows}, 'UTF8') AS _items",
            "count(*) AS _rows",
            f"(array_agg(n._key) FILTER (WHERE n._n = {last}))[1] AS _last_key",
            f"(array_agg(n._sort) FILTER (WHERE n._n = {last}))[1] AS _last_sort",
        )
    )
    page = f"SELECT {folded} FROM ({numbered}) AS n"  # noqa: S608  # generated from declarations
    return f"SELECT h.*, p.* FROM ({head}) AS h CROSS JOIN LATERAL ({page}) AS p"  # noqa: S608  # generated from declarations


def _condition_sql(condition: Condition, args: _Arguments) -> str:
    name = quote(condition.column.name)
    if condition.operator == "in":
        return f"{name} = ANY({args.add(list(condition.value), condition.column, array=True)})"
    return f"{name} {condition.operator} {args.add(condition.value, condition.column)}"


def _after_sql(view: View, order: SortOrder, sort_value: Any, key: str, args: _Arguments) -> str:
    """Rows strictly after (sort_value, key) in `order`, NULLs placed as PostgreSQL places them."""
    comparison = "<" if order.descending else ">"
    key_column = view.key_column
    key_name = quote(view.key)
    if order.column.name == view.key:
        return f"{key_name} {comparison} {args.add(key, key_column)}"
    name = quote(order.column.name)
    if not order.column.nullable:
        value_arg, key_arg = args.add(sort_value, order.column), args.add(key, key_column)
        return f"({name}, {key_name}) {comparison} ({value_arg}, {key_arg})"
    if sort_value is None:
        # The last row was in the NULL group: ascending, only the rest of that group follows;
        # descending (NULLs first), the rest of the group and then every non-null row.
        rest = f"({name} IS NULL AND {key_name} {comparison} {args.add(key, key_column)})"
        return f"({rest} OR {name} IS NOT NULL)" if order.descending else rest
    value_arg, key_arg = args.add(sort_value, order.column), args.add(key, key_column)
    after = (
        f"({name} {comparison} {value_arg} OR ({name} = {value_arg} AND {key_name} {comparison} {key_arg}))"
    )
    return after if order.descending else f"({after} OR {name} IS NULL)"


def _order_by(view: View, order: SortOrder) -> str:
    direction = "DESC" if order.descending else "ASC"
    terms = [f"r.{quote(order.column.name)} {direction}"]
    if order.column.name != view.key:
        terms.append(f"r.{quote(view.key)} {direction}")
    return " ORDER BY " + ", ".join(terms)


def select_page(
    view: View,
    conditions: list[Condition],
    order: SortOrder,
    after: tuple[Any, str] | None,
    limit: int,
    *,
    offset: int = 0,
) -> tuple[str, list[Any], str]:
    """Up to `limit` rows matching every condition, after the keyset position `after` if given.

    Returns the SQL, its arguments (numbered from `$<offset + 1>`) and the ORDER BY an enclosing
    statement must repeat on the alias `d` (see `joined_to_page`)."""
    args = _Arguments(offset)
    clauses = [_condition_sql(c, args) for c in conditions]
    if after is not None:
        clauses.append(_after_sql(view, order, after[0], after[1], args))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    limit_arg = f"${offset + len(args.values) + 1}"
    args.values.append(limit)
    columns = _select_list(view, order.column)
    sql = f"SELECT {columns} FROM {relation(view)} AS r{where}{_order_by(view, order)} LIMIT {limit_arg}"  # noqa: S608  # declared identifiers, values bound
    direction = "DESC" if order.descending else "ASC"
    return sql, args.values, f" ORDER BY d._sort {direction}, d._key {direction}"
