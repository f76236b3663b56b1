"""Read models declared once: the table the projector writes and the view the query service serves.

A `ReadModel` names its table (exposed to readers as `read.<name>`), its typed columns, key and
indexes, which columns clients may filter and sort on, and which aggregate types feed it. The
projector derives its row reads and writes from it; the query service its HTTP routes, OpenAPI
schemas, SQL and cursor format; a test checks the projector's migrations create exactly these
columns and indexes. Identifiers are checked here, once, when a declaration is built: both
services quote them into SQL and never put a user-supplied string anywhere but a bind parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cqrs_shared.read_models.identifiers import DeclarationError, check_identifier

#: Query parameters every collection route has; a filter may not take one of these names.
RESERVED_PARAMETERS = frozenset({"limit", "cursor", "sort", "after", "max_wait_ms"})
#: Path segments under an item that routes use themselves.
RESERVED_SEGMENTS = frozenset({"stream"})


class ColumnType(StrEnum):
    """How a column is stored, filtered and rendered (money: decimal string, time: RFC 3339 UTC)."""

    TEXT = "text"
    INTEGER = "integer"
    BIGINT = "bigint"
    MONEY = "numeric"
    TIMESTAMP = "timestamptz"
    JSON = "jsonb"

    def sql(self, precision: int) -> str:
        """The column's PostgreSQL type as `format_type` spells it (money carries its precision)."""
        if self is ColumnType.MONEY:
            return f"numeric({precision},2)"
        return {ColumnType.TIMESTAMP: "timestamp with time zone"}.get(self, self.value)

    @property
    def orderable(self) -> bool:
        return self is not ColumnType.JSON

    @property
    def ranged(self) -> bool:
        return self in (ColumnType.INTEGER, ColumnType.BIGINT, ColumnType.MONEY, ColumnType.TIMESTAMP)


class Filter(StrEnum):
    """`EQUALS`: `?col=v` (repeat the parameter for `in`); `RANGE`: bounds (see `range_parameters`)."""

    EQUALS = "equals"
    RANGE = "range"


@dataclass(frozen=True, slots=True)
class Column:
    """One column a view may return; `filters` and `sortable` say what clients may do with it."""

    name: str
    type: ColumnType
    description: str = ""
    nullable: bool = False
    filters: frozenset[Filter] = frozenset()
    sortable: bool = False
    #: The values an `EQUALS` filter accepts (documented as an enum); empty means any text.
    choices: tuple[str, ...] = ()
    #: A regular expression `EQUALS` filter values must match (text columns).
    pattern: str | None = None
    max_length: int = 200
    #: A type pydantic understands describing a JSON column's values (`list[Line]`), for OpenAPI.
    model: object = None
    #: Total digits of a money column (two of them after the point).
    precision: int = 14

    @property
    def sql_type(self) -> str:
        return self.type.sql(self.precision)


@dataclass(frozen=True, slots=True)
class Index:
    """A btree index of the table; sortable columns need one led by `(column, key)` for keyset pages."""

    name: str
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        check_identifier(self.name, "index")


@dataclass(frozen=True, slots=True)
class RangeParameter:
    """A query parameter bounding a column: `name` compares the column with `operator` to a value."""

    name: str
    column: Column
    operator: str


def range_parameters(column: Column) -> tuple[RangeParameter, RangeParameter]:
    """Timestamps: `<stem>_after` / `<stem>_before` (exclusive; `placed_at` -> `placed_after`).
    Numbers: `min_<name>` / `max_<name>` (inclusive)."""
    if column.type is ColumnType.TIMESTAMP:
        stem = column.name.removesuffix("_at")
        return RangeParameter(f"{stem}_after", column, ">"), RangeParameter(f"{stem}_before", column, "<")
    return (
        RangeParameter(f"min_{column.name}", column, ">="),
        RangeParameter(f"max_{column.name}", column, "<="),
    )


@dataclass(frozen=True, slots=True)
class Projection:
    """The projector's name for a set of views, and the aggregate types whose events feed them.

    Its positions are read from `read.<name>_partition_offsets` and `read.<name>_aggregate_versions`.
    """

    name: str
    aggregate_types: tuple[str, ...]

    def __post_init__(self) -> None:
        check_identifier(self.name, "projection")


