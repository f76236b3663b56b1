"""Order aggregate: placed -> confirmed -> shipped, or cancelled while placed or confirmed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from command_svc.domain.decider import (
    AggregateDefinition,
    AggregateNotFoundError,
    AggregateRef,
    Related,
    RuleViolationError,
)
from command_svc.domain.shop.customer import CustomerState
from cqrs_shared.contracts import shop as c
from cqrs_shared.messages import CommandPayload, EventPayload

OrderStatus = Literal["placed", "confirmed", "shipped", "cancelled"]


class OrderState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: OrderStatus
    customer_id: str
    currency: str
    lines: list[c.OrderLine]
    total: c.Money


#: The largest amount `Money` can carry (14 digits, 2 after the point).
MAX_TOTAL = Decimal("999999999999.99")


def total_of(lines: Iterable[c.OrderLine]) -> Decimal:
    total = sum((line.unit_price * line.quantity for line in lines), Decimal("0.00")).quantize(
        Decimal("0.01")
    )
    if total > MAX_TOTAL:
        raise RuleViolationError("order.total_too_large", f"the order total would exceed {MAX_TOTAL}")
    return total


def _require(state: OrderState | None, *allowed: OrderStatus, action: str) -> OrderState:
    if state is None:
        raise AggregateNotFoundError("order does not exist")
    if state.status not in allowed:
        raise RuleViolationError(
            f"order.not_{'_or_'.join(allowed)}",
            f"cannot {action} an order that is {state.status} (must be {' or '.join(allowed)})",
        )
    return state


def related(command: CommandPayload) -> Sequence[AggregateRef]:
    if isinstance(command, c.PlaceOrder):
        return [(c.CUSTOMER, command.customer_id)]
    return []


def decide(state: OrderState | None, command: CommandPayload, others: Related) -> Sequence[EventPayload]:
    match command:
        case c.PlaceOrder():
            return [_place(state, command, others)]
        case c.AddOrderLine(line=line):
            placed = _require(state, "placed", action="add a line to")
            if any(existing.sku == line.sku for existing in placed.lines):
                raise RuleViolationError(
                    "order.duplicate_sku", f"the order already has a line for {line.sku}"
                )
            return [c.OrderLineAdded(line=line, total=total_of([*placed.lines, line]))]
        case c.RemoveOrderLine(sku=sku):
            placed = _require(state, "placed", action="remove a line from")
            remaining = [line for line in placed.lines if line.sku != sku]
            if len(remaining) == len(placed.lines):
                raise RuleViolationError("order.line_not_found", f"the order has no line for {sku}")
            if not remaining:
                raise RuleViolationError("order.last_line", "cannot remove the last line; cancel the order")
            return [c.OrderLineRemoved(sku=sku, total=total_of(remaining))]
        case c.ConfirmOrder():
            _require(state, "placed", action="confirm")
            return [c.OrderConfirmed()]
        case c.ShipOrder(tracking_number=tracking_number):
            _require(state, "confirmed", action="ship")
            return [c.OrderShipped(tracking_number=tracking_number)]
        case c.CancelOrder(reason=reason):
            _require(state, "placed", "confirmed", action="cancel")
            return [c.OrderCancelled(reason=reason)]
    raise TypeError(f"order does not handle {type(command).__name__}")


def _place(state: OrderState | None, command: c.PlaceOrder, others: Related) -> c.OrderPlaced:
    if state is not None:
        raise RuleViolationError("order.already_placed", "an order with this id was already placed")
    customer = others.get((c.CUSTOMER, command.customer_id))
    if customer is None:
        raise RuleViolationError("order.customer_not_registered", "the customer is not registered")
    if isinstance(customer, CustomerState) and customer.status == "deleted":
        raise RuleViolationError("order.customer_deleted", "the customer has been deleted")
    skus = [line.sku for line in command.lines]
    if len(set(skus)) != len(skus):
        raise RuleViolationError("order.duplicate_sku", "each SKU may appear on one line only")
    return c.OrderPlaced(
        customer_id=command.customer_id,
        currency=command.currency,
        lines=list(command.lines),
        total=total_of(command.lines),
    )


def evolve(state: OrderState | None, event: EventPayload) -> OrderState:
    match event:
        case c.OrderPlaced(customer_id=customer_id, currency=currency, lines=lines, total=total):
            return OrderState(
                status="placed", customer_id=customer_id, currency=currency, lines=lines, total=total
            )
        case c.OrderLineAdded(line=line, total=total) if state is not None:
            return state.model_copy(update={"lines": [*state.lines, line], "total": total})
        case c.OrderLineRemoved(sku=sku, total=total) if state is not None:
            lines = [line for line in state.lines if line.sku != sku]
            return state.model_copy(update={"lines": lines, "total": total})
        case c.OrderConfirmed() if state is not None:
            return state.model_copy(update={"status": "confirmed"})
        case c.OrderShipped() if state is not None:
            return state.model_copy(update={"status": "shipped"})
        case c.OrderCancelled() if state is not None:
            return state.model_copy(update={"status": "cancelled"})
    raise TypeError(f"cannot apply {type(event).__name__} to order state {state!r}")


ORDER_AGGREGATE = AggregateDefinition(
    aggregate_type=c.ORDER,
    state_model=OrderState,
    commands=c.ORDER_COMMANDS,
    events=c.ORDER_EVENTS,
    decide=decide,
    evolve=evolve,
    related=related,
)
