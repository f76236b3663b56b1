"""The contract every projection passes, whatever its domain: subclass `ProjectionContract` once per
projection (like the write store's contract suite) and pytest runs these checks against the real
PostgreSQL, through the real batch path (version guard, poison isolation, positions):

- its migrations create exactly the declared columns (names, types, nullability), keys and indexes;
- applying a history equals an independent reference fold of it;
- redelivery is idempotent: every batch delivered twice (and the whole history again) changes nothing;
- where the definition declares the projection order-independent, any interleaving of aggregates
  (each aggregate's own order kept) gives the same rows.

A subclass sets `definition` and provides `history(seed)` (valid events, each aggregate's in version
order) and `reference(events)` (`{table: {key: row}}` as `SELECT *` returns them).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.kafka_io import to_json
from cqrs_shared.read_models import ProjectionDefinition, ReadModel
from projector_svc.batch import BatchApplier
from projector_svc.builds import ensure_active_build
from projector_svc.dead_letters import MemoryDeadLetters
from projector_svc.declared import DeclaredProjection
from projector_svc.incoming import Incoming, Origin
from projector_svc.pg import Connection, create_pool

Rows = dict[str, dict[str, dict[str, Any]]]


async def schema_mismatches(connection: Connection, schema: str, models: Sequence[ReadModel]) -> list[str]:
    """How the tables in `schema` differ from their declarations (empty when they match exactly)."""
    problems: list[str] = []
    for model in models:
        rows = await connection.fetch(
            """
            SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
            FROM pg_attribute a
            WHERE a.attrelid = to_regclass(quote_ident($1) || '.' || quote_ident($2))
              AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """,
            schema,
            model.name,
        )
        actual = [(r["name"], r["type"], not r["not_null"]) for r in rows]
        declared = [(c.name, c.sql_type, c.nullable) for c in model.columns]
        if actual != declared:
            problems.append(f"{model.name} columns: created {actual}, declared {declared}")
        indexes = await connection.fetch(
            """
            SELECT i.relname AS name, x.indisprimary AS primary_key,
                   ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                         ORDER BY k.n) AS columns
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indrelid = to_regclass(quote_ident($1) || '.' || quote_ident($2))
            """,
            schema,
            model.name,
        )
        keys = [list(r["columns"]) for r in indexes if r["primary_key"]]
        if keys != [[model.key]]:
            problems.append(f"{model.name} primary key: created {keys}, declared [{model.key!r}]")
        created = {r["name"]: tuple(r["columns"]) for r in indexes if not r["primary_key"]}
        wanted = {i.name: i.columns for i in model.indexes}
        if created != wanted:
            problems.append(f"{model.name} indexes: created {created}, declared {wanted}")
    return problems


def _incoming(events: Sequence[EventEnvelope], first_offset: int = 0) -> list[Incoming]:
    return [
        Incoming(e, Origin(f"events.{e.aggregate_type}", 0, first_offset + i, to_json(e)))
        for i, e in enumerate(events)
    ]


def interleaved(events: Sequence[EventEnvelope], seed: int) -> list[EventEnvelope]:
    """The events in another order across aggregates, each aggregate's own order kept."""
    queues: dict[tuple[str, str], list[EventEnvelope]] = {}
    for event in events:
        queues.setdefault((event.aggregate_type, event.aggregate_id), []).append(event)
    rng = random.Random(seed)  # noqa: S311  # reproducible test order, not secrets
    out: list[EventEnvelope] = []
    live = list(queues.values())
    while live:
        queue = rng.choice(live)
        out.append(queue.pop(0))
        live = [q for q in live if q]
    return out


