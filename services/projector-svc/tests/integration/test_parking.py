"""What a batch reads of the parking: for a long-blocked aggregate, only that it is blocked and
which of the batch's own events are parked already, never its whole parked history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from cqrs_shared.contracts import shop as c
from cqrs_shared.kafka_io import to_json
from projector_svc import positions
from projector_svc.batch import BatchApplier
from projector_svc.builds import ensure_active_build
from projector_svc.dead_letters import MemoryDeadLetters
from projector_svc.incoming import Incoming, Origin
from projector_svc.pg import create_pool
from projector_svc.testing.shop import ShopProjection
from projector_svc.testing.shop_history import envelope

pytestmark = pytest.mark.integration

_AT = datetime(2026, 4, 1, tzinfo=UTC)
_BLOCKED_HISTORY = 300


def _renamed(aggregate_id: str, version: int) -> Incoming:
    event = envelope(c.CUSTOMER, aggregate_id, version, c.CustomerRenamed(name=f"v{version}"), _AT)
    return Incoming(event, Origin("events.customer", 0, version, to_json(event)))


@pytest.fixture
async def connection(pg_database: str) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[asyncpg.Record]]:
    pool = await create_pool(pg_database, max_size=1)
    async with pool.acquire() as connection:
        await ensure_active_build(connection, ShopProjection())
        await connection.execute("SET search_path TO shop_b1")
        # "x" refused at version 1 long ago, everything since held behind it; "y" waits for version 2.
        await positions.park(
            connection,
            [
                (_renamed("x", 1), "rejected", "HandlerBugError: boom"),
                *((_renamed("x", v), "blocked", "") for v in range(2, _BLOCKED_HISTORY + 1)),
                (_renamed("y", 3), "gap", ""),
                (_renamed("y", 4), "gap", ""),
            ],
        )
        yield connection
    await pool.close()


async def test_a_blocked_aggregate_brings_only_the_batch_positions_parked_already(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
) -> None:
    batch = [_renamed("x", 5), _renamed("x", _BLOCKED_HISTORY + 1), _renamed("y", 2), _renamed("z", 1)]
    state = await positions.parked_state(connection, batch)
    assert state.blocked == {(c.CUSTOMER, "x")}
    assert {k: [e.version for e in evs] for k, evs in state.waiting.items()} == {(c.CUSTOMER, "y"): [3, 4]}
    assert state.versions == {((c.CUSTOMER, "x"), 5), ((c.CUSTOMER, "y"), 3), ((c.CUSTOMER, "y"), 4)}


async def test_redelivered_parked_events_keep_their_reason_and_new_ones_wait_behind_them(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
) -> None:
    letters = MemoryDeadLetters()
    batch = [_renamed("x", 1), _renamed("x", 7), _renamed("x", _BLOCKED_HISTORY + 1), _renamed("y", 3)]
    async with connection.transaction(isolation="serializable"):
        outcome = await BatchApplier(ShopProjection(), letters).apply(connection, "shop_b1", batch)
    assert (outcome.duplicates, outcome.parked, outcome.applied, letters.letters) == (3, 1, [], [])
    rows = await connection.fetch(
        "SELECT aggregate_id, version, reason, error, attempts FROM parked_events "
        "WHERE (aggregate_id, version) IN (('x', 1), ('x', 7), ('x', $1), ('y', 3)) ORDER BY 1, 2",
        _BLOCKED_HISTORY + 1,
    )
    assert [tuple(r) for r in rows] == [
        ("x", 1, "rejected", "HandlerBugError: boom", 0),
        ("x", 7, "blocked", "", 0),
        ("x", _BLOCKED_HISTORY + 1, "blocked", "", 0),
        ("y", 3, "gap", "", 0),
    ]
