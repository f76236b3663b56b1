"""The shop projection: `customers` and `orders`, with order history joined to customer data.

Convergence under any interleaving of customer and order events (they travel on different topics
and partitions) comes from deriving every joined column from the tables as they are *after* the
batch, never from the order events arrive in:
- `orders.customer_name` is read from `customers` when an order row is written, and rewritten for
  a customer's orders whenever that customer's row changes;
- `customers.order_count`, `open_order_count` and `lifetime_value` are recomputed from `orders`
  for every customer an order or customer event of the batch touched.
Concurrent batches on different replicas run at SERIALIZABLE isolation (set by the runtime), so
two transactions cannot each miss the other's half of a join.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cqrs_shared.contracts import shop as c
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.messages import EventPayload
from projector_svc.pg import Connection
from projector_svc.projection import EventRejectedError, Migration
from projector_svc.table_rows import Row, Table

_MIGRATIONS = Path(__file__).parent.parent / "migrations"

CUSTOMERS = Table(
    "customers",
    {
        "id": "text",
        "name": "text",
        "email": "text",
        "status": "text",
        "registered_at": "timestamptz",
        "updated_at": "timestamptz",
        "version": "bigint",
        "order_count": "integer",
        "open_order_count": "integer",
        "lifetime_value": "numeric",
    },
)
ORDERS = Table(
    "orders",
    {
        "id": "text",
        "customer_id": "text",
        "customer_name": "text",
        "status": "text",
        "currency": "text",
        "total": "numeric",
        "line_count": "integer",
        "lines": "jsonb",
        "placed_at": "timestamptz",
        "updated_at": "timestamptz",
        "version": "bigint",
    },
)

_EVENT_MODELS: dict[str, type[EventPayload]] = {m.TYPE: m for m in (*c.CUSTOMER_EVENTS, *c.ORDER_EVENTS)}
_AGGREGATE_OF: dict[str, str] = {
    **{m.TYPE: c.CUSTOMER for m in c.CUSTOMER_EVENTS},
    **{m.TYPE: c.ORDER for m in c.ORDER_EVENTS},
}

_REFRESH_CUSTOMER_NAMES = """
UPDATE orders o SET customer_name = cu.name
FROM customers cu
WHERE cu.id = ANY($1::text[]) AND o.customer_id = cu.id AND o.customer_name IS DISTINCT FROM cu.name
"""
_FILL_ORDER_NAMES = """
UPDATE orders o SET customer_name = cu.name
FROM customers cu
WHERE o.id = ANY($1::text[]) AND cu.id = o.customer_id AND o.customer_name IS DISTINCT FROM cu.name
"""
_RECOUNT_CUSTOMERS = """
UPDATE customers cu
SET order_count = s.n, open_order_count = s.open, lifetime_value = s.ltv
FROM (
    SELECT k.id,
           count(o.id) AS n,
           count(o.id) FILTER (WHERE o.status IN ('placed', 'confirmed')) AS open,
           COALESCE(sum(o.total) FILTER (WHERE o.status <> 'cancelled'), 0) AS ltv
    FROM unnest($1::text[]) AS k(id)
    LEFT JOIN orders o ON o.customer_id = k.id
    GROUP BY k.id
) s
WHERE cu.id = s.id
"""


class ShopProjection:
    name = "shop"
    aggregate_types = (c.CUSTOMER, c.ORDER)
    tables = ("customers", "orders")
    migrations: tuple[Migration, ...] = (
        Migration.from_file(1, _MIGRATIONS / "shop_0001_initial.sql"),
        Migration.from_file(2, _MIGRATIONS / "shop_0002_wider_money.sql"),
    )

    def handles(self, event_type: str) -> bool:
        return event_type in _EVENT_MODELS

    def check(self, event: EventEnvelope) -> None:
        model = _EVENT_MODELS[event.type]
        if event.aggregate_type != _AGGREGATE_OF[event.type]:
            raise EventRejectedError(
                f"{event.type} belongs to {_AGGREGATE_OF[event.type]}, not {event.aggregate_type}"
            )
        if event.schema_version != model.SCHEMA_VERSION:
            # A newer payload shape of a known event: guessing its meaning could corrupt the view.
            raise EventRejectedError(
                f"{event.type} schema version {event.schema_version} is not {model.SCHEMA_VERSION}"
            )
        try:
            model.model_validate(event.payload)
        except ValidationError as exc:
            raise EventRejectedError(f"{event.type} payload does not match its contract: {exc}") from exc

    async def apply(self, connection: Connection, events: Sequence[EventEnvelope]) -> None:
        customer_events = [e for e in events if e.aggregate_type == c.CUSTOMER]
        order_events = [e for e in events if e.aggregate_type == c.ORDER]
        touched_customers: set[str] = set()
        if customer_events:
            rows = await CUSTOMERS.load(connection, (e.aggregate_id for e in customer_events))
            for event in customer_events:
                rows[event.aggregate_id] = _fold_customer(rows.get(event.aggregate_id), event)
            await CUSTOMERS.upsert(connection, list(rows.values()))
            touched_customers.update(rows)
            await connection.execute(_REFRESH_CUSTOMER_NAMES, sorted(rows))
        if order_events:
            rows = await ORDERS.load(connection, (e.aggregate_id for e in order_events))
            for event in order_events:
                rows[event.aggregate_id] = _fold_order(rows.get(event.aggregate_id), event)
            await ORDERS.upsert(connection, list(rows.values()))
            await connection.execute(_FILL_ORDER_NAMES, sorted(rows))
            touched_customers.update(row["customer_id"] for row in rows.values())
        if touched_customers:
            await connection.execute(_RECOUNT_CUSTOMERS, sorted(touched_customers))


def _touch(row: Row, event: EventEnvelope, **changes: Any) -> Row:
    return {**row, **changes, "updated_at": event.occurred_at, "version": event.version}


def _fold_customer(row: Row | None, event: EventEnvelope) -> Row:
    p = event.payload
    if event.type == c.CustomerRegistered.TYPE:
        base = row or {"order_count": 0, "open_order_count": 0, "lifetime_value": Decimal("0.00")}
        return _touch(
            base,
            event,
            id=event.aggregate_id,
            name=p["name"],
            email=p["email"],
            status="registered",
            registered_at=event.occurred_at,
        )
    if row is None:
        raise EventRejectedError(f"{event.type} for customer {event.aggregate_id} that has no row")
    if event.type == c.CustomerRenamed.TYPE:
        return _touch(row, event, name=p["name"])
    if event.type == c.CustomerEmailChanged.TYPE:
        return _touch(row, event, email=p["email"])
    if event.type == c.CustomerDeleted.TYPE:
        return _touch(row, event, name=None, email=None, status="deleted")
    raise EventRejectedError(f"customers cannot apply {event.type}")


def _fold_order(row: Row | None, event: EventEnvelope) -> Row:
    p = event.payload
    if event.type == c.OrderPlaced.TYPE:
        return _touch(
            {},
            event,
            id=event.aggregate_id,
            customer_id=p["customer_id"],
            customer_name=None,
            status="placed",
            currency=p["currency"],
            total=Decimal(p["total"]),
            line_count=len(p["lines"]),
            lines=p["lines"],
            placed_at=event.occurred_at,
        )
    if row is None:
        raise EventRejectedError(f"{event.type} for order {event.aggregate_id} that has no row")
    if event.type == c.OrderLineAdded.TYPE:
        lines = [*row["lines"], p["line"]]
        return _touch(row, event, lines=lines, line_count=len(lines), total=Decimal(p["total"]))
    if event.type == c.OrderLineRemoved.TYPE:
        lines = [line for line in row["lines"] if line["sku"] != p["sku"]]
        return _touch(row, event, lines=lines, line_count=len(lines), total=Decimal(p["total"]))
    status = {
        c.OrderConfirmed.TYPE: "confirmed",
        c.OrderShipped.TYPE: "shipped",
        c.OrderCancelled.TYPE: "cancelled",
    }.get(event.type)
    if status is None:
        raise EventRejectedError(f"orders cannot apply {event.type}")
    return _touch(row, event, status=status)
