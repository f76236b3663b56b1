"""Throttling and server errors: retried by botocore up to the bound, then "store unavailable".

moto never throttles, so a loopback server plays a DynamoDB endpoint that answers every call with
the given error, and counts the attempts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb
from command_svc.write_store.dynamo_store import DynamoWriteStore
from command_svc.write_store.dynamo_tables import TableNames
from cqrs_shared.testing.write_store_contract import make_commit
from cqrs_shared.write_store import WriteStoreUnavailableError

pytestmark = pytest.mark.integration


class _RefusingEndpoint:
    def __init__(self) -> None:
        self.status = 400
        self.error = "ProvisionedThroughputExceededException"
        self.attempts: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts.append(request.headers.get("X-Amz-Target", ""))
        body = {"__type": f"com.amazonaws.dynamodb.v20120810#{self.error}", "message": "slow down"}
        return web.Response(
            status=self.status, body=json.dumps(body), content_type="application/x-amz-json-1.0"
        )


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[_RefusingEndpoint, str]]:
    refusing = _RefusingEndpoint()
    app = web.Application()
    app.router.add_post("/", refusing.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiohttp has no public accessor
    yield refusing, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "ProvisionedThroughputExceededException"),
        (400, "ThrottlingException"),
        (500, "InternalServerError"),
        (503, "ServiceUnavailable"),
    ],
)
async def test_a_throttled_or_failing_store_is_retried_a_bounded_number_of_times_then_unavailable(
    endpoint: tuple[_RefusingEndpoint, str], status: int, error: str
) -> None:
    refusing, url = endpoint
    refusing.status, refusing.error = status, error
    stack = contextlib.AsyncExitStack()
    client = await open_dynamodb(DynamoSettings(endpoint_url=url, max_attempts=3), stack)
    store = DynamoWriteStore(client, TableNames("x-"), stack)
    try:
        refusing.attempts.clear()
        with pytest.raises(WriteStoreUnavailableError, match=error):
            await store.append(make_commit("a", 1))
        assert refusing.attempts == ["DynamoDB_20120810.TransactWriteItems"] * 3
    finally:
        await store.close()


async def test_open_fails_as_unavailable_when_nothing_answers() -> None:
    settings = DynamoSettings(endpoint_url="http://127.0.0.1:9", max_attempts=2, timeout_seconds=1)
    with pytest.raises(WriteStoreUnavailableError):
        await DynamoWriteStore.open(settings)
