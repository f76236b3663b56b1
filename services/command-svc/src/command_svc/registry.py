"""Which aggregate handles which command type: built once from aggregate definitions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from command_svc.domain.decider import AggregateDefinition
from cqrs_shared.messages import CommandPayload, EventPayload


@dataclass(frozen=True, slots=True)
class CommandRoute:
    payload_model: type[CommandPayload]
    aggregate: AggregateDefinition[Any]


class CommandRegistry:
    def __init__(self, aggregates: Iterable[AggregateDefinition[Any]]) -> None:
        self._aggregates: dict[str, AggregateDefinition[Any]] = {}
        self._routes: dict[str, CommandRoute] = {}
        self._events: dict[str, type[EventPayload]] = {}
        for aggregate in aggregates:
            if aggregate.aggregate_type in self._aggregates:
                raise ValueError(f"aggregate type {aggregate.aggregate_type!r} is defined twice")
            self._aggregates[aggregate.aggregate_type] = aggregate
            for command in aggregate.commands:
                if command.TYPE in self._routes:
                    raise ValueError(f"command type {command.TYPE!r} is handled twice")
                if aggregate.aggregate_type != command.AGGREGATE_TYPE:
                    raise ValueError(
                        f"{command.TYPE} addresses {command.AGGREGATE_TYPE}, not {aggregate.aggregate_type}"
                    )
                self._routes[command.TYPE] = CommandRoute(command, aggregate)
            for event in aggregate.events:
                self._events[event.TYPE] = event

    def route(self, command_type: str) -> CommandRoute | None:
        return self._routes.get(command_type)

    def aggregate(self, aggregate_type: str) -> AggregateDefinition[Any]:
        return self._aggregates[aggregate_type]

    def event_model(self, event_type: str) -> type[EventPayload]:
        return self._events[event_type]

    @property
    def aggregate_types(self) -> list[str]:
        return sorted(self._aggregates)

    @property
    def command_types(self) -> list[str]:
        return sorted(self._routes)
