"""The shop read model computed in memory from a set of events: the reference the views must equal.

Written independently of `cqrs_shared.read_models.shop` (no SQL, no batching): each aggregate's distinct
versions are folded in version order, then the joined columns are derived from the folded
aggregates. So the result does not depend on delivery order, duplicates or batch boundaries,
which is exactly what the projector must achieve.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cqrs_shared.envelopes import EventEnvelope

Row = dict[str, Any]
OPEN = ("placed", "confirmed")


@dataclass
class ShopRows:
    customers: dict[str, Row]
    orders: dict[str, Row]


def _histories(events: Iterable[EventEnvelope]) -> dict[tuple[str, str], list[EventEnvelope]]:
    distinct: dict[tuple[str, str, int], EventEnvelope] = {}
    for event in events:
        distinct.setdefault((event.aggregate_type, event.aggregate_id, event.version), event)
    histories: dict[tuple[str, str], list[EventEnvelope]] = {}
    for (kind, ident, _), event in sorted(distinct.items()):
        histories.setdefault((kind, ident), []).append(event)
    return histories


def _customer(history: list[EventEnvelope]) -> Row | None:
    row: Row | None = None
    for e in history:
        if e.type == "CustomerRegistered":
            row = {"id": e.aggregate_id, "name": e.payload["name"], "email": e.payload["email"]}
            row |= {"status": "registered", "registered_at": e.occurred_at}
        elif row is None:
            continue
        elif e.type == "CustomerRenamed":
            row["name"] = e.payload["name"]
        elif e.type == "CustomerEmailChanged":
            row["email"] = e.payload["email"]
        elif e.type == "CustomerDeleted":
            row |= {"name": None, "email": None, "status": "deleted"}
        else:
            continue
        row |= {"updated_at": e.occurred_at, "version": e.version}
    return row


def _order(history: list[EventEnvelope]) -> Row | None:
    row: Row | None = None
    statuses = {"OrderConfirmed": "confirmed", "OrderShipped": "shipped", "OrderCancelled": "cancelled"}
    for e in history:
        p = e.payload
        if e.type == "OrderPlaced":
            row = {"id": e.aggregate_id, "customer_id": p["customer_id"], "status": "placed"}
            row |= {"currency": p["currency"], "lines": list(p["lines"]), "placed_at": e.occurred_at}
        elif row is None:
            continue
        elif e.type == "OrderLineAdded":
            row["lines"] = [*row["lines"], p["line"]]
        elif e.type == "OrderLineRemoved":
            row["lines"] = [ln for ln in row["lines"] if ln["sku"] != p["sku"]]
        elif e.type in statuses:
            row["status"] = statuses[e.type]
        else:
            continue
        if "total" in p:
            row["total"] = Decimal(p["total"])
        row |= {"line_count": len(row["lines"]), "updated_at": e.occurred_at, "version": e.version}
    return row


def fold(events: Iterable[EventEnvelope]) -> ShopRows:
    """`customers` and `orders` rows as `SELECT * FROM read.<table>` returns them, keyed by id."""
    customers: dict[str, Row] = {}
    orders: dict[str, Row] = {}
    for (kind, ident), history in _histories(events).items():
        row = _customer(history) if kind == "customer" else _order(history) if kind == "order" else None
        if row is not None:
            (customers if kind == "customer" else orders)[ident] = row
    for order in orders.values():
        customer = customers.get(order["customer_id"])
        order["customer_name"] = customer["name"] if customer else None
    by_customer: dict[str, list[Row]] = {}
    for order in orders.values():
        by_customer.setdefault(order["customer_id"], []).append(order)
    for customer in customers.values():
        mine = by_customer.get(customer["id"], [])
        customer["order_count"] = len(mine)
        customer["open_order_count"] = sum(o["status"] in OPEN for o in mine)
        customer["lifetime_value"] = sum(
            (o["total"] for o in mine if o["status"] != "cancelled"), Decimal("0.00")
        )
    return ShopRows(customers, orders)
