"""`dispatch-core simulate`: compare dispatch policies on identical, seeded demand.

    dispatch-core simulate --scenario london-day --seed 1 --days 1 \\
        --policies closest-idle,engine --out sim-reports/london-day

Exit codes: 0 done; 2 bad input (unknown scenario or policy, a call file with a bad line,
named by file, line and column).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dispatch_core.loadtest.generator import scenario_fleet
from dispatch_core.loadtest.scenario import Scenario, ScenarioError, load_scenario
from dispatch_core.simulate import report
from dispatch_core.simulate.demand import Call, DemandError, read_calls_csv, scenario_calls
from dispatch_core.simulate.policies import POLICIES
from dispatch_core.simulate.world import EPOCH_MS, World

DEFAULT_SCENARIO = "london-day"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dispatch-core simulate",
        description=(
            "A seeded discrete-event simulation that drives the real engine in-process and"
            " compares dispatch policies on identical demand. Exit codes: 0 done, 2 bad input."
        ),
    )
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="a scenario name or .toml path")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--days",
        type=int,
        default=1,
        help="spans of the scenario to simulate, its demand profile repeated (default 1)",
    )
    p.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help=f"comma-separated, from {', '.join(POLICIES)} (default all)",
    )
    p.add_argument("--calls", type=Path, help="a CSV of calls to replay instead of the scenario's")
    p.add_argument("--units", type=int, help="fleet size (default: the scenario's)")
    p.add_argument("--out", type=Path, default=Path("sim-reports"), help="report directory")
    p.add_argument(
        "--calibrate",
        type=float,
        metavar="SHARE",
        help=(
            "instead of comparing policies, find the smallest fleet at which closest-idle"
            " reaches this share of IMMEDIATE calls within 15 minutes (e.g. 0.869)"
        ),
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _start_ms(sc: Scenario) -> int:
    hours, _, minutes = sc.starts_at.partition(":")
    return EPOCH_MS + (int(hours) * 3600 + int(minutes or 0) * 60) * 1000


def _progress(name: str, quiet: bool) -> Callable[[float], None] | None:
    if quiet:
        return None

    tty = sys.stderr.isatty()
    shown = [-1]

    def show(fraction: float) -> None:
        # A terminal gets a bar redrawn in place; a log gets a line every quarter.
        step = round(fraction * (30 if tty else 4))
        if step == shown[0]:
            return
        shown[0] = step
        if tty:
            bar = "#" * step + "." * (30 - step)
            end = "\n" if fraction >= 1.0 else ""
            print(
                f"\r{name:>14} [{bar}] {100 * fraction:3.0f} %",
                end=end,
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"{name}: {100 * fraction:3.0f} %", file=sys.stderr, flush=True)

    return show


def simulate(
    sc: Scenario,
    calls: Sequence[Call],
    policy_names: Sequence[str],
    *,
    seed: int,
    days: int,
    demand: str,
    quiet: bool = True,
) -> tuple[dict[str, Any], dict[str, World], dict[str, float]]:
    """Runs each policy on the same fleet and calls; returns the report, the worlds and
    each policy's wall-clock seconds (which stay out of the report)."""
    fleet = scenario_fleet(sc)
    results: dict[str, Any] = {}
    worlds: dict[str, World] = {}
    seconds: dict[str, float] = {}
    for name in policy_names:
        world = World(fleet, calls, seed=seed, start_ms=_start_ms(sc))
        started = time.perf_counter()
        world.run(POLICIES[name](), _progress(name, quiet))
        seconds[name] = time.perf_counter() - started
        results[name] = report.policy_outcomes(world)
        worlds[name] = world
    meta = {
        "scenario": sc.name,
        "seed": seed,
        "days": days,
        "span_hours": sc.simulated_s / 3600.0,
        "calls": len(calls),
        "units": len(fleet),
        "on_duty": int(next(iter(worlds.values())).on_duty.sum()) if worlds else 0,
        "demand": demand,
    }
    return report.build_report(meta, results), worlds, seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        known = ", ".join(POLICIES)
        print(f"simulate: unknown policy {given} (known: {known})", file=sys.stderr)
        return 2
    if args.days < 1:
        print(f"simulate: --days must be at least 1, got {args.days}", file=sys.stderr)
        return 2
    try:
        sc = load_scenario(args.scenario)
        if args.units is not None:
            if args.units < 1:
                raise ScenarioError(f"--units must be at least 1, got {args.units}")
            sc = dataclasses.replace(sc, units=args.units)
        if args.calls is not None:
            calls = read_calls_csv(args.calls, sc)
            demand = f"{len(calls):,} calls read from {args.calls.name}"
        else:
            calls = scenario_calls(sc, days=args.days, seed=args.seed)
            demand = f"the scenario's profile ({sc.basis})"
    except (ScenarioError, DemandError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if args.calibrate is not None:
        return _calibrate(sc, args, calls)
    result, worlds, seconds = simulate(
        sc, calls, names, seed=args.seed, days=args.days, demand=demand, quiet=args.quiet
    )
    paths = report.write(args.out, result, worlds)
    for name, s in seconds.items():
        print(
            f"{name}: {len(calls):,} calls, {args.days} span(s) simulated in {s:.1f} s",
            file=sys.stderr,
        )
    print(f"report written to {paths[1]} (JSON: {paths[0].name})", file=sys.stderr)
    return 0


def immediate_share(sc: Scenario, calls: Sequence[Call], *, seed: int) -> float:
    """Share of IMMEDIATE calls closest-idle reaches within 15 minutes with `sc`'s fleet."""
    world = World(scenario_fleet(sc), calls, seed=seed, start_ms=_start_ms(sc))
    world.run(POLICIES["closest-idle"]())
    row = report.grade_outcomes(world).get("IMMEDIATE")
    return float(row["within_target_share"]) if row else 0.0


def _calibrate(sc: Scenario, args: argparse.Namespace, calls: Sequence[Call]) -> int:
    """Bisects the fleet size: the share within target grows with the fleet (more units,
    nearer units, shorter queues), so the smallest fleet reaching the share is found in
    about log2(range) runs."""
    goal = args.calibrate
    if not 0.0 < goal < 1.0:
        print(f"simulate: --calibrate wants a share between 0 and 1, got {goal}", file=sys.stderr)
        return 2
    lo, hi = 1, max(2, sc.units)
    while immediate_share(dataclasses.replace(sc, units=hi), calls, seed=args.seed) < goal:
        lo, hi = hi, hi * 2
        if hi > 200_000:
            print("simulate: no fleet up to 200,000 units reaches that share", file=sys.stderr)
            return 1
    while hi - lo > max(1, hi // 200):  # within 0.5 %
        mid = (lo + hi) // 2
        share = immediate_share(dataclasses.replace(sc, units=mid), calls, seed=args.seed)
        if not args.quiet:
            print(
                f"calibrate: {mid:,} units -> {100 * share:.1f} % IMMEDIATE within 15 min",
                file=sys.stderr,
            )
        if share >= goal:
            hi = mid
        else:
            lo = mid
    share = immediate_share(dataclasses.replace(sc, units=hi), calls, seed=args.seed)
    print(
        f"{hi} units: closest-idle reaches {100 * share:.1f} % of IMMEDIATE within 15 min"
        f" (goal {100 * goal:.1f} %)"
    )
    return 0
