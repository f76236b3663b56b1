"""How every service connects to PostgreSQL or Aurora: TLS verification and IAM authentication, once.

The settings use the same names in every service (like `DATABASE_URL`), so one environment file
serves the projector, the query service and the serverless handler:

- `DATABASE_SSLMODE`: libpq's modes. `verify-full` checks the server's certificate against
  `DATABASE_SSLROOTCERT` (Aurora: Amazon's RDS CA bundle) *and* its host name, which is what
  stops a man in the middle; `verify-ca` skips the name, `require` only encrypts. Unset leaves it
  to the DSN (`?sslmode=`) and asyncpg's default (`prefer`).
- `DATABASE_IAM_AUTH=true`: the password of every *new* connection is a fresh IAM token signed for
  the DSN's host, port and user (tokens live 15 minutes; a connection outlives its token, a
  reconnect needs a new one). Needs TLS (Aurora refuses IAM logins in clear) and the `aws` extra
  (aiobotocore), which is imported only then, so images without it start.

`ConnectOptions.for_dsn(dsn)` turns the settings into keyword arguments for `asyncpg.connect` and
`asyncpg.create_pool`; misconfiguration raises `DatabaseConfigError` at start-up, with the fix.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: PostgreSQL's port when a DSN names none.
DEFAULT_PORT = 5432


class DatabaseConfigError(ValueError):
    """The database settings cannot work as given; the message says which setting to change."""


class SslMode(StrEnum):
    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


#: Modes under which a connection is never made in clear.
ENCRYPTED = (SslMode.REQUIRE, SslMode.VERIFY_CA, SslMode.VERIFY_FULL)


class TokenSigner(Protocol):
    """Signs IAM database authentication tokens (the port; `rds_iam.RdsTokenSigner` on AWS)."""

    async def token(self, host: str, port: int, user: str) -> str:
        """A token for logging in as `user` at `host:port`; network-free, but may refresh
        credentials (so it is awaited), and raises if no credentials can be found."""


def _alias(*names: str) -> Any:
    return Field(validation_alias=AliasChoices(*names, *(n.lower() for n in names)))


class PostgresConnectSettings(BaseSettings):
    """TLS and authentication of every PostgreSQL connection (see the module docstring)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_sslmode: Annotated[SslMode | None, _alias("DATABASE_SSLMODE")] = None
    database_sslrootcert: Annotated[Path | None, _alias("DATABASE_SSLROOTCERT")] = None
    database_iam_auth: Annotated[bool, _alias("DATABASE_IAM_AUTH")] = False
    #: The region the tokens are signed for; falls back to AWS_REGION, then to the AWS config.
    database_iam_region: Annotated[str | None, _alias("DATABASE_IAM_REGION", "AWS_REGION")] = None

    @model_validator(mode="after")
    def _consistent(self) -> PostgresConnectSettings:
        if self.database_iam_auth and self.database_sslmode not in ENCRYPTED:
            raise DatabaseConfigError(
                "DATABASE_IAM_AUTH=true needs DATABASE_SSLMODE=verify-full (or require / verify-ca): "
                "Aurora accepts IAM tokens only over TLS, and a token sent to an unverified server "
                "can be replayed by it for 15 minutes"
            )
        if self.database_sslrootcert is not None and not self.database_sslrootcert.is_file():
            raise DatabaseConfigError(f"DATABASE_SSLROOTCERT={self.database_sslrootcert} is not a file")
        return self

    def connect_options(self, signer: TokenSigner | None = None) -> ConnectOptions:
        """The options for every connection; `signer` replaces aiobotocore's (tests, other clouds).
        Raises `DatabaseConfigError` when IAM is on and aiobotocore is not installed."""
        if self.database_iam_auth and signer is None:
            # Imported here: it needs the optional `aws` extra, which only IAM authentication does.
            from cqrs_shared.rds_iam import RdsTokenSigner

            signer = RdsTokenSigner(self.database_iam_region)
        return ConnectOptions(
            ssl=tls_for(self.database_sslmode, self.database_sslrootcert),
            signer=signer if self.database_iam_auth else None,
        )


def tls_for(mode: SslMode | None, root_cert: Path | None) -> ssl.SSLContext | str | None:
    """asyncpg's `ssl` argument for a libpq mode: a context that verifies as the mode says, the
    mode's name where asyncpg's own handling is libpq's (`disable`, `prefer`), None for unset."""
    if mode is None or mode in (SslMode.DISABLE, SslMode.PREFER):
        return mode.value if mode is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=root_cert)
    if mode is SslMode.REQUIRE:
        # libpq's `require`: encrypted, the server unauthenticated.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode is SslMode.VERIFY_CA:
        context.check_hostname = False
    return context


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How to open connections: the TLS context and, with IAM, the signer of each password."""

    ssl: ssl.SSLContext | str | None = None
    signer: TokenSigner | None = None

    def for_dsn(self, dsn: str) -> dict[str, Any]:
        """Keyword arguments for `asyncpg.connect` / `asyncpg.create_pool` with this `dsn`."""
        kwargs: dict[str, Any] = {}
        if self.ssl is not None:
            kwargs["ssl"] = self.ssl
        if self.signer is not None:
            kwargs["password"] = token_password(self.signer, dsn)
        return kwargs


#: No options: the DSN alone decides (local development, tests).
PLAIN = ConnectOptions()


def token_password(signer: TokenSigner, dsn: str) -> Callable[[], Awaitable[str]]:
    """asyncpg's `password` callable: asyncpg calls it for every new connection (pools included),
    so each login gets a token signed just then, never one cached past its 15 minutes."""
    host, port, user = _login_of(dsn)

    async def password() -> str:
        return await signer.token(host, port, user)

    return password


def _login_of(dsn: str) -> tuple[str, int, str]:
    parts = urlsplit(dsn)
    if not parts.hostname or "," in parts.netloc:
        raise DatabaseConfigError(
            "IAM authentication signs a token for one host: the DSN must name exactly one "
            "(the cluster or reader endpoint)"
        )
    if not parts.username:
        raise DatabaseConfigError("IAM authentication needs the database user in the DSN")
    if parts.password:
        raise DatabaseConfigError(
            "the DSN carries a password while DATABASE_IAM_AUTH=true: remove it (the token is the password)"
        )
    return parts.hostname, parts.port or DEFAULT_PORT, unquote(parts.username)
