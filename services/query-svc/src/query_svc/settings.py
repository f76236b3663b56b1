"""Query service configuration (`QUERY_SVC_*`, plus the shared infrastructure variables)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, model_validator

from cqrs_shared.postgres_connect import PostgresConnectSettings
from cqrs_shared.read_models.definitions import ProjectionNames
from cqrs_shared.read_models.notifications import CHANNEL
from cqrs_shared.settings import AuthSettings, ObservabilitySettings, settings_config

_DEV_DSN = SecretStr("postgresql://cqrs:cqrs@127.0.0.1:5432/cqrs")


class QuerySettings(AuthSettings, ObservabilitySettings, PostgresConnectSettings):
    model_config = settings_config("QUERY_SVC_")

    host: str = "0.0.0.0"  # noqa: S104  # a container's port is only reachable on all interfaces
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    #: A reader endpoint (Aurora reader, a replica) with a read-only role; falls back to DATABASE_URL.
    database_url: Annotated[
        SecretStr,
        Field(
            validation_alias=AliasChoices(
                "QUERY_SVC_DATABASE_URL", "DATABASE_READER_URL", "DATABASE_URL", "database_url"
            )
        ),
    ] = _DEV_DSN
    #: Where the projector writes, for the one LISTEN connection (NOTIFY does not reach replicas);
    #: falls back to DATABASE_URL, then to the reader URL.
    listen_database_url: Annotated[
        SecretStr | None,
        Field(
            validation_alias=AliasChoices(
                "QUERY_SVC_LISTEN_DATABASE_URL", "DATABASE_URL", "listen_database_url"
            )
        ),
    ] = None
    notify_channel: str = CHANNEL
    #: The projections whose read models this service serves (`QUERY_SVC_PROJECTIONS=shop,products`),
    #: each defined in `cqrs_shared.read_models.<name>`.
    projections: ProjectionNames = ("shop",)
    #: Server processes sharing the port (uvicorn workers), each with its own reader pool and LISTEN
    #: connection: one per core the service may use. 1 where replicas scale out instead.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    pool_min_size: Annotated[int, Field(ge=0, le=100)] = 1
    pool_size: Annotated[int, Field(ge=1, le=100)] = 10
    pool_acquire_timeout_ms: Annotated[int, Field(ge=10, le=60_000)] = 1000
    statement_timeout_ms: Annotated[int, Field(ge=10, le=60_000)] = 2000
    #: Signs pagination cursors. Unset: a random per-process key, so cursors do not survive a
    #: restart or cross replicas; set it (same value on every replica) in any deployment.
    cursor_secret: SecretStr | None = None
    #: How long a read carrying a consistency token waits by default, and the most it may ask.
    wait_default_ms: Annotated[int, Field(ge=0, le=10_000)] = 2000
    wait_max_ms: Annotated[int, Field(ge=0, le=10_000)] = 10_000
    #: Listener: keep-alive query interval (detects half-open connections).
    listener_keepalive_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    sse_heartbeat_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    #: A write to a stream blocked longer than this drops the client.
    sse_send_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    sse_max_subscribers: Annotated[int, Field(ge=1, le=100_000)] = 1000
    sse_retry_ms: Annotated[int, Field(ge=0, le=600_000)] = 3000

    @property
    def listen_dsn(self) -> str:
        return (self.listen_database_url or self.database_url).get_secret_value()

    @model_validator(mode="after")
    def _waits_consistent(self) -> QuerySettings:
        if self.wait_default_ms > self.wait_max_ms:
            raise ValueError("QUERY_SVC_WAIT_DEFAULT_MS must not exceed QUERY_SVC_WAIT_MAX_MS")
        if self.cursor_secret is not None and len(self.cursor_secret.get_secret_value()) < 16:
            raise ValueError("QUERY_SVC_CURSOR_SECRET must be at least 16 characters")
        return self
