"""CI and the pre-commit hooks run the checks of `make lint`, from the locked environment, offline."""

from __future__ import annotations

import tomllib
from typing import Any

import yaml

from tests.structure.imports import ROOT


def _hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"], "network hooks would fetch code"
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_pre_commit_hooks_use_the_locked_tools_only() -> None:
    for hook in _hooks():
        assert hook["language"] == "system"
        assert hook["entry"].startswith(("uv run --frozen ", "make lint-")), hook["id"]


def test_pre_commit_runs_every_check_of_make_lint() -> None:
    entries = {hook["entry"] for hook in _hooks()}
    lint = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("lint:"))
    parts = lint.split("##")[0].split()[1:]
    assert "lint-ruff" in parts and "lint-types" in parts
    # ruff runs per file in the hooks (the same command as lint-ruff's, on the staged files).
    assert {"uv run --frozen ruff format --check", "uv run --frozen ruff check"} <= entries
    assert {f"make {part}" for part in parts if part.startswith("lint-") and part != "lint-ruff"} <= entries


def test_ci_runs_lint_the_suite_and_the_other_pythons() -> None:
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert steps == ["make lint", "make test", "make test-pythons"]


def test_checks_target_the_lowest_supported_python() -> None:
    """Code that passes ruff and mypy for 3.11 runs on 3.11: neither may assume a newer Python."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert root["project"]["requires-python"].startswith(">=3.11,")
    assert root["tool"]["ruff"]["target-version"] == "py311"
    assert root["tool"]["mypy"]["python_version"] == "3.11"
    members = [ROOT / "shared", ROOT / "cli", *sorted((ROOT / "services").glob("*-svc"))]
    for member in members:
        project = tomllib.loads((member / "pyproject.toml").read_text())["project"]
        assert project["requires-python"].startswith(">=3.11"), member.name
