"""The example shop's wire contracts: customers and orders.

Money is a decimal with exactly two places and travels as a string; a float never touches it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, EmailStr, Field, PlainSerializer

from cqrs_shared.messages import CommandPayload, EventPayload, ValueObject

CUSTOMER = "customer"
ORDER = "order"


def _two_places(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite amount")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]  # finite checked above: exponent is int
        raise ValueError("must have at most 2 decimal places")
    return value.quantize(Decimal("0.01"))


#: Money on the wire: a JSON string such as "12.50"; numbers are accepted on input only when exact.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2, examples=["12.50"]),
    AfterValidator(_two_places),
    PlainSerializer(lambda v: f"{v:.2f}", return_type=str, when_used="json"),
]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]
CustomerName = Annotated[str, Field(min_length=1, max_length=200)]
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Reference = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")]

CUSTOMERS_WRITE = "customers:write"
CUSTOMERS_ERASE = "customers:erase"
ORDERS_WRITE = "orders:write"


# --- customer -------------------------------------------------------------------------------------


class RegisterCustomer(CommandPayload):
    TYPE = "RegisterCustomer"
    AGGREGATE_TYPE = CUSTOMER
    REQUIRED_ROLE = CUSTOMERS_WRITE

    name: CustomerName
    email: EmailStr


class RenameCustomer(CommandPayload):
    TYPE = "RenameCustomer"
    AGGREGATE_TYPE = CUSTOMER
    REQUIRED_ROLE = CUSTOMERS_WRITE

    name: CustomerName


class ChangeCustomerEmail(CommandPayload):
    TYPE = "ChangeCustomerEmail"
    AGGREGATE_TYPE = CUSTOMER
    REQUIRED_ROLE = CUSTOMERS_WRITE

    email: EmailStr


class DeleteCustomer(CommandPayload):
    TYPE = "DeleteCustomer"
    AGGREGATE_TYPE = CUSTOMER
    REQUIRED_ROLE = CUSTOMERS_ERASE


class CustomerRegistered(EventPayload):
    TYPE = "CustomerRegistered"

    name: str
    email: str


class CustomerRenamed(EventPayload):
    TYPE = "CustomerRenamed"

    name: str


class CustomerEmailChanged(EventPayload):
    TYPE = "CustomerEmailChanged"

    email: str


class CustomerDeleted(EventPayload):
    TYPE = "CustomerDeleted"


# --- order ----------------------------------------------------------------------------------------


class OrderLine(ValueObject):
    """One line of an order; `unit_price` in the order's currency."""

    sku: Sku
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    unit_price: Money


class PlaceOrder(CommandPayload):
    TYPE = "PlaceOrder"
    AGGREGATE_TYPE = ORDER
    REQUIRED_ROLE = ORDERS_WRITE

    customer_id: Reference
    currency: CurrencyCode
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=500)]


class AddOrderLine(CommandPayload):
    TYPE = "AddOrderLine"
    AGGREGATE_TYPE = ORDER
    REQUIRED_ROLE = ORDERS_WRITE

    line: OrderLine


class RemoveOrderLine(CommandPayload):
    TYPE = "RemoveOrderLine"
    AGGREGATE_TYPE = ORDER
    REQUIRED_ROLE = ORDERS_WRITE

    sku: Sku


class ConfirmOrder(CommandPayload):
    TYPE = "ConfirmOrder"
    AGGREGATE_TYPE = ORDER
    REQUIRED_ROLE = ORDERS_WRITE


class ShipOrder(CommandPayload):
    TYPE = "ShipOrder"
    AGGREGATE_TYPE = ORDER
    REQUIRED_ROLE = ORDERS_WRITE

    tracking_number: Annotated[str, Field(min_length=1, max_length=64)]


class CancelOrder(CommandPayload):
    TYPE = "CancelOrder"
    AGGREGATE_TYPE = ORDER
    REQUIRED_ROLE = ORDERS_WRITE

    reason: Annotated[str, Field(min_length=1, max_length=500)]


class OrderPlaced(EventPayload):
    TYPE = "OrderPlaced"

    customer_id: str
    currency: str
    lines: list[OrderLine]
    total: Money


class OrderLineAdded(EventPayload):
    TYPE = "OrderLineAdded"

    line: OrderLine
    total: Money


class OrderLineRemoved(EventPayload):
    TYPE = "OrderLineRemoved"

    sku: str
    total: Money


class OrderConfirmed(EventPayload):
    TYPE = "OrderConfirmed"


class OrderShipped(EventPayload):
    TYPE = "OrderShipped"

    tracking_number: str


class OrderCancelled(EventPayload):
    TYPE = "OrderCancelled"

    reason: str


CUSTOMER_COMMANDS: tuple[type[CommandPayload], ...] = (
    RegisterCustomer,
    RenameCustomer,
    ChangeCustomerEmail,
    DeleteCustomer,
)
ORDER_COMMANDS: tuple[type[CommandPayload], ...] = (
    PlaceOrder,
    AddOrderLine,
    RemoveOrderLine,
    ConfirmOrder,
    ShipOrder,
    CancelOrder,
)
CUSTOMER_EVENTS: tuple[type[EventPayload], ...] = (
    CustomerRegistered,
    CustomerRenamed,
    CustomerEmailChanged,
    CustomerDeleted,
)
ORDER_EVENTS: tuple[type[EventPayload], ...] = (
    OrderPlaced,
    OrderLineAdded,
    OrderLineRemoved,
    OrderConfirmed,
    OrderShipped,
    OrderCancelled,
)
