"""Values by column type: what a filter accepts, how a row renders, how a cursor carries a value.

Money leaves as a decimal string with the column's two places and timestamps as RFC 3339 in UTC
(`2024-05-01T12:00:00.123456Z`). Filter values are validated to what PostgreSQL will accept for
the column (ranges of integer types, finite decimals with at most two places, time-zone-aware
timestamps, text without NUL), so a hostile value is a 422 naming its parameter, never a database
error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, create_model

from query_svc.declarations import Column, ColumnType, View

_INT32 = 2**31
_INT64 = 2**63
MONEY_PATTERN = r"^-?[0-9]+\.[0-9]{2}$"


def _storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("is outside the supported range of timestamps") from exc


def parameter_type(column: Column) -> Any:
    """The annotated type FastAPI validates one filter value of this column against."""
    if column.type is ColumnType.TEXT:
        if column.choices:
            return cast(Any, Literal)[column.choices]
        constraints = Field(min_length=1, max_length=column.max_length, pattern=column.pattern)
        return Annotated[str, constraints, AfterValidator(_storable_text)]
    if column.type is ColumnType.INTEGER:
        return Annotated[int, Field(ge=-_INT32, le=_INT32 - 1)]
    if column.type is ColumnType.BIGINT:
        return Annotated[int, Field(ge=-_INT64, le=_INT64 - 1)]
    if column.type is ColumnType.MONEY:
        return Annotated[Decimal, Field(max_digits=14, decimal_places=2, allow_inf_nan=False)]
    if column.type is ColumnType.TIMESTAMP:
        return Annotated[AwareDatetime, AfterValidator(_utc)]
    raise TypeError(f"{column.type} columns have no filter values")


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _render_money(value: Any) -> Any:
    return None if value is None else f"{value:.2f}"


def _render_timestamp(value: Any) -> Any:
    return None if value is None else rfc3339(value)


def _as_is(value: Any) -> Any:
    return value


def renderer(column: Column) -> Callable[[Any], Any]:
    """How a database value of this column becomes a JSON value."""
    if column.type is ColumnType.MONEY:
        return _render_money
    if column.type is ColumnType.TIMESTAMP:
        return _render_timestamp
    return _as_is


def row_renderer(view: View) -> Callable[[Any], dict[str, Any]]:
    """A function turning a database row of the view into its JSON object (declared columns only)."""
    pairs = [(c.name, renderer(c)) for c in view.columns]

    def render(row: Any) -> dict[str, Any]:
        return {name: convert(row[name]) for name, convert in pairs}

    return render


def cursor_value(column: Column, value: Any) -> Any:
    """A sort value as a JSON scalar, exact (microseconds, every decimal digit)."""
    if value is None:
        return None
    if column.type is ColumnType.TIMESTAMP:
        return rfc3339(value)
    if column.type is ColumnType.MONEY:
        return str(value)
    return value


def parse_cursor_value(column: Column, raw: Any) -> Any:
    """The inverse of `cursor_value`; ValueError when `raw` cannot be a value of the column."""
    if raw is None:
        if not column.nullable:
            raise ValueError(f"{column.name} cannot be null")
        return None
    if column.type is ColumnType.TIMESTAMP and isinstance(raw, str):
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise ValueError("timestamp without offset")
        return _utc(parsed)
    if column.type is ColumnType.MONEY and isinstance(raw, str):
        try:
            amount = Decimal(raw)
        except InvalidOperation as exc:
            raise ValueError("not a decimal") from exc
        if not amount.is_finite() or abs(amount) >= Decimal(10) ** 12:
            raise ValueError("not a storable amount")
        return amount
    if column.type in (ColumnType.INTEGER, ColumnType.BIGINT) and type(raw) is int:
        bound = _INT32 if column.type is ColumnType.INTEGER else _INT64
        if not -bound <= raw < bound:
            raise ValueError("out of range")
        return raw
    if column.type is ColumnType.TEXT and isinstance(raw, str):
        return _storable_text(raw)
    raise ValueError(f"not a value of {column.name}")


def _response_type(column: Column) -> Any:
    base: Any
    if column.type is ColumnType.TEXT:
        base = str
    elif column.type in (ColumnType.INTEGER, ColumnType.BIGINT):
        base = int
    elif column.type is ColumnType.MONEY:
        base = Annotated[str, Field(pattern=MONEY_PATTERN, examples=["12.50"])]
    elif column.type is ColumnType.TIMESTAMP:
        base = datetime
    else:
        base = column.model if column.model is not None else Any
    return base | None if column.nullable else base


@cache
def response_model(view: View) -> type[Any]:
    """The pydantic model of one row of the view, used for its OpenAPI schema."""
    fields: dict[str, Any] = {
        c.name: (_response_type(c), Field(description=c.description or None)) for c in view.columns
    }
    return create_model(  # type: ignore[no-any-return]  # dynamic fields: pydantic returns type[BaseModel]
        view.item_name,
        __config__=ConfigDict(extra="forbid", title=view.item_name),
        __doc__=view.description or None,
        **fields,
    )
