"""Configuration from the environment (and mounted secret files), shared by every service.

Infrastructure addresses use the same variable names in every service (`KAFKA_BOOTSTRAP_SERVERS`,
`MONGODB_URI`, `DATABASE_URL`, ...) so one environment file serves the whole stack; a service's own
knobs carry its prefix (`COMMAND_SVC_PORT`). Secrets are `SecretStr`, read from the environment or
from files in `CQRS_SECRETS_DIR` (a mounted Kubernetes secret: one file per setting name).
"""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _alias(name: str) -> Any:
    return Field(validation_alias=AliasChoices(name, name.lower()))


def settings_config(prefix: str) -> SettingsConfigDict:
    """The config every service's settings class uses: its env prefix plus the shared conventions."""
    secrets_dir = os.environ.get("CQRS_SECRETS_DIR")
    return SettingsConfigDict(
        env_prefix=prefix,
        secrets_dir=secrets_dir if secrets_dir and Path(secrets_dir).is_dir() else None,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )


def with_default_instance_id(data: Any, default_port: int) -> Any:
    """Settings input with `instance_id` defaulted to `<host name>-<port>` (a `mode="before"` step).

    Who a replica is to its leases and to Kafka's group coordinator (static membership). A restarted
    replica keeps it (a pod's name survives a container restart; a port on a host is taken by one
    process at a time), so it takes its own shards and partitions back at once instead of waiting
    for its previous life's leases or session to expire; two live replicas never share it.
    """
    if isinstance(data, dict) and not data.get("instance_id"):
        data = {**data, "instance_id": f"{socket.gethostname()}-{data.get('port', default_port)}"}
    return data


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: Annotated[str, _alias("KAFKA_BOOTSTRAP_SERVERS")] = "127.0.0.1:9092"
    #: Prepended to every topic name: lets tests and tenants share one cluster without collisions.
    topic_prefix: Annotated[str, _alias("CQRS_TOPIC_PREFIX")] = ""
    topic_partitions: Annotated[int, _alias("CQRS_TOPIC_PARTITIONS"), Field(ge=1)] = 3
    topic_replication_factor: Annotated[int, _alias("CQRS_TOPIC_REPLICATION_FACTOR"), Field(ge=1)] = 1


class AuthMode(StrEnum):
    JWT = "jwt"
    #: Only for local demos; never the default, and deploy manifests never set it.
    DISABLED = "disabled"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    auth_mode: Annotated[AuthMode, _alias("CQRS_AUTH_MODE")] = AuthMode.JWT
    jwt_algorithm: Annotated[str, _alias("JWT_ALGORITHM"), Field(pattern=r"^(HS256|RS256)$")] = "HS256"
    jwt_secret: Annotated[SecretStr | None, _alias("JWT_SECRET")] = None
    jwt_public_key_file: Annotated[Path | None, _alias("JWT_PUBLIC_KEY_FILE")] = None
    jwt_jwks_file: Annotated[Path | None, _alias("JWT_JWKS_FILE")] = None
    jwt_issuer: Annotated[str, _alias("JWT_ISSUER")] = "cqrs-platform"
    jwt_audience: Annotated[str, _alias("JWT_AUDIENCE")] = "cqrs-platform"
    jwt_leeway_seconds: Annotated[int, _alias("JWT_LEEWAY_SECONDS"), Field(ge=0, le=300)] = 30

    @model_validator(mode="after")
    def _key_material_present(self) -> AuthSettings:
        if self.auth_mode is AuthMode.DISABLED:
            return self
        if self.jwt_algorithm == "HS256" and self.jwt_secret is None:
            raise ValueError("JWT_SECRET is required when CQRS_AUTH_MODE=jwt and JWT_ALGORITHM=HS256")
        if self.jwt_algorithm == "RS256" and not (self.jwt_public_key_file or self.jwt_jwks_file):
            raise ValueError("JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE is required for RS256")
        return self


class ObservabilitySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    log_level: Annotated[str, _alias("LOG_LEVEL")] = "INFO"
    log_format: Annotated[str, _alias("LOG_FORMAT"), Field(pattern=r"^(json|text)$")] = "json"
