"""Builds ops/grafana/dispatch-core.json, the Grafana dashboard of dispatch-core's metrics.

    python scripts/build_dashboard.py          # rewrite the JSON
    python scripts/build_dashboard.py --check  # exit 1 if the JSON is not what this builds

The dashboard is generated rather than hand-edited so that every panel follows the same
conventions (datasource variable, job / instance filters, units) and so that a test can
check every query against the metric names the server exports (tests/test_ops.py). Import
the JSON in Grafana (Dashboards → New → Import), then pick the Prometheus datasource in the
dashboard's Datasource variable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "ops" / "grafana" / "dispatch-core.json"

#: Every query filters on these, so one Grafana serves several deployments.
SEL = 'job=~"$job",instance=~"$instance"'
RATE = "$__rate_interval"

#: Attendance targets (seconds) by grade: bucket boundaries of the response histograms.
#: `le` is matched as 900 or 900.0: prometheus_client writes "900.0", Prometheus 3
#: normalises it to "900" at ingestion.
TARGETS = {"IMMEDIATE": "900", "SIGNIFICANT": "3600"}

Panel = dict[str, Any]


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self._add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self._newline()

    def add(self, panel: Panel, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        self._add(panel, w, h)

    def _add(self, panel: Panel, w: int, h: int) -> None:
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
        "range": not instant,
        "instant": instant,
    }


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    thresholds: list[tuple[str, float | None]] | None = None,
    stack: bool = False,
    minmax: tuple[float | None, float | None] = (None, None),
    options: dict[str, Any] | None = None,
) -> Panel:
    steps = [
        {"color": color, "value": value}
        for color, value in (thresholds or [("green", None), ("red", 80.0)])
    ]
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "color": {"mode": "thresholds" if kind in ("stat", "bargauge") else "palette-classic"},
    }
    if minmax[0] is not None:
        defaults["min"] = minmax[0]
    if minmax[1] is not None:
        defaults["max"] = minmax[1]
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if stack else 0,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "showPoints": "never",
            "spanNulls": False,
            # Threshold lines (targets, alert levels) drawn on the graph where given.
            "thresholdsStyle": {"mode": "line" if thresholds else "off"},
        }
    out: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
    }
    if kind == "timeseries" and not options:
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if kind == "stat" and not options:
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "auto",
        }
    return out


def bargauge(title: str, description: str, targets: list[dict[str, Any]], **kw: Any) -> Panel:
    return panel(
        "bargauge",
        title,
        description,
        targets,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        },
        **kw,
    )


def quantile(q: float, metric: str, by: str) -> str:
    by_le = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({by_le}) (rate({metric}_bucket{{{SEL}}}[{RATE}])))"


def compliance(grade: str, window: str) -> str:
    le = TARGETS[grade]
    return (
        f'sum(increase(dispatch_time_to_on_scene_seconds_bucket{{{SEL},grade="{grade}",'
        f'le=~"{le}(\\\\.0)?"}}[{window}]))'
        f" / sum(increase(dispatch_time_to_on_scene_seconds_count{{{SEL},"
        f'grade="{grade}"}}[{window}]))'
    )


SERVER_ERRORS = "INTERNAL|UNKNOWN|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED"


def build() -> dict[str, Any]:
    g = Layout()
    rpc = "dispatch_rpc_duration_seconds"

    # ------------------------------------------------------------------ service health
    g.row("Service health")
    g.add(
        panel(
            "stat",
            "Up",
            "Scrape health of each server (1 = up). Alert DispatchDown after 1 min at 0.",
            [target(f"up{{{SEL}}}", "{{instance}}")],
            thresholds=[("red", None), ("green", 1.0)],
        ),
        4,
        5,
    )
    g.add(
        panel(
            "stat",
            "Requests / s",
            "All RPCs, every method and status.",
            [target(f"sum(rate({rpc}_count{{{SEL}}}[{RATE}]))")],
            unit="reqps",
            thresholds=[("blue", None)],
        ),
        4,
        5,
    )
    g.add(
        panel(
            "stat",
            "Server error ratio",
            "Share of RPCs ending with a server-side code "
            f"({SERVER_ERRORS.replace('|', ', ')}). Client errors (INVALID_ARGUMENT, "
            "NOT_FOUND, FAILED_PRECONDITION) are the API answering correctly and are not "
            "counted. Alert at 1% for 5 min.",
            [
                target(
                    f'sum(rate({rpc}_count{{{SEL},code=~"{SERVER_ERRORS}"}}[{RATE}]))'
                    f" / sum(rate({rpc}_count{{{SEL}}}[{RATE}]))"
                )
            ],
            unit="percentunit",
            thresholds=[("green", None), ("orange", 0.005), ("red", 0.01)],
        ),
        4,
        5,
    )
    g.add(
        panel(
            "timeseries",
            "CPU",
            "Process CPU in cores (1 = one core busy).",
            [target(f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])", "{{instance}}")],
            unit="short",
        ),
        6,
        5,
    )
    g.add(
        panel(
            "timeseries",
            "Resident memory",
            "Process RSS.",
            [target(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
            unit="bytes",
        ),
        6,
        5,
    )

    # ------------------------------------------------------------------------- RPCs
    g.row("RPCs: rate, errors, duration")
    g.add(
        panel(
            "timeseries",
            "Throughput by method",
            "Completed RPCs per second by method (the duration histogram's count).",
            [target(f"sum by (method) (rate({rpc}_count{{{SEL}}}[{RATE}]))", "{{method}}")],
            unit="reqps",
        ),
        12,
        8,
    )
    g.add(
        panel(
            "timeseries",
            "Errors by code",
            "Non-OK RPCs per second by status code (client and server errors).",
            [target(f'sum by (code) (rate({rpc}_count{{{SEL},code!="OK"}}[{RATE}]))', "{{code}}")],
            unit="reqps",
        ),
        12,
        8,
    )
    g.add(
        panel(
            "timeseries",
            "Refused: server full",
            "RESOURCE_EXHAUSTED per second by method: calls refused because more than 512 "
            "were admitted at once (and WatchEvents streams ended for lagging too far). "
            "Counted by the server, refusals included, since admission is its own.",
            [
                target(
                    f"sum by (method) (rate({rpc}_count"
                    f'{{{SEL},code="RESOURCE_EXHAUSTED"}}[{RATE}]))',
                    "{{method}}",
                )
            ],
            unit="reqps",
        ),
        24,
        6,
    )
    g.add(
        panel(
            "timeseries",
            "Latency p50 by method",
            "Median server-side RPC duration (buckets from 50 µs).",
            [target(quantile(0.5, rpc, "method"), "{{method}}")],
            unit="s",
        ),
        12,
        8,
    )
    g.add(
        panel(
            "timeseries",
            "Latency p99 by method",
            "99th percentile server-side RPC duration. Long-lived streams (StreamLocations, "
            "Watch) take as long as the client keeps them open.",
            [target(quantile(0.99, rpc, "method"), "{{method}}")],
            unit="s",
        ),
        12,
        8,
    )
    g.add(
        panel(
            "timeseries",
            "In flight by method",
            "RPCs being handled now.",
            [target(f"sum by (method) (dispatch_rpc_in_flight{{{SEL}}})", "{{method}}")],
        ),
        8,
        7,
    )
    g.add(
        panel(
            "timeseries",
            "Ranking time (core)",
            "One ranking call into the Rust core, per requirement group.",
            [
                target(quantile(0.5, "dispatch_rank_duration_seconds", ""), "p50"),
                target(quantile(0.99, "dispatch_rank_duration_seconds", ""), "p99"),
            ],
            unit="s",
        ),
        8,
        7,
    )
    g.add(
        panel(
            "timeseries",
            "Location pings by result",
            "Pings per second: applied, or skipped as unknown unit, bad coordinate or "
            "stale (older than the unit's last position).",
            [
                target(
                    f"sum by (result) (rate(dispatch_location_pings_total{{{SEL}}}[{RATE}]))",
                    "{{result}}",
                )
            ],
            unit="short",
            stack=True,
        ),
        8,
        7,
    )

    # ------------------------------------------------------------------------ units
    g.row("Units: availability against demand")
    g.add(
        panel(
            "timeseries",
            "Units by status",
            "Every unit, stacked by lifecycle status.",
            [target(f"sum by (status) (dispatch_units{{{SEL}}})", "{{status}}")],
            stack=True,
        ),
        8,
        8,
    )
    g.add(
        panel(
            "timeseries",
            "Demand against availability",
            "Incidents waiting for a unit (open, none attached) beside AVAILABLE units. "
            "Availability falling towards demand is when queues start.",
            [
                target(f'sum(dispatch_units{{{SEL},status="AVAILABLE"}})', "available units"),
                target(f"sum(dispatch_incidents_open{{{SEL}}})", "open incidents"),
            ],
        ),
        8,
        8,
    )
    g.add(
        bargauge(
            "Units by agency and status (now)",
            "Current counts per agency and status.",
            [
                target(
                    f"sum by (agency, status) (dispatch_units{{{SEL}}}) > 0",
                    "{{agency}} {{status}}",
                    instant=True,
                )
            ],
            thresholds=[("blue", None)],
        ),
        8,
        8,
    )

    # -------------------------------------------------------------------- incidents
    g.row("Incidents")
    g.add(
        panel(
            "timeseries",
            "Open incidents by grade",
            "Incidents not yet closed.",
            [target(f"sum by (grade) (dispatch_incidents_open{{{SEL}}})", "{{grade}}")],
            stack=True,
        ),
        8,
        8,
    )
    g.add(
        panel(
            "stat",
            "Oldest unassigned IMMEDIATE",
            "How long the oldest IMMEDIATE incident with no unit has waited. "
            "Alert DispatchImmediateIncidentUnassigned above 2 min.",
            [
                target(
                    "max(dispatch_oldest_unassigned_incident_age_seconds"
                    f'{{{SEL},grade="IMMEDIATE"}})'
                )
            ],
            unit="s",
            thresholds=[("green", None), ("orange", 60.0), ("red", 120.0)],
        ),
        4,
        8,
    )
    g.add(
        panel(
            "timeseries",
            "Oldest unassigned by grade",
            "Age of the oldest open incident with no unit attached, per grade (0: none "
            "waiting). The line is the IMMEDIATE alert level (120 s).",
            [
                target(
                    f"max by (grade) (dispatch_oldest_unassigned_incident_age_seconds{{{SEL}}})",
                    "{{grade}}",
                )
            ],
            unit="s",
            thresholds=[("green", None), ("red", 120.0)],
        ),
        12,
        8,
    )
    g.add(
        panel(
            "timeseries",
            "Time to assign (p50, p90) by grade",
            "From creation to the first unit assigned.",
            [
                target(quantile(0.5, "dispatch_time_to_assign_seconds", "grade"), "p50 {{grade}}"),
                target(quantile(0.9, "dispatch_time_to_assign_seconds", "grade"), "p90 {{grade}}"),
            ],
            unit="s",
        ),
        12,
        8,
    )
    g.add(
        panel(
            "timeseries",
            "Time to on scene (p50, p90) by grade",
            "From creation to the first unit on scene: the attendance time.",
            [
                target(
                    quantile(0.5, "dispatch_time_to_on_scene_seconds", "grade"), "p50 {{grade}}"
                ),
                target(
                    quantile(0.9, "dispatch_time_to_on_scene_seconds", "grade"), "p90 {{grade}}"
                ),
            ],
            unit="s",
        ),
        12,
        8,
    )

    # ------------------------------------------------------------------ compliance
    g.row("Response targets (IMMEDIATE 15 min, SIGNIFICANT 60 min)")
    for grade, minutes in (("IMMEDIATE", 15), ("SIGNIFICANT", 60)):
        g.add(
            panel(
                "stat",
                f"{grade} within {minutes} min ($window)",
                f"Share of {grade} incidents first attended within {minutes} minutes over "
                "the window, from the on-scene histogram: the bucket at the target divided "
                "by the count (the target is a bucket boundary, so this is exact). Red "
                "below 90%.",
                [target(compliance(grade, "$window"))],
                unit="percentunit",
                thresholds=[("red", None), ("orange", 0.9), ("green", 0.95)],
                minmax=(0.0, 1.0),
            ),
            6,
            6,
        )
    g.add(
        panel(
            "timeseries",
            "Compliance by grade (rolling $window)",
            "The same share over time. The line is the 90% alert level.",
            [
                target(compliance("IMMEDIATE", "$window"), "IMMEDIATE"),
                target(compliance("SIGNIFICANT", "$window"), "SIGNIFICANT"),
            ],
            unit="percentunit",
            thresholds=[("red", None), ("green", 0.9)],
            minmax=(0.0, 1.0),
        ),
        12,
        6,
    )
    g.add(
        panel(
            "timeseries",
            "Attended within / outside target",
            "Incidents first attended per window, by grade and whether within target.",
            [
                target(
                    "sum by (grade, met) (increase(dispatch_response_target_total"
                    f"{{{SEL}}}[$window]))",
                    "{{grade}} met={{met}}",
                )
            ],
            stack=True,
        ),
        24,
        6,
    )

    # --------------------------------------------------------------------- coverage
    g.row("Coverage")
    g.add(
        bargauge(
            "Coverage by area (now)",
            "Share of each area an available unit can reach within the target. Red below "
            "80% (alert DispatchAreaCoverageLow after 10 min).",
            [
                target(
                    f'min by (area) (dispatch_coverage_ratio{{{SEL},kind=~"$kind"}})',
                    "{{area}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            thresholds=[("red", None), ("orange", 0.8), ("green", 0.9)],
            minmax=(0.0, 1.0),
        ),
        12,
        14,
    )
    g.add(
        panel(
            "timeseries",
            "Least covered areas",
            "The five lowest areas over time.",
            [
                target(
                    f'bottomk(5, min by (area) (dispatch_coverage_ratio{{{SEL},kind=~"$kind"}}))',
                    "{{area}}",
                )
            ],
            unit="percentunit",
            thresholds=[("red", None), ("green", 0.8)],
            minmax=(0.0, 1.0),
        ),
        12,
        14,
    )

    # ---------------------------------------------------------------------- journal
    g.row("Journal")
    g.add(
        panel(
            "timeseries",
            "Append latency",
            "Time for an append to be durable; every command waits for it. The line is "
            "the alert level (p99 50 ms).",
            [
                target(quantile(0.5, "dispatch_journal_append_seconds", ""), "p50"),
                target(quantile(0.99, "dispatch_journal_append_seconds", ""), "p99"),
            ],
            unit="s",
            thresholds=[("green", None), ("red", 0.05)],
        ),
        8,
        7,
    )
    g.add(
        panel(
            "timeseries",
            "Appends / s",
            "Journal appends per second.",
            [target(f"sum(rate(dispatch_journal_append_seconds_count{{{SEL}}}[{RATE}]))")],
            unit="ops",
        ),
        8,
        7,
    )
    g.add(
        panel(
            "timeseries",
            "Group commit batch size",
            "Entries per commit: above 1 means group commit is absorbing concurrency.",
            [
                target(quantile(0.5, "dispatch_journal_batch_size", ""), "p50"),
                target(quantile(0.99, "dispatch_journal_batch_size", ""), "p99"),
            ],
        ),
        8,
        7,
    )

    def query_var(name: str, label: str, query: str, *, include_all: bool) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": f"{name}-var"},
            "definition": query,
            "refresh": 2,
            "includeAll": include_all,
            "multi": include_all,
            "allValue": ".*",
            "current": {"selected": True, "text": "All", "value": "$__all"} if include_all else {},
            "sort": 1,
        }

    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "title": "dispatch-core",
        "uid": "dispatch-core",
        "description": "Police dispatch engine: service health, RPCs, units, incidents, "
        "response targets, coverage and journal. Built by scripts/build_dashboard.py.",
        "tags": ["dispatch-core", "dispatch"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                },
                query_var(
                    "job", "Job", "label_values(dispatch_rpc_in_flight, job)", include_all=True
                ),
                query_var(
                    "instance",
                    "Instance",
                    'label_values(dispatch_rpc_in_flight{job=~"$job"}, instance)',
                    include_all=True,
                ),
                query_var(
                    "kind",
                    "Coverage kind",
                    'label_values(dispatch_coverage_ratio{job=~"$job"}, kind)',
                    include_all=True,
                ),
                {
                    "name": "window",
                    "label": "Compliance window",
                    "type": "custom",
                    "query": "1h,4h,24h,7d",
                    "current": {"selected": True, "text": "4h", "value": "4h"},
                    "options": [
                        {"selected": w == "4h", "text": w, "value": w}
                        for w in ("1h", "4h", "24h", "7d")
                    ],
                },
            ]
        },
        "panels": g.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python scripts/build_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
