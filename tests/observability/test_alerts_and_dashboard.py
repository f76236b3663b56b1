"""The alert rules and the dashboard: promtool accepts and unit-tests the rules, a broken rule fails,
every alert has a unit test, and every metric either file names is one the services expose.

promtool comes from `scripts/tools/promtool.sh`, which builds it from the Go module proxy when it is
missing (`make test` does that before pytest; standalone, the first run of this module builds it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.metric_names import ROOT, exposed_series, metrics_in
from tests.observability.promtool import build_promtool, run

RULES_DIR = ROOT / "deploy/prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts_test.yml"
DASHBOARD = ROOT / "deploy/grafana/cqrs-path.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    return build_promtool()


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@pytest.mark.timeout(1800)  # a cold build of promtool, when nothing built it before
def test_promtool_accepts_the_rules_and_their_unit_tests_pass(promtool: str) -> None:
    checked = run(promtool, "check", "rules", RULES.name, cwd=RULES_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout
    tested = run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULES_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _copy_rules(tmp_path: Path, rules_text: str) -> Path:
    (tmp_path / RULES.name).write_text(rules_text)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return tmp_path


def test_promtool_refuses_a_rule_that_does_not_parse(promtool: str, tmp_path: Path) -> None:
    broken = RULES.read_text().replace("expr: cqrs_service_ready == 0", "expr: cqrs_service_ready == == 0")
    assert broken != RULES.read_text()
    checked = run(promtool, "check", "rules", RULES.name, cwd=_copy_rules(tmp_path, broken))
    assert checked.returncode != 0
    assert '"CqrsServiceNotReady": could not parse expression' in checked.stdout + checked.stderr


def test_a_rule_that_no_longer_does_its_job_fails_its_unit_test(promtool: str, tmp_path: Path) -> None:
    """Valid PromQL, wrong threshold: only the unit tests can tell, and they do."""
    broken = RULES.read_text().replace(
        "expr: cqrs_command_outbox_oldest_unpublished_age_seconds > 60",
        "expr: cqrs_command_outbox_oldest_unpublished_age_seconds > 600",
    )
    assert broken != RULES.read_text()
    directory = _copy_rules(tmp_path, broken)
    assert run(promtool, "check", "rules", RULES.name, cwd=directory).returncode == 0
    tested = run(promtool, "test", "rules", RULE_TESTS.name, cwd=directory)
    assert tested.returncode != 0
    assert "CqrsOutboxBacklogStale" in tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    alerts = {rule["alert"] for rule in _rules()}
    assert set(cases) == alerts
    assert all(True in fired and False in fired for fired in cases.values()), cases


def test_every_alert_says_what_to_do() -> None:
    for rule in _rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_the_alerts_and_their_tests_name_only_exposed_metrics() -> None:
    exposed = exposed_series()
    used = {name for rule in _rules() for name in metrics_in(rule["expr"])}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        used |= {metrics_in(series["series"]).pop() for series in test["input_series"]}
    assert used, "no metric found in the rules"
    assert sorted(used - exposed) == []


def _dashboard_exprs(panels: list[dict[str, Any]]) -> list[str]:
    exprs = []
    for panel in panels:
        exprs += [target["expr"] for target in panel.get("targets", [])]
        exprs += _dashboard_exprs(panel.get("panels", []))
    return exprs


def test_the_dashboard_names_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs(dashboard["panels"])
    used = {name for expr in exprs for name in metrics_in(expr)}
    assert len(exprs) > 20
    assert sorted(used - exposed_series()) == []


def test_the_dashboard_shows_the_whole_path_on_one_screen() -> None:
    """Command side, outbox, staleness and query side, each in a row of its own, in that order."""
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert [r.split(" ")[0] for r in rows[1:4]] == ["Command", "Projection", "Query"]
    used = {name for expr in _dashboard_exprs(dashboard["panels"]) for name in metrics_in(expr)}
    for needed in (
        "cqrs_command_handled_total",
        "cqrs_command_outbox_oldest_unpublished_age_seconds",
        "cqrs_projector_staleness_seconds_bucket",
        "cqrs_projector_lag_records",
        "cqrs_query_token_waits_total",
        "cqrs_query_http_request_seconds_bucket",
    ):
        assert needed in used, needed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] if "datasource" in p)


def test_the_dashboard_layout_fits_one_screen_without_overlaps() -> None:
    """Grafana's grid is 24 columns wide; 30 rows of 30 px fit a 1080p screen under its header."""
    dashboard = json.loads(DASHBOARD.read_text())
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["y"] + grid["h"] <= 30, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(target["refId"] and target["expr"] for target in panel["targets"]), panel["title"]
