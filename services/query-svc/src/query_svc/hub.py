"""Fan-out of the projector's notifications to waiting reads and to stream subscribers.

The hub never touches the database: it is fed notification payloads by the one shared LISTEN
connection and wakes whoever cares, so a thousand waiting requests cost one connection and no
polling. Notifications name `[aggregate_type, aggregate_id, version]` triples of one committed
projector transaction in one build schema; a payload that cannot list them (`overflow`, also sent
when a build is activated) or a reconnect of the listener (notifications may have been missed)
wakes everyone of the projection to re-check. During a rebuild the building schema notifies too:
its changes wake by key like any other (one re-check against `read.*`), and a waiter keeps what was
announced *per schema*, so only announcements from the schema its reader reads count as proof
(see `consistency.py`).

A subscriber holds at most one pending signal, the merge of every signal since its stream last
took one: delivery never blocks and memory per subscriber is bounded by construction, however far
its stream's re-reads fall behind a burst. Slow clients are dropped by the stream, when a write to
their socket times out, never for being signalled often.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cqrs_shared.read_models.notifications import Change, Notification, decode
from query_svc.declarations import Projection, View
from query_svc.metrics import NOTIFICATIONS, SSE_DROPPED, SSE_SUBSCRIBERS

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Waiter:
    """A read waiting until `key` reaches `version`; `event` is set whenever it should re-check."""

    key: tuple[str, str, str]
    version: int
    event: asyncio.Event = field(default_factory=asyncio.Event)
    #: Per build schema, the highest version a notification announced for the key (proof it is
    #: committed upstream, in that schema).
    announced: dict[str, int] = field(default_factory=dict)
    #: Reads of the applied version so far, and whether the read now sleeps until a notification
    #: (its last check found the key behind): observable state for probes and tests.
    checks: int = 0
    parked: bool = False

    def announced_in(self, schema: str | None) -> int:
        """The version announced in `schema`; None (a reader not behind a build schema): in any."""
        if schema is None:
            return max(self.announced.values(), default=0)
        return self.announced.get(schema, 0)


@dataclass(frozen=True, slots=True)
class Signal:
    """Something a subscriber's row may depend on changed; `witness` is one change of that commit."""

    witness: Change | None


def _merged(pending: Signal | None, signal: Signal) -> Signal:
    # Commits become visible in order, so the latest witness covers every earlier one; a resync
    # (no witness) asks only for a re-read, which waiting for a witness first still provides.
    if pending is None or signal.witness is not None:
        return signal
    return pending


@dataclass(eq=False)
class Subscription:
    """One stream's place in the hub: a "dirty" flag carrying the merge of the signals not yet taken."""

    view: View
    item_id: str
    dropped: str | None = None
    _pending: Signal | None = field(default=None, init=False, repr=False)
    _ready: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def pending(self) -> Signal | None:
        return self._pending

    def offer(self, signal: Signal) -> None:
        """Mark the subscriber dirty (never blocks, never grows: one pending signal at most)."""
        if self.dropped is None:
            self._pending = _merged(self._pending, signal)
            self._ready.set()

    def drop(self, reason: str) -> None:
        if self.dropped is None:
            self.dropped = reason
            SSE_DROPPED.labels(self.view.name, reason).inc()
            log.warning("dropped a slow %s stream for %s (%s)", self.view.name, self.item_id, reason)

    async def next(self, idle_seconds: float) -> Signal | None:
        """The merge of the signals since the last call, or None after `idle_seconds` without one."""
        if self._pending is None:
            self._ready.clear()
            try:
                async with asyncio.timeout(idle_seconds):
                    await self._ready.wait()
            except TimeoutError:
                return None
        signal, self._pending = self._pending, None
        return signal


class ChangeHub:
    """Routes notifications of the served projections to waiters and subscribers."""

    def __init__(self, projections: Iterable[Projection]) -> None:
        self._projections = {p.name for p in projections}
        self._waiters: dict[tuple[str, str, str], set[Waiter]] = {}
        self._subscribers: dict[str, dict[str, set[Subscription]]] = {}
        self._views: dict[str, View] = {}

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for by_item in self._subscribers.values() for s in by_item.values())

    @contextmanager
    def watch(
        self, projection: str, aggregate_type: str, aggregate_id: str, version: int
    ) -> Iterator[Waiter]:
        """Register a waiter for the duration of the block (register *before* the first check)."""
        waiter = Waiter((projection, aggregate_type, aggregate_id), version)
        self._waiters.setdefault(waiter.key, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(waiter.key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.key]

    def waiters(self, projection: str, aggregate_type: str, aggregate_id: str) -> tuple[Waiter, ...]:
        """The reads now waiting for this aggregate (for probes and tests)."""
        return tuple(self._waiters.get((projection, aggregate_type, aggregate_id), ()))

    def subscribe(self, view: View, item_id: str) -> Subscription:
        subscription = Subscription(view, item_id)
        self._views[view.name] = view
        self._subscribers.setdefault(view.name, {}).setdefault(item_id, set()).add(subscription)
        SSE_SUBSCRIBERS.labels(view.name).inc()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        by_item = self._subscribers.get(subscription.view.name, {})
        subscribers = by_item.get(subscription.item_id)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del by_item[subscription.item_id]
        SSE_SUBSCRIBERS.labels(subscription.view.name).dec()

    def dispatch(self, payload: str) -> None:
        """Handle one notification payload (called by the listener on the event loop; never blocks)."""
        notification = decode(payload)
        if notification is None:
            NOTIFICATIONS.labels("malformed").inc()
            log.warning("ignored a malformed notification: %.200s", payload)
            return
        if notification.projection not in self._projections:
            return
        if notification.overflow:
            NOTIFICATIONS.labels("overflow").inc()
            self._wake_projection(notification.projection)
            return
        NOTIFICATIONS.labels("changes").inc()
        self._wake_waiters(notification)
        self._signal_subscribers(notification)

    def resync(self) -> None:
        """Wake everything: notifications may have been missed (the listener just (re)connected)."""
        for projection in self._projections:
            self._wake_projection(projection)

    def _wake_projection(self, projection: str) -> None:
        for key, waiters in self._waiters.items():
            if key[0] == projection:
                for waiter in waiters:
                    waiter.event.set()
        for name, by_item in self._subscribers.items():
            if self._views[name].projection.name == projection:
                for subscribers in by_item.values():
                    for subscription in list(subscribers):
                        subscription.offer(Signal(None))

    def _wake_waiters(self, notification: Notification) -> None:
        for change in notification.changes:
            key = (notification.projection, change.aggregate_type, change.aggregate_id)
            for waiter in self._waiters.get(key, ()):
                if change.version > waiter.announced.get(notification.schema, 0):
                    waiter.announced[notification.schema] = change.version
                if change.version >= waiter.version:
                    waiter.event.set()

    def _signal_subscribers(self, notification: Notification) -> None:
        if not notification.changes:
            return
        signal = Signal(notification.changes[-1])
        types = {c.aggregate_type for c in notification.changes}
        for name, by_item in self._subscribers.items():
            view = self._views[name]
            if view.projection.name != notification.projection:
                continue
            if types & set(view.changed_by):
                # A joined column may have changed for any row: every subscriber re-reads and
                # only real changes are sent on (see `stream.py`).
                targets: Iterable[set[Subscription]] = list(by_item.values())
            else:
                ids = {
                    c.aggregate_id for c in notification.changes if c.aggregate_type == view.aggregate_type
                }
                targets = [by_item[i] for i in ids if i in by_item]
            for subscribers in targets:
                for subscription in list(subscribers):
                    subscription.offer(signal)