def batches(events: Sequence[EventEnvelope], seed: int) -> list[list[EventEnvelope]]:
    """Consecutive batches of random sizes."""
    rng = random.Random(seed)  # noqa: S311  # reproducible test batches, not secrets
    out: list[list[EventEnvelope]] = []
    rest = list(events)
    while rest:
        size = rng.randint(1, max(1, len(rest) // 3))
        out.append(rest[:size])
        rest = rest[size:]
    return out


class ProjectionContract:
    """Subclass with `definition`, `history` and `reference`; see the module docstring."""

    definition: ProjectionDefinition
    #: Events per history; large enough for joins and lifecycles, small enough for seconds.
    history_size = 300

    def make_projection(self) -> DeclaredProjection:
        return DeclaredProjection(self.definition)

    def history(self, seed: int) -> list[EventEnvelope]:
        raise NotImplementedError

    def reference(self, events: Sequence[EventEnvelope]) -> Rows:
        raise NotImplementedError

    @pytest.fixture
    async def build(self, pg_database: str) -> AsyncIterator[tuple[Connection, str]]:
        """A connection and the active build schema of a fresh database."""
        pool = await create_pool(pg_database, max_size=1)
        try:
            async with pool.acquire() as connection:
                build = await ensure_active_build(connection, self.make_projection())
                yield connection, build.schema
        finally:
            await pool.close()

    async def deliver(self, connection: Connection, schema: str, events: Sequence[EventEnvelope]) -> None:
        """One batch through the real batch path, in its own transaction, as the runtime runs it;
        nothing may be refused."""
        letters = MemoryDeadLetters()
        async with connection.transaction(isolation="serializable"):
            await connection.execute("SELECT set_config('search_path', $1, true)", schema)
            outcome = await BatchApplier(self.make_projection(), letters).apply(
                connection, schema, _incoming(events)
            )
        assert letters.letters == []
        assert outcome.parked == 0

    async def rows(self, connection: Connection, schema: str) -> Rows:
        out: Rows = {}
        for model in self.make_projection().definition.read_models:
            records = await connection.fetch(f'SELECT * FROM "{schema}"."{model.name}"')  # noqa: S608  # declared identifiers
            out[model.name] = {r[model.key]: dict(r) for r in records}
        return out

    def assert_equal(self, actual: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
        differing = [
            (table, key)
            for table in sorted(set(actual) | set(expected))
            for key in sorted(set(actual.get(table, {})) | set(expected.get(table, {})))
            if actual.get(table, {}).get(key) != expected.get(table, {}).get(key)
        ]
        assert differing == [], f"{len(differing)} rows differ, first: {differing[:3]}"

    async def test_migrations_create_exactly_the_declared_columns_keys_and_indexes(
        self, build: tuple[Connection, str]
    ) -> None:
        connection, schema = build
        models = self.make_projection().definition.read_models
        assert await schema_mismatches(connection, schema, models) == []

    async def test_a_history_folds_to_the_reference(self, build: tuple[Connection, str]) -> None:
        connection, schema = build
        events = self.history(seed=1)
        for batch in batches(events, seed=1):
            await self.deliver(connection, schema, batch)
        self.assert_equal(await self.rows(connection, schema), self.reference(events))

    async def test_redelivery_is_idempotent(self, build: tuple[Connection, str]) -> None:
        connection, schema = build
        events = self.history(seed=2)
        for batch in batches(events, seed=2):
            await self.deliver(connection, schema, [*batch, *batch])
        once = await self.rows(connection, schema)
        for batch in batches(events, seed=3):
            await self.deliver(connection, schema, batch)
        assert await self.rows(connection, schema) == once
        self.assert_equal(once, self.reference(events))

    async def test_order_of_aggregates_does_not_matter_where_declared(
        self, build: tuple[Connection, str]
    ) -> None:
        if not self.make_projection().definition.order_independent:
            pytest.skip("the definition declares this projection order-dependent across aggregates")
        connection, schema = build
        events = self.history(seed=4)
        for batch in batches(interleaved(events, seed=4), seed=4):
            await self.deliver(connection, schema, batch)
        self.assert_equal(await self.rows(connection, schema), self.reference(events))
