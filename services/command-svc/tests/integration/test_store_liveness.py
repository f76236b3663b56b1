"""The command service after a storm of timed-out and cancelled write-store calls: flowing in seconds.

The write store (FerretDB) is reached through a TCP proxy the test controls. While the link is
stalled (half-open: connections stay up, nothing answers), commands arrive over HTTP; half of the
clients give up early, which cancels their requests inside the service mid-operation. That is the
storm after which the service was once seen to stop sending anything to the store until restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from command_svc.app import create_app
from command_svc.settings import CommandServiceSettings
from command_svc.write_store.mongo_store import MongoWriteStore
from cqrs_shared.testing.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

STALL_SECONDS = 4.0  # well past the store timeout below, so every call in flight times out
STORE_TIMEOUT_MS = 1500


def register(aggregate_id: str) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterCustomer",
        "aggregate_id": aggregate_id,
        "payload": {"name": "Ada", "email": f"{aggregate_id}@example.com"},
    }


@pytest.fixture
async def proxy(mongodb_uri: str) -> AsyncIterator[TcpProxy]:
    port = urlsplit(mongodb_uri).port or 27017
    relay = TcpProxy(port)
    await relay.start()
    yield relay
    await relay.close()


@pytest.fixture
async def http_via_proxy(
    settings: CommandServiceSettings, proxy: TcpProxy
) -> AsyncIterator[httpx.AsyncClient]:
    through_proxy = settings.model_copy(
        update={
            "mongodb_uri": proxy.dsn(settings.mongodb_uri),
            "mongodb_timeout_ms": STORE_TIMEOUT_MS,
            "store_watchdog_interval_seconds": 0.5,
        }
    )
    app = create_app(through_proxy)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://command-svc") as client:
            yield client
    store = await MongoWriteStore.open(settings.mongodb_uri, settings.mongodb_database)
    await store.database.client.drop_database(settings.mongodb_database)
    await store.close()


async def post(http: httpx.AsyncClient, body: dict[str, Any], token: str, timeout: float) -> int | str:
    try:
        async with asyncio.timeout(timeout):
            response = await http.post("/v1/commands", json=body, headers={"Authorization": token})
    except TimeoutError:
        return "gave up"
    if response.status_code == 503:
        assert response.headers.get("Retry-After"), "a 503 must say when to retry"
    return response.status_code


# The storm cancels requests on purpose, some while PyMongo is still opening a connection: the
# driver then leaves that socket to the garbage collector, whose ResourceWarning is no failure here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_commands_flow_again_within_seconds_after_a_storm_of_timed_out_and_cancelled_calls(
    http_via_proxy: httpx.AsyncClient, proxy: TcpProxy, token_for: Any
) -> None:
    http, token = http_via_proxy, token_for("customers:write")
    before = [register(f"before-{i}") for i in range(20)]
    assert {await post(http, c, token, 10) for c in before} == {200}

    proxy.stall()
    storm = [register(f"storm-{i}") for i in range(80)]
    # Half the clients give up after 0.3 s (their requests are cancelled inside the service while
    # the store call is in flight), the other half wait for the service's own answer.
    answers = await asyncio.gather(
        *(post(http, c, token, 0.3 if i % 2 else 30) for i, c in enumerate(storm)),
        asyncio.sleep(STALL_SECONDS),
    )
    statuses = set(answers[:-1])
    assert statuses <= {503, "gave up"}, f"during the stall: {statuses}"
    assert 503 in statuses and "gave up" in statuses
    await proxy.restore()

    healed = time.monotonic()
    probe = register("probe")
    while await post(http, probe, token, 5) != 200:
        assert time.monotonic() - healed < 10, "no command accepted within 10 s of the store healing"
        await asyncio.sleep(0.1)
    assert time.monotonic() - healed < 10
    # Everything flows again: new commands, and every storm command resent with its command id is
    # accepted exactly once (a stored one is answered from the store, a lost one is decided now).
    after = [register(f"after-{i}") for i in range(20)]
    assert {await post(http, c, token, 10) for c in after + storm} == {200}
    versions = {
        (await http.post("/v1/commands", json=c, headers={"Authorization": token})).json()["version"]
        for c in storm
    }
    assert versions == {1}
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/readyz")).status_code == 200


async def test_a_replica_started_while_the_store_is_unreachable_waits_for_it_and_then_serves(
    settings: CommandServiceSettings, proxy: TcpProxy, token_for: Any
) -> None:
    proxy.stall()  # the store is a black hole: connections open, nothing ever answers
    app = create_app(
        settings.model_copy(
            update={"mongodb_uri": proxy.dsn(settings.mongodb_uri), "mongodb_timeout_ms": STORE_TIMEOUT_MS}
        )
    )
    async with contextlib.AsyncExitStack() as stack:
        starting = asyncio.create_task(stack.enter_async_context(app.router.lifespan_context(app)))
        await asyncio.sleep(3 * STORE_TIMEOUT_MS / 1000)
        assert not starting.done(), "start-up should keep waiting for the store, not give up"
        await proxy.restore()
        async with asyncio.timeout(15):
            await starting
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://command-svc") as http:
            assert await post(http, register("late"), token_for("customers:write"), 10) == 200
            assert (await http.get("/readyz")).status_code == 200
    store = await MongoWriteStore.open(settings.mongodb_uri, settings.mongodb_database)
    await store.database.client.drop_database(settings.mongodb_database)
    await store.close()


async def test_checkouts_that_time_out_count_as_failures_beside_a_recent_success(
    settings: CommandServiceSettings,
) -> None:
    """The partial wedge seen in the soak after a long stall: nearly every checkout timed out on a
    pool whose connections were never returned, while an operation got through now and then. Here
    the pool's connections are taken and kept (what a leak does): the store's counts, which the
    watchdog reads, must show the failures next to the recent success (the watchdog's decision on
    such counts is unit-tested in test_store_watchdog.py)."""
    from pymongo.operations import _Op
    from pymongo.server_selectors import writable_server_selector

    from cqrs_shared.write_store.port import WriteStoreUnavailableError

    store = await MongoWriteStore.open(
        settings.mongodb_uri, settings.mongodb_database, timeout_ms=STORE_TIMEOUT_MS, max_pool_size=2
    )
    try:
        store.take_outcomes()
        await store.load_head("customer", "warm-up")  # a success just now: no proof of health
        topology = await store.database.client._get_topology()
        server = await topology.select_server(writable_server_selector, _Op.TEST)
        async with server.pool.checkout(), server.pool.checkout():
            failures = await asyncio.gather(
                *(store.load_head("customer", f"c-{i}") for i in range(6)), return_exceptions=True
            )
        assert all(isinstance(f, WriteStoreUnavailableError) for f in failures), failures
        assert store.seconds_since_progress() < 5
        assert store.take_outcomes() == (1, 6)
        # Once the connections are back, the same client serves again and counts that.
        assert await store.load_head("customer", "after") is None
        assert store.take_outcomes() == (1, 0)
    finally:
        await store.database.client.drop_database(settings.mongodb_database)
        await store.close()
