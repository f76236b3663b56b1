"""HTTP routes generated from the catalog: item, collection and relation reads of every view.

For a view `v` (and each relation `r` it owns):
`GET /v1/v/{id}`, `GET /v1/v` (filters, sort, keyset pages) and `GET /v1/v/{id}/r`. Each route
checks the view's role, refuses undeclared parameters, waits for a consistency token if given,
and answers JSON with an ETag, caching headers and the read model's position and staleness.
"""

# No `from __future__ import annotations` here: FastAPI evaluates these endpoints' annotations,
# which refer to closure variables (the view, its role) that postponed evaluation cannot see.

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Path, Request, Response

from cqrs_shared.problems import ProblemError
from query_svc.codec import response_model
from query_svc.declarations import Catalog, Relation, View
from query_svc.engine import Owner, Page, ReadEngine, not_found
from query_svc.http_cache import cached_json
from query_svc.openapi_docs import item_responses, page_model, page_responses, stream_responses
from query_svc.parameters import (
    WAIT_PARAMETERS,
    CollectionParameters,
    ReadOptions,
    collection_parameters,
    reject_unknown,
)
from query_svc.stream import EventStream, Streams

Authorizer = Callable[[str], Any]
ReadOptionsDependency = Callable[..., Awaitable[ReadOptions]]


def key_path(view: View) -> Any:
    """The `{item_id}` path parameter, constrained like the view's key column."""
    column = view.key_column
    return Path(min_length=1, max_length=column.max_length, pattern=column.pattern)


def build_router(
    catalog: Catalog,
    engine: ReadEngine,
    authorizer: Authorizer,
    read_options: ReadOptionsDependency,
    streams: Streams,
    specs: Mapping[str, CollectionParameters] | None = None,
) -> APIRouter:
    """One router with the read routes of every view and relation in the catalog (`specs`: the
    views' collection parameters, when the caller built them already)."""
    router = APIRouter()
    for view in catalog.views:
        parameters = specs[view.name] if specs is not None else collection_parameters(view)
        _item_route(router, view, engine, authorizer, read_options)
        _stream_route(router, view, engine, authorizer, read_options, streams)
        _page_route(router, parameters, engine, authorizer, read_options)
    for relation in catalog.relations:
        spec = collection_parameters(relation.child)
        _page_route(router, spec, engine, authorizer, read_options, relation)
    return router


def _item_route(
    router: APIRouter,
    view: View,
    engine: ReadEngine,
    authorizer: Authorizer,
    read_options: ReadOptionsDependency,
) -> None:
    model = response_model(view)

    async def read_item(
        request: Request,
        item_id: Annotated[str, key_path(view)],
        options: Annotated[ReadOptions, Depends(read_options)],
        _caller: Annotated[None, Depends(authorizer(view.read_role))],
    ) -> Response:
        reject_unknown(request, view, WAIT_PARAMETERS)
        token = await engine.settle(view, options)
        row, position = await engine.item(view, item_id, token)
        if row is None:
            raise not_found(view, item_id, position)
        return cached_json(row.encode(), if_none_match=options.if_none_match, headers=position.headers())

    router.add_api_route(
        f"/v1/{view.name}/{{item_id}}",
        read_item,
        methods=["GET"],
        tags=[view.name],
        summary=f"One {view.item_name.lower()}",
        operation_id=f"get_{view.name}_item",
        response_model=None,
        responses=item_responses(model),
    )


