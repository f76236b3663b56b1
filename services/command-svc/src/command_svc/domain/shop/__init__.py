"""The example shop: customers and orders. Only this package and the contracts name shop types."""

from command_svc.domain.decider import AggregateDefinition
from command_svc.domain.shop.customer import CUSTOMER_AGGREGATE
from command_svc.domain.shop.order import ORDER_AGGREGATE

SHOP_AGGREGATES: tuple[AggregateDefinition, ...] = (CUSTOMER_AGGREGATE, ORDER_AGGREGATE)  # type: ignore[type-arg]  # heterogeneous states

__all__ = ["SHOP_AGGREGATES"]
