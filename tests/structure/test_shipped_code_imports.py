"""Shipped code (the packages, the benchmarks, the soak) never imports a test tree."""

from __future__ import annotations

import pytest

from tests.structure.imports import ROOT, imports_in

SERVICES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/src"))
SHIPPED = ["bench", "soak", "shared/src", "cli/src", *SERVICES]


@pytest.mark.parametrize("tree", SHIPPED)
def test_shipped_tree_never_imports_tests(tree: str) -> None:
    offending = [
        f"{i.path.relative_to(ROOT)}:{i.line} imports {i.module}"
        for i in imports_in(ROOT / tree)
        if i.module == "tests" or i.module.startswith("tests.")
    ]
    assert offending == []


def test_the_scan_sees_test_imports() -> None:
    """The check above would fail on a test-tree import: the e2e tests' own imports are found."""
    assert any(i.module == "tests.e2e.harness" for i in imports_in(ROOT / "tests" / "e2e"))
