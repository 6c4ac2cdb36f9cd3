"""`dispatch-core loadtest`: run a surge scenario (or a step search) and write its report.

    dispatch-core loadtest --scenario nye-surge [--duration 60] [--scale 0.1]
        [--target HOST:PORT [--server-pid PID]] [--journal memory] [--out DIR]
    dispatch-core loadtest --step-search [--units 10000] [--step-seconds 10]
    python -m loadtests.loadtest ...            (the same, from a source checkout)

Without --target it starts `dispatch-core serve` on a free loopback port with a temporary
data directory (`--journal memory` unless told otherwise), seeds the scenario's fleet over
gRPC, runs the open-loop workload (generator.py), stops the server and writes
report.json, report.md and PNG plots into loadtests/reports/<scenario>-<UTC time>/.
With --target the server must be fresh (the fleet is registered, not looked up) and
reachable on loopback; give --server-pid to have its CPU and memory reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tomli_w

from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.synthetic.fleet import incident_points, make_fleet
from loadtests import report as rep
from loadtests.bench_grpc import machine_info, recommend_requests
from loadtests.generator import (
    CHANNEL_OPTIONS,
    LoadtestServer,
    OpenLoop,
    Sampler,
    ScenarioRun,
    clock,
    dispatch_outcomes,
    run_parallel,
    scenario_fleet,
    seed_fleet,
)
from loadtests.scenario import ScenarioError, load_scenario, scenario_names

REPORTS_DIR = Path(__file__).resolve().parent / "reports"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class _Target:
    """The server under test: started here (and stopped) or given with --target."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.server: LoadtestServer | None = None
        if args.target:
            host = args.target.rsplit(":", 1)[0]
            if host not in LOOPBACK:
                # A load test floods its target: never aim it at a real deployment.
                raise SystemExit(f"--target must be a loopback address, got {args.target}")
            self.target = args.target
            self.pid: int | None = args.server_pid
            self.how = "given with --target" + (
                f", pid {args.server_pid}" if args.server_pid else ", CPU/RSS not measured"
            )
        else:
            self.server = LoadtestServer(tmp / "server", journal=args.journal)
            self.target = self.server.target
            self.pid = self.server.pid
            self.how = (
                f"started here: dispatch-core serve {' '.join(self.server.command_flags)}, "
                f"temporary data dir, pid {self.server.pid}"
            )
        self.channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        if self.server is not None:
            self.server.wait_serving(self.channel)
        else:
            grpc.channel_ready_future(self.channel).result(timeout=10)

    def close(self) -> dict[str, Any]:
        self.channel.close()
        if self.server is None:
            return {}
        code = self.server.stop()
        text = self.server.log_path.read_text(encoding="utf-8", errors="replace")
        return {
            "exit_code": code,
            "log_tracebacks": text.count("Traceback"),
            "log_tail": self.server.log_tail(8),
        }


