"""The hub routes notifications to the waiters and streams they concern, without blocking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from query_svc.hub import ChangeHub, Signal, SubscriberDroppedError, parse_notification
from query_svc.views.shop import CUSTOMERS, ORDERS, SHOP


def payload(*changes: tuple[str, str, int], schema: str = "shop_b1", **extra: object) -> str:
    return json.dumps(
        {"projection": "shop", "schema": schema, "changes": [list(c) for c in changes], **extra}
    )


def test_a_waiter_wakes_only_at_its_version_and_remembers_what_was_announced() -> None:
    hub = ChangeHub([SHOP])
    with hub.watch("shop", "customer", "c-1", 3) as waiter:
        hub.dispatch(payload(("customer", "c-1", 2), ("customer", "c-2", 9)))
        assert not waiter.event.is_set()
        assert waiter.announced == 2
        hub.dispatch(payload(("customer", "c-1", 3)))
        assert waiter.event.is_set()
    assert hub._waiters == {}


def test_overflow_and_a_resync_wake_everyone() -> None:
    hub = ChangeHub([SHOP])
    triggers: list[Callable[[], None]] = [
        lambda: hub.dispatch(json.dumps({"projection": "shop", "schema": "shop_b1", "overflow": True})),
        hub.resync,
    ]
    for trigger in triggers:
        with hub.watch("shop", "customer", "c-1", 3) as waiter:
            subscription = hub.subscribe(CUSTOMERS, "c-1", 4)
            trigger()
            assert waiter.event.is_set()
            assert subscription.queue.get_nowait() == Signal(None)
            hub.unsubscribe(subscription)


def test_a_rebuilding_schema_interleaving_its_notifications_wakes_only_by_key() -> None:
    hub = ChangeHub([SHOP])
    with hub.watch("shop", "customer", "c-1", 3) as waiter:
        subscription = hub.subscribe(ORDERS, "o-1", 4)
        for schema in ("shop_b1", "shop_b2", "shop_b1", "shop_b2"):
            hub.dispatch(payload(("order", "o-9", 1), schema=schema))
        assert not waiter.event.is_set()
        assert subscription.queue.empty()
        hub.dispatch(payload(("customer", "c-1", 3), schema="shop_b2"))
        assert waiter.event.is_set()


def test_streams_get_their_own_changes_and_those_of_views_they_join() -> None:
    hub = ChangeHub([SHOP])
    order_stream = hub.subscribe(ORDERS, "o-1", 4)
    other_order = hub.subscribe(ORDERS, "o-2", 4)
    customer_stream = hub.subscribe(CUSTOMERS, "c-1", 4)
    hub.dispatch(payload(("order", "o-1", 2)))
    assert order_stream.queue.qsize() == 1
    assert other_order.queue.qsize() == 0
    # Orders change customers' counts: every customer stream re-reads (and sends only real changes).
    assert customer_stream.queue.qsize() == 1
    hub.dispatch(payload(("customer", "c-7", 2)))
    assert (order_stream.queue.qsize(), other_order.queue.qsize(), customer_stream.queue.qsize()) == (2, 1, 1)


def test_other_projections_and_malformed_payloads_are_ignored() -> None:
    hub = ChangeHub([SHOP])
    before = REGISTRY.get_sample_value("query_notifications_total", {"kind": "malformed"}) or 0.0
    with hub.watch("shop", "customer", "c-1", 1) as waiter:
        hub.dispatch(
            json.dumps({"projection": "billing", "schema": "b", "changes": [["customer", "c-1", 5]]})
        )
        for bad in ("not json", "[]", '{"projection": "shop"}', payload(("customer", "c-1", "x"))):  # type: ignore[arg-type]  # a hostile payload
            hub.dispatch(bad)
        assert not waiter.event.is_set()
    assert (
        REGISTRY.get_sample_value("query_notifications_total", {"kind": "malformed"}) or 0.0
    ) == before + 4
    assert (
        parse_notification(payload(("order", "o-1", True))) is not None
    )  # booleans are no versions: skipped


async def test_a_subscriber_that_falls_behind_is_dropped_and_pending_signals_coalesce() -> None:
    hub = ChangeHub([SHOP])
    slow = hub.subscribe(ORDERS, "o-1", 2)
    for version in (2, 3):
        hub.dispatch(payload(("order", "o-1", version)))
    latest = await slow.next(0.1)
    assert latest is not None and latest.witness is not None and latest.witness.version == 3
    assert await slow.next(0.01) is None
    for version in (4, 5, 6):
        hub.dispatch(payload(("order", "o-1", version)))
    assert slow.dropped == "queue_full"
    with pytest.raises(SubscriberDroppedError):
        await slow.next(0.1)
    hub.unsubscribe(slow)
    assert hub.subscriber_count == 0
    await asyncio.sleep(0)
