"""How far a projection has got: the position and staleness headers every response carries.

Definitions (per projection, hence per view):
- `X-Read-Model-Position`: the projector's applied Kafka position, `topic/partition=next_offset`
  for every partition it has consumed, comma-separated and ordered (`none` before the first
  batch). It is read *before* the data in the same request, so the data reflects at least it.
- `X-Staleness-Ms`: 0 when every partition had caught up with its high watermark at its last
  applied batch; otherwise, over the partitions that were behind, the largest `now -
  last_event_at` (time since the newest event applied there was written), an upper bound on the
  age of the oldest event known to be waiting. Events written after the projector's last fetch are
  invisible to the query side (it does not talk to Kafka), so 0 means "caught up as of its last
  batch", not a guarantee.
- `X-Consistency-Applied-Version` (requests with a token): the version the projector has applied
  for the token's aggregate (0: none yet); `X-Read-Model-Stale: true` when it is below the token's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import asyncpg

from cqrs_shared.read_models.notifications import READ_SCHEMA, read_view_name
from query_svc.database import Connection
from query_svc.declarations import Projection
from query_svc.sql import quote

AggregateKey = tuple[str, str]


def offsets_table(projection: Projection) -> str:
    return f"{READ_SCHEMA}.{quote(read_view_name(projection.name, 'partition_offsets'))}"


def versions_table(projection: Projection) -> str:
    return f"{READ_SCHEMA}.{quote(read_view_name(projection.name, 'aggregate_versions'))}"


def position_select(projection: Projection, *extra: str) -> str:
    """A one-row SELECT of `_position`, `_staleness_ms` and `_applied` (the version of the aggregate
    `($1, $2)`), plus `extra` select items; engines join their data query to it laterally, so the
    position and the data come from one statement, one snapshot, one round trip."""
    offsets, versions = offsets_table(projection), versions_table(projection)
    items = [
        f"""(SELECT string_agg(format('%s/%s=%s', topic, partition, next_offset), ', '
                               ORDER BY topic, partition) FROM {offsets}) AS _position""",  # noqa: S608  # declared identifiers
        f"""(SELECT COALESCE(max(GREATEST(0, floor(extract(epoch FROM now() - last_event_at) * 1000)))
                             FILTER (WHERE next_offset < high_watermark), 0)::bigint
             FROM {offsets}) AS _staleness_ms""",  # noqa: S608  # declared identifiers
        f"(SELECT version FROM {versions} WHERE aggregate_type = $1 AND aggregate_id = $2) AS _applied",  # noqa: S608  # declared identifiers
        *extra,
    ]
    return "SELECT " + ",\n       ".join(items)


#: The schema of the table the `read` view `$3` selects from: the build schema it shows (NULL when
#: `read` holds a plain table). The catalogs are readable by any role, the build schemas need not be.
_SOURCE_SCHEMA_SQL = """
    SELECT n.nspname
    FROM pg_catalog.pg_rewrite AS r
    JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
     AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> r.ev_class
    JOIN pg_catalog.pg_class AS c ON c.oid = d.refobjid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE r.ev_class = to_regclass($3) AND r.rulename = '_RETURN'
    ORDER BY n.nspname
    LIMIT 1"""


def _applied_sql(projection: Projection) -> str:
    # One statement: the version and the schema it was read from belong to one moment, even while
    # an activation re-points the view.
    return (
        f"SELECT (SELECT version FROM {versions_table(projection)} "  # noqa: S608  # declared identifiers
        f"WHERE aggregate_type = $1 AND aggregate_id = $2) AS version, ({_SOURCE_SCHEMA_SQL}) AS schema"
    )


@dataclass(frozen=True, slots=True)
class ReadPosition:
    """The projection's applied position when a response's data was read."""

    position: str
    staleness_ms: int
    #: For a request with a consistency token: the token's version and the applied one.
    wanted_version: int | None = None
    applied_version: int | None = None

    @property
    def stale(self) -> bool:
        return self.wanted_version is not None and (self.applied_version or 0) < self.wanted_version

    def headers(self) -> dict[str, str]:
        headers = {"X-Read-Model-Position": self.position, "X-Staleness-Ms": str(self.staleness_ms)}
        if self.wanted_version is not None:
            headers["X-Read-Model-Stale"] = "true" if self.stale else "false"
            headers["X-Consistency-Applied-Version"] = str(self.applied_version or 0)
        return headers


def token_arguments(token: tuple[AggregateKey, int] | None) -> list[str]:
    """`$1, $2` of `position_select`: the token's aggregate (or a key nothing has)."""
    return list(token[0]) if token else ["", ""]


def position_of(row: asyncpg.Record, token: tuple[AggregateKey, int] | None) -> ReadPosition:
    """The position in a row produced with `position_select`."""
    return ReadPosition(
        position=row["_position"] or "none",
        staleness_ms=int(row["_staleness_ms"]),
        wanted_version=token[1] if token else None,
        applied_version=(row["_applied"] or 0) if token else None,
    )


class AppliedVersion(NamedTuple):
    """The version of an aggregate the reader shows (0: none), and the build schema it shows it from."""

    version: int
    schema: str | None


async def applied_version(
    connection: Connection, projection: Projection, key: AggregateKey
) -> AppliedVersion:
    """The version of `key` the projector has applied, as the reader sees it through `read.*`."""
    row = await connection.fetchrow(_applied_sql(projection), key[0], key[1], versions_table(projection))
    if row is None:
        raise RuntimeError("a SELECT without FROM returned no row")
    return AppliedVersion(int(row["version"] or 0), row["schema"])
