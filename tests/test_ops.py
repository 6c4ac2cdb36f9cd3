"""The ops kit: alert rules, their promtool unit tests and the Grafana dashboard.

promtool checks the rules and runs alerts_test.yml; these tests also hold the kit to the
metrics the server really exports, so that renaming a metric breaks a test here rather
than a dashboard or an alert in production (a query over a missing metric is silently
empty: the worst failure an alert can have).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dispatch_core._core import DispatchCore
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.service.interceptor import MetricsInterceptor
from dispatch_core.views.metrics import Metrics
from tests.promtool import promtool

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "ops" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dispatch-core.json"

#: Exported by the operating picture (the lead's part), not by metrics.py.
EXTERNAL = {"dispatch_coverage_ratio"}

_METRIC = re.compile(r"\b(dispatch_[a-z_]+)")


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every sample name the server can export (histogram _bucket/_count/_sum included)."""
    metrics = Metrics(process=False)
    metrics.watch(Pipeline(DispatchCore()))
    MetricsInterceptor(metrics)  # creates every method's RPC series
    return {s.name for family in metrics.registry.collect() for s in family.samples} | EXTERNAL


def test_promtool_checks_the_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)", ALERTS.read_text(), re.MULTILINE))
    assert len(alerts) >= 6
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", ALERTS_TEST.read_text())
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested not firing"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_alert_explains_its_threshold() -> None:
    # Each rule is preceded by a comment block (why this threshold, why this duration).
    lines = ALERTS.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- alert:"):
            assert lines[i - 1].strip().startswith("#"), line


def test_alerts_use_only_exported_metrics(exported: set[str]) -> None:
    used = set(_METRIC.findall(ALERTS.read_text()))
    assert used, "no dispatch_ metric in the alerts?"
    assert used - exported == set()


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_is_built_from_its_script() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_dashboard.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_dashboard_covers_the_brief_and_uses_only_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs(dashboard)
    used = {m for e in exprs for m in _METRIC.findall(e)}
    assert used - exported == set()
    # What the dashboard is for: each of these appears in some panel.
    for metric in (
        "dispatch_rpc_duration_seconds_bucket",
        "dispatch_rpc_duration_seconds_count",
        "dispatch_units",
        "dispatch_incidents_open",
        "dispatch_oldest_unassigned_incident_age_seconds",
        "dispatch_time_to_on_scene_seconds_bucket",
        "dispatch_response_target_total",
        "dispatch_coverage_ratio",
        "dispatch_journal_append_seconds_bucket",
    ):
        assert metric in used, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no "parse this expression" command, but it parses every rule's expr:
    # each query becomes a recording rule, with Grafana's variables given typical values.
    dashboard = json.loads(DASHBOARD.read_text())
    values = {
        "$__rate_interval": "1m",
        "$window": "4h",
        "$job": "dispatch-core",
        "$instance": ".*",
        "$kind": ".*",
    }
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, query in enumerate(_dashboard_exprs(dashboard)):
        expr = query
        for var, value in values.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, query
        rules += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(expr)}"]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
