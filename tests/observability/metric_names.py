"""The metric names the services declare, and the metric names a PromQL expression uses.

Declared names are read from the source (calls of prometheus_client's `Counter`, `Gauge`,
`Histogram`, `Summary` with a literal name), so a dashboard or an alert is checked against what the
code exposes without starting anything.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_TREES = [ROOT / "shared/src", *sorted(ROOT.glob("services/*/src"))]
KINDS = {"Counter", "Gauge", "Histogram", "Summary"}


@dataclass(frozen=True)
class Metric:
    kind: str
    name: str
    path: Path

    def samples(self) -> set[str]:
        """The series names this metric exposes (prometheus_client's text format)."""
        if self.kind == "Counter":
            base = self.name.removesuffix("_total")
            return {f"{base}_total", f"{base}_created"}
        if self.kind == "Histogram":
            return {f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count", f"{self.name}_created"}
        if self.kind == "Summary":
            return {self.name, f"{self.name}_sum", f"{self.name}_count", f"{self.name}_created"}
        return {self.name}


def _metric_call(node: ast.AST) -> tuple[str, str] | None:
    """(kind, name) when `node` declares a metric with a literal name."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in KINDS
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.func.id, node.args[0].value
    return None


@cache
def declared_metrics() -> tuple[Metric, ...]:
    calls = [
        (call, path)
        for tree in SOURCE_TREES
        for path in sorted(tree.rglob("*.py"))
        for call in map(_metric_call, ast.walk(ast.parse(path.read_text(), str(path))))
    ]
    return tuple(Metric(call[0], call[1], path) for call, path in calls if call is not None)


def exposed_series() -> set[str]:
    return {sample for metric in declared_metrics() for sample in metric.samples()}


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_CALLS = re.compile(r"\b[a-zA-Z_]\w*\s*\(")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def metrics_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression: what remains once strings, label matchers, grouping
    clauses, ranges, function names, keywords and numbers are taken out."""
    for pattern in (_STRINGS, _MATCHERS, _GROUPING, _RANGES, _CALLS):
        expr = pattern.sub(" ", expr)
    names = set(re.findall(r"\b[a-zA-Z_:][\w:]*\b", expr))
    return {n for n in names if n.lower() not in _KEYWORDS and not re.fullmatch(r"\d+[smhdwy]", n)}
