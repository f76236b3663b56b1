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


def imports_in(tree: Path) -> Iterator[Import]:
    for path in sorted(tree.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(path, node.lineno, alias.name, ())
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield Import(path, node.lineno, node.module, tuple(a.name for a in node.names))
