"""Values by column type: what a filter accepts, how a cursor carries a value, what OpenAPI says.

Rows themselves are rendered by PostgreSQL (see `sql.py`): money as a decimal string with two
places, timestamps as RFC 3339 in UTC (`2024-05-01T12:00:00.123456Z`). Filter values are
validated to what PostgreSQL will accept for the column (ranges of integer types, finite decimals
with at most two places, RFC 3339 timestamps with an offset, text without NUL), so a hostile value
is a 422 naming its parameter, never a database error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, ConfigDict, Field, create_model

from query_svc.declarations import Column, ColumnType, View

_INT32 = 2**31
_INT64 = 2**63
MONEY_PATTERN = r"^-?[0-9]+\.[0-9]{2}$"
#: Digits a money filter or cursor value may have, two of them after the point. A bound on request
#: values, not the columns' precision: values are bound as unconstrained `numeric`, so a column
#: widened by a migration (numeric(14,2) to (20,2)) compares and renders with no change here. 38 is
#: the widest decimal common stores keep (DynamoDB numbers, SQL Server, Oracle).
MONEY_MAX_DIGITS = 38


def _storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


#: RFC 3339 `date-time` (an offset is required; no unix timestamps, no bare dates).
RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise ValueError("is not a valid RFC 3339 date-time") from exc
    return _utc(parsed)


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
        return Annotated[Decimal, Field(max_digits=MONEY_MAX_DIGITS, decimal_places=2, allow_inf_nan=False)]
    if column.type is ColumnType.TIMESTAMP:
        # Parsed from text here: pydantic's lax datetime would also take unix timestamps.
        rfc3339 = Field(pattern=RFC3339, json_schema_extra={"format": "date-time"})
        return Annotated[str, rfc3339, AfterValidator(_timestamp)]
    raise TypeError(f"{column.type} columns have no filter values")


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
        if not amount.is_finite() or abs(amount) >= Decimal(10) ** (MONEY_MAX_DIGITS - 2):
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
