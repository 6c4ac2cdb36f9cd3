"""Outcome figures of a simulation, per policy and grade, as JSON, Markdown and plots.

Only simulated quantities go in `report.json` and `report.md` (no wall-clock timings, no
dates), so the same seed gives the same report byte for byte; how long each policy took to
simulate is printed on stderr instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dispatch_core.loadtest.scenario import TARGET_S
from dispatch_core.simulate.world import World
from dispatch_core.types import Grade

ASSUMPTIONS = (
    "Travel: straight line x the engine's circuity (1.33) at the unit type's speed x the"
    " grade's blue-light factor, times log-normal noise (sigma 0.25) fixed per (call, unit);"
    " 30 s mobilisation.",
    "Response time: from the call to the first unit on scene. A call never reached within"
    " the run (demand plus a 4 h drain) counts as late.",
    "After a job a unit is AVAILABLE at once and drives home (its start position) at normal"
    " speed, taking calls on the way; positions reach the engine and the policies by AVL"
    " every 30 simulated seconds from moving units, and from standing ones whenever their"
    " last report would otherwise outgrow the engine's trusted age (120 s).",
    "Units on duty all run (no shift changes in this slice); units not AVAILABLE in the"
    " scenario's fleet are off duty throughout.",
)


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def grade_outcomes(world: World) -> dict[str, dict[str, Any]]:
    """Per grade: calls, attended, mean/p50/p90 response, share within target, late."""
    out: dict[str, dict[str, Any]] = {}
    for grade in Grade:
        incidents = [i for i in world.incidents if i.call.grade == grade]
        if not incidents:
            continue
        response = np.array(
            [i.first_arrival_s - i.call.t_s for i in incidents if i.first_arrival_s is not None]
        )
        target = TARGET_S.get(grade)
        row: dict[str, Any] = {
            "calls": len(incidents),
            "attended": int(response.size),
            "mean_response_s": _round(float(response.mean())) if response.size else None,
            "p50_response_s": _round(float(np.percentile(response, 50))) if response.size else None,
            "p90_response_s": _round(float(np.percentile(response, 90))) if response.size else None,
        }
        if target is not None:
            within = int(np.count_nonzero(response <= target))
            row["target_s"] = target
            row["within_target"] = within
            row["within_target_share"] = _round(within / len(incidents))
            row["late"] = len(incidents) - within
        out[grade.name] = row
    return out


def policy_outcomes(world: World) -> dict[str, Any]:
    on_duty = int(np.count_nonzero(world.on_duty))
    span = world.now_s
    busy = float(world.busy_s[world.on_duty].sum())
    return {
        "grades": grade_outcomes(world),
        "utilisation": _round(busy / (on_duty * span)) if on_duty and span else 0.0,
        "engine_commands": world.commands,
    }


def build_report(
    meta: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    report = dict(meta)
    report["assumptions"] = list(ASSUMPTIONS)
    report["policies"] = dict(results)
    base = results.get("closest-idle")
    if base is not None:
        report["against_closest_idle"] = {
            name: _against(base, r) for name, r in results.items() if name != "closest-idle"
        }
    return report


def _against(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Relative changes against closest-idle: late arrivals, within-target share, mean."""
    out: dict[str, Any] = {}
    for grade, b in base["grades"].items():
        o = other["grades"].get(grade)
        if o is None:
            continue
        row: dict[str, Any] = {}
        if b.get("late"):
            row["late_change"] = _round(o["late"] / b["late"] - 1.0)
        if b.get("within_target_share"):
            row["within_target_share_change"] = _round(
                o["within_target_share"] / b["within_target_share"] - 1.0
            )
        if b.get("mean_response_s") and o.get("mean_response_s"):
            row["mean_response_change"] = _round(o["mean_response_s"] / b["mean_response_s"] - 1.0)
        out[grade] = row
    return out


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f} %"


def markdown(report: Mapping[str, Any]) -> str:
    policies: Mapping[str, Any] = report["policies"]
    names = list(policies)
    lines = [
        f"# Simulation: {report['scenario']}",
        "",
        f"- Seed {report['seed']}, {report['days']} span(s) of {report['span_hours']:g} h;"
        f" {report['calls']:,} calls; fleet {report['units']:,} units"
        f" ({report['on_duty']:,} on duty).",
        f"- Demand: {report['demand']}.",
        "",
        "## Outcomes per grade",
        "",
        "| grade | figure | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    grades = [g.name for g in Grade if any(g.name in p["grades"] for p in policies.values())]
    figures = (
        ("calls", "calls", lambda v: f"{v:,}"),
        ("attended", "attended", lambda v: f"{v:,}"),
        ("mean response (min)", "mean_response_s", _minutes),
        ("p50 response (min)", "p50_response_s", _minutes),
        ("p90 response (min)", "p90_response_s", _minutes),
        ("within target", "within_target_share", lambda v: f"{100 * v:.1f} %"),
        ("late arrivals", "late", lambda v: f"{v:,}"),
    )
    for grade in grades:
        for label, key, fmt in figures:
            cells = []
            for name in names:
                row = policies[name]["grades"].get(grade, {})
                cells.append(fmt(row[key]) if row.get(key) is not None else "—")
            if all(c == "—" for c in cells):
                continue
            lines.append(f"| {grade} | {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| all | unit utilisation | "
        + " | ".join(f"{100 * policies[n]['utilisation']:.1f} %" for n in names)
        + " |"
    )
    against = report.get("against_closest_idle")
    if against:
        lines += [
            "",
            "## Against closest-idle (relative change)",
            "",
            "| policy | grade | late arrivals | within-target share | mean response |",
            "|---|---|---:|---:|---:|",
        ]
        for name, by_grade in against.items():
            for grade, row in by_grade.items():
                lines.append(
                    f"| {name} | {grade} | {_pct(row.get('late_change'))} |"
                    f" {_pct(row.get('within_target_share_change'))} |"
                    f" {_pct(row.get('mean_response_change'))} |"
                )
    lines += ["", "## Assumptions", ""] + [f"- {a}" for a in report["assumptions"]]
    return "\n".join(lines) + "\n"


def write(out: Path, report: Mapping[str, Any], worlds: Mapping[str, World]) -> list[Path]:
    """Writes report.json, report.md and (with matplotlib) response.png; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(report), encoding="utf-8")
    png = _plot(out / "response.png", worlds)
    return paths + ([png] if png else [])


def _plot(path: Path, worlds: Mapping[str, World]) -> Path | None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    grades: Sequence[Grade] = (Grade.IMMEDIATE, Grade.SIGNIFICANT)
    fig, axes = plt.subplots(1, len(grades), figsize=(11, 4))
    for ax, grade in zip(axes, grades, strict=True):
        for name, world in worlds.items():
            r = np.sort(
                [
                    (i.first_arrival_s - i.call.t_s) / 60
                    for i in world.incidents
                    if i.call.grade == grade and i.first_arrival_s is not None
                ]
            )
            n = sum(1 for i in world.incidents if i.call.grade == grade)
            if n:
                ax.step(r, np.arange(1, r.size + 1) / n, where="post", label=name)
        target = TARGET_S.get(grade)
        if target:
            ax.axvline(target / 60, color="grey", linestyle=":", label="target")
        ax.set_title(f"{grade.name}: share of calls reached")
        ax.set_xlabel("minutes from the call")
        ax.set_xlim(0, (target or 3600) / 60 * 2)
        ax.set_ylim(0, 1)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
