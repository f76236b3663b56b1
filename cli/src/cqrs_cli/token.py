"""`cqrs token`: a development JWT signed with the local HS256 secret (never for production)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from cqrs_shared.auth import mint_token

DEFAULT_ROLES = [
    "customers:write",
    "customers:erase",
    "customers:read",
    "orders:write",
    "orders:read",
]


def local_secret(secret_file: Path) -> str:
    secret = os.environ.get("JWT_SECRET")
    if secret:
        return secret
    if secret_file.is_file():
        return secret_file.read_text().strip()
    raise typer.BadParameter(
        f"set JWT_SECRET or create {secret_file} (`make up` does)", param_hint="--secret-file"
    )


def mint(
    role: Annotated[
        list[str] | None, typer.Option("--role", "-r", help="A role to grant (repeatable).")
    ] = None,
    subject: Annotated[str, typer.Option(help="The token's `sub`.")] = "developer",
    ttl_minutes: Annotated[int, typer.Option(min=1, max=24 * 60)] = 60,
    secret_file: Annotated[Path, typer.Option(help="Where `make up` keeps the local secret.")] = Path(
        ".stack/jwt-secret"
    ),
) -> None:
    """Print a bearer token for the local stack (all roles unless --role is given)."""
    token = mint_token(
        local_secret(secret_file),
        subject=subject,
        roles=role or DEFAULT_ROLES,
        issuer=os.environ.get("JWT_ISSUER", "cqrs-platform"),
        audience=os.environ.get("JWT_AUDIENCE", "cqrs-platform"),
        ttl=timedelta(minutes=ttl_minutes),
    )
    typer.echo(token)
