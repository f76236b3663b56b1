"""The generic shape of an aggregate: `decide(state, command) -> events`, `evolve(state, event) -> state`.

An aggregate definition is data, so the pipeline can run any domain without naming it. State is a
pydantic model (stored as JSON in the commit); `None` means the aggregate does not exist yet.
A decision that needs another aggregate's state (an order needs its customer) declares it in
`related`; the pipeline loads those states from the write store, never from a read model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from cqrs_shared.messages import CommandPayload, EventPayload

S = TypeVar("S", bound=BaseModel)

#: (aggregate type, aggregate id) of another aggregate a decision reads.
AggregateRef = tuple[str, str]
#: States of the related aggregates, `None` where one does not exist.
Related = Mapping[AggregateRef, BaseModel | None]


class RuleViolationError(Exception):
    """A business rule refuses the command. `rule` is a stable dotted name (`order.not_placed`)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class AggregateNotFoundError(Exception):
    """The command addresses an aggregate that does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _no_related(_command: Any) -> Sequence[AggregateRef]:
    return ()


@dataclass(frozen=True)
class AggregateDefinition(Generic[S]):
    """Everything the generic pipeline needs to know about one aggregate type."""

    aggregate_type: str
    state_model: type[S]
    commands: Sequence[type[CommandPayload]]
    events: Sequence[type[EventPayload]]
    decide: Callable[[S | None, Any, Related], Sequence[EventPayload]]
    evolve: Callable[[S | None, Any], S]
    related: Callable[[Any], Sequence[AggregateRef]] = field(default=_no_related)

    def fold(self, state: S | None, events: Sequence[EventPayload]) -> S | None:
        for event in events:
            state = self.evolve(state, event)
        return state
