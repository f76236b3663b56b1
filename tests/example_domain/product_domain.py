"""The product aggregate: pure `decide` and `evolve`, as every domain module of command-svc."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from command_svc.domain.decider import (
    AggregateDefinition,
    AggregateNotFoundError,
    Related,
    RuleViolationError,
)
from cqrs_shared.messages import CommandPayload, EventPayload
from tests.example_domain import product_contracts as p


class ProductState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    price: Decimal
    currency: str


def decide(state: ProductState | None, command: CommandPayload, _related: Related) -> Sequence[EventPayload]:
    match command:
        case p.RegisterProduct(name=name, price=price, currency=currency):
            if state is not None:
                raise RuleViolationError("product.already_registered", "product is already registered")
            return [p.ProductRegistered(name=name, price=price, currency=currency)]
        case p.ChangePrice(price=price):
            if state is None:
                raise AggregateNotFoundError("product is not registered")
            return [] if price == state.price else [p.PriceChanged(price=price)]
    raise TypeError(f"product does not handle {type(command).__name__}")


def evolve(state: ProductState | None, event: EventPayload) -> ProductState:
    match event:
        case p.ProductRegistered(name=name, price=price, currency=currency):
            return ProductState(name=name, price=price, currency=currency)
        case p.PriceChanged(price=price) if state is not None:
            return state.model_copy(update={"price": price})
    raise TypeError(f"cannot apply {type(event).__name__} to product state {state!r}")


PRODUCT_AGGREGATE = AggregateDefinition(
    aggregate_type=p.PRODUCT,
    state_model=ProductState,
    commands=p.PRODUCT_COMMANDS,
    events=p.PRODUCT_EVENTS,
    decide=decide,
    evolve=evolve,
)
