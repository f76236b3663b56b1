"""The commands a soak sends: a seeded, plausible shop workload over hundreds of aggregates, plus
deliberate trouble (the same command id again, stale expected versions, invalid commands).

The generator never waits for outcomes (the load is open loop), so it keeps an optimistic model of
each aggregate: it assumes its commands are accepted. Rejections that follow from that (a rename
racing the registration through the other door) are ordinary outcomes, not errors.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Intent = Literal["normal", "duplicate", "conflict", "invalid", "garbage", "probe"]
Door = Literal["http", "topic"]
DOORS: tuple[Door, ...] = ("http", "topic")

DUPLICATE_SHARE = 0.05
CONFLICT_SHARE = 0.04
INVALID_SHARE = 0.04


@dataclass(frozen=True)
class Planned:
    """One command to send. For garbage (not JSON) `command_id` is a marker inside the bytes."""

    command_id: str
    door: Door
    intent: Intent
    type: str
    aggregate_id: str
    body: bytes
    expected_version: int | None = None


@dataclass
class _Customer:
    generation: int = 0
    registered: bool = False
    version: int = 0


@dataclass
class _Order:
    generation: int = 0
    status: str = "none"
    version: int = 0
    skus: list[str] = field(default_factory=list)
    next_sku: int = 0


def _command(type_: str, aggregate_id: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "type": type_,
        "aggregate_id": aggregate_id,
        "payload": payload,
    } | extra


def _price(rng: random.Random) -> str:
    cents = rng.randint(100, 99_999)
    return f"{cents // 100}.{cents % 100:02d}"


class Workload:
    def __init__(self, rng: random.Random, *, customer_slots: int, order_slots: int) -> None:
        self._rng = rng
        self._customers = [_Customer() for _ in range(customer_slots)]
        self._orders = [_Order() for _ in range(order_slots)]
        self._recent: deque[Planned] = deque(maxlen=300)
        self._probes = 0

    def next(self) -> Planned:
        roll = self._rng.random()
        if roll < DUPLICATE_SHARE and self._recent:
            original = self._rng.choice(self._recent)
            return replace(original, door=self._rng.choice(DOORS), intent="duplicate")
        if roll < DUPLICATE_SHARE + CONFLICT_SHARE:
            conflict = self._conflict()
            if conflict is not None:
                return self._plan(conflict, "conflict")
        if roll < DUPLICATE_SHARE + CONFLICT_SHARE + INVALID_SHARE:
            return self._invalid()
        command = self._customer_command() if self._rng.random() < 0.5 else self._order_command()
        return self._plan(command, "normal")

    def probe(self, door: Door) -> Planned:
        """A registration of a fresh customer: the recovery probe's command."""
        self._probes += 1
        ident = f"probe-{door}-{self._probes}"
        command = _command("RegisterCustomer", ident, {"name": "Probe", "email": f"{ident}@example.com"})
        return replace(self._plan(command, "probe", remember=False), door=door)

    def _plan(self, command: dict[str, Any], intent: Intent, *, remember: bool = True) -> Planned:
        planned = Planned(
            command_id=command["command_id"],
            door=self._rng.choice(DOORS),
            intent=intent,
            type=command["type"],
            aggregate_id=command["aggregate_id"],
            body=json.dumps(command).encode(),
            expected_version=command.get("expected_version"),
        )
        if remember:
            self._recent.append(planned)
        return planned

    # --- customers --------------------------------------------------------------------------------

    def _customer_command(self) -> dict[str, Any]:
        slot = self._rng.randrange(len(self._customers))
        state = self._customers[slot]
        ident = f"c-{slot}-{state.generation}"
        state.version += 1
        if not state.registered:
            state.registered = True
            return _command("RegisterCustomer", ident, {"name": f"N{slot}", "email": f"{ident}@example.com"})
        roll = self._rng.random()
        if roll < 0.01:
            self._customers[slot] = _Customer(generation=state.generation + 1)
            return _command("DeleteCustomer", ident, {})
        if roll < 0.6:
            return _command("RenameCustomer", ident, {"name": f"N{slot}v{state.version}"})
        return _command("ChangeCustomerEmail", ident, {"email": f"{ident}.v{state.version}@example.com"})

    def _conflict(self) -> dict[str, Any] | None:
        """A rename with a stale expected version (the sender saw an older version)."""
        slot = self._rng.randrange(len(self._customers))
        state = self._customers[slot]
        if state.version < 2:
            return None
        stale = max(0, state.version - 1 - self._rng.randint(0, 2))
        ident = f"c-{slot}-{state.generation}"
        return _command("RenameCustomer", ident, {"name": "Stale"}, expected_version=stale)

    # --- orders -----------------------------------------------------------------------------------

    def _order_command(self) -> dict[str, Any]:
        slot = self._rng.randrange(len(self._orders))
        state = self._orders[slot]
        if state.status in ("shipped", "cancelled"):
            state = self._orders[slot] = _Order(generation=state.generation + 1)
        ident = f"o-{slot}-{state.generation}"
        state.version += 1
        if state.status == "none":
            return self._place(state, ident)
        roll = self._rng.random()
        if state.status == "confirmed":
            state.status = "shipped" if roll < 0.7 else "cancelled"
            if state.status == "shipped":
                return _command("ShipOrder", ident, {"tracking_number": f"T{slot}-{state.version}"})
            return _command("CancelOrder", ident, {"reason": "soak"})
        if roll < 0.4:
            return _command("AddOrderLine", ident, {"line": self._line(state)})
        if roll < 0.6 and len(state.skus) > 1:
            sku = state.skus.pop(self._rng.randrange(len(state.skus)))
            return _command("RemoveOrderLine", ident, {"sku": sku})
        if roll < 0.85:
            state.status = "confirmed"
            return _command("ConfirmOrder", ident, {})
        state.status = "cancelled"
        return _command("CancelOrder", ident, {"reason": "soak"})

    def _place(self, state: _Order, ident: str) -> dict[str, Any]:
        registered = [i for i, c in enumerate(self._customers) if c.registered]
        slot = self._rng.choice(registered) if registered else 0
        customer = f"c-{slot}-{self._customers[slot].generation}"
        state.status = "placed"
        lines = [self._line(state) for _ in range(self._rng.randint(1, 3))]
        return _command("PlaceOrder", ident, {"customer_id": customer, "currency": "EUR", "lines": lines})

    def _line(self, state: _Order) -> dict[str, Any]:
        state.next_sku += 1
        sku = f"s{state.next_sku}"
        state.skus.append(sku)
        return {"sku": sku, "quantity": self._rng.randint(1, 5), "unit_price": _price(self._rng)}

    # --- invalid input ----------------------------------------------------------------------------

    def _invalid(self) -> Planned:
        kind = self._rng.randrange(4)
        slot = self._rng.randrange(len(self._customers))
        if kind == 0:
            command = _command("RegisterCustomer", f"c-{slot}-bad", {"name": "X", "email": "not-an-email"})
        elif kind == 1:
            command = _command("LaunchRocket", f"c-{slot}-bad", {})
        elif kind == 2:
            command = _command("RenameCustomer", "not a valid id!", {"name": "X"})
        else:
            marker = str(uuid.uuid4())
            body = f"soak garbage {marker} (not JSON".encode()
            door = self._rng.choice(DOORS)
            return Planned(marker, door, "garbage", "", "", body)
        return self._plan(command, "invalid", remember=False)
