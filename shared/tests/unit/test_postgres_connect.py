"""Connection settings: what each TLS mode verifies, IAM tokens per connection, and clear errors."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from cqrs_shared.postgres_connect import (
    DatabaseConfigError,
    PostgresConnectSettings,
    SslMode,
    tls_for,
    token_password,
)
from cqrs_shared.rds_iam import RdsTokenSigner

DSN = "postgresql://app@db.cluster-abc.eu-west-1.rds.amazonaws.com:5433/cqrs"


class CountingSigner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    async def token(self, host: str, port: int, user: str) -> str:
        self.calls.append((host, port, user))
        return f"token-{len(self.calls)}"


def test_verify_full_checks_the_chain_and_the_host_name() -> None:
    context = tls_for(SslMode.VERIFY_FULL, None)
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_verify_ca_checks_the_chain_only_and_require_only_encrypts() -> None:
    verify_ca, require = tls_for(SslMode.VERIFY_CA, None), tls_for(SslMode.REQUIRE, None)
    assert isinstance(verify_ca, ssl.SSLContext) and isinstance(require, ssl.SSLContext)
    assert (verify_ca.verify_mode, verify_ca.check_hostname) == (ssl.CERT_REQUIRED, False)
    assert (require.verify_mode, require.check_hostname) == (ssl.CERT_NONE, False)


def test_unset_mode_leaves_tls_to_the_dsn() -> None:
    assert PostgresConnectSettings().connect_options().for_dsn(DSN) == {}


def test_iam_without_tls_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="DATABASE_SSLMODE=verify-full"):
        PostgresConnectSettings(database_iam_auth=True)


def test_a_missing_ca_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="DATABASE_SSLROOTCERT"):
        PostgresConnectSettings(database_sslmode="verify-full", database_sslrootcert=tmp_path / "nope.pem")


def test_settings_come_from_the_shared_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_SSLMODE", "verify-full")
    monkeypatch.setenv("DATABASE_IAM_AUTH", "true")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = PostgresConnectSettings()
    assert settings.database_sslmode is SslMode.VERIFY_FULL
    assert settings.database_iam_auth
    assert settings.database_iam_region == "eu-west-1"


async def test_every_call_of_the_password_callable_signs_a_new_token() -> None:
    signer = CountingSigner()
    password = token_password(signer, DSN)
    assert [await password(), await password()] == ["token-1", "token-2"]
    assert signer.calls == [("db.cluster-abc.eu-west-1.rds.amazonaws.com", 5433, "app")] * 2


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://app:secret@db:5432/cqrs", "carries a password"),
        ("postgresql://db:5432/cqrs", "needs the database user"),
        ("postgresql://app@a:5432,b:5432/cqrs", "exactly one"),
    ],
)
def test_dsns_iam_cannot_sign_for_are_refused(dsn: str, problem: str) -> None:
    with pytest.raises(DatabaseConfigError, match=problem):
        token_password(CountingSigner(), dsn)


def test_iam_options_pass_a_password_callable_and_the_tls_context() -> None:
    settings = PostgresConnectSettings(database_sslmode="verify-full", database_iam_auth=True)
    kwargs = settings.connect_options(CountingSigner()).for_dsn(DSN)
    assert isinstance(kwargs["ssl"], ssl.SSLContext)
    assert callable(kwargs["password"])


def test_iam_without_aiobotocore_is_a_configuration_error_that_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aiobotocore.session", None)  # what an image without it sees
    settings = PostgresConnectSettings(database_sslmode="verify-full", database_iam_auth=True)
    with pytest.raises(DatabaseConfigError, match=r"cqrs-shared\[aws\]"):
        settings.connect_options()


def test_iam_without_a_region_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance to ask for its region
    with pytest.raises(DatabaseConfigError, match="DATABASE_IAM_REGION or AWS_REGION"):
        RdsTokenSigner()


async def test_aiobotocore_signs_a_connect_token_for_the_host_port_and_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    settings = PostgresConnectSettings(
        database_sslmode="verify-full", database_iam_auth=True, database_iam_region="eu-west-1"
    )
    password = settings.connect_options().for_dsn(DSN)["password"]
    token = await password()
    url = urlsplit(f"https://{token}")
    query = parse_qs(url.query)
    assert (url.hostname, url.port) == ("db.cluster-abc.eu-west-1.rds.amazonaws.com", 5433)
    assert query["Action"] == ["connect"]
    assert query["DBUser"] == ["app"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert query["X-Amz-Credential"][0].endswith("/eu-west-1/rds-db/aws4_request")
    assert query["X-Amz-Expires"] == ["900"]
    assert len(query["X-Amz-Signature"][0]) == 64
