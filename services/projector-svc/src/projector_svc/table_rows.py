"""Set-based reads and writes of whole rows: one round trip per table per batch, whatever its size.

Identifiers (table and column names) come only from code-level declarations, never from input;
values always travel as parameters (`unnest` of typed arrays).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from projector_svc.pg import Connection

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    #: Column name -> PostgreSQL type, in table order; the first column is the primary key.
    columns: Mapping[str, str]

    @property
    def key(self) -> str:
        return next(iter(self.columns))

    async def load(self, connection: Connection, keys: Iterable[str]) -> dict[str, Row]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        cols = ", ".join(f'"{c}"' for c in self.columns)
        rows = await connection.fetch(
            f'SELECT {cols} FROM "{self.name}" WHERE "{self.key}" = ANY($1::text[])',  # noqa: S608  # declared identifiers
            wanted,
        )
        return {row[self.key]: dict(row) for row in rows}

    async def upsert(self, connection: Connection, rows: Sequence[Row]) -> None:
        if not rows:
            return
        names = list(self.columns)
        cols = ", ".join(f'"{c}"' for c in names)
        arrays = ", ".join(f"${i}::{_wire_type(self.columns[c])}[]" for i, c in enumerate(names, start=1))
        values = ", ".join(f'x."{c}"::{self.columns[c]}' for c in names)
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in names[1:])
        await connection.execute(
            f'INSERT INTO "{self.name}" ({cols}) SELECT {values} FROM unnest({arrays}) AS x({cols}) '  # noqa: S608  # declared identifiers
            f'ON CONFLICT ("{self.key}") DO UPDATE SET {updates}',
            *(_column(rows, c, self.columns[c]) for c in names),
        )


def _wire_type(pg_type: str) -> str:
    # A JSON array value inside a `jsonb[]` parameter would be taken for another array dimension,
    # so JSON travels as text and is cast back in the statement.
    return "text" if pg_type in ("json", "jsonb") else pg_type


def _column(rows: Sequence[Row], name: str, pg_type: str) -> list[Any]:
    if pg_type in ("json", "jsonb"):
        return [None if row.get(name) is None else json.dumps(row[name]) for row in rows]
    return [row.get(name) for row in rows]
