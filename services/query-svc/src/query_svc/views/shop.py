"""The shop's read models as the query service serves them: customers, orders, a customer's orders.

Adding a column, filter, sort or view to the API touches only this module (and the projector's
migration that creates the column). Sortable columns are the ones with an `(column, id)` index in
the projector's migration, so every keyset page is an index range scan.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from query_svc.declarations import Catalog, Column, ColumnType, Filter, Projection, Relation, View

EQ = frozenset({Filter.EQUALS})
RANGE = frozenset({Filter.RANGE})
REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"

SHOP = Projection("shop", aggregate_types=("customer", "order"))


class OrderLineView(BaseModel):
    """One order line as stored in the read model; `unit_price` is a decimal string."""

    model_config = ConfigDict(extra="allow")

    sku: str
    quantity: int
    unit_price: str


CUSTOMERS = View(
    name="customers",
    item_name="Customer",
    description="Customers with their order statistics.",
    projection=SHOP,
    aggregate_type="customer",
    read_role="customers:read",
    # Order counts and lifetime value are recomputed when the customer's orders change.
    changed_by=("order",),
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
        Column("lifetime_value", ColumnType.MONEY, "Sum of non-cancelled order totals", filters=RANGE),
    ),
)

ORDERS = View(
    name="orders",
    item_name="Order",
    description="Orders with their lines and the customer's current name.",
    projection=SHOP,
    aggregate_type="order",
    read_role="orders:read",
    # `customer_name` follows the customer's renames.
    changed_by=("customer",),
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
        Column("total", ColumnType.MONEY, "Sum of the lines", filters=RANGE, sortable=True),
        Column("line_count", ColumnType.INTEGER, "Number of lines", filters=RANGE),
        Column("lines", ColumnType.JSON, "The order lines", model=list[OrderLineView]),
        Column("placed_at", ColumnType.TIMESTAMP, "When placed", filters=RANGE, sortable=True),
        Column("updated_at", ColumnType.TIMESTAMP, "When the order last changed", filters=RANGE),
        Column("version", ColumnType.BIGINT, "Aggregate version this row reflects"),
    ),
)

CUSTOMER_ORDERS = Relation("orders", parent=CUSTOMERS, child=ORDERS, foreign_key="customer_id")

CATALOG = Catalog(views=(CUSTOMERS, ORDERS), relations=(CUSTOMER_ORDERS,))
