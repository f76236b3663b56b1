"""Set-based reads and writes of whole rows: one round trip per table per batch, whatever its size.

Identifiers (table and column names) come only from code-level declarations, never from input;
values always travel as parameters (`unnest` of typed arrays).
"""

from __future__ import annotations

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
        arrays = ", ".join(f"${i}::{self.columns[c]}[]" for i, c in enumerate(names, start=1))
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in names[1:])
        await connection.execute(
            f'INSERT INTO "{self.name}" ({cols}) SELECT * FROM unnest({arrays}) '  # noqa: S608  # declared identifiers
            f'ON CONFLICT ("{self.key}") DO UPDATE SET {updates}',
            *([row.get(c) for row in rows] for c in names),
        )
