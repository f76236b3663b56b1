"""The shop's read models: `customers` and `orders`, with order history joined to customer data.

One declaration serves both sides: the projector writes these tables with the handlers below (and
the migrations beside this module), the query service serves them as `/v1/customers`,
`/v1/orders` and `/v1/customers/{id}/orders`. Sortable columns lead an `(column, id)` index, so
every keyset page is an index range scan.

Convergence under any interleaving of customer and order events (they travel on different topics
and partitions) comes from deriving every joined column from the tables as they are *after* the
batch, never from the order events arrive in:
- `orders.customer_name` is read from `customers` for the orders a batch wrote, and rewritten for
  a customer's orders whenever that customer's row changes;
- `customers.order_count`, `open_order_count` and `lifetime_value` are recomputed from `orders`
  for every customer an order or customer event of the batch touched.
Concurrent batches on different replicas run at SERIALIZABLE isolation (set by the projector), so
two transactions cannot each miss the other's half of a join.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from cqrs_shared.contracts import shop as c
from cqrs_shared.read_models.declarations import (
    Column,
    ColumnType,
    Filter,
    Index,
    Projection,
    ReadModel,
    Relation,
)
from cqrs_shared.read_models.definitions import (
    Derivation,
    Fact,
    ProjectionDefinition,
    Row,
    RowFold,
    existing,
    stamped,
)

EQ = frozenset({Filter.EQUALS})
RANGE = frozenset({Filter.RANGE})
REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
_MIGRATIONS = Path(__file__).parent / "migrations"

SHOP = Projection("shop", aggregate_types=(c.CUSTOMER, c.ORDER))


class OrderLineView(BaseModel):
    """One order line as stored in the read model; `unit_price` is a decimal string."""

    model_config = ConfigDict(extra="allow")

    sku: str
    quantity: int
    unit_price: str


CUSTOMERS = ReadModel(
    name="customers",
    item_name="Customer",
    description="Customers with their order statistics.",
    projection=SHOP,
    aggregate_type=c.CUSTOMER,
    read_role="customers:read",
    # Order counts and lifetime value are recomputed when the customer's orders change.
    changed_by=(c.ORDER,),
    default_sort="registered_at",
    columns=(
        Column("id", ColumnType.TEXT, "Customer id", filters=EQ, pattern=REFERENCE, max_length=128),
        Column("name", ColumnType.TEXT, "Null once the customer is deleted", nullable=True),
        Column("email", ColumnType.TEXT, "Null once the customer is deleted", nullable=True),
        Column("status", ColumnType.TEXT, "Lifecycle state", filters=EQ, choices=("registered", "deleted")),
        Column(
            "registered_at",
            ColumnType.TIMESTAMP,
            "When registered",
            nullable=True,
            filters=RANGE,
            sortable=True,
        ),
        Column("updated_at", ColumnType.TIMESTAMP, "When the customer last changed"),
        Column("version", ColumnType.BIGINT, "Aggregate version this row reflects"),
        Column("order_count", ColumnType.INTEGER, "Orders placed, any status"),
        Column("open_order_count", ColumnType.INTEGER, "Orders placed or confirmed"),
        Column(
            "lifetime_value",
            ColumnType.MONEY,
            "Sum of non-cancelled order totals",
            filters=RANGE,
            precision=20,
        ),
    ),
    indexes=(
        Index("customers_registered_at", ("registered_at", "id")),
        Index("customers_status", ("status", "id")),
    ),
)

ORDERS = ReadModel(
    name="orders",
    item_name="Order",
    description="Orders with their lines and the customer's current name.",
    projection=SHOP,
    aggregate_type=c.ORDER,
    read_role="orders:read",
    # `customer_name` follows the customer's renames.
    changed_by=(c.CUSTOMER,),
    default_sort="-placed_at",
    columns=(
        Column("id", ColumnType.TEXT, "Order id", filters=EQ, pattern=REFERENCE, max_length=128),
        Column(
            "customer_id", ColumnType.TEXT, "Who placed it", filters=EQ, pattern=REFERENCE, max_length=128
        ),
        Column("customer_name", ColumnType.TEXT, "The customer's current name", nullable=True),
        Column(
            "status",
            ColumnType.TEXT,
            "Lifecycle state",
            filters=EQ,
            choices=("placed", "confirmed", "shipped", "cancelled"),
        ),
        Column("currency", ColumnType.TEXT, "ISO 4217 code", filters=EQ, pattern=r"^[A-Z]{3}$", max_length=3),
        Column("total", ColumnType.MONEY, "Sum of the lines", filters=RANGE, sortable=True, precision=16),
        Column("line_count", ColumnType.INTEGER, "Number of lines", filters=RANGE),
        Column("lines", ColumnType.JSON, "The order lines", model=list[OrderLineView]),
        Column("placed_at", ColumnType.TIMESTAMP, "When placed", filters=RANGE, sortable=True),
        Column("updated_at", ColumnType.TIMESTAMP, "When the order last changed", filters=RANGE),
        Column("version", ColumnType.BIGINT, "Aggregate version this row reflects"),
    ),
    indexes=(
        Index("orders_customer", ("customer_id", "placed_at", "id")),
        Index("orders_placed_at", ("placed_at", "id")),
        Index("orders_status", ("status", "id")),
        Index("orders_total", ("total", "id")),
    ),
)

CUSTOMER_ORDERS = Relation("orders", parent=CUSTOMERS, child=ORDERS, foreign_key="customer_id")


customers = RowFold(CUSTOMERS)


@customers.on(c.CustomerRegistered)
def _registered(row: Row | None, fact: Fact[c.CustomerRegistered]) -> Row:
    base = row or {"order_count": 0, "open_order_count": 0, "lifetime_value": Decimal("0.00")}
    p = fact.payload
    return stamped(
        base,
        fact,
        id=fact.aggregate_id,
        name=p.name,
        email=p.email,
        status="registered",
        registered_at=fact.occurred_at,
    )


@customers.on(c.CustomerRenamed)
def _renamed(row: Row | None, fact: Fact[c.CustomerRenamed]) -> Row:
    return stamped(existing(row, fact), fact, name=fact.payload.name)


@customers.on(c.CustomerEmailChanged)
def _email_changed(row: Row | None, fact: Fact[c.CustomerEmailChanged]) -> Row:
    return stamped(existing(row, fact), fact, email=fact.payload.email)


@customers.on(c.CustomerDeleted)
def _deleted(row: Row | None, fact: Fact[c.CustomerDeleted]) -> Row:
    return stamped(existing(row, fact), fact, name=None, email=None, status="deleted")


orders = RowFold(ORDERS)


def _lines(lines: list[c.OrderLine]) -> list[dict[str, Any]]:
    return [line.model_dump(mode="json") for line in lines]


@orders.on(c.OrderPlaced)
def _placed(_row: Row | None, fact: Fact[c.OrderPlaced]) -> Row:
    p = fact.payload
    return stamped(
        {},
        fact,
        id=fact.aggregate_id,
        customer_id=p.customer_id,
        customer_name=None,
        status="placed",
        currency=p.currency,
        total=p.total,
        line_count=len(p.lines),
        lines=_lines(p.lines),
        placed_at=fact.occurred_at,
    )


@orders.on(c.OrderLineAdded)
def _line_added(row: Row | None, fact: Fact[c.OrderLineAdded]) -> Row:
    lines = [*existing(row, fact)["lines"], *_lines([fact.payload.line])]
    return stamped(existing(row, fact), fact, lines=lines, line_count=len(lines), total=fact.payload.total)


@orders.on(c.OrderLineRemoved)
def _line_removed(row: Row | None, fact: Fact[c.OrderLineRemoved]) -> Row:
    lines = [line for line in existing(row, fact)["lines"] if line["sku"] != fact.payload.sku]
    return stamped(existing(row, fact), fact, lines=lines, line_count=len(lines), total=fact.payload.total)


@orders.on(c.OrderConfirmed)
def _confirmed(row: Row | None, fact: Fact[c.OrderConfirmed]) -> Row:
    return stamped(existing(row, fact), fact, status="confirmed")


@orders.on(c.OrderShipped)
def _shipped(row: Row | None, fact: Fact[c.OrderShipped]) -> Row:
    return stamped(existing(row, fact), fact, status="shipped")


@orders.on(c.OrderCancelled)
def _cancelled(row: Row | None, fact: Fact[c.OrderCancelled]) -> Row:
    return stamped(existing(row, fact), fact, status="cancelled")


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

DEFINITION = ProjectionDefinition(
    projection=SHOP,
    folds=(customers, orders),
    migrations=(_MIGRATIONS / "shop_0001_initial.sql", _MIGRATIONS / "shop_0002_wider_money.sql"),
    relations=(CUSTOMER_ORDERS,),
    derivations=(
        Derivation(_REFRESH_CUSTOMER_NAMES, ((CUSTOMERS, "id"),)),
        Derivation(_FILL_ORDER_NAMES, ((ORDERS, "id"),)),
        Derivation(_RECOUNT_CUSTOMERS, ((CUSTOMERS, "id"), (ORDERS, "customer_id"))),
    ),
)
