"""Every rule of the shop domain, decided without any I/O."""

from collections.abc import Callable, Sequence
from decimal import Decimal

import pytest
from pydantic import ValidationError

from command_svc.domain.decider import AggregateNotFoundError, RuleViolationError
from command_svc.domain.shop.customer import CUSTOMER_AGGREGATE, CustomerState
from command_svc.domain.shop.order import ORDER_AGGREGATE, OrderState
from cqrs_shared.contracts import shop as c
from cqrs_shared.messages import CommandPayload, EventPayload

ADA = CustomerState(status="registered", name="Ada", email="ada@example.com")
GONE = CustomerState(status="deleted", name=None, email=None)


def line(sku: str = "SKU-1", quantity: int = 2, price: str = "9.95") -> c.OrderLine:
    return c.OrderLine(sku=sku, quantity=quantity, unit_price=Decimal(price))


def customer(state: CustomerState | None, command: CommandPayload) -> Sequence[EventPayload]:
    return CUSTOMER_AGGREGATE.decide(state, command, {})


def placed(*lines: c.OrderLine, status: str = "placed") -> OrderState:
    lines = lines or (line(),)
    return OrderState(
        status=status,
        customer_id="c-1",
        currency="EUR",
        lines=list(lines),
        total=sum((ln.unit_price * ln.quantity for ln in lines), Decimal("0.00")),
    )


def order(
    state: OrderState | None, command: CommandPayload, customer_state: CustomerState | None = ADA
) -> Sequence[EventPayload]:
    return ORDER_AGGREGATE.decide(state, command, {("customer", "c-1"): customer_state})


def rule_of(call: Callable[[], object]) -> str:
    with pytest.raises(RuleViolationError) as exc:
        call()
    return exc.value.rule


# --- customer -------------------------------------------------------------------------------------


def test_registering_a_new_customer_records_name_and_email() -> None:
    events = customer(None, c.RegisterCustomer(name="Ada", email="ada@example.com"))
    assert events == [c.CustomerRegistered(name="Ada", email="ada@example.com")]
    assert CUSTOMER_AGGREGATE.fold(None, events) == ADA


def test_registering_twice_is_refused() -> None:
    assert rule_of(lambda: customer(ADA, c.RegisterCustomer(name="Ada", email="a@example.com"))) == (
        "customer.already_registered"
    )


def test_rename_and_email_change_update_the_state() -> None:
    renamed = CUSTOMER_AGGREGATE.fold(ADA, customer(ADA, c.RenameCustomer(name="Ada L.")))
    changed = CUSTOMER_AGGREGATE.fold(
        renamed, customer(renamed, c.ChangeCustomerEmail(email="l@example.com"))
    )
    assert changed == CustomerState(status="registered", name="Ada L.", email="l@example.com")


@pytest.mark.parametrize(
    "command", [c.RenameCustomer(name="X"), c.ChangeCustomerEmail(email="x@example.com"), c.DeleteCustomer()]
)
def test_commands_on_an_unknown_customer_are_not_found(command: CommandPayload) -> None:
    with pytest.raises(AggregateNotFoundError):
        customer(None, command)


@pytest.mark.parametrize(
    "command", [c.RenameCustomer(name="X"), c.ChangeCustomerEmail(email="x@example.com"), c.DeleteCustomer()]
)
def test_commands_on_a_deleted_customer_are_refused(command: CommandPayload) -> None:
    assert rule_of(lambda: customer(GONE, command)) == "customer.deleted"


def test_deleting_erases_personal_data_from_the_state() -> None:
    assert CUSTOMER_AGGREGATE.fold(ADA, customer(ADA, c.DeleteCustomer())) == GONE


def test_customer_names_are_bounded_and_emails_checked() -> None:
    with pytest.raises(ValidationError) as exc:
        c.RegisterCustomer.model_validate({"name": "", "email": "not-an-email"})
    assert {e["loc"][0] for e in exc.value.errors()} == {"name", "email"}
    with pytest.raises(ValidationError):
        c.RegisterCustomer(name="x" * 201, email="a@example.com")


# --- order ----------------------------------------------------------------------------------------


def place(*lines: c.OrderLine) -> c.PlaceOrder:
    return c.PlaceOrder(customer_id="c-1", currency="EUR", lines=list(lines or (line(),)))


def test_placing_an_order_totals_its_lines_exactly() -> None:
    events = order(None, place(line("A", 3, "0.10"), line("B", 1, "0.20")))
    assert len(events) == 1
    assert isinstance(events[0], c.OrderPlaced)
    assert events[0].total == Decimal("0.50")
    assert events[0].model_dump(mode="json")["total"] == "0.50"