def _seed(stub: pb_grpc.DispatchServiceStub, fleet: Any, out: Any) -> dict[str, Any]:
    print(f"seeding {len(fleet):,} units over gRPC...", file=out, flush=True)
    try:
        seeded = seed_fleet(stub, fleet, time.time_ns() // 1_000_000)
    except (SystemExit, grpc.RpcError) as exc:
        # The fleet is registered, not looked up: a server that already has it refuses.
        detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
        raise SystemExit(f"seeding failed: {detail} (a load test needs a fresh server)") from None
    print(
        f"seeded in {seeded['upsert_s'] + seeded['set_status_s'] + seeded['locate_s']:.1f} s "
        f"({seeded['available']:,} AVAILABLE)",
        file=out,
        flush=True,
    )
    return seeded


def run_scenario(args: argparse.Namespace) -> Path:
    sc = load_scenario(args.scenario).with_overrides(duration_s=args.duration, scale=args.scale)
    out_dir = args.out or REPORTS_DIR / f"{sc.name}-{_stamp()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = None if args.quiet else sys.stderr
    machine = machine_info()
    label = f"{sc.duration_s:.0f} s wall, compression {sc.compression:.1f}x, scale {args.scale}"
    if args.workers > 1:
        label += f", {args.workers} generator processes"
    print(f"loadtest {sc.name}: {label}; report -> {out_dir}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        target = _Target(args, Path(tmp))
        server_end: dict[str, Any] = {}
        try:
            stub = pb_grpc.DispatchServiceStub(target.channel)  # type: ignore[no-untyped-call]
            fleet = scenario_fleet(sc)
            seeded = _seed(stub, fleet, sys.stderr)
            if args.workers > 1:
                par = run_parallel(
                    sc,
                    target.target,
                    workers=args.workers,
                    server_pid=target.pid,
                    run_tag=_stamp(),
                    out=progress,
                )
                loop, samples, flows, run = par.loop, par.samples, par.flows, par.run
                gen_cpu, wall = par.gen_cpu_s, run["wall_s"]
            else:
                runner = ScenarioRun(
                    sc,
                    target.channel,
                    fleet,
                    server_pid=target.pid,
                    run_tag=_stamp(),
                    out=progress,
                )
                # The collector must not pause the send loop on long-lived objects.
                gc.collect()
                gc.freeze()
                cpu0, wall0 = time.process_time(), time.perf_counter()
                run = runner.run()
                gen_cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                assert runner.loop is not None and runner.sampler is not None
                loop, samples, flows = runner.loop, runner.sampler.samples, runner.flows
        finally:
            gc.unfreeze()
            server_end = target.close()
    seconds = sc.duration_s
    rpcs = rep.rpc_table(loop, seconds)
    by_code, unexpected = rep.error_summary(rpcs)
    requests = sum(r["requests"] for r in rpcs.values())
    ok = sum(r["ok"] for r in rpcs.values())
    report: dict[str, Any] = {
        "kind": "scenario",
        "scenario": sc.summary(),
        "run": {
            "label": label,
            "scale": args.scale,
            "duration_override_s": args.duration,
            "time_utc": machine["time_utc"],
            "seeding": seeded,
            **{k: v for k, v in run.items() if not k.endswith("_ns")},
            "wall_s": wall,
        },
        "machine": machine,
        "server": {"target": target.target, "how": target.how, "pid": target.pid, **server_end},
        "rpcs": rpcs,
        "totals": {
            "requests": requests,
            "ok": ok,
            "offered_per_s": requests / seconds,
            "achieved_per_s": ok / seconds,
            "pings_sent": run["pings_sent"],
        },
        "errors_by_code": by_code,
        "unexpected_errors": unexpected,
        "generator": rep.generator_stats(loop),
        "resources": rep.resources(samples, gen_cpu, wall),
        "outcomes": dispatch_outcomes(flows, sc.lifecycle_compression, run["end_ns"]),
        "timeseries": rep.timeseries(loop, samples, seconds),
        "plots": [],
    }
    report["plots"] = rep.plot_run(report, out_dir)
    rep.write(report, out_dir, rep.markdown(report))
    # The scenario as run (after --duration/--scale), so a report can be reproduced.
    (out_dir / "scenario.toml").write_text(
        tomli_w.dumps(_jsonable(dataclasses.asdict(sc))), encoding="utf-8"
    )
    return out_dir


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items() if v is not None}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, int | float | str | bool):
        return x.name if hasattr(x, "name") else x
    return str(x)


# ---------------------------------------------------------------------------- step search


def step_rates(start: float, factor: float, limit: float) -> list[float]:
    """Geometric steps from `start` to `limit`, rounded to whole requests per second."""
    if start <= 0 or factor <= 1:
        raise ScenarioError("step search: --step-start must be > 0 and --step-factor > 1")
    rates: list[float] = []
    r = start
    while r <= limit:
        rates.append(float(round(r)))
        r *= factor
    return rates


def run_step_search(args: argparse.Namespace) -> Path:
    units = max(100, round(args.units * args.scale))
    out_dir = args.out or REPORTS_DIR / f"step-search-{_stamp()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    progress = None if args.quiet else sys.stderr
    steps: list[dict[str, Any]] = []
    failed = 0
    stopped = f"reached the last step ({args.step_max:.0f}/s)"
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        target = _Target(args, Path(tmp))
        server_end: dict[str, Any] = {}
        try:
            stub = pb_grpc.DispatchServiceStub(target.channel)  # type: ignore[no-untyped-call]
            _seed(stub, make_fleet(units, seed=42), sys.stderr)
            lat, lon = incident_points(4096, seed=8)
            reqs = recommend_requests(lat, lon)
            for i in range(200):  # warm-up, closed loop, outside every step
                stub.RecommendUnits(reqs[i % len(reqs)])
            for rate in step_rates(args.step_start, args.step_factor, args.step_max):
                row = _one_step(
                    stub,
                    reqs,
                    rate=rate,
                    seconds=args.step_seconds,
                    pid=target.pid,
                    progress=progress,
                    limit=args.p99_limit_ms,
                )
                steps.append(row)
                failed = failed + 1 if row["verdict"] != "ok" else 0
                # Errors end the search at once (overload). A tail over the limit may be a
                # blip of a shared machine, or a low rate's cold cores (an idle server wakes
                # slowly): only `--patience` failing steps in a row end it.
                if row["errors"] or failed >= args.patience:
                    stopped = f"{row['verdict']} at {rate:.0f}/s"
                    break
                time.sleep(0.5)  # let the server's queues empty between steps
        finally:
            server_end = target.close()
    good = [s["offered_per_s"] for s in steps if s["verdict"] == "ok"]
    report: dict[str, Any] = {
        "kind": "step_search",
        "units": units,
        "k": 5,
        "step_s": args.step_seconds,
        "p99_limit_ms": args.p99_limit_ms,
        "machine": machine,
        "time_utc": machine["time_utc"],
        "server": {"target": target.target, "how": target.how, **server_end},
        "steps": steps,
        "highest_sustained_per_s": max(good) if good else None,
        "stopped_because": stopped,
        "plots": [],
    }
    report["plots"] = rep.plot_steps(report, out_dir)
    rep.write(report, out_dir, rep.markdown_steps(report))
    return out_dir


