"""`cqrs token` mints tokens the services accept, from JWT_SECRET or the local secret file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from cqrs_cli.main import app
from cqrs_shared.auth import TokenVerifier
from cqrs_shared.settings import AuthMode, AuthSettings

SECRET = "cli-test-secret-0123456789abcdef0123456789"


def verifier() -> TokenVerifier:
    return TokenVerifier(AuthSettings(auth_mode=AuthMode.JWT, jwt_secret=SecretStr(SECRET)))


def test_a_token_from_the_secret_file_carries_the_requested_roles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    secret_file = tmp_path / "jwt-secret"
    secret_file.write_text(SECRET + "\n")
    result = CliRunner().invoke(
        app, ["token", "--role", "orders:read", "--subject", "ops", "--secret-file", str(secret_file)]
    )
    assert result.exit_code == 0, result.output
    principal = verifier().verify("Bearer " + result.stdout.strip())
    assert principal.subject == "ops"
    assert principal.roles == frozenset({"orders:read"})


def test_without_roles_the_token_holds_every_shop_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    result = CliRunner().invoke(app, ["token"])
    assert result.exit_code == 0, result.output
    assert "customers:erase" in verifier().verify("Bearer " + result.stdout.strip()).roles


def test_no_secret_anywhere_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    result = CliRunner().invoke(app, ["token", "--secret-file", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "JWT_SECRET" in result.output
