"""A shop projection whose handler fails on chosen events until it is "fixed": the poison tests'
stand-in for a handler bug that a later deployment repairs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from cqrs_shared.envelopes import EventEnvelope
from projector_svc.pg import Connection
from projector_svc.testing.shop import ShopProjection


class HandlerBugError(RuntimeError):
    """What the buggy handler raises."""


class BuggyShopProjection(ShopProjection):
    """Raises `HandlerBugError` while applying any of `poison` until `fixed` is set."""

    def __init__(self, poison: Iterable[uuid.UUID]) -> None:
        super().__init__()
        self.poison = set(poison)
        self.fixed = False

    async def apply(self, connection: Connection, events: Sequence[EventEnvelope]) -> None:
        if not self.fixed:
            for event in events:
                if event.event_id in self.poison:
                    raise HandlerBugError(f"cannot handle {event.type} {event.event_id}")
        await super().apply(connection, events)
