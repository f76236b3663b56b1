"""The product contracts: register a product, change its price.

`ProductRegistered` is at schema version 2 (version 1 had no currency; every product then was
priced in euros), so old events are lifted by the registered upcaster before any consumer sees them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cqrs_shared.contracts.shop import CurrencyCode, Money
from cqrs_shared.messages import CommandPayload, EventPayload
from cqrs_shared.upcasting import Upcasters

PRODUCT = "product"
PRODUCTS_WRITE = "products:write"
ProductName = Annotated[str, Field(min_length=1, max_length=200)]


class RegisterProduct(CommandPayload):
    TYPE = "RegisterProduct"
    AGGREGATE_TYPE = PRODUCT
    REQUIRED_ROLE = PRODUCTS_WRITE

    name: ProductName
    price: Money
    currency: CurrencyCode


class ChangePrice(CommandPayload):
    TYPE = "ChangePrice"
    AGGREGATE_TYPE = PRODUCT
    REQUIRED_ROLE = PRODUCTS_WRITE

    price: Money


class ProductRegistered(EventPayload):
    TYPE = "ProductRegistered"
    SCHEMA_VERSION = 2

    name: str
    price: Money
    currency: str


class PriceChanged(EventPayload):
    TYPE = "PriceChanged"

    price: Money


PRODUCT_COMMANDS: tuple[type[CommandPayload], ...] = (RegisterProduct, ChangePrice)
PRODUCT_EVENTS: tuple[type[EventPayload], ...] = (ProductRegistered, PriceChanged)

UPCASTERS = Upcasters()


@UPCASTERS.step(ProductRegistered, from_version=1)
def _priced_in_euros(payload: dict[str, object]) -> dict[str, object]:
    return {**payload, "currency": "EUR"}