@dataclass(frozen=True, slots=True)
class ReadModel:
    """One table of a projection, fed by `aggregate_type` (one row per aggregate, keyed by its id),
    and served over HTTP as `/v1/<name>` (collection), `/v1/<name>/{id}` and its stream."""

    name: str
    item_name: str
    projection: Projection
    aggregate_type: str
    read_role: str
    columns: tuple[Column, ...]
    default_sort: str
    description: str = ""
    key: str = "id"
    #: Other aggregate types whose events can change rows of this view (joined columns).
    changed_by: tuple[str, ...] = ()
    default_limit: int = 50
    max_limit: int = 500
    indexes: tuple[Index, ...] = ()
    _by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})
        _check_view(self)

    def column(self, name: str) -> Column | None:
        return self._by_name.get(name)

    def declared(self, name: str) -> Column:
        """The column `name`, which the caller knows is declared; KeyError (a bug) when it is not."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} declares no column {name!r}") from None

    @property
    def key_column(self) -> Column:
        return self.declared(self.key)

    @property
    def sort_options(self) -> tuple[str, ...]:
        """Accepted `sort` values: each sortable column, ascending or (`-` prefix) descending."""
        names = [c.name for c in self.columns if c.sortable or c.name == self.key]
        return tuple(option for name in names for option in (name, f"-{name}"))

    def equality_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if Filter.EQUALS in c.filters)

    def range_filters(self) -> tuple[RangeParameter, ...]:
        return tuple(p for c in self.columns if Filter.RANGE in c.filters for p in range_parameters(c))

    def filter_parameter_names(self) -> tuple[str, ...]:
        return (*(c.name for c in self.equality_columns()), *(p.name for p in self.range_filters()))


@dataclass(frozen=True, slots=True)
class Relation:
    """`/v1/<parent>/{id}/<name>`: the child view's rows whose `foreign_key` is the parent's key."""

    name: str
    parent: ReadModel
    child: ReadModel
    foreign_key: str

    def __post_init__(self) -> None:
        check_identifier(self.name, "relation")
        if self.name in RESERVED_SEGMENTS:
            raise DeclarationError(f"relation name {self.name!r} is reserved")
        column = self.child.column(self.foreign_key)
        if column is None or column.type is not ColumnType.TEXT:
            raise DeclarationError(f"{self.child.name}.{self.foreign_key} must be a declared text column")
        if self.parent.projection != self.child.projection:
            raise DeclarationError("a relation joins views of one projection")

    @property
    def foreign_key_column(self) -> Column:
        return self.child.declared(self.foreign_key)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every view and relation one query service serves."""

    views: tuple[ReadModel, ...]
    relations: tuple[Relation, ...] = ()

    def __post_init__(self) -> None:
        names = [v.name for v in self.views]
        if len(set(names)) != len(names):
            raise DeclarationError(f"view names must be unique: {names}")
        for relation in self.relations:
            if relation.parent not in self.views or relation.child not in self.views:
                raise DeclarationError(f"relation {relation.name!r} joins views outside the catalog")

    @property
    def projections(self) -> tuple[Projection, ...]:
        return tuple(dict.fromkeys(v.projection for v in self.views))


def _check_view(view: ReadModel) -> None:
    check_identifier(view.name, "view")
    for column in view.columns:
        _check_column(view, column)
    key = view.column(view.key)
    if key is None or key.type is not ColumnType.TEXT or key.nullable:
        raise DeclarationError(f"{view.name}: key {view.key!r} must be a declared, non-null text column")
    if view.default_sort not in view.sort_options:
        raise DeclarationError(f"{view.name}: default sort {view.default_sort!r} is not sortable")
    types = view.projection.aggregate_types
    if view.aggregate_type not in types or not set(view.changed_by) <= set(types):
        raise DeclarationError(
            f"{view.name}: aggregate types must belong to projection {view.projection.name}"
        )
    _check_indexes(view)
    if not 1 <= view.default_limit <= view.max_limit:
        raise DeclarationError(f"{view.name}: need 1 <= default_limit <= max_limit")
    parameters = view.filter_parameter_names()
    if len(set(parameters)) != len(parameters) or set(parameters) & RESERVED_PARAMETERS:
        raise DeclarationError(f"{view.name}: filter parameters collide: {parameters}")


def _check_column(view: ReadModel, column: Column) -> None:
    check_identifier(column.name, f"{view.name} column")
    if column.sortable and not column.type.orderable:
        raise DeclarationError(f"{view.name}.{column.name}: {column.type} cannot be sorted")
    if Filter.RANGE in column.filters and not column.type.ranged:
        raise DeclarationError(f"{view.name}.{column.name}: {column.type} has no range filter")
    if Filter.EQUALS in column.filters and column.type is ColumnType.JSON:
        raise DeclarationError(f"{view.name}.{column.name}: JSON columns cannot be filtered")
    if column.choices and column.type is not ColumnType.TEXT:
        raise DeclarationError(f"{view.name}.{column.name}: choices are for text columns")


def _check_indexes(view: ReadModel) -> None:
    for index in view.indexes:
        missing = [c for c in index.columns if view.column(c) is None]
        if missing:
            raise DeclarationError(f"{view.name}: index {index.name} names undeclared columns {missing}")
    led = {index.columns[:2] for index in view.indexes}
    for column in view.columns:
        if column.sortable and column.name != view.key and (column.name, view.key) not in led:
            raise DeclarationError(
                f"{view.name}.{column.name}: sortable columns need an index on ({column.name}, {view.key})"
            )
