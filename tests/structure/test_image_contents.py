"""What each image installs is what its code needs: the write-store drivers only in command-svc.

An image runs `uv sync --frozen --no-dev --package <name>` (see the Dockerfile), so `uv export` with
the same flags lists exactly the distributions it carries. Two checks over that list:
- the drivers of the write store (PyMongo, aiobotocore and its botocore) are in command-svc's image
  and in no other;
- every module a package ships (its `testing` helpers aside, which only test environments import)
  imports only the standard library and distributions its image carries, so no image fails at
  import time on a dependency that only the development environment happens to have. The few
  shared modules that need one of cqrs-shared's extras (`EXTRA_MODULES`) are checked against that
  extra, and every package that imports one of them must install the extra itself.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache

import pytest

from tests.structure.imports import ROOT, imports_in

WRITE_STORE_DRIVERS = {"pymongo", "aiobotocore", "botocore"}
#: cqrs_shared modules that need an extra of cqrs-shared. `rds_iam` is imported only when IAM
#: authentication is on (by `postgres_connect`, inside a function), so an image without the extra
#: starts and explains what is missing when asked for IAM.
EXTRA_MODULES = {"pg_failover": "postgres", "rds_iam": "aws"}
#: The CLI's modules that need one of its extras: `cqrs aws` (tables as code) reads command-svc's
#: table declarations and drives DynamoDB, so it needs `cqrs-cli[aws]`; the operator image goes
#: without (no write-store driver in it), and the command says what to install.
CLI_EXTRA_MODULES = {"aws": "aws"}
#: Distribution name -> the source tree of its one top-level package.
WORKSPACE = {
    "cqrs-shared": ROOT / "shared/src/cqrs_shared",
    "command-svc": ROOT / "services/command-svc/src/command_svc",
    "projector-svc": ROOT / "services/projector-svc/src/projector_svc",
    "query-svc": ROOT / "services/query-svc/src/query_svc",
    "cqrs-cli": ROOT / "cli/src/cqrs_cli",
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def locked_distributions(package: str, extra: str | None = None) -> frozenset[str]:
    """The distributions `uv sync --frozen --no-dev --package <package>` installs (workspace ones too)."""
    # The Makefile falls back to `python -m uv` where no `uv` is on PATH; so does this.
    uv = [found] if (found := shutil.which("uv")) else [sys.executable, "-m", "uv"]
    extras = ["--extra", extra] if extra else []
    exported = subprocess.run(
        [*uv, "export", "--frozen", "--no-dev", "--no-hashes", "--package", package, *extras],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = set()
    for line in exported.splitlines():
        if line.startswith("-e "):
            member = tomllib.loads((ROOT / line[3:].strip() / "pyproject.toml").read_text())
            names.add(_normalize(member["project"]["name"]))
        elif line and not line.startswith((" ", "#")):
            names.add(_normalize(re.split(r"[=<>;\[ ]", line, maxsplit=1)[0]))
    return frozenset(names)


@pytest.mark.parametrize("package", ["projector-svc", "query-svc", "cqrs-cli"])
def test_read_side_and_cli_images_carry_no_write_store_driver(package: str) -> None:
    locked = locked_distributions(package)
    assert package in locked  # the export really was this package's
    assert locked & WRITE_STORE_DRIVERS == set()


def test_command_svc_image_carries_the_write_store_drivers() -> None:
    assert locked_distributions("command-svc") >= WRITE_STORE_DRIVERS


@cache
def _distributions_of_modules() -> dict[str, set[str]]:
    """Top-level import name -> the distributions that provide it (workspace packages included)."""
    provided = {
        name: {_normalize(d) for d in dists}
        for name, dists in importlib.metadata.packages_distributions().items()
    }
    for dist, tree in WORKSPACE.items():
        provided.setdefault(tree.name, set()).add(dist)
    return provided


@pytest.mark.parametrize("package", sorted(WORKSPACE))
def test_shipped_modules_import_only_what_the_image_carries(package: str) -> None:
    locked = locked_distributions(package)
    provided = _distributions_of_modules()
    missing = []
    for found in imports_in(WORKSPACE[package], runtime_only=True):
        if "testing" in found.path.relative_to(WORKSPACE[package]).parts:
            continue
        top = found.module.split(".")[0]
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        extras = {"cqrs-shared": EXTRA_MODULES, "cqrs-cli": CLI_EXTRA_MODULES}.get(package, {})
        extra = extras.get(found.path.stem)
        if not provided.get(top, set()) & (locked_distributions(package, extra) if extra else locked):
            missing.append(f"{found.path.relative_to(ROOT)}:{found.line} imports {found.module}")
    assert missing == []


def test_the_import_check_sees_an_undeclared_import() -> None:
    """The check above would fail: command-svc's driver imports are not in query-svc's image."""
    provided = _distributions_of_modules()
    pymongo_imports = [i for i in imports_in(WORKSPACE["command-svc"]) if i.module.split(".")[0] == "pymongo"]
    assert pymongo_imports
    assert not provided["pymongo"] & locked_distributions("query-svc")


def _shared_modules_named(module: str, names: tuple[str, ...]) -> list[str]:
    """The cqrs_shared modules an import statement names (`cqrs_shared.x` or `from cqrs_shared import x`)."""
    if module == "cqrs_shared":
        return list(names)
    return [module.split(".")[1]] if module.startswith("cqrs_shared.") else []


@pytest.mark.parametrize("package", sorted(set(WORKSPACE) - {"cqrs-shared"}))
def test_packages_importing_a_shared_module_that_needs_an_extra_install_it(package: str) -> None:
    locked = locked_distributions(package)
    lacking = [
        f"{found.path.relative_to(ROOT)}:{found.line} needs cqrs-shared[{EXTRA_MODULES[name]}]"
        for found in imports_in(WORKSPACE[package])
        for name in _shared_modules_named(found.module, found.names)
        if name in EXTRA_MODULES and not locked >= locked_distributions("cqrs-shared", EXTRA_MODULES[name])
    ]
    assert lacking == []