def test_placing_needs_a_registered_customer() -> None:
    assert rule_of(lambda: order(None, place(), customer_state=None)) == "order.customer_not_registered"
    assert rule_of(lambda: order(None, place(), customer_state=GONE)) == "order.customer_deleted"


def test_placing_twice_and_duplicate_skus_are_refused() -> None:
    assert rule_of(lambda: order(placed(), place())) == "order.already_placed"
    assert rule_of(lambda: order(None, place(line("A"), line("A")))) == "order.duplicate_sku"


def test_order_input_rules_are_enforced_by_the_contract() -> None:
    for bad in (
        {"customer_id": "c-1", "currency": "EUR", "lines": []},
        {
            "customer_id": "c-1",
            "currency": "eur",
            "lines": [{"sku": "A", "quantity": 1, "unit_price": "1.00"}],
        },
        {
            "customer_id": "c-1",
            "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 0, "unit_price": "1.00"}],
        },
        {"customer_id": "c-1", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unit_price": "-1"}]},
        {
            "customer_id": "c-1",
            "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1, "unit_price": "1.001"}],
        },
        {
            "customer_id": "c-1",
            "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1, "unit_price": "NaN"}],
        },
    ):
        with pytest.raises(ValidationError):
            c.PlaceOrder.model_validate(bad)


def test_lines_can_be_added_and_removed_while_placed() -> None:
    state: OrderState | None = placed(line("A", 1, "1.00"))
    state = ORDER_AGGREGATE.fold(state, order(state, c.AddOrderLine(line=line("B", 2, "2.50"))))
    assert state is not None
    assert state.total == Decimal("6.00")
    state = ORDER_AGGREGATE.fold(state, order(state, c.RemoveOrderLine(sku="A")))
    assert state is not None
    assert [ln.sku for ln in state.lines] == ["B"]
    assert state.total == Decimal("5.00")


def test_line_rules() -> None:
    assert rule_of(lambda: order(placed(line("A")), c.AddOrderLine(line=line("A")))) == "order.duplicate_sku"
    assert rule_of(lambda: order(placed(line("A")), c.RemoveOrderLine(sku="Z"))) == "order.line_not_found"
    assert rule_of(lambda: order(placed(line("A")), c.RemoveOrderLine(sku="A"))) == "order.last_line"
    confirmed = placed(line("A"), line("B"), status="confirmed")
    assert rule_of(lambda: order(confirmed, c.AddOrderLine(line=line("C")))) == "order.not_placed"
    assert rule_of(lambda: order(confirmed, c.RemoveOrderLine(sku="A"))) == "order.not_placed"


def test_the_order_lifecycle_placed_confirmed_shipped() -> None:
    state: OrderState | None = placed()
    state = ORDER_AGGREGATE.fold(state, order(state, c.ConfirmOrder()))
    assert state is not None and state.status == "confirmed"
    state = ORDER_AGGREGATE.fold(state, order(state, c.ShipOrder(tracking_number="TR-1")))
    assert state is not None and state.status == "shipped"


@pytest.mark.parametrize(
    ("status", "command", "rule"),
    [
        ("confirmed", c.ConfirmOrder(), "order.not_placed"),
        ("placed", c.ShipOrder(tracking_number="T"), "order.not_confirmed"),
        ("shipped", c.CancelOrder(reason="late"), "order.not_placed_or_confirmed"),
        ("cancelled", c.CancelOrder(reason="again"), "order.not_placed_or_confirmed"),
        ("cancelled", c.ConfirmOrder(), "order.not_placed"),
    ],
)
def test_illegal_transitions_name_the_rule(status: str, command: CommandPayload, rule: str) -> None:
    assert rule_of(lambda: order(placed(status=status), command)) == rule


@pytest.mark.parametrize("status", ["placed", "confirmed"])
def test_cancel_from_placed_or_confirmed(status: str) -> None:
    state = placed(status=status)
    cancelled = ORDER_AGGREGATE.fold(state, order(state, c.CancelOrder(reason="r")))
    assert cancelled is not None and cancelled.status == "cancelled"


@pytest.mark.parametrize(
    "command",
    [
        c.ConfirmOrder(),
        c.ShipOrder(tracking_number="T"),
        c.CancelOrder(reason="r"),
        c.RemoveOrderLine(sku="A"),
    ],
)
def test_commands_on_an_unknown_order_are_not_found(command: CommandPayload) -> None:
    with pytest.raises(AggregateNotFoundError):
        order(None, command)


def test_place_order_declares_the_customer_it_reads() -> None:
    assert list(ORDER_AGGREGATE.related(place())) == [("customer", "c-1")]
    assert list(ORDER_AGGREGATE.related(c.ConfirmOrder())) == []
