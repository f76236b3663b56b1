"""The projection every read-model definition gets: typed handlers dispatched by event model.

`DeclaredProjection(definition)` implements the runtime's `Projection` port for any
`cqrs_shared.read_models.ProjectionDefinition`; nothing here names a domain.
- Dispatch: an event type maps to the one fold (read model) registering a handler for its model;
  types no fold registers are unknown (counted and skipped by the runtime).
- Schema versions: an older payload is lifted by the definition's upcasters before validation, a
  newer one is refused, as is a payload that does not fit its model after lifting.
- `apply` is set-based per read model: one load and one upsert per table per batch, then the
  definition's derivations recompute joined columns from the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.messages import EventPayload
from cqrs_shared.read_models import EventRejectedError, Fact, ProjectionDefinition, ReadModel, Row, RowFold
from cqrs_shared.read_models.definitions import definition_named
from cqrs_shared.upcasting import UpcastError
from projector_svc import table_rows
from projector_svc.pg import Connection
from projector_svc.projection import Migration

#: Facts kept between `check` and `apply` at most (more than a rebuild's batch of 20,000); past it
#: the memo starts over. Entries of events never applied (duplicates, parked ones, a batch dropped
#: by a seek) stay until then, each holding its envelope, so the bound is about one batch, not more.
_MEMO_LIMIT = 25_000


class DeclaredProjection:
    """The runtime's `Projection` port for one definition (see the module docstring)."""

    def __init__(self, definition: ProjectionDefinition) -> None:
        self.definition = definition
        self._migrations = migrations_of(definition)
        self._routes: dict[str, tuple[RowFold, type[EventPayload]]] = {
            model.TYPE: (fold, model) for fold in definition.folds for model in fold.events
        }
        # The runtime checks every event before it applies the batch; the fact `check` validated is
        # kept for `apply` (py-spy: validating each payload twice was 9-10 % of a batch). Keyed by
        # the event object, whose identity `apply` checks, so a reused id can only cost a recompute.
        self._checked: dict[int, tuple[EventEnvelope, Fact[Any]]] = {}
        #: Set on a rebuild's copy during its bulk phase (`bulk_load`): batches skip the
        #: derivations, which `derive_all` runs once at the end.
        self.defer_derivations = False

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def aggregate_types(self) -> tuple[str, ...]:
        return self.definition.projection.aggregate_types

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.definition.read_models)

    @property
    def migrations(self) -> tuple[Migration, ...]:
        return self._migrations

    def handles(self, event_type: str) -> bool:
        return event_type in self._routes

    def check(self, event: EventEnvelope) -> None:
        hit = self._checked.get(id(event))
        if hit is not None and hit[0] is event:
            return  # checked already (the runtime checks a batch while it fetches it, then again)
        fact = self._fact(event)
        if len(self._checked) >= _MEMO_LIMIT:
            self._checked.clear()
        self._checked[id(event)] = (event, fact)

    def _checked_fact(self, event: EventEnvelope) -> Fact[Any]:
        hit = self._checked.pop(id(event), None)
        return hit[1] if hit is not None and hit[0] is event else self._fact(event)

    def _fact(self, event: EventEnvelope) -> Fact[Any]:
        fold, model = self._routes[event.type]
        if event.aggregate_type != fold.read_model.aggregate_type:
            raise EventRejectedError(
                f"{event.type} belongs to {fold.read_model.aggregate_type}, not {event.aggregate_type}"
            )
        try:
            payload = self.definition.upcasters.lift(model, event.schema_version, event.payload)
            typed = model.model_validate(payload)
        except UpcastError as exc:
            raise EventRejectedError(str(exc)) from exc
        except ValidationError as exc:
            raise EventRejectedError(f"{event.type} payload does not match its contract: {exc}") from exc
        return Fact(event.aggregate_id, event.version, event.occurred_at, typed)

    async def apply(self, connection: Connection, events: Sequence[EventEnvelope]) -> None:
        written: dict[str, dict[str, Row]] = {}
        for fold in self.definition.folds:
            model = fold.read_model
            mine = [e for e in events if e.type in self._routes and self._routes[e.type][0] is fold]
            if not mine:
                continue
            rows = await table_rows.load(connection, model, (e.aggregate_id for e in mine))
            for event in mine:
                rows[event.aggregate_id] = fold.apply(rows.get(event.aggregate_id), self._checked_fact(event))
            await table_rows.upsert(connection, model, list(rows.values()))
            written[model.name] = rows
        if self.defer_derivations:
            return
        for derivation in self.definition.derivations:
            keys = _values(written, derivation.keys)
            if keys:
                await connection.execute(derivation.sql, keys)

    async def derive_all(self, connection: Connection) -> None:
        """Every derivation over every key its read models hold (the end of a bulk load)."""
        for derivation in self.definition.derivations:
            keys: set[str] = set()
            for model, column in derivation.keys:
                rows = await connection.fetch(f'SELECT DISTINCT "{column}" AS k FROM "{model.name}"')  # noqa: S608  # declared identifiers
                keys.update(r["k"] for r in rows if r["k"] is not None)
            if keys:
                await connection.execute(derivation.sql, sorted(keys))


def migrations_of(definition: ProjectionDefinition) -> tuple[Migration, ...]:
    """The definition's SQL files as migrations, numbered from 1 in the order it lists them."""
    return tuple(Migration.from_file(version, path) for version, path in enumerate(definition.migrations, 1))


def _values(written: dict[str, dict[str, Row]], columns: Sequence[tuple[ReadModel, str]]) -> list[str]:
    return sorted({row[column] for model, column in columns for row in written.get(model.name, {}).values()})


def projection_named(name: str) -> DeclaredProjection:
    """The projection `cqrs_shared.read_models.<name>` defines (`ValueError` when there is none)."""
    return DeclaredProjection(definition_named(name))
