"""PNG plots of load-test reports (matplotlib's Agg backend: files only, no display).

matplotlib is an optional dependency (`pip install 'dispatch-core[plots]'`): without it a
report is written whole and says that its plots were skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PLOTS = ("latency.png", "throughput.png", "resources.png")
CAPACITY_PLOTS = ("capacity.png",)
#: Said in a report when matplotlib is missing.
SKIPPED = "plots skipped: matplotlib is not installed (pip install 'dispatch-core[plots]')"


def pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        return None
    matplotlib.use("Agg")  # before pyplot: files only, never a window
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _colours(plt: Any, n: int) -> list[Any]:
    """n distinct colours: one per RPC, never reused within a plot."""
    cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
    return [cmap(i % cmap.N) for i in range(n)]


def _legend(ax: Any, **kw: Any) -> None:
    """A legend only when something is labelled (an empty one warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _xs(vals: Sequence[float | None]) -> tuple[list[int], list[float]]:
    pts = [(i, v) for i, v in enumerate(vals) if v is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_run(report: Mapping[str, Any], out: Path) -> list[str]:
    plt = pyplot()
    if plt is None:
        return []
    ts = report["timeseries"]
    title = f"{report['scenario']['name']}: {report['run']['label']}"
    written = []

    colour = dict(zip(ts["rpcs"], _colours(plt, len(ts["rpcs"])), strict=True))
    fig, ax = plt.subplots(figsize=(12, 5))
    plotted = False
    for rpc, s in ts["rpcs"].items():
        x, y = _xs(s["p99_ms"])
        if x:
            ax.plot(x, y, label=f"{rpc} p99", lw=1.2, color=colour[rpc])
            plotted = True
    if plotted:  # a log axis with nothing on it warns (and warnings are errors in tests)
        ax.set_yscale("log")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("latency from intended send (ms)")
    ax.set_title(f"{title}: p99 latency per second")
    ax.grid(True, which="both", alpha=0.3)
    # Outside the axes, so the legend never covers the data.
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=100)
    plt.close(fig)
    written.append("latency.png")

    fig, ax = plt.subplots(figsize=(12, 5))
    for rpc, s in ts["rpcs"].items():
        ax.plot(ts["t_s"], s["completed"], label=f"{rpc} ok/s", lw=1.2, color=colour[rpc])
        if any(s["errors"]):
            ax.plot(ts["t_s"], s["errors"], ls=":", label=f"{rpc} errors/s", color=colour[rpc])
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("requests per second")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_title(f"{title}: throughput")
    ax.grid(True, alpha=0.3)
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=100)
    plt.close(fig)
    written.append("throughput.png")

    sm = ts["samples"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t = [s["t_s"] for s in sm]
    a1.plot(t, [s["server_cpu_pct"] or 0 for s in sm], label="server CPU %")
    a1.plot(t, [s["gen_cpu_pct"] for s in sm], label="generator CPU %")
    a1.plot(t, [s["other_cpu_pct"] for s in sm], label="other processes CPU %", ls=":")
    a1.set_ylabel("% of one core")
    _legend(a1, fontsize=8)
    a1.grid(True, alpha=0.3)
    a2.plot(t, [s["server_rss_mb"] or 0 for s in sm], label="server RSS MB", color="C2")
    a2.set_ylabel("MB")
    a3 = a2.twinx()
    a3.plot(t, [s["lag_p99_ms"] for s in sm], label="generator lag p99 ms", color="C3")
    a3.set_ylabel("lag ms")
    a2.set_xlabel("wall-clock seconds")
    _legend(a2, loc="upper left", fontsize=8)
    _legend(a3, loc="upper right", fontsize=8)
    a2.grid(True, alpha=0.3)
    a1.set_title(f"{title}: resources")
    fig.tight_layout()
    fig.savefig(out / "resources.png", dpi=100)
    plt.close(fig)
    written.append("resources.png")
    return written


def plot_capacity(report: Mapping[str, Any], out: Path) -> list[str]:
    """p99 against offered rate for every RPC's steps, with the limit."""
    plt = pyplot()
    if plt is None:
        return []
    results = report["results"]
    colour = dict(zip(results, _colours(plt, len(results)), strict=True))
    fig, ax = plt.subplots(figsize=(11, 5))
    for rpc, r in results.items():
        steps = [s for s in r["steps"] if s["latency_ms"].get("p99") is not None]
        if not steps:
            continue
        ax.plot(
            [s["offered_per_s"] for s in steps],
            [s["latency_ms"]["p99"] for s in steps],
            "o-",
            label=rpc,
            color=colour[rpc],
        )
    ax.axhline(report["p99_limit_ms"], color="red", ls="--", label="p99 limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered requests per second (steady)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title("Capacity per RPC: p99 at each step")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out / "capacity.png", dpi=100)
    plt.close(fig)
    return list(CAPACITY_PLOTS)
