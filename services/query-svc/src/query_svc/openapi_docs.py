"""OpenAPI descriptions of the read routes: one schema per view and per view's page, and the
headers and problem responses every read may produce."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ConfigDict, Field, create_model

from cqrs_shared.problems import PROBLEM_MEDIA_TYPE, Problem
from query_svc.codec import response_model
from query_svc.declarations import View

_PROBLEM = {"content": {PROBLEM_MEDIA_TYPE: {"schema": Problem.model_json_schema()}}}
_HEADERS = {
    "ETag": "Strong validator of the body; send it back in If-None-Match.",
    "Cache-Control": "Always `private, no-cache`: revalidate, read models move.",
    "X-Read-Model-Position": "The projector's applied Kafka position (`topic/partition=offset, ...`).",
    "X-Staleness-Ms": "How far behind the projector was at its last batch (0: caught up).",
    "X-Read-Model-Stale": "With a consistency token: `true` if the wait ended before the token was applied.",
    "X-Consistency-Applied-Version": "With a consistency token: the version applied for its aggregate.",
}


def _headers(*extra: tuple[str, str]) -> dict[str, Any]:
    described = {**_HEADERS, **dict(extra)}
    return {name: {"description": text, "schema": {"type": "string"}} for name, text in described.items()}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Unknown or non-filterable parameter, bad cursor or consistency token",
        401: "Missing or invalid bearer token",
        403: "The token lacks the view's role",
        404: "No such item (or owner of the relation)",
        422: "A parameter value is malformed or out of range",
        503: "The read database is unavailable, busy or too slow",
    }
    return {s: {"description": descriptions[s], **_PROBLEM} for s in statuses}


def item_responses(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"model": model, "description": "The item", "headers": _headers()},
        304: {"description": "Not modified (If-None-Match matched)", "headers": _headers()},
        **_errors(400, 401, 403, 404, 422, 503),
    }


@cache
def page_model(view: View) -> type[Any]:
    """`{"items": [...], "next": url | null}` for the view."""
    name = f"{view.item_name}Page"
    item = response_model(view)
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid", title=name),
        items=(list[item], Field(description="At most `limit` rows, in the requested order")),  # type: ignore[valid-type]  # a runtime-built model
        next=(str | None, Field(description="Relative URL of the next page; null on the last page")),
    )


def page_responses(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    link = ("Link", 'The next page as `<url>; rel="next"` (absent on the last page).')
    return {
        200: {"model": model, "description": "One page", "headers": _headers(link)},
        304: {"description": "Not modified (If-None-Match matched)", "headers": _headers(link)},
        **_errors(400, 401, 403, 404, 422, 503),
    }


def stream_responses() -> dict[int | str, dict[str, Any]]:
    events = (
        "`event: snapshot` (the current row), then `event: change` per new state; `id` is the state's "
        "ETag; `: heartbeat` comments while idle; `event: gone` / `event: error` end the stream."
    )
    return {
        200: {"description": events, "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **_errors(400, 401, 403, 404, 422, 503),
    }
