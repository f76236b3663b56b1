"""Command service configuration (`COMMAND_SVC_*`, plus the shared infrastructure variables)."""

from __future__ import annotations

import os
import socket
from typing import Annotated, Literal

from pydantic import AliasChoices, Field

from cqrs_shared.settings import AuthSettings, KafkaSettings, ObservabilitySettings, settings_config


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class CommandServiceSettings(KafkaSettings, AuthSettings, ObservabilitySettings):
    model_config = settings_config("COMMAND_SVC_")

    host: str = "0.0.0.0"  # noqa: S104  # a container's port is only reachable on all interfaces
    port: Annotated[int, Field(ge=1, le=65535)] = 8081
    instance_id: str = Field(default_factory=_default_instance)

    write_store: Annotated[
        Literal["mongodb", "memory"], Field(validation_alias=AliasChoices("WRITE_STORE", "write_store"))
    ] = "mongodb"
    mongodb_uri: Annotated[str, Field(validation_alias=AliasChoices("MONGODB_URI", "mongodb_uri"))] = (
        "mongodb://127.0.0.1:27017/"
    )
    mongodb_database: Annotated[
        str, Field(validation_alias=AliasChoices("MONGODB_DATABASE", "mongodb_database"))
    ] = "cqrs"

    consumer_group: str = "command-svc"
    #: Records larger than this are dead-lettered (topic door) or refused with 413 (HTTP door).
    max_command_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024
    batch_max_records: Annotated[int, Field(ge=1, le=10_000)] = 500
    #: Concurrent aggregates within one consumed batch (one aggregate's commands stay sequential).
    batch_concurrency: Annotated[int, Field(ge=1, le=1000)] = 64
    max_decide_attempts: Annotated[int, Field(ge=1, le=50)] = 5

    relay_shards: Annotated[int, Field(ge=1, le=4096)] = 64
    relay_lease_ttl_seconds: Annotated[float, Field(gt=1)] = 10.0
    relay_scan_interval_seconds: Annotated[float, Field(gt=0)] = 1.0
