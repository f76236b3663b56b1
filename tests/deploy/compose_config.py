"""`docker compose config` of the project's compose files, for tests: every variant resolved by compose
itself (merged, interpolated from .env.example, profiles applied). compose v2 comes from
scripts/deploy/tools.sh (built from the Go module proxy once when it is not cached)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.rendering import ROOT, tool

COMPOSE = ROOT / "docker-compose.yml"
AWS_LIKE = ROOT / "docker-compose.aws-like.yml"
ENV_EXAMPLE = ROOT / ".env.example"
#: Each variant: the files merged and the profiles on.
VARIANTS: dict[str, tuple[tuple[Path, ...], tuple[str, ...]]] = {
    "default": ((COMPOSE,), ()),
    "dynamodb": ((COMPOSE,), ("dynamodb",)),
    "aws-like": ((COMPOSE, AWS_LIKE), ()),
    "aws-like+mongodb": ((COMPOSE, AWS_LIKE), ("mongodb",)),
}
#: A clean environment: the test process's own DATABASE_URL and friends must not interpolate.
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT / ".stack")}


def compose(
    *args: str, files: tuple[Path, ...] = (COMPOSE,), env_file: bool = True
) -> subprocess.CompletedProcess[str]:
    file_args = [a for f in files for a in ("--file", str(f))]
    env_args = ["--env-file", str(ENV_EXAMPLE) if env_file else "/dev/null"]
    return subprocess.run(  # our own binary and arguments
        [tool("compose"), "--project-directory", str(ROOT), *file_args, *env_args, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=CLEAN_ENV,
    )


def resolve(variant: str) -> dict[str, dict[str, Any]]:
    """The services as `docker compose config` resolves the variant (merged, interpolated, profiled)."""
    files, profiles = VARIANTS[variant]
    done = compose(
        *(a for p in profiles for a in ("--profile", p)), "config", "--format", "json", files=files
    )
    assert done.returncode == 0, done.stderr
    services: dict[str, dict[str, Any]] = yaml.safe_load(done.stdout)["services"]
    return services


def profiles(files: tuple[Path, ...]) -> set[str]:
    """Every profile the merged files declare (`docker compose config --profiles`)."""
    done = compose("config", "--profiles", files=files)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())
