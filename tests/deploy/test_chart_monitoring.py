"""The chart's optional monitoring objects are built from the files the observability tests check: the
PrometheusRule carries deploy/prometheus/alerts.yml (and passes the same promtool unit tests once
rendered), the dashboard ConfigMap carries deploy/grafana/cqrs-path.json, both through symbolic links in
the chart's files/ (one file, no copy). Off by default. The offline layer has no schemas for CRDs: it
skips exactly the custom kinds whose stand-in CRDs `make k8s-check` installs, and no other kind."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.rendering import (
    CHART,
    ROOT,
    VARIANTS,
    helm,
    kubernetes_validate,
    of_kind,
    render,
    render_text,
)
from tests.observability.promtool import build_promtool, run

pytestmark = pytest.mark.timeout(1200)  # the first helm call may build helm (minutes, once)

RULES = ROOT / "deploy/prometheus/alerts.yml"
RULE_TESTS = ROOT / "deploy/prometheus/alerts_test.yml"
DASHBOARD = ROOT / "deploy/grafana/cqrs-path.json"
CHECK_CRDS = ROOT / "deploy/k8s/check-crds"
MONITORING = ("ServiceMonitor", "PrometheusRule")


@pytest.fixture(scope="module")
def promtool() -> str:
    return build_promtool()


def test_the_chart_reads_the_rules_and_the_dashboard_through_links_not_copies() -> None:
    for linked, source in ((CHART / "files/alerts.yml", RULES), (CHART / "files/cqrs-path.json", DASHBOARD)):
        assert linked.is_symlink(), f"{linked} must link to {source}, not copy it"
        assert linked.resolve() == source.resolve()


def test_monitoring_objects_are_off_by_default() -> None:
    documents = render()
    kinds = {d["kind"] for d in documents}
    assert not kinds & set(MONITORING)
    assert not [d for d in documents if "grafana_dashboard" in d["metadata"].get("labels", {})]


@pytest.mark.parametrize("variant", ["keda", "aws"])
def test_the_prometheus_rule_and_dashboard_carry_the_checked_files(variant: str) -> None:
    documents = render([VARIANTS[variant]])
    (rule,) = of_kind(documents, "PrometheusRule").values()
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    # Grafana's {{ $value }}-style annotations reach Prometheus as written, not as Helm templates.
    assert any("{{ $value" in r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"])
    (dashboard,) = (
        d for d in of_kind(documents, "ConfigMap").values() if d["metadata"]["name"].endswith("-dashboard")
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["cqrs-path.json"]) == json.loads(DASHBOARD.read_text())
    (monitor,) = of_kind(documents, "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.timeout(1800)  # a cold build of promtool, when nothing built it before
def test_the_rendered_rules_pass_promtool_and_the_rules_unit_tests(promtool: str, tmp_path: Path) -> None:
    (rule,) = of_kind(render([VARIANTS["keda"]]), "PrometheusRule").values()
    # What the operator hands Prometheus: the object's groups as a rule file, next to the unit tests.
    (tmp_path / RULES.name).write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    for args in (("check", "rules", RULES.name), ("test", "rules", RULE_TESTS.name)):
        done = run(promtool, *args, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_rules_file_without_groups_fails_the_render(tmp_path: Path) -> None:
    """The template refuses an empty or unparsable rules file instead of rendering an empty rule."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart, symlinks=False)
    (chart / "files/alerts.yml").write_text("groups: [\n")
    failed = helm("template", "cqrs", str(chart), "--set", "prometheusRule.enabled=true")
    assert failed.returncode != 0
    assert "files/alerts.yml (deploy/prometheus/alerts.yml) holds no rule groups" in failed.stderr


def test_the_offline_layer_skips_only_the_kinds_the_dry_run_has_crds_for(tmp_path: Path) -> None:
    text = render_text([VARIANTS["aws"]])
    assert text.returncode == 0, text.stderr
    (tmp_path / "rendered.yaml").write_text(text.stdout)
    done = kubernetes_validate(tmp_path / "rendered.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = set(re.findall(r"Couldn't find schema for kind (\w+)", done.stdout + done.stderr))
    stand_ins = {
        document["spec"]["names"]["kind"]
        for path in CHECK_CRDS.glob("*.yaml")
        for document in yaml.safe_load_all(path.read_text())
    }
    assert skipped == stand_ins == {"ScaledObject", *MONITORING}
