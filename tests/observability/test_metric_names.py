"""Metric names follow Prometheus conventions, and the name extraction the other checks rely on works."""

from __future__ import annotations

import re
from pathlib import Path

from tests.observability.metric_names import ROOT, declared_metrics, metrics_in

#: Units a histogram may measure in (base units, as Prometheus recommends).
UNITS = ("_seconds", "_bytes")


def test_the_services_declare_metrics_under_one_name_each() -> None:
    names = [m.name for m in declared_metrics()]
    assert len(names) > 20  # the scan found the services' metrics modules
    assert len(names) == len(set(names))


def test_names_follow_prometheus_conventions() -> None:
    wrong = []
    for metric in declared_metrics():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", metric.name):
            wrong.append(f"{metric.name}: lowercase snake case")
        if metric.kind == "Counter" and not metric.name.endswith("_total"):
            wrong.append(f"{metric.name}: a counter ends in _total")
        if metric.kind != "Counter" and metric.name.endswith("_total"):
            wrong.append(f"{metric.name}: only counters end in _total")
        if metric.kind in {"Histogram", "Summary"} and not metric.name.endswith(UNITS):
            wrong.append(f"{metric.name}: a histogram names its unit")
    assert wrong == []


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (projection, le) (rate(a_seconds_bucket{x="y z"}[5m]))) > 5'
        " and on (job) b_total offset 5m or vector(0) unless c"
    )
    assert metrics_in(expr) == {"a_seconds_bucket", "b_total", "c"}


def _prefix_of(path: Path) -> str:
    """`cqrs_<service>_` for a service's source (`services/query-svc/...` -> `cqrs_query_`), `cqrs_`
    for the shared library's process-wide metrics."""
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "services":
        return f"cqrs_{relative.parts[1].removesuffix('-svc')}_"
    return "cqrs_"


def test_every_service_names_its_metrics_under_its_own_prefix() -> None:
    """One prefix per service, so a dashboard query `{__name__=~"cqrs_query_.*"}` finds all of
    query-svc's figures and no two services can claim the same name."""
    services = {_prefix_of(m.path) for m in declared_metrics()} - {"cqrs_"}
    assert services == {"cqrs_command_", "cqrs_projector_", "cqrs_query_"}
    wrong = [
        f"{m.name} ({m.path.relative_to(ROOT)})"
        for m in declared_metrics()
        if not m.name.startswith(_prefix_of(m.path))
    ]
    assert wrong == []
