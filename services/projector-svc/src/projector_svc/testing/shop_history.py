"""Valid shop event histories, generated deterministically from a seed.

Each aggregate's events come out in version order, as the write side would publish them; across
aggregates they interleave the way a busy shop's would: registrations, renames, e-mail changes,
deletions, orders placed and taken through their lifecycle.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cqrs_shared.contracts import shop as c
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.messages import EventPayload

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def envelope(
    aggregate_type: str, aggregate_id: str, version: int, payload: EventPayload, at: datetime
) -> EventEnvelope:
    return EventEnvelope(
        event_id=EventEnvelope.id_for(aggregate_type, aggregate_id, version),
        type=payload.TYPE,
        schema_version=payload.SCHEMA_VERSION,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        version=version,
        occurred_at=at,
        correlation_id=f"gen-{aggregate_id}",
        causation_id=f"cmd-{aggregate_id}-{version}",
        payload=payload.model_dump(mode="json"),
    )


def line(sku: str, quantity: int, cents: int) -> c.OrderLine:
    return c.OrderLine(sku=sku, quantity=quantity, unit_price=Decimal(cents) / 100)


def total(lines: list[c.OrderLine]) -> Decimal:
    return sum((ln.unit_price * ln.quantity for ln in lines), Decimal("0.00")).quantize(Decimal("0.01"))


@dataclass
class _Customer:
    version: int = 0
    deleted: bool = False


@dataclass
class _Order:
    customer_id: str
    version: int = 0
    status: str = "placed"
    lines: list[c.OrderLine] = field(default_factory=list)
    next_sku: int = 0


class ShopHistory:
    """Generates the next events of an ongoing shop; `take(n)` continues where the last call ended."""

    def __init__(
        self,
        seed: int = 0,
        *,
        prefix: str = "",
        clock: Callable[[], datetime] | None = None,
        max_aggregates: int | None = None,
    ) -> None:
        """`max_aggregates`: once that many customers and orders exist, no new ones are made and
        the existing ones keep changing (renames, e-mail changes, open orders moving on; no
        deletions, which would use them up): a long history over a fixed set of aggregates."""
        self._random = random.Random(seed)  # noqa: S311  # reproducible test data, not secrets
        self._max_aggregates = max_aggregates
        self._prefix = prefix
        self._clock = clock
        self._ticks = 0
        self._customers: dict[str, _Customer] = {}
        self._orders: dict[str, _Order] = {}
        self._live: list[str] = []
        self._open: list[str] = []

    def take(self, count: int) -> list[EventEnvelope]:
        return [self._next() for _ in range(count)]

    def _now(self) -> datetime:
        self._ticks += 1
        return self._clock() if self._clock else _EPOCH + timedelta(microseconds=1013 * self._ticks)

    def _pick(self, ids: list[str], alive: Callable[[str], bool]) -> str | None:
        # Lazy removal keeps picking O(1): a stale id is swapped out when drawn.
        while ids:
            i = self._random.randrange(len(ids))
            if alive(ids[i]):
                return ids[i]
            ids[i] = ids[-1]
            ids.pop()
        return None

    def _next(self) -> EventEnvelope:
        customer = self._pick(self._live, lambda i: not self._customers[i].deleted)
        order = self._pick(self._open, lambda i: self._orders[i].status in ("placed", "confirmed"))
        roll = self._random.random()
        if customer is not None and self._full():
            if order is not None and roll < 0.3:
                return self._advance(order)
            if roll < 0.8:
                return self._customer_event(customer, c.CustomerRenamed(name=self._name()))
            return self._customer_event(
                customer, c.CustomerEmailChanged(email=f"{customer}.{roll:.6f}@example.org")
            )
        if customer is None or roll < 0.14:
            return self._register()
        if roll < 0.24:
            return self._customer_event(customer, c.CustomerRenamed(name=self._name()))
        if roll < 0.28:
            return self._customer_event(customer, c.CustomerEmailChanged(email=f"{customer}@example.org"))
        if roll < 0.30:
            self._customers[customer].deleted = True
            return self._customer_event(customer, c.CustomerDeleted())
        if roll < 0.58 or order is None:
            return self._place(customer)
        return self._advance(order)

    def _full(self) -> bool:
        limit = self._max_aggregates
        return limit is not None and len(self._customers) + len(self._orders) >= limit

    def _name(self) -> str:
        first = self._random.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara"])
        return f"{first} {self._random.randrange(10**6)}"

    def _customer_event(self, customer_id: str, payload: EventPayload) -> EventEnvelope:
        state = self._customers[customer_id]
        state.version += 1
        return envelope(c.CUSTOMER, customer_id, state.version, payload, self._now())

    def _register(self) -> EventEnvelope:
        customer_id = f"{self._prefix}c{len(self._customers) + 1}"
        self._customers[customer_id] = _Customer()
        self._live.append(customer_id)
        name = self._name()
        return self._customer_event(
            customer_id, c.CustomerRegistered(name=name, email=f"{customer_id}@example.com")
        )

    def _order_event(self, order_id: str, payload: EventPayload) -> EventEnvelope:
        state = self._orders[order_id]
        state.version += 1
        return envelope(c.ORDER, order_id, state.version, payload, self._now())

    def _new_line(self, state: _Order) -> c.OrderLine:
        state.next_sku += 1
        return line(f"sku-{state.next_sku}", self._random.randint(1, 5), self._random.randint(100, 20000))

    def _place(self, customer_id: str) -> EventEnvelope:
        order_id = f"{self._prefix}o{len(self._orders) + 1}"
        state = self._orders[order_id] = _Order(customer_id)
        state.lines = [self._new_line(state) for _ in range(self._random.randint(1, 3))]
        self._open.append(order_id)
        placed = c.OrderPlaced(
            customer_id=customer_id, currency="EUR", lines=state.lines, total=total(state.lines)
        )
        return self._order_event(order_id, placed)

    def _advance(self, order_id: str) -> EventEnvelope:
        state = self._orders[order_id]
        roll = self._random.random()
        if state.status == "confirmed":
            state.status = "shipped" if roll < 0.8 else "cancelled"
            if state.status == "shipped":
                return self._order_event(order_id, c.OrderShipped(tracking_number=f"T{order_id}"))
            return self._order_event(order_id, c.OrderCancelled(reason="changed mind"))
        if roll < 0.3 and len(state.lines) < 6:
            added = self._new_line(state)
            state.lines.append(added)
            return self._order_event(order_id, c.OrderLineAdded(line=added, total=total(state.lines)))
        if roll < 0.45 and len(state.lines) > 1:
            removed = state.lines.pop(self._random.randrange(len(state.lines)))
            return self._order_event(order_id, c.OrderLineRemoved(sku=removed.sku, total=total(state.lines)))
        if roll < 0.9:
            state.status = "confirmed"
            return self._order_event(order_id, c.OrderConfirmed())
        state.status = "cancelled"
        return self._order_event(order_id, c.OrderCancelled(reason="out of stock"))
