"""Who imports what: the import statements of a source tree, read with `ast` (nothing is executed)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str
    #: The names taken from `module` (`from module import a, b`); empty for `import module`.
    names: tuple[str, ...]


def _type_checking_only(module: ast.Module) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks: imports that never run."""
    skipped: set[int] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def imports_in(tree: Path, *, runtime_only: bool = False) -> Iterator[Import]:
    """Every import statement under `tree`; with `runtime_only`, not those under `if TYPE_CHECKING:`."""
    for path in sorted(tree.rglob("*.py")):
        parsed = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_only(parsed) if runtime_only else set()
        for node in ast.walk(parsed):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(path, node.lineno, alias.name, ())
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield Import(path, node.lineno, node.module, tuple(a.name for a in node.names))
