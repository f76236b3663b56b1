"""Customer aggregate: registration, renaming, e-mail change and erasure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from command_svc.domain.decider import (
    AggregateDefinition,
    AggregateNotFoundError,
    Related,
    RuleViolationError,
)
from cqrs_shared.contracts import shop as c
from cqrs_shared.messages import CommandPayload, EventPayload


class CustomerState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["registered", "deleted"]
    #: Personal data; both are erased (None) once the customer is deleted.
    name: str | None
    email: str | None


def _require_active(state: CustomerState | None) -> CustomerState:
    if state is None:
        raise AggregateNotFoundError("customer is not registered")
    if state.status == "deleted":
        raise RuleViolationError("customer.deleted", "customer has been deleted")
    return state


def decide(state: CustomerState | None, command: CommandPayload, _related: Related) -> Sequence[EventPayload]:
    match command:
        case c.RegisterCustomer(name=name, email=email):
            if state is not None:
                raise RuleViolationError("customer.already_registered", "customer is already registered")
            return [c.CustomerRegistered(name=name, email=email)]
        case c.RenameCustomer(name=name):
            _require_active(state)
            return [c.CustomerRenamed(name=name)]
        case c.ChangeCustomerEmail(email=email):
            _require_active(state)
            return [c.CustomerEmailChanged(email=email)]
        case c.DeleteCustomer():
            _require_active(state)
            return [c.CustomerDeleted()]
    raise TypeError(f"customer does not handle {type(command).__name__}")


def evolve(state: CustomerState | None, event: EventPayload) -> CustomerState:
    match event:
        case c.CustomerRegistered(name=name, email=email):
            return CustomerState(status="registered", name=name, email=email)
        case c.CustomerRenamed(name=name) if state is not None:
            return state.model_copy(update={"name": name})
        case c.CustomerEmailChanged(email=email) if state is not None:
            return state.model_copy(update={"email": email})
        case c.CustomerDeleted():
            return CustomerState(status="deleted", name=None, email=None)
    raise TypeError(f"cannot apply {type(event).__name__} to customer state {state!r}")


CUSTOMER_AGGREGATE = AggregateDefinition(
    aggregate_type=c.CUSTOMER,
    state_model=CustomerState,
    commands=c.CUSTOMER_COMMANDS,
    events=c.CUSTOMER_EVENTS,
    decide=decide,
    evolve=evolve,
)
