"""Every delivery order converges: the views equal an independent fold whatever the interleaving.

Hypothesis generates small shop histories (orders before their customer's registration, renames
between orders, a deletion in the middle, an event type from a newer producer), then an
interleaving that keeps each aggregate's order but mixes aggregates freely (as separate topics
and partitions do), with redeliveries of earlier events and arbitrary batch boundaries. Each
batch runs through the real batch path in its own transaction against PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrs_shared.contracts import shop as c
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.kafka_io import to_json
from cqrs_shared.messages import EventPayload
from projector_svc.batch import BatchApplier
from projector_svc.builds import ensure_active_build
from projector_svc.dead_letters import MemoryDeadLetters
from projector_svc.incoming import Incoming, Origin
from projector_svc.testing.shop import ShopProjection
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import envelope, line, total
from projector_svc.testing.views_io import diff, read_rows

pytestmark = pytest.mark.integration

_T0 = datetime(2026, 3, 1, tzinfo=UTC)


class _LoyaltyTierChanged(EventPayload):
    """A customer event only a newer producer knows: views skip it but its version counts."""

    TYPE = "CustomerLoyaltyTierChanged"
    tier: str


def _stamp(history: list[tuple[str, str, EventPayload]], clock: list[int]) -> list[EventEnvelope]:
    out = []
    for version, (kind, ident, payload) in enumerate(history, start=1):
        clock[0] += 1
        out.append(envelope(kind, ident, version, payload, _T0 + timedelta(seconds=clock[0])))
    return out


@st.composite
def customer_history(draw: st.DrawFn, ident: str) -> list[tuple[str, str, EventPayload]]:
    steps: list[EventPayload] = [c.CustomerRegistered(name=f"{ident} v1", email=f"{ident}@a.example")]
    for i in range(draw(st.integers(0, 3))):
        changes: list[EventPayload] = [
            c.CustomerRenamed(name=f"{ident} v{i + 2}"),
            c.CustomerEmailChanged(email=f"{ident}{i}@b.example"),
            _LoyaltyTierChanged(tier="gold"),
        ]
        steps.append(draw(st.sampled_from(changes)))  # each draw is one hypothesis choice
    if draw(st.booleans()):
        steps.append(c.CustomerDeleted())
    return [(c.CUSTOMER, ident, p) for p in steps]


@st.composite
def order_history(draw: st.DrawFn, ident: str, customers: list[str]) -> list[tuple[str, str, EventPayload]]:
    lines = [line("a", draw(st.integers(1, 3)), draw(st.integers(1, 9999)))]
    steps: list[EventPayload] = [
        c.OrderPlaced(
            customer_id=draw(st.sampled_from(customers)), currency="EUR", lines=lines, total=total(lines)
        )
    ]
    status = "placed"
    for _ in range(draw(st.integers(0, 3))):
        if status == "placed":
            move = draw(st.sampled_from(["add", "remove", "confirm", "cancel"]))
            if move == "add":
                lines = [*lines, line(f"s{len(lines)}", 1, draw(st.integers(1, 500)))]
                steps.append(c.OrderLineAdded(line=lines[-1], total=total(lines)))
            elif move == "remove" and len(lines) > 1:
                removed, lines = lines[0], lines[1:]
                steps.append(c.OrderLineRemoved(sku=removed.sku, total=total(lines)))
            elif move in ("confirm", "remove"):
                status = "confirmed"
                steps.append(c.OrderConfirmed())
            else:
                status = "cancelled"
                steps.append(c.OrderCancelled(reason="no"))
        elif status == "confirmed":
            status = draw(st.sampled_from(["shipped", "cancelled"]))
            steps.append(
                c.OrderShipped(tracking_number="T1") if status == "shipped" else c.OrderCancelled(reason="x")
            )
    return [(c.ORDER, ident, p) for p in steps]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[EventEnvelope], list[list[EventEnvelope]]]:
    """All events, and the batches they are delivered in (per-aggregate order kept, redeliveries mixed in)."""
    customers = [f"c{i}" for i in range(draw(st.integers(1, 3)))]
    clock = [0]
    queues = [_stamp(draw(customer_history(ident)), clock) for ident in customers]
    queues += [_stamp(draw(order_history(f"o{i}", customers)), clock) for i in range(draw(st.integers(1, 4)))]
    everything = [e for q in queues for e in q]
    delivered: list[EventEnvelope] = []
    sent: list[EventEnvelope] = []
    while any(queues):
        if sent and draw(st.integers(0, 9)) == 0:
            delivered.append(draw(st.sampled_from(sent)))  # an at-least-once redelivery
            continue
        queue = draw(st.sampled_from([q for q in queues if q]))
        sent.append(queue.pop(0))
        delivered.append(sent[-1])
    batches: list[list[EventEnvelope]] = []
    while delivered:
        size = draw(st.integers(1, max(1, len(delivered))))
        batches.append(delivered[:size])
        delivered = delivered[size:]
    return everything, batches


@pytest.fixture
async def connection(pg_database: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    from projector_svc.pg import create_pool

    pool = await create_pool(pg_database, max_size=1)
    async with pool.acquire() as conn:
        await ensure_active_build(conn, ShopProjection())
        yield conn  # type: ignore[misc]  # a pool proxy offers the connection API
    await pool.close()


async def _deliver(
    connection: asyncpg.Connection[asyncpg.Record], applier: BatchApplier, batch: list[EventEnvelope]
) -> None:
    items = [Incoming(e, Origin(f"events.{e.aggregate_type}", 0, i, to_json(e))) for i, e in enumerate(batch)]
    async with connection.transaction(isolation="serializable"):
        await connection.execute("SET LOCAL search_path TO shop_b1")
        await applier.apply(connection, "shop_b1", items)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
    ],
)
@given(scenario=deliveries())
async def test_any_interleaving_with_redeliveries_converges_to_the_fold(
    connection: asyncpg.Connection[asyncpg.Record],
    scenario: tuple[list[EventEnvelope], list[list[EventEnvelope]]],
) -> None:
    everything, batches = scenario
    await connection.execute(
        "TRUNCATE shop_b1.customers, shop_b1.orders, shop_b1.aggregate_versions, shop_b1.parked_events"
    )
    letters = MemoryDeadLetters()
    applier = BatchApplier(ShopProjection(), letters)
    for batch in batches:
        await _deliver(connection, applier, batch)

    expected = fold(everything)
    assert diff(await read_rows(connection, "shop_b1"), expected) == []
    assert await connection.fetchval("SELECT count(*) FROM shop_b1.parked_events") == 0
    assert letters.letters == []
    # The join really happened in the cases that matter: names present unless deleted.
    for order in expected.orders.values():
        assert order["customer_name"] == expected.customers[order["customer_id"]]["name"]
    assert all(isinstance(c["lifetime_value"], Decimal) for c in expected.customers.values())
