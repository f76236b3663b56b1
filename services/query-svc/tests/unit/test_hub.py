"""The hub routes notifications to the waiters and streams they concern, without blocking."""

from __future__ import annotations

import json
from collections.abc import Callable

from prometheus_client import REGISTRY

from cqrs_shared.read_models.notifications import Change, decode
from cqrs_shared.read_models.shop import CUSTOMERS, ORDERS, SHOP
from query_svc.hub import ChangeHub, Signal


def payload(*changes: tuple[str, str, int], schema: str = "shop_b1", **extra: object) -> str:
    return json.dumps(
        {"projection": "shop", "schema": schema, "changes": [list(c) for c in changes], **extra}
    )


def test_a_waiter_wakes_only_at_its_version_and_remembers_what_was_announced() -> None:
    hub = ChangeHub([SHOP])
    with hub.watch("shop", "customer", "c-1", 3) as waiter:
        hub.dispatch(payload(("customer", "c-1", 2), ("customer", "c-2", 9)))
        assert not waiter.event.is_set()
        assert waiter.announced_in("shop_b1") == 2
        hub.dispatch(payload(("customer", "c-1", 3)))
        assert waiter.event.is_set()
    assert hub._waiters == {}


def test_announcements_count_only_for_the_schema_they_came_from() -> None:
    hub = ChangeHub([SHOP])
    with hub.watch("shop", "customer", "c-1", 3) as waiter:
        hub.dispatch(payload(("customer", "c-1", 7), schema="shop_b2"))  # a rebuild, ahead of the key
        hub.dispatch(payload(("customer", "c-1", 2), schema="shop_b1"))
        hub.dispatch(payload(("customer", "c-1", 1), schema="shop_b2"))  # never lowers what was seen
        assert waiter.event.is_set()  # one re-check: the read model may show it
        assert (waiter.announced_in("shop_b1"), waiter.announced_in("shop_b2")) == (2, 7)
        assert waiter.announced_in("shop_b9") == 0
        # A reader whose `read` views are no build's (plain tables) takes any announcement.
        assert waiter.announced_in(None) == 7


def test_the_reads_waiting_on_an_aggregate_are_observable_while_they_wait() -> None:
    hub = ChangeHub([SHOP])
    with hub.watch("shop", "customer", "c-1", 3) as first, hub.watch("shop", "customer", "c-1", 4) as second:
        assert set(hub.waiters("shop", "customer", "c-1")) == {first, second}
        assert hub.waiters("shop", "customer", "c-2") == ()
    assert hub.waiters("shop", "customer", "c-1") == ()


def test_overflow_and_a_resync_wake_everyone() -> None:
    hub = ChangeHub([SHOP])
    triggers: list[Callable[[], None]] = [
        lambda: hub.dispatch(json.dumps({"projection": "shop", "schema": "shop_b1", "overflow": True})),
        hub.resync,
    ]
    for trigger in triggers:
        with hub.watch("shop", "customer", "c-1", 3) as waiter:
            subscription = hub.subscribe(CUSTOMERS, "c-1")
            trigger()
            assert waiter.event.is_set()
            assert subscription.pending == Signal(None)
            hub.unsubscribe(subscription)


def test_a_rebuilding_schema_interleaving_its_notifications_wakes_only_by_key() -> None:
    hub = ChangeHub([SHOP])
    with hub.watch("shop", "customer", "c-1", 3) as waiter:
        subscription = hub.subscribe(ORDERS, "o-1")
        for schema in ("shop_b1", "shop_b2", "shop_b1", "shop_b2"):
            hub.dispatch(payload(("order", "o-9", 1), schema=schema))
        assert not waiter.event.is_set()
        assert subscription.pending is None
        hub.dispatch(payload(("customer", "c-1", 3), schema="shop_b2"))
        assert waiter.event.is_set()


def test_streams_get_their_own_changes_and_those_of_views_they_join() -> None:
    hub = ChangeHub([SHOP])
    order_stream = hub.subscribe(ORDERS, "o-1")
    other_order = hub.subscribe(ORDERS, "o-2")
    customer_stream = hub.subscribe(CUSTOMERS, "c-1")
    streams = (order_stream, other_order, customer_stream)
    placed, renamed = Signal(Change("order", "o-1", 2)), Signal(Change("customer", "c-7", 2))
    hub.dispatch(payload(("order", "o-1", 2)))
    # Orders change customers' counts: every customer stream re-reads (and sends only real changes).
    assert [s.pending for s in streams] == [placed, None, placed]
    # Orders carry their customer's name: every order stream re-reads.
    hub.dispatch(payload(("customer", "c-7", 2)))
    assert [s.pending for s in streams] == [renamed, renamed, placed]


def test_other_projections_and_malformed_payloads_are_ignored() -> None:
    hub = ChangeHub([SHOP])
    before = REGISTRY.get_sample_value("cqrs_query_notifications_total", {"kind": "malformed"}) or 0.0
    with hub.watch("shop", "customer", "c-1", 1) as waiter:
        hub.dispatch(
            json.dumps({"projection": "billing", "schema": "b", "changes": [["customer", "c-1", 5]]})
        )
        for bad in ("not json", "[]", '{"projection": "shop"}', payload(("customer", "c-1", "x"))):  # type: ignore[arg-type]  # a hostile payload
            hub.dispatch(bad)
        assert not waiter.event.is_set()
    assert (
        REGISTRY.get_sample_value("cqrs_query_notifications_total", {"kind": "malformed"}) or 0.0
    ) == before + 4
    assert decode(payload(("order", "o-1", True))) is not None  # booleans are no versions: skipped


async def test_a_burst_of_signals_leaves_one_pending_signal_with_the_latest_witness() -> None:
    hub = ChangeHub([SHOP])
    busy = hub.subscribe(ORDERS, "o-1")
    for version in range(2, 10_002):
        hub.dispatch(payload(("order", "o-1", version)))
        if version == 5_000:
            hub.resync()  # a resync between witnesses is covered by the re-read that follows
    assert busy.dropped is None
    latest = await busy.next(0.1)
    assert latest == Signal(Change("order", "o-1", 10_001))
    assert await busy.next(0.01) is None
    hub.resync()
    assert await busy.next(0.01) == Signal(None)
    hub.dispatch(payload(("order", "o-1", 10_002)))
    hub.resync()  # after a witness, a resync adds nothing to wait for
    assert await busy.next(0.01) == Signal(Change("order", "o-1", 10_002))
    hub.unsubscribe(busy)
    assert hub.subscriber_count == 0
