"""The report of a load-test run: JSON (every figure), Markdown (the summary), PNG plots.

Latencies are from each request's intended send time (see generator.py), in
milliseconds. The plots are drawn by plots.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dispatch_core.loadtest.generator import (
    EXPECTED_CONFLICTS,
    FELL_BEHIND_SHARE,
    LATE_NS,
    OpenLoop,
    Record,
    Sample,
)
from dispatch_core.loadtest.plots import SKIPPED

FELL_BEHIND_TEXT = "FELL BEHIND (its own slowness is in the figures)"


#: Every key a scenario report has at its top level (the tests check them all).
REPORT_KEYS = (
    "kind",
    "valid",
    "scenario",
    "run",
    "machine",
    "server",
    "rpcs",
    "totals",
    "cost",
    "errors_by_code",
    "unexpected_errors",
    "generator",
    "resources",
    "outcomes",
    "timeseries",
    "plots",
)


def latency_ms(values_ns: npt.NDArray[np.int64]) -> dict[str, float | int]:
    """p50/p95/p99/p99.9/max/mean in ms of nanosecond samples."""
    if values_ns.size == 0:
        return {"n": 0}
    ms = values_ns.astype(np.float64) / 1e6
    p50, p95, p99, p999 = np.percentile(ms, [50, 95, 99, 99.9])
    return {
        "n": int(ms.size),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "p99.9": float(p999),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
    }


def _arrays(rows: Sequence[Record]) -> tuple[npt.NDArray[np.int64], ...]:
    intended = np.fromiter((r.intended for r in rows), dtype=np.int64, count=len(rows))
    sent = np.fromiter((r.sent for r in rows), dtype=np.int64, count=len(rows))
    done = np.fromiter((r.done for r in rows), dtype=np.int64, count=len(rows))
    return intended, sent, done


def rpc_table(loop: OpenLoop, seconds: float) -> dict[str, Any]:
    """Per RPC: offered and achieved rate, latency from intended and from actual send."""
    out: dict[str, Any] = {}
    for rpc in sorted(loop.records):
        rows = list(loop.records[rpc])
        intended, sent, done = _arrays(rows)
        codes = Counter(r.code for r in rows)
        ok = np.array([r.code == "OK" for r in rows], dtype=bool)
        out[rpc] = {
            "requests": len(rows),
            "ok": int(ok.sum()),
            "offered_per_s": len(rows) / seconds,
            "achieved_per_s": int(ok.sum()) / seconds,
            "codes": dict(codes),
            "latency_ms": latency_ms((done - intended)[ok]),
            "latency_from_send_ms": latency_ms((done - sent)[ok]),
            "latency_all_ms": latency_ms(done - intended),
        }
    return out


def generator_stats(loop: OpenLoop) -> dict[str, Any]:
    lag = np.asarray(loop.lag_ns, dtype=np.int64)
    late = int((lag > LATE_NS).sum())
    return {
        "sends": int(lag.size),
        "lag_ms": latency_ms(lag),
        "late_sends": late,
        "late_threshold_ms": LATE_NS / 1e6,
        "late_share": late / max(1, lag.size),
        "fell_behind": bool(late / max(1, lag.size) > FELL_BEHIND_SHARE),
        "not_sent": dict(loop.not_sent),
        "callback_errors": loop.callback_errors,
    }


def resources(samples: Sequence[Sample], gen_cpu_s: float, wall_s: float) -> dict[str, Any]:
    srv_cpu = [s.server_cpu_pct for s in samples if s.server_cpu_pct is not None]
    srv_rss = [s.server_rss_mb for s in samples if s.server_rss_mb is not None]
    return {
        "server_cpu_pct_mean": float(np.mean(srv_cpu)) if srv_cpu else None,
        "server_cpu_pct_max": float(np.max(srv_cpu)) if srv_cpu else None,
        "server_rss_mb_max": float(np.max(srv_rss)) if srv_rss else None,
        "server_rss_mb_end": srv_rss[-1] if srv_rss else None,
        "generator_cpu_pct_mean": 100.0 * gen_cpu_s / max(1e-9, wall_s),
        "generator_cpu_pct_max": max((s.gen_cpu_pct for s in samples), default=None),
        "generator_rss_mb_max": max((s.gen_rss_mb for s in samples), default=None),
        "other_processes_cpu_pct_mean": (
            float(np.mean([s.other_cpu_pct for s in samples])) if samples else None
        ),
        "samples": len(samples),
    }


def timeseries(loop: OpenLoop, samples: Sequence[Sample], seconds: float) -> dict[str, Any]:
    """Per wall-clock second: completions and p50/p99 latency per RPC; the samples."""
    n = max(1, int(np.ceil(seconds)))
    series: dict[str, Any] = {"t_s": list(range(n)), "rpcs": {}}
    for rpc, rows in sorted(loop.records.items()):
        intended, _, done = _arrays(list(rows))
        ok = np.array([r.code == "OK" for r in rows], dtype=bool)
        sec_done = np.clip((done - loop.start_ns) // 1_000_000_000, 0, n - 1)
        sec_int = np.clip((intended - loop.start_ns) // 1_000_000_000, 0, n - 1)
        lat = (done - intended) / 1e6
        completed = np.bincount(sec_done[ok], minlength=n)
        errors = np.bincount(sec_done[~ok], minlength=n)
        offered = np.bincount(sec_int, minlength=n)
        p50: list[float | None] = []
        p99: list[float | None] = []
        order = np.argsort(sec_int, kind="stable")
        bounds = np.searchsorted(sec_int[order], np.arange(n + 1))
        for s in range(n):
            sel = order[bounds[s] : bounds[s + 1]]
            sel = sel[ok[sel]]
            if sel.size:
                a, b = np.percentile(lat[sel], [50, 99])
                p50.append(float(a))
                p99.append(float(b))
            else:
                p50.append(None)
                p99.append(None)
        series["rpcs"][rpc] = {
            "offered": offered[:n].tolist(),
            "completed": completed[:n].tolist(),
            "errors": errors[:n].tolist(),
            "p50_ms": p50,
            "p99_ms": p99,
        }
    series["samples"] = [
        {
            "t_s": s.t_s,
            "server_cpu_pct": s.server_cpu_pct,
            "server_rss_mb": s.server_rss_mb,
            "gen_cpu_pct": s.gen_cpu_pct,
            "other_cpu_pct": s.other_cpu_pct,
            "lag_p99_ms": s.lag_p99_ms,
            "in_flight": s.in_flight,
        }
        for s in samples
    ]
    return series


def error_summary(
    rpcs: Mapping[str, Any], expected: AbstractSet[tuple[str, str]] = EXPECTED_CONFLICTS
) -> tuple[dict[str, int], int]:
    """Non-OK answers by status code, and how many are not `expected` conflicts."""
    by_code: Counter[str] = Counter()
    unexpected = 0
    for rpc, row in rpcs.items():
        for code, n in row["codes"].items():
            if code == "OK":
                continue
            by_code[code] += n
            if (rpc, code) not in expected:
                unexpected += n
    return dict(by_code), unexpected


# ------------------------------------------------------------------------------ markdown


def _f(x: Any, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not np.isfinite(x):
        return "n/a"
    return f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}"


def _span(seconds: float) -> str:
    return f"{seconds / 3600:.2f} hours" if seconds >= 3600 else f"{seconds:.0f} s"


def markdown(report: Mapping[str, Any]) -> str:
    sc, run, gen, res = report["scenario"], report["run"], report["generator"], report["resources"]
    m = report["machine"]
    shared_note = (
        " (the run shared the cores with other work: lag and tails show it)."
        if (res["other_processes_cpu_pct_mean"] or 0) > 20
        else "."
    )
    lines = [
        f"# Load test: {sc['name']}",
        "",
        f"{sc['description']}. Basis: {sc['basis']}.",
        "",
        f"- Run: {run['label']}; {run['time_utc']}; {m['nproc']} cores ({m['cpu_model']}), "
        f"load average at start {m['loadavg_1m_at_start']:.2f}; commit {m['commit']}"
        f"{' (dirty tree)' if m['dirty_tree'] else ''}.",
        f"- Time: {_span(sc['simulated_s'])} simulated from {sc['starts_at']} in "
        f"{sc['duration_s']:.0f} s of wall clock: **compression {sc['compression']:.1f}x** for "
        f"incident arrivals; travel and job times compressed {sc['lifecycle_compression']:.1f}x;"
        " AVL pings and console reads run at their real (wall-clock) rates.",
        f"- Scale {run['scale']}: {sc['units']:,} units, ~{sc['ping_rate_per_s']:,.0f} pings/s, "
        f"incidents peaking at {sc['incidents_peak_per_hour']:,.0f}/simulated hour "
        f"({sc['incidents_peak_wall_per_s']:,.1f}/s wall), {sc['expected_incidents']:,.0f} "
        "expected in the run.",
        f"- Server: {report['server']['target']} ({report['server']['how']}); journal: "
        f"{report['server'].get('journal', 'n/a')}.",
        "",
        (
            "**Run VALID**: the generator kept to its schedule."
            if report.get("valid", True)
            else "**Run INVALID**: the generator fell behind its schedule, so the figures "
            "below measure it as much as the server."
        ),
        "",
        "## Requests (latency in ms from the intended send time)",
        "",
        "| RPC | requests | offered/s | achieved/s | p50 | p95 | p99 | p99.9 | max "
        "| p99 from send | non-OK |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rpc, r in report["rpcs"].items():
        lat, fs = r["latency_ms"], r["latency_from_send_ms"]
        bad = ", ".join(f"{c} {n}" for c, n in r["codes"].items() if c != "OK") or "0"
        lines.append(
            f"| {rpc} | {r['requests']:,} | {r['offered_per_s']:,.1f} | "
            f"{r['achieved_per_s']:,.1f} | {_f(lat.get('p50'), 2)} | {_f(lat.get('p95'), 2)} | "
            f"{_f(lat.get('p99'), 2)} | {_f(lat.get('p99.9'), 2)} | {_f(lat.get('max'), 2)} | "
            f"{_f(fs.get('p99'), 2)} | {bad} |"
        )
    t = report["totals"]
    lines += [
        "",
        f"Total: {t['requests']:,} requests ({t['offered_per_s']:,.1f}/s offered, "
        f"{t['achieved_per_s']:,.1f}/s OK), {t['pings_sent']:,} AVL pings in "
        f"{report['rpcs'].get('UpdateLocations', {}).get('requests', 0):,} batches. Errors by "
        f"code: {report['errors_by_code'] or 'none'}; **unexpected errors: "
        f"{report['unexpected_errors']}** (AssignUnits FAILED_PRECONDITION/ABORTED are "
        "expected races between incidents and are re-recommended).",
        "",
        "## Generator and resources",
        "",
        f"- Generator lag (actual send - intended): p50 {_f(gen['lag_ms'].get('p50'), 2)} ms, "
        f"p99 {_f(gen['lag_ms'].get('p99'), 2)} ms, max {_f(gen['lag_ms'].get('max'), 1)} ms; "
        f"{gen['late_sends']:,} of {gen['sends']:,} sends more than "
        f"{gen['late_threshold_ms']:.0f} ms late: "
        f"**{FELL_BEHIND_TEXT if gen['fell_behind'] else 'kept to schedule'}**."
        f" Not sent: {gen['not_sent'] or 'none'}. Cancelled after the drain: "
        f"{run['unfinished_cancelled']}.",
        f"- Server CPU mean {_f(res['server_cpu_pct_mean'], 0)}% (max "
        f"{_f(res['server_cpu_pct_max'], 0)}%) of one core; RSS max "
        f"{_f(res['server_rss_mb_max'], 0)} MB. Generator CPU mean "
        f"{_f(res['generator_cpu_pct_mean'], 0)}% (max {_f(res['generator_cpu_pct_max'], 0)}%)."
        f" Other processes on the machine: {_f(res['other_processes_cpu_pct_mean'], 0)}% of a "
        f"core on average{shared_note}",
        f"- Cost: server CPU {_f(report['cost']['server_cpu_ms_per_1000_requests'], 1)} ms per "
        f"1,000 requests (all RPCs of the run together), generator CPU "
        f"{_f(report['cost']['generator_cpu_ms_per_1000_requests'], 1)} ms per 1,000.",
        "",
        "## Dispatch outcomes",
        "",
        "Time to assign: intended creation to acknowledged AssignUnits (wall ms; simulated s ="
        " wall x lifecycle compression). Response = simulated time to assign + the ranking's"
        " ETA of the first unit.",
        "",
        "| grade | incidents | assigned | attended | closed | unassigned at end | requeued "
        "| conflicts | tta p50 ms | tta p95 ms | tta p99 ms | response p50 s | response p95 s "
        "| target s | within target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for grade, o in report["outcomes"].items():
        tta, resp = o["time_to_assign_ms"], o["response_simulated_s"]
        within = (
            f"{o['within_target_share']:.1%} ({o['within_target_share_of_assigned']:.1%} of "
            "assigned)"
            if o.get("target_s")
            else "n/a"
        )
        lines.append(
            f"| {grade} | {o['incidents']:,} | {o['assigned']:,} | {o['attended']:,} | "
            f"{o['closed']:,} | {o['unassigned_at_end']:,} | {o['requeued']:,} | "
            f"{o['assign_conflicts']:,} | {_f(tta.get('p50'), 1)} | {_f(tta.get('p95'), 1)} | "
            f"{_f(tta.get('p99'), 1)} | {_f(resp.get('p50'), 0)} | {_f(resp.get('p95'), 0)} | "
            f"{_f(o.get('target_s'), 0)} | {within} |"
        )
    lines += [
        "",
        (
            "Plots: " + ", ".join(f"[{p}]({p})" for p in report["plots"]) + "."
            if report["plots"]
            else f"({SKIPPED})."
        ),
        "",
        "Latency from the intended send time includes every queue (server and generator); "
        "'p99 from send' leaves out the generator's own lateness. On a shared 2-core machine "
        "the generator and the server compete for CPU: read the tails beside the CPU figures.",
    ]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path, md: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(md, encoding="utf-8")
