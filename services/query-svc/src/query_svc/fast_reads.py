"""Item and collection reads of declared views without FastAPI's routing and dependency solving.

The profile of a point read (py-spy, bench/README.md) spent about a quarter of the service's CPU
between the HTTP parser and the route's own code: the router's linear match over every route,
`solve_dependencies`, the ASGI layers per request. `FastReads` sits in front of the FastAPI app
(`QueryApp` calls it first) and answers the two hot routes, `GET /v1/<view>/{id}` and
`GET /v1/<view>`, by calling the very functions the FastAPI routes call (the same read-options and
authorization dependencies, `reject_unknown`, `page_query`, the engine, `cached_json`, the app's
own problem handlers, its answer to an unexpected error), so the answers are the same bytes and
headers, and records their request metrics as `RequestMetrics` does inside the app.

It only takes a request it can answer exactly as FastAPI would. Anything FastAPI itself would
validate and might refuse (a path id outside its declared length or pattern, a wait parameter in
the query string, a consistency-token or If-None-Match header outside its bounds or repeated) goes
to the full app untouched, before any read: FastAPI then answers it, 422 problems included.
Streams, relation pages, OpenAPI and the operations routes always go to the full app, and so
does every request while a tracer provider is installed (FastAPI then makes the server spans).
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from opentelemetry import trace
from starlette.types import ASGIApp, Receive, Scope, Send

from cqrs_shared.problems import ProblemError
from query_svc.access import BEARER
from query_svc.declarations import Catalog, View
from query_svc.engine import ReadEngine, not_found
from query_svc.http_cache import cached_json
from query_svc.metrics import RequestRecorder
from query_svc.parameters import (
    TOKEN_PATTERN,
    WAIT_PARAMETERS,
    CollectionParameters,
    ReadOptions,
    reject_unknown,
)
from query_svc.routes import page_body

Authorize = Callable[..., Awaitable[None]]
ReadOptionsDependency = Callable[..., Awaitable[ReadOptions]]
ExceptionHandler = Callable[[Request, Any], Response | Awaitable[Response]]

#: The bounds `read_options_dependency` declares to FastAPI for its two headers.
_HEADER_BOUNDS = {b"x-consistency-token": (1024, re.compile(TOKEN_PATTERN)), b"if-none-match": (4096, None)}


def _traced() -> bool:
    """Whether a tracer provider is installed (FastAPI's own test for tracing requests)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@dataclass(frozen=True, slots=True)
class _ViewReads:
    view: View
    spec: CollectionParameters
    authorize: Authorize
    key_pattern: re.Pattern[str] | None


def _read_headers(scope: Scope) -> dict[str, str] | None:
    """The two read-option headers, or None when FastAPI's own validation must judge them."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        bounds = _HEADER_BOUNDS.get(name.lower())
        if bounds is None:
            continue
        text = value.decode("latin-1")
        limit, pattern = bounds
        key = name.decode("latin-1").lower()
        if key in found or len(text) > limit or (pattern is not None and not pattern.search(text)):
            return None
        found[key] = text
    return found


class FastReads:
    """In front of the app (`app`: the FastAPI app itself, `owner` its instance): serves the hot
    reads, recording their request metrics as `RequestMetrics` does, and hands every other
    request to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        owner: Any,
        metrics: RequestRecorder,
        catalog: Catalog,
        specs: Mapping[str, CollectionParameters],
        engine: ReadEngine,
        authorizer: Callable[[str], Authorize],
        read_options: ReadOptionsDependency,
        handlers: Mapping[Any, ExceptionHandler],
        routes: list[Any],
    ) -> None:
        self.app = app
        self._owner = owner
        self._metrics = metrics
        self._engine = engine
        self._read_options = read_options
        self._handlers = handlers
        self._routes = routes
        self._by_path: dict[str | None, Any] | None = None
        self._views = {
            view.name: _ViewReads(
                view,
                specs[view.name],
                authorizer(view.read_role),
                re.compile(view.key_column.pattern) if view.key_column.pattern else None,
            )
            for view in catalog.views
        }

    def _route(self, template: str) -> Any:
        # The router's route object, so metrics and tracing label the request as FastAPI would.
        if self._by_path is None:
            self._by_path = {getattr(r, "path", None): r for r in self._routes}
        return self._by_path.get(template)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # With a tracer provider installed FastAPI makes a server span per request: then every
        # request takes the full path, so none goes untraced.
        if scope["type"] != "http" or scope["method"] != "GET" or _traced():
            return await self.app(scope, receive, send)
        parts = scope["path"].split("/")
        reads = self._views.get(parts[2]) if len(parts) in (3, 4) and parts[1] == "v1" else None
        headers = _read_headers(scope) if reads is not None else None
        if reads is None or headers is None:
            return await self.app(scope, receive, send)
        if len(parts) == 4:
            if scope["query_string"] or not self._valid_key(reads, parts[3]):
                return await self.app(scope, receive, send)
            template, key = f"/v1/{reads.view.name}/{{item_id}}", parts[3]
        else:
            template, key = f"/v1/{reads.view.name}", None
        request = Request(scope, receive)
        # A wait parameter (after, max_wait_ms) is validated by FastAPI's own query handling.
        if key is None and not WAIT_PARAMETERS.isdisjoint(request.query_params.keys()):
            return await self.app(scope, receive, send)
        return await self._serve(request, reads, key, headers, template, send)

    async def _serve(
        self,
        request: Request,
        reads: _ViewReads,
        key: str | None,
        headers: dict[str, str],
        template: str,
        send: Send,
    ) -> None:
        """Answer as the full app would, its request metrics and unexpected-error answer included."""
        started = time.perf_counter()
        scope = request.scope
        scope["app"] = self._owner
        scope["route"] = self._route(template)
        try:
            response = await self._answer(request, reads, key, headers)
        except (ProblemError, RequestValidationError) as exc:
            handler = next(self._handlers[c] for c in type(exc).__mro__ if c in self._handlers)
            handled = handler(request, exc)
            response = await handled if inspect.isawaitable(handled) else handled
        except Exception as exc:
            # As Starlette's ServerErrorMiddleware: the app's answer for an unexpected error, and
            # the error raised on to the server, which logs it; counted as a 500.
            self._metrics.count(template, "GET", "500")
            answer = await self._unexpected_answer(request, exc)
            await answer(scope, request.receive, send)
            raise
        self._metrics.observe(template, time.perf_counter() - started)
        self._metrics.count(template, "GET", str(response.status_code))
        await response(scope, request.receive, send)

    async def _unexpected_answer(self, request: Request, exc: Exception) -> Response:
        handled = self._handlers[Exception](request, exc)
        return await handled if inspect.isawaitable(handled) else handled

    @staticmethod
    def _valid_key(reads: _ViewReads, key: str) -> bool:
        column = reads.view.key_column
        pattern = reads.key_pattern
        return 0 < len(key) <= column.max_length and (pattern is None or pattern.search(key) is not None)

    async def _answer(
        self, request: Request, reads: _ViewReads, key: str | None, headers: dict[str, str]
    ) -> Response:
        # The order of the FastAPI routes: read options, then the caller's role, then the body.
        options = await self._read_options(
            after=None,
            max_wait_ms=None,
            x_consistency_token=headers.get("x-consistency-token"),
            if_none_match=headers.get("if-none-match"),
        )
        await reads.authorize(await BEARER(request))
        view = reads.view
        if key is not None:
            token = await self._engine.settle(view, options)
            row, position = await self._engine.item(view, key, token)
            if row is None:
                raise not_found(view, key, position)
            return cached_json(row.encode(), if_none_match=options.if_none_match, headers=position.headers())
        spec = reads.spec
        reject_unknown(request, view, spec.known, spec.repeatable)
        page_query = spec.page_query(request)
        token = await self._engine.settle(view, options)
        page, position = await self._engine.page(view, page_query, token)
        body, link = page_body(request, page)
        return cached_json(body, if_none_match=options.if_none_match, headers={**position.headers(), **link})
