"""Event upcasting: pure functions that lift an old `schema_version` payload to the current one.

An event's payload shape may change incompatibly; its contract class then raises `SCHEMA_VERSION`
and registers one step per old version (`v -> v + 1`). Consumers lift what they read before
validating it against the current model, so a handler only ever sees the current shape, and a
replay of years-old events still folds. A version with no registered step, or one newer than the
consumer knows, is refused (`UpcastError`): guessing a payload's meaning could corrupt a view.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cqrs_shared.messages import EventPayload

Payload = Mapping[str, Any]
Step = Callable[[dict[str, Any]], dict[str, Any]]


class UpcastError(ValueError):
    """The payload's schema version cannot be lifted to the one this consumer knows."""


class Upcasters:
    """A registry of upcasting steps, keyed by event type and the version each step lifts from."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Step] = {}

    def step(self, model: type[EventPayload], from_version: int) -> Callable[[Step], Step]:
        """Register the decorated function as the step `from_version -> from_version + 1` of `model`."""
        if not 1 <= from_version < model.SCHEMA_VERSION:
            raise ValueError(f"{model.TYPE} has no step from version {from_version}")

        def register(function: Step) -> Step:
            if (model.TYPE, from_version) in self._steps:
                raise ValueError(f"{model.TYPE} already has a step from version {from_version}")
            self._steps[(model.TYPE, from_version)] = function
            return function

        return register

    def lift(self, model: type[EventPayload], schema_version: int, payload: Payload) -> dict[str, Any]:
        """`payload` (written at `schema_version`) in the shape of `model.SCHEMA_VERSION`."""
        if schema_version > model.SCHEMA_VERSION:
            raise UpcastError(
                f"{model.TYPE} schema version {schema_version} is newer than {model.SCHEMA_VERSION}"
            )
        lifted = dict(payload)
        for version in range(schema_version, model.SCHEMA_VERSION):
            step = self._steps.get((model.TYPE, version))
            if step is None:
                raise UpcastError(f"{model.TYPE} has no upcaster from schema version {version}")
            lifted = step(lifted)
        return lifted


#: For contracts that never changed shape: every event is at its current version or refused.
NO_UPCASTERS = Upcasters()
