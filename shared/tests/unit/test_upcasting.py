"""Upcasting: registered pure steps lift an old payload to the current schema version, or refuse."""

from __future__ import annotations

from typing import ClassVar

import pytest

from cqrs_shared.messages import EventPayload
from cqrs_shared.upcasting import UpcastError, Upcasters


class PriceSet(EventPayload):
    """Version 1 had `cents`, version 2 `amount` (a string), version 3 added `currency`."""

    TYPE: ClassVar[str] = "PriceSet"
    SCHEMA_VERSION: ClassVar[int] = 3

    amount: str
    currency: str


def _upcasters() -> Upcasters:
    upcasters = Upcasters()

    @upcasters.step(PriceSet, from_version=1)
    def _cents_to_amount(payload: dict[str, object]) -> dict[str, object]:
        cents = int(str(payload.pop("cents")))
        return {**payload, "amount": f"{cents // 100}.{cents % 100:02d}"}

    @upcasters.step(PriceSet, from_version=2)
    def _euros(payload: dict[str, object]) -> dict[str, object]:
        return {**payload, "currency": "EUR"}

    return upcasters


def test_a_payload_is_lifted_through_every_step_in_order_and_the_input_is_left_alone() -> None:
    old = {"cents": 1250}
    assert _upcasters().lift(PriceSet, 1, old) == {"amount": "12.50", "currency": "EUR"}
    assert _upcasters().lift(PriceSet, 2, {"amount": "3.00"}) == {"amount": "3.00", "currency": "EUR"}
    assert _upcasters().lift(PriceSet, 3, {"amount": "3.00", "currency": "USD"}) == {
        "amount": "3.00",
        "currency": "USD",
    }
    assert old == {"cents": 1250}


def test_a_newer_version_or_a_missing_step_is_refused() -> None:
    with pytest.raises(UpcastError, match="newer"):
        _upcasters().lift(PriceSet, 4, {})
    with pytest.raises(UpcastError, match="no upcaster from schema version 1"):
        Upcasters().lift(PriceSet, 1, {"cents": 1})


def test_steps_are_registered_once_and_only_below_the_current_version() -> None:
    upcasters = _upcasters()
    with pytest.raises(ValueError, match="already has a step"):
        upcasters.step(PriceSet, from_version=1)(lambda p: p)
    with pytest.raises(ValueError, match="no step from version 3"):
        upcasters.step(PriceSet, from_version=3)