def _one_step(
    stub: pb_grpc.DispatchServiceStub,
    reqs: Sequence[Any],
    *,
    rate: float,
    seconds: float,
    pid: int | None,
    progress: Any,
    limit: float,
) -> dict[str, Any]:
    n = max(1, int(rate * seconds))
    start = clock() + 50_000_000
    loop = OpenLoop(start_ns=start, end_ns=start + int(seconds * 1e9), max_requests=n + 1)
    # A fixed spacing, not Poisson: the step measures capacity at a steady rate.
    times = start + (np.arange(n) * (1e9 / rate)).astype(np.int64)
    m = len(reqs)
    loop.add_source(
        times, lambda i, t: loop.call("RecommendUnits", stub.RecommendUnits, reqs[i % m], t)
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with Sampler(loop, pid, label=f"step {rate}/s", out=progress) as sampler:
        loop.run()
        loop.drain(10.0)
    gen_cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    table = rep.rpc_table(loop, seconds).get("RecommendUnits")
    gen = rep.generator_stats(loop)
    res = rep.resources(sampler.samples, gen_cpu, wall)
    lat = table["latency_all_ms"] if table else {"n": 0}
    errors = (table["requests"] - table["ok"]) if table else 0
    achieved = table["achieved_per_s"] if table else 0.0
    if gen["fell_behind"]:
        verdict = "generator fell behind"
    elif errors:
        verdict = "errors"
    elif lat.get("p99", float("inf")) > limit:
        verdict = f"p99 over {limit} ms"
    elif achieved < 0.95 * rate:
        verdict = "achieved < 95% of offered"
    else:
        verdict = "ok"
    return {
        "offered_per_s": float(rate),
        "achieved_per_s": achieved,
        "requests": table["requests"] if table else 0,
        "errors": errors,
        "codes": table["codes"] if table else {},
        "latency_ms": lat,
        "lag_p99_ms": gen["lag_ms"].get("p99", 0.0),
        "generator_fell_behind": gen["fell_behind"],
        "not_sent": gen["not_sent"],
        "server_cpu_pct": res["server_cpu_pct_mean"],
        "generator_cpu_pct": res["generator_cpu_pct_mean"],
        "other_cpu_pct": res["other_processes_cpu_pct_mean"],
        "verdict": verdict,
    }


# ---------------------------------------------------------------------------------- cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dispatch-core loadtest",
        description="Open-loop load tests of major-event surges (loadtests/README.md).",
    )
    p.add_argument(
        "--scenario",
        default="london-baseline",
        help=f"a name ({', '.join(scenario_names())}) or a .toml path (default %(default)s)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="wall-clock seconds (default: the scenario's); the simulated span is kept, so "
        "a shorter run is more compressed (and heavier: use --scale)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies fleet, incident and read rates together (default 1)",
    )
    p.add_argument("--target", default=None, help="HOST:PORT of a running fresh server")
    p.add_argument("--server-pid", type=int, default=None, help="its pid, for CPU/RSS")
    p.add_argument(
        "--journal",
        default="memory",
        help="--journal of the server started here: memory (default), sqlite or a DSN",
    )
    p.add_argument("--out", type=Path, default=None, help="report directory")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="generator processes (default 1); more when one cannot keep to the schedule "
        "(national-stress), on a machine with cores to spare",
    )
    p.add_argument("--step-search", action="store_true", help="RecommendUnits capacity search")
    p.add_argument("--units", type=int, default=10_000, help="step search: fleet size")
    p.add_argument("--step-seconds", type=float, default=10.0, help="step search: per step")
    p.add_argument("--step-start", type=float, default=100.0, help="step search: first rate")
    p.add_argument("--step-factor", type=float, default=1.25, help="step search: rate x per step")
    p.add_argument("--step-max", type=float, default=20_000.0, help="step search: last rate")
    p.add_argument("--p99-limit-ms", type=float, default=5.0, help="step search: p99 limit")
    p.add_argument(
        "--patience",
        type=int,
        default=2,
        help="step search: failing steps in a row that end it (default 2; errors end it at once)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # SIGTERM (a timeout, kill) unwinds like Ctrl-C, so the server subprocess is stopped.
    # Only the main thread may set handlers; the previous one is put back (tests call this).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        out = run_step_search(args) if args.step_search else run_scenario(args)
    except ScenarioError as exc:
        print(f"dispatch-core loadtest: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"report written to {out}/report.md (JSON: report.json, plots: *.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
