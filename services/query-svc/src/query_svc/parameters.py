"""Request parameters generated from declarations, and their translation into a page query.

Every parameter a route accepts is declared to FastAPI (so it is validated, documented in OpenAPI
and named in 422 problems); anything else in the query string is refused with a 400 that names
it, including real columns that are not declared filterable. A parameter that takes one value
may not be repeated.
"""

# No `from __future__ import annotations`: FastAPI evaluates `read_options`'s annotations, which
# refer to the closure's wait bounds that postponed evaluation cannot see.

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from fastapi import Header, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from cqrs_shared.consistency import ConsistencyToken, InvalidTokenError
from cqrs_shared.problems import ProblemError
from query_svc.codec import parameter_type
from query_svc.cursor import MAX_CURSOR_LENGTH, query_digest
from query_svc.declarations import Projection, View
from query_svc.sql import Condition, SortOrder

#: Values one equality filter may list (`?status=a&status=b` is `status IN (a, b)`).
MAX_IN_VALUES = 100
#: Consistency tokens are base64url; cursors are two base64url parts joined by a dot.
TOKEN_PATTERN = r"^[A-Za-z0-9_-]+$"  # noqa: S105  # a format, not a secret
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
WAIT_PARAMETERS = frozenset({"after", "max_wait_ms"})
TOKEN_HEADER = "X-Consistency-Token"  # noqa: S105  # a header name, not a secret


def parameter_problem(status: int, location: str, name: str, message: str, kind: str) -> ProblemError:
    """A problem naming the offending parameter, shaped like FastAPI's validation problems."""
    title = "Bad request" if status == 400 else "Invalid request"
    return ProblemError(
        status,
        kind,
        title,
        f"{location} parameter {name!r}: {message}",
        errors=[{"loc": f"{location}.{name}", "message": message, "type": kind}],
    )


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """What every read accepts besides its filters: a consistency token, a wait bound, a validator."""

    token: ConsistencyToken | None
    token_parameter: tuple[str, str]
    wait_seconds: float
    if_none_match: str | None

    def token_for(self, projection: Projection) -> ConsistencyToken | None:
        token = self.token
        if token is not None and token.aggregate_type not in projection.aggregate_types:
            location, name = self.token_parameter
            raise parameter_problem(
                400,
                location,
                name,
                f"the token's aggregate type {token.aggregate_type!r} does not feed this view",
                "invalid-consistency-token",
            )
        return token


def _decode_token(value: str, location: str, name: str) -> ConsistencyToken:
    try:
        token = ConsistencyToken.decode(value)
    except (InvalidTokenError, UnicodeError) as exc:
        raise parameter_problem(400, location, name, str(exc), "invalid-consistency-token") from exc
    if any("\x00" in part for part in (token.aggregate_type, token.aggregate_id)):
        raise parameter_problem(
            400, location, name, "malformed consistency token", "invalid-consistency-token"
        )
    return token


def _token_of(after: str | None, header: str | None) -> tuple[ConsistencyToken | None, tuple[str, str]]:
    """The request's token and where it came from; both places may carry it only if they agree."""
    token = None if after is None else _decode_token(after, "query", "after")
    if header is None:
        return token, ("query", "after")
    from_header = _decode_token(header, "header", TOKEN_HEADER)
    if token is not None and from_header != token:
        raise parameter_problem(
            400, "header", TOKEN_HEADER, "differs from the `after` parameter", "conflicting-consistency-token"
        )
    return from_header, ("header", TOKEN_HEADER)


def read_options_dependency(default_wait_ms: int, wait_cap_ms: int) -> Callable[..., Awaitable[ReadOptions]]:
    """The FastAPI dependency parsing `after` / `X-Consistency-Token`, `max_wait_ms`, `If-None-Match`."""

    # async: a plain `def` dependency would cost every request a hop to the thread pool.
    async def read_options(
        after: Annotated[
            str | None,
            Query(
                max_length=1024,
                pattern=TOKEN_PATTERN,
                description="A consistency token: answer once the view reflects it.",
            ),
        ] = None,
        max_wait_ms: Annotated[
            int | None,
            Query(
                ge=0, le=wait_cap_ms, description=f"Longest wait for the token (default {default_wait_ms})."
            ),
        ] = None,
        x_consistency_token: Annotated[
            str | None,
            Header(max_length=1024, pattern=TOKEN_PATTERN, description="Same as `after`, as a header."),
        ] = None,
        if_none_match: Annotated[str | None, Header(max_length=4096)] = None,
    ) -> ReadOptions:
        token, where = _token_of(after, x_consistency_token)
        wait_ms = default_wait_ms if max_wait_ms is None else max_wait_ms
        return ReadOptions(token, where, wait_ms / 1000, if_none_match)

    return read_options


