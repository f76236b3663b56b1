"""The read engine: token waits, item and page reads over declared views, with their positions.

Each read is one statement on one reader connection: the projection's position joined laterally
to the data, so the position reported with the data is exactly the one it was read at (one
snapshot, one round trip). A page comes back as one row whose rows' JSON PostgreSQL has already
joined, so Python decodes no row of it. Nothing here names a domain type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cqrs_shared.problems import ProblemError
from query_svc.codec import cursor_value, parse_cursor_value
from query_svc.consistency import ConsistencyWaiter
from query_svc.cursor import CursorCodec, CursorPosition, InvalidCursorError
from query_svc.database import Reader
from query_svc.declarations import Column, View
from query_svc.parameters import PageQuery, ReadOptions, parameter_problem
from query_svc.positions import AggregateKey, ReadPosition, position_of, position_select, token_arguments
from query_svc.sql import Condition, exists_item, joined_to, joined_to_page, select_item, select_page

Token = tuple[AggregateKey, int]


@dataclass(frozen=True, slots=True)
class Page:
    """The rows' JSON texts joined by commas as UTF-8 (rendered and joined by PostgreSQL; empty
    for no rows) and the cursor of the next page, if any."""

    items: bytes
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Owner:
    """The row a relation's page belongs to: `key` of `view`, whose rows match on `foreign_key`."""

    view: View
    key: str
    foreign_key: Column

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return (Condition(self.foreign_key, "=", self.key),)


def not_found(view: View, key: str, position: ReadPosition) -> ProblemError:
    return ProblemError(
        404, "not-found", "Not found", f"no {view.item_name.lower()} {key!r}", headers=position.headers()
    )


class ReadEngine:
    """Reads declared views through the reader pool."""

    def __init__(self, reader: Reader, waiter: ConsistencyWaiter, cursors: CursorCodec) -> None:
        self.reader = reader
        self.waiter = waiter
        self._cursors = cursors
        # Statement texts depend only on the declarations: built once per view (the profile of a
        # point read showed their string building at 3-4 % of the service's CPU).
        self._item_sql: dict[str, str] = {}
        self._heads: dict[tuple[str, tuple[str, ...]], str] = {}

    def _head(self, view: View, *extra: str) -> str:
        key = (view.name, extra)
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = position_select(view.projection, *extra)
        return head

    async def settle(self, view: View, options: ReadOptions) -> Token | None:
        """Wait (bounded) for the request's consistency token, if it has one; the token to report."""
        token = options.token_for(view.projection)
        if token is None:
            return None
        await self.waiter.wait(view.projection, token, options.wait_seconds)
        return (token.aggregate_type, token.aggregate_id), token.version

    async def item(self, view: View, key: str, token: Token | None) -> tuple[str | None, ReadPosition]:
        """The row as JSON text (None if absent) and the position it was read at."""
        sql = self._item_sql.get(view.name)
        if sql is None:
            sql = self._item_sql[view.name] = joined_to(self._head(view), select_item(view, parameter=3))
        async with self.reader.connection() as connection:
            row = await connection.fetchrow(sql, *token_arguments(token), key)
        if row is None:
            raise RuntimeError("the position side of an item read returned no row")
        return row["_json"], position_of(row, token)

    async def page(
        self, view: View, query: PageQuery, token: Token | None, *, owner: Owner | None = None
    ) -> tuple[Page, ReadPosition]:
        """One page of `query` (a relation's: of `owner`, whose absence is a 404 problem)."""
        after = self._start(view, query)
        head_args: list[Any] = token_arguments(token)
        extra = []
        if owner is not None:
            head_args.append(owner.key)
            extra.append(f"{exists_item(owner.view, parameter=3)} AS _owner")
        data, data_args, order_by = select_page(
            view, list(query.conditions), query.order, after, query.limit + 1, offset=len(head_args)
        )
        # The limit (page size + 1) is the data query's last parameter.
        limit = f"${len(head_args) + len(data_args)}"
        sql = joined_to_page(self._head(view, *extra), data, order_by, limit)
        async with self.reader.connection() as connection:
            row = await connection.fetchrow(sql, *head_args, *data_args)
        if row is None:
            raise RuntimeError("the position side of a page read returned no row")
        position = position_of(row, token)
        if owner is not None and not row["_owner"]:
            raise not_found(owner.view, owner.key, position)
        next_cursor = None
        if row["_rows"] > query.limit:
            value = cursor_value(query.order.column, row["_last_sort"])
            next_cursor = self._cursors.encode(CursorPosition(query.identity, value, row["_last_key"]))
        return Page(row["_items"] or b"", next_cursor), position

    def _start(self, view: View, query: PageQuery) -> tuple[Any, str] | None:
        if query.cursor is None:
            return None
        try:
            position = self._cursors.decode(query.cursor, query=query.identity)
            key = parse_cursor_value(view.key_column, position.key)
            value = (
                None
                if query.order.column.name == view.key
                else parse_cursor_value(query.order.column, position.sort_value)
            )
        except (InvalidCursorError, ValueError) as exc:
            raise parameter_problem(400, "query", "cursor", str(exc), "invalid-cursor") from exc
        return value, key
