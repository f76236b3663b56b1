"""Query service configuration (`QUERY_SVC_*`, plus the shared infrastructure variables)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr

from cqrs_shared.settings import AuthSettings, ObservabilitySettings, settings_config


class QuerySettings(AuthSettings, ObservabilitySettings):
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
    ] = SecretStr("postgresql://cqrs:cqrs@127.0.0.1:5432/cqrs")
    pool_size: Annotated[int, Field(ge=1, le=100)] = 10
    statement_timeout_ms: Annotated[int, Field(ge=10, le=60_000)] = 2000