def reject_unknown(
    request: Request, view: View, known: Iterable[str], repeatable: Iterable[str] = ()
) -> None:
    """400 for a query parameter the route does not declare, or a single-valued one given twice."""
    known_names, repeatable_names = set(known), set(repeatable)
    for name, count in Counter(k for k, _ in request.query_params.multi_items()).items():
        if name not in known_names:
            if view.column(name) is not None:
                message = f"{view.name} cannot be filtered by {name!r}"
                raise parameter_problem(400, "query", name, message, "not-filterable")
            raise parameter_problem(400, "query", name, "unknown parameter", "unknown-parameter")
        if count > 1 and name not in repeatable_names:
            raise parameter_problem(400, "query", name, "may be given only once", "repeated-parameter")


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A validated collection query: conditions, order, page size and where to start."""

    conditions: tuple[Condition, ...]
    order: SortOrder
    limit: int
    cursor: str | None
    #: Binds cursors to this query (see `cursor.py`).
    identity: str


@dataclass(frozen=True, slots=True)
class CollectionParameters:
    """The generated query parameters of a view's collection routes, as one pydantic model.

    The query string is validated by the model in one pass rather than by FastAPI parameter by
    parameter (that path cost about a millisecond per request for twenty parameters); errors
    still leave as FastAPI's 422 problems naming `query.<parameter>`, and the OpenAPI parameters
    are the model's field schemas."""

    view: View
    model: type[BaseModel]
    filters: frozenset[str]
    repeatable: frozenset[str]

    @property
    def known(self) -> frozenset[str]:
        return self.filters | {"limit", "cursor", "sort"} | WAIT_PARAMETERS

    def parse(self, request: Request) -> dict[str, Any]:
        """The declared parameters of the query string, validated and typed."""
        params = request.query_params
        raw = {
            name: params.getlist(name) if name in self.repeatable else params[name]
            for name in self.model.model_fields
            if name in params
        }
        try:
            return dict(self.model.model_validate(raw))
        except ValidationError as exc:
            errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
            raise RequestValidationError(errors) from exc

    def openapi_parameters(self) -> list[dict[str, Any]]:
        schema = self.model.model_json_schema()
        return [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": field.get("description"),
                "schema": field,
            }
            for name, field in schema["properties"].items()
        ]

    def page_query(self, request: Request, fixed: tuple[Condition, ...] = ()) -> PageQuery:
        view = self.view
        values = self.parse(request)
        conditions = list(fixed)
        for column in view.equality_columns():
            chosen = list(dict.fromkeys(values[column.name] or ()))
            if len(chosen) == 1:
                conditions.append(Condition(column, "=", chosen[0]))
            elif chosen:
                conditions.append(Condition(column, "in", chosen))
        conditions.extend(
            Condition(bound.column, bound.operator, values[bound.name])
            for bound in view.range_filters()
            if values[bound.name] is not None
        )
        order = SortOrder.parse(view, values["sort"] or view.default_sort)
        raw_filters = sorted((k, v) for k, v in request.query_params.multi_items() if k in self.filters)
        fixed_part = [(c.column.name, c.operator, str(c.value)) for c in fixed]
        identity = query_digest([view.name, fixed_part, order.text, raw_filters])
        return PageQuery(tuple(conditions), order, values["limit"], values["cursor"], identity)


def collection_parameters(view: View) -> CollectionParameters:
    """Parameters for `GET /v1/<view>`: `limit`, `cursor`, `sort` and one or two per declared filter."""
    sort_type = cast(Any, Literal)[view.sort_options]
    fields: dict[str, Any] = {
        "limit": (int, Field(view.default_limit, ge=1, le=view.max_limit, description="Rows per page.")),
        "cursor": (
            str | None,
            Field(None, max_length=MAX_CURSOR_LENGTH, pattern=CURSOR_PATTERN, description="From `next`."),
        ),
        "sort": (
            sort_type | None,
            Field(None, description=f"Order (`-` descending); default {view.default_sort}."),
        ),
    }
    for column in view.equality_columns():
        description = f"{column.name} equals the value; repeat the parameter for any of several values."
        fields[column.name] = (
            list[parameter_type(column)] | None,  # type: ignore[misc]  # a runtime-built type
            Field(None, max_length=MAX_IN_VALUES, description=description),
        )
    for bound in view.range_filters():
        description = f"{bound.column.name} {bound.operator} this value."
        fields[bound.name] = (parameter_type(bound.column) | None, Field(None, description=description))
    # extra="ignore": undeclared parameters are refused by `reject_unknown`, which names them better.
    model = create_model(f"{view.item_name}Query", __config__=ConfigDict(extra="ignore"), **fields)
    equality = frozenset(c.name for c in view.equality_columns())
    return CollectionParameters(view, model, frozenset(view.filter_parameter_names()), equality)