def page_body(request: Request, page: Page) -> tuple[bytes, dict[str, str]]:
    """`{"items": [...], "next": url | null}` spliced from the rows' joined JSON, and the Link header."""
    next_url, link = None, {}
    if page.next_cursor is not None:
        kept = [
            (k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", *WAIT_PARAMETERS)
        ]
        next_url = f"{request.url.path}?{urlencode([*kept, ('cursor', page.next_cursor)])}"
        link = {"Link": f'<{next_url}>; rel="next"'}
    return b'{"items":[' + page.items + b'],"next":' + json.dumps(next_url).encode() + b"}", link


def _owner_dependency(
    relation: Relation | None, authorizer: Authorizer
) -> Callable[..., Awaitable[Owner | None]]:
    """For a relation's route: `{item_id}` and the parent view's role, as the page's `Owner`."""
    if relation is None:

        async def no_owner() -> None:
            return None

        return no_owner
    parent, foreign_key = relation.parent, relation.foreign_key_column

    async def owner(
        item_id: Annotated[str, key_path(parent)],
        _owner_caller: Annotated[None, Depends(authorizer(parent.read_role))],
    ) -> Owner:
        return Owner(parent, item_id, foreign_key)

    return owner


def _page_route(
    router: APIRouter,
    spec: CollectionParameters,
    engine: ReadEngine,
    authorizer: Authorizer,
    read_options: ReadOptionsDependency,
    relation: Relation | None = None,
) -> None:
    """`GET /v1/<view>`, or with `relation` `GET /v1/<parent>/{item_id}/<relation>`: the child's
    rows of one parent row, with the same parameters and a 404 when the parent row is absent."""
    view = spec.view
    owner_of = _owner_dependency(relation, authorizer)

    async def list_page(
        request: Request,
        owner: Annotated[Owner | None, Depends(owner_of)],
        options: Annotated[ReadOptions, Depends(read_options)],
        _caller: Annotated[None, Depends(authorizer(view.read_role))],
    ) -> Response:
        reject_unknown(request, view, spec.known, spec.repeatable)
        page_query = spec.page_query(request, fixed=owner.conditions if owner else ())
        token = await engine.settle(view, options)
        page, position = await engine.page(view, page_query, token, owner=owner)
        body, link = page_body(request, page)
        return cached_json(body, if_none_match=options.if_none_match, headers={**position.headers(), **link})

    if relation is None:
        path, tag, operation_id = f"/v1/{view.name}", view.name, f"list_{view.name}"
        summary = f"{view.item_name} pages: filters, sort, keyset cursor"
    else:
        parent = relation.parent
        path, tag = f"/v1/{parent.name}/{{item_id}}/{relation.name}", parent.name
        operation_id = f"list_{parent.name}_{relation.name}"
        summary = f"The {relation.name} of one {parent.item_name.lower()}"
    router.add_api_route(
        path,
        list_page,
        methods=["GET"],
        tags=[tag],
        summary=summary,
        operation_id=operation_id,
        response_model=None,
        responses=page_responses(page_model(view)),
        openapi_extra={"parameters": spec.openapi_parameters()},
    )


def _stream_route(
    router: APIRouter,
    view: View,
    engine: ReadEngine,
    authorizer: Authorizer,
    read_options: ReadOptionsDependency,
    streams: Streams,
) -> None:

    async def stream_item(
        request: Request,
        item_id: Annotated[str, key_path(view)],
        options: Annotated[ReadOptions, Depends(read_options)],
        _caller: Annotated[None, Depends(authorizer(view.read_role))],
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
    ) -> Response:
        reject_unknown(request, view, WAIT_PARAMETERS)
        if streams.full:
            raise ProblemError(
                503, "too-many-streams", "Too many streams", "try again later", headers={"Retry-After": "5"}
            )
        token = await engine.settle(view, options)
        row, position = await engine.item(view, item_id, token)
        if row is None:
            raise not_found(view, item_id, position)
        return EventStream(streams, view, item_id, last_event_id=last_event_id, headers=position.headers())

    router.add_api_route(
        f"/v1/{view.name}/{{item_id}}/stream",
        stream_item,
        methods=["GET"],
        tags=[view.name],
        summary=f"Server-Sent Events: the {view.item_name.lower()} now, then every change",
        operation_id=f"stream_{view.name}_item",
        response_model=None,
        response_class=EventStream,
        status_code=200,
        responses=stream_responses(),
    )
