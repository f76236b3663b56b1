"""What a projection is, as data: its read models, how each event type changes a row, and its DDL.

A `ProjectionDefinition` is everything the generic projector needs to run a projection and the
query service needs to serve it:
- one `RowFold` per read model: per-event handlers registered by event model (`@fold.on(Model)`),
  each a pure function `(row or None, Fact[Model]) -> row` over the typed, upcast payload;
- `derivations`: set-based SQL run after a batch's rows are written, for columns joined from
  other read models (they must converge whatever order the events of different aggregates come
  in, so they are recomputed from the tables, never from the events);
- `migrations`: the versioned SQL files that create and evolve the tables (a test checks they
  produce exactly the declared columns and indexes);
- `upcasters`: the steps lifting old event schema versions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

from cqrs_shared.messages import EventPayload
from cqrs_shared.read_models.declarations import Catalog, Projection, ReadModel, Relation
from cqrs_shared.read_models.identifiers import DeclarationError, check_identifier
from cqrs_shared.upcasting import NO_UPCASTERS, Upcasters

P = TypeVar("P", bound=EventPayload)
Row = dict[str, Any]


class EventRejectedError(Exception):
    """The event is well-formed JSON but not acceptable to this projection (schema or rule)."""


@dataclass(frozen=True, slots=True)
class Fact(Generic[P]):
    """An event as a handler sees it: where it sits in its aggregate's history, and its typed payload."""

    aggregate_id: str
    version: int
    occurred_at: datetime
    payload: P


Handler = Callable[[Row | None, Fact[Any]], Row]


class RowFold:
    """How the events of `read_model.aggregate_type` change that aggregate's row, one handler per type."""

    def __init__(self, read_model: ReadModel) -> None:
        self.read_model = read_model
        self._handlers: dict[type[EventPayload], Handler] = {}

    def on(self, model: type[P]) -> Callable[[Callable[[Row | None, Fact[P]], Row]], Handler]:
        """Register the decorated function as the handler of `model` (one per model)."""

        def register(handler: Callable[[Row | None, Fact[P]], Row]) -> Handler:
            if model in self._handlers:
                raise DeclarationError(f"{self.read_model.name} handles {model.TYPE} twice")
            self._handlers[model] = handler
            return handler

        return register

    @property
    def events(self) -> tuple[type[EventPayload], ...]:
        return tuple(self._handlers)

    def apply(self, row: Row | None, fact: Fact[Any]) -> Row:
        return self._handlers[type(fact.payload)](row, fact)


def stamped(row: Row, fact: Fact[Any], **changes: Any) -> Row:
    """`row` with `changes`, stamped with the event's time (`updated_at`) and version (`version`),
    the two columns every read model of this platform keeps to say what a row reflects."""
    return {**row, **changes, "updated_at": fact.occurred_at, "version": fact.version}


def existing(row: Row | None, fact: Fact[Any]) -> Row:
    """The row a non-creating event changes; refused when its aggregate has none."""
    if row is None:
        raise EventRejectedError(f"{fact.payload.TYPE} for {fact.aggregate_id} that has no row")
    return row


@dataclass(frozen=True, slots=True)
class Derivation:
    """SQL run after a batch's rows are written; `$1` is the sorted `text[]` of the values of the
    `keys` columns (read model, column) in the rows the batch wrote. Skipped when that is empty."""

    sql: str
    keys: tuple[tuple[ReadModel, str], ...]


@dataclass(frozen=True)
class ProjectionDefinition:
    """One projection as data: its read models' folds, migrations, relations, derivations, upcasters."""

    projection: Projection
    folds: tuple[RowFold, ...]
    migrations: tuple[Path, ...]
    relations: tuple[Relation, ...] = ()
    derivations: tuple[Derivation, ...] = ()
    upcasters: Upcasters = field(default=NO_UPCASTERS)
    #: The rows do not depend on how events of different aggregates interleave (each aggregate's
    #: own order is always kept); the projection contract checks it when declared.
    order_independent: bool = True

    def __post_init__(self) -> None:
        for fold in self.folds:
            if fold.read_model.projection != self.projection:
                raise DeclarationError(f"{fold.read_model.name} belongs to another projection")
        types = [m.TYPE for fold in self.folds for m in fold.events]
        if len(set(types)) != len(types):
            raise DeclarationError(f"{self.projection.name}: an event type feeds two read models")

    @property
    def name(self) -> str:
        return self.projection.name

    @property
    def read_models(self) -> tuple[ReadModel, ...]:
        return tuple(fold.read_model for fold in self.folds)

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.read_models, self.relations)


def definition_named(name: str) -> ProjectionDefinition:
    """The definition in module `cqrs_shared.read_models.<name>` (its `DEFINITION`): a deployment
    selects projections by name, and a new one needs no registry besides its own module."""
    try:
        module = importlib.import_module(f"{__package__}.{check_identifier(name, 'projection')}")
        definition = module.DEFINITION
    except (ModuleNotFoundError, AttributeError, DeclarationError):
        raise ValueError(f"no projection named {name!r}") from None
    if not isinstance(definition, ProjectionDefinition) or definition.name != name:
        raise ValueError(f"cqrs_shared.read_models.{name} does not define projection {name!r}")
    return definition


def merged_catalog(definitions: Iterable[ProjectionDefinition]) -> Catalog:
    """One catalog serving the read models of several projections."""
    definitions = list(definitions)
    return Catalog(
        tuple(m for d in definitions for m in d.read_models),
        tuple(r for d in definitions for r in d.relations),
    )


def _names(value: object) -> object:
    # `shop,products` in the environment; a list or tuple from code.
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    return value


#: A setting naming projections: comma-separated in the environment (`shop,products`).
ProjectionNames = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_names), Field(min_length=1)]
