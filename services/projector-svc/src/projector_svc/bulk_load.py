"""A rebuild's bulk phase: secondary indexes built after the load, joined columns derived once.

While a fresh build replays the history nobody reads it, so two costs of the live path can wait
for the end of the replay (py-spy and per-statement timing of a rebuild: index upkeep inside the
row upserts and the per-batch derivations were most of PostgreSQL's share):
- the secondary (non-unique) indexes of the projection's tables are dropped before the replay and
  created again after it; primary keys and unique indexes stay, since upserts rely on them;
- the definition's derivations (joined columns) do not run per batch but once, over every key,
  after the indexes are back. Only for definitions declared `order_independent`: their handlers'
  rows cannot depend on a joined column (the contract suite checks that the rows do not depend on
  how aggregates interleave, and joined columns are what such an interleaving changes), and a
  derivation recomputes its columns from the tables, so once over the final tables gives the rows
  per-batch runs would have left.

The dropped indexes' definitions are kept in the build (`deferred_indexes`) in the same
transaction that drops them, so a rebuild interrupted mid-load and resumed later still finishes
them; finishing creates them, derives and drops that table in one transaction, before the
cut-over, which then runs ordinary batches (derivations on) against a complete build.
"""

from __future__ import annotations

import copy
import logging

from cqrs_shared.read_models import check_identifier
from projector_svc.builds import Build
from projector_svc.declared import DeclaredProjection
from projector_svc.pg import Connection
from projector_svc.projection import Projection

log = logging.getLogger(__name__)

_SECONDARY_INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = $1 AND t.relname = ANY($2::text[]) AND NOT i.indisprimary AND NOT i.indisunique
ORDER BY c.relname
"""


def bulk_variant(projection: Projection) -> DeclaredProjection | None:
    """A copy of `projection` that defers its derivations, or None when it cannot (not a declared
    projection, or not declared order-independent). A copy, so whoever else holds the original
    (a live replica in the same process) keeps deriving per batch."""
    if not isinstance(projection, DeclaredProjection) or not projection.definition.order_independent:
        return None
    variant = copy.copy(projection)
    variant.defer_derivations = True
    return variant


async def begin(connection: Connection, projection: Projection, build: Build) -> None:
    """Drop the build's secondary indexes, keeping their definitions in the build (idempotent: a
    resumed bulk phase finds them kept already)."""
    schema = check_identifier(build.schema, "build")
    async with connection.transaction():
        await connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".deferred_indexes '
            "(name text PRIMARY KEY, definition text NOT NULL)"
        )
        found = await connection.fetch(_SECONDARY_INDEXES, schema, list(projection.tables))
        for index in found:
            await connection.execute(
                f'INSERT INTO "{schema}".deferred_indexes (name, definition) VALUES ($1, $2)',  # noqa: S608  # checked identifier
                index["name"],
                index["definition"],
            )
            await connection.execute(f'DROP INDEX "{schema}"."{check_identifier(index["name"], "index")}"')
    if found:
        log.info("%s: %d secondary indexes are built after the load", schema, len(found))


async def finish(connection: Connection, variant: DeclaredProjection | None, build: Build) -> None:
    """Create the kept indexes again, derive every joined column once, and end the bulk phase; the
    variant derives per batch from here on (the cut-over's batches)."""
    schema = check_identifier(build.schema, "build")
    async with connection.transaction():
        exists = await connection.fetchval("SELECT to_regclass($1)", f'"{schema}".deferred_indexes')
        if exists is not None:
            kept = await connection.fetch(f'SELECT definition FROM "{schema}".deferred_indexes ORDER BY name')  # noqa: S608  # checked identifier
            for index in kept:
                # pg_get_indexdef's text: the index's own definition, schema-qualified.
                await connection.execute(index["definition"])
            await connection.execute(f'DROP TABLE "{schema}".deferred_indexes')
        if variant is not None:
            await connection.execute("SELECT set_config('search_path', quote_ident($1), true)", schema)
            await variant.derive_all(connection)
    if variant is not None:
        variant.defer_derivations = False
