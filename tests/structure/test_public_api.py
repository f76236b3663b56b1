"""Each package's deliberate public API, and that nothing outside a package reaches past it.

A package's `__init__.__all__` names its public modules (or subpackages); a public module with an
`__all__` of its own exports exactly those names, otherwise its names without a leading underscore.
Checked here:
- every `__all__` entry exists, and every public module, class and function is documented;
- every import across packages (from another package, the CLI, bench/, soak/, or another package's
  tests) names a public module and only names that module exports.
`KNOWN_REACHES` lists the imports of internals that predate this check; the read-side restructuring
(issue 9) removes them. It can only shrink: an entry no longer imported fails the test, so delete it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.structure.imports import ROOT, Import, imports_in

#: Package -> its source tree.
PACKAGES = {
    "cqrs_shared": ROOT / "shared/src/cqrs_shared",
    "command_svc": ROOT / "services/command-svc/src/command_svc",
    "projector_svc": ROOT / "services/projector-svc/src/projector_svc",
    "query_svc": ROOT / "services/query-svc/src/query_svc",
    "cqrs_cli": ROOT / "cli/src/cqrs_cli",
}
#: Trees that import packages, and the package whose internals each may use (its own).
IMPORTERS = {
    **{tree.relative_to(ROOT).as_posix(): package for package, tree in PACKAGES.items()},
    "shared/tests": "cqrs_shared",
    "services/command-svc/tests": "command_svc",
    "services/projector-svc/tests": "projector_svc",
    "services/query-svc/tests": "query_svc",
    "cli/tests": "cqrs_cli",
    "bench": None,
    "soak": None,
    "tests": None,
}

#: (importing tree, internal module) pairs that predate the check; only ever delete from this.
KNOWN_REACHES = {
    ("bench", "projector_svc.table_rows"),
}


def _public_modules(package: str) -> list[str]:
    declared = importlib.import_module(package).__dict__.get("__all__")
    assert isinstance(declared, list), f"{package}/__init__.py declares no __all__"
    return [f"{package}.{name}" for name in declared]


def _exports(module: ModuleType) -> list[str]:
    declared = module.__dict__.get("__all__")
    if declared is not None:
        return list(declared)
    return [name for name in vars(module) if not name.startswith("_")]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_public_module_exists_and_is_documented(package: str) -> None:
    undocumented = []
    for name in _public_modules(package):
        module = importlib.import_module(name)
        if not inspect.getdoc(module):
            undocumented.append(name)
        for attribute in module.__dict__.get("__all__", []):
            value = getattr(module, attribute)  # AttributeError: __all__ names something missing
            if (inspect.isclass(value) or inspect.isfunction(value)) and not inspect.getdoc(value):
                undocumented.append(f"{name}.{attribute}")
    assert undocumented == []


def _owner(path: Path) -> tuple[str, str | None]:
    """The importing tree a file belongs to (the most specific), and the package it may see inside."""
    relative = path.relative_to(ROOT).as_posix()
    tree = max((t for t in IMPORTERS if relative.startswith(t + "/")), key=len)
    return tree, IMPORTERS[tree]


def _cross_package_imports() -> Iterator[tuple[str, Import]]:
    for tree in sorted({t.split("/")[0] for t in IMPORTERS} | {"services"}):
        for found in imports_in(ROOT / tree):
            top = found.module.split(".")[0]
            importer, own = _owner(found.path)
            if top in PACKAGES and top != own:
                yield importer, found


def _violation(found: Import) -> str | None:
    package = found.module.split(".")[0]
    public = _public_modules(package)
    where = f"{found.path.relative_to(ROOT)}:{found.line}"
    if found.module == package:
        # `from package import module` takes public modules only.
        hidden = [n for n in found.names if f"{package}.{n}" not in public]
        return f"{where}: {package} does not export {hidden}" if hidden else None
    if not any(found.module == p or found.module.startswith(p + ".") for p in public):
        return f"{where}: {found.module} is internal to {package}"
    exported = _exports(importlib.import_module(found.module))
    hidden = [n for n in found.names if n not in exported]
    return f"{where}: {found.module} does not export {hidden}" if hidden else None


def test_imports_across_packages_use_only_public_apis() -> None:
    violations = []
    for importer, found in _cross_package_imports():
        problem = _violation(found)
        internal = problem is not None and problem.endswith(f"is internal to {found.module.split('.')[0]}")
        if internal and (importer, found.module) in KNOWN_REACHES:
            continue
        if problem:
            violations.append(problem)
    assert violations == []


def test_known_reaches_are_still_real() -> None:
    """A reach that was removed must leave the list, so the list only shrinks."""
    seen = {(importer, found.module) for importer, found in _cross_package_imports()}
    assert sorted(KNOWN_REACHES - seen) == []


def test_the_check_flags_an_internal_import() -> None:
    found = Import(ROOT / "cli/src/cqrs_cli/main.py", 1, "command_svc.pipeline", ("Pipeline",))
    assert _violation(found) == "cli/src/cqrs_cli/main.py:1: command_svc.pipeline is internal to command_svc"
