"""One bounded, retrying DynamoDB client per process, and what its failures mean to the port.

Retries: botocore's `standard` (or `adaptive`, which also rate-limits the client side when throttled)
retry mode retries throttling, transient 5xx and connection errors with jittered exponential back-off,
`max_attempts` times in all. What is still failing after that is `WriteStoreUnavailableError`: the HTTP
door answers 503 + Retry-After and the topic door reads the batch again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from command_svc.write_store.dynamo_settings import DynamoSettings as DynamoSettings
from cqrs_shared.write_store.port import CommitTooLargeError, WriteStoreUnavailableError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

#: Errors that say the request itself is wrong: retrying will not fix them, so they stay loud.
_REQUEST_ERRORS = frozenset({"ValidationException", "SerializationException", "UnrecognizedClientException"})


def _config(settings: DynamoSettings) -> AioConfig:
    return AioConfig(
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.timeout_seconds,
        read_timeout=settings.timeout_seconds,
        max_pool_connections=settings.max_pool_connections,
    )


async def open_dynamodb(settings: DynamoSettings, stack: contextlib.AsyncExitStack) -> DynamoDBClient:
    """A DynamoDB client that lives as long as `stack`; credentials come from botocore's chain."""
    client = get_session().create_client(
        "dynamodb", region_name=settings.region, endpoint_url=settings.endpoint_url, config=_config(settings)
    )
    return await stack.enter_async_context(client)


async def open_dynamodb_streams(
    settings: DynamoSettings, stack: contextlib.AsyncExitStack
) -> DynamoDBStreamsClient:
    client = get_session().create_client(
        "dynamodbstreams",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=_config(settings),
    )
    return await stack.enter_async_context(client)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Translate what is left after botocore's retries into the port's errors."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if code == "ValidationException" and "item size" in message.lower():
            # Backstop of the size check done before writing: the estimate missed.
            raise CommitTooLargeError(-1, 400 * 1024) from exc
        if code in _REQUEST_ERRORS:
            raise
        raise WriteStoreUnavailableError(f"DynamoDB: {code}: {message}") from exc
    except BotoCoreError as exc:
        raise WriteStoreUnavailableError(f"DynamoDB unreachable: {exc}") from exc
