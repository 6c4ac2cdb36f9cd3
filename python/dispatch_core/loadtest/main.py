"""`dispatch-core loadtest`: a surge scenario, or the capacity of each hot RPC, and its report.

    dispatch-core loadtest --scenario nye-surge [--duration 60] [--scale 0.1]
    dispatch-core loadtest --capacity [--units 10000] [--step-seconds 5]
    dispatch-core loadtest ... --target HOST:PORT [--allow-remote] [--metrics-url URL]

Without --target it starts `dispatch-core serve` on a free loopback port with a temporary
data directory and the journal users deploy (`--journal sqlite`, synchronous FULL; `memory`
only when asked), and stops it at the end. With --target it runs against a server that may
already hold data: the run's units and incidents have ids under `LT-<run id>-`, only those
are assigned, and at the end its incidents are closed and its units set OFF_DUTY.

Reports (report.json, report.md, PNG plots when matplotlib is installed) go to
./loadtest-reports/<name>-<UTC time>/ unless --out says otherwise.

Exit codes: 0 a valid run; 2 bad input, or a target that cannot be tested (one line, before
any load); 3 the run is invalid because the generator, not the server, was the limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import gc
import json
import math
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from dispatch_core.loadtest import capacity as cap
from dispatch_core.loadtest import plots
from dispatch_core.loadtest import report as rep
from dispatch_core.loadtest.generator import (
    DISPATCHERS,
    EXPECTED_CONFLICTS,
    EXPECTED_WITH_DIVERSIONS,
    Flow,
    dispatch_outcomes,
    run_parallel,
    runner_class,
    scenario_fleet,
)
from dispatch_core.loadtest.procs import machine_info
from dispatch_core.loadtest.scenario import ScenarioError, load_scenario, scenario_names
from dispatch_core.loadtest.seeding import (
    grpc_reachable_statuses,
    namespaced,
    request_id,
    seed_server,
)
from dispatch_core.loadtest.target import Target, TargetError
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.client import ClientCredentials
from dispatch_core.synthetic.fleet import Fleet, make_fleet
from dispatch_core.types import UnitStatus

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INVALID_RUN = 3


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _run_id() -> str:
    """Short and unique per run: the namespace of its units and incidents."""
    return f"{dt.datetime.now(dt.UTC).strftime('%m%d%H%M')}{secrets.token_hex(2)}"


def _out_dir(args: argparse.Namespace, name: str) -> Path:
    out: Path = args.out or Path("loadtest-reports") / f"{name}-{_stamp()}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _target(args: argparse.Namespace, tmp: Path) -> Target:
    return Target(
        target=args.target,
        allow_remote=args.allow_remote,
        journal=args.journal,
        workdir=tmp,
        server_pid=args.server_pid,
        metrics_url=args.metrics_url,
        creds=ClientCredentials(
            ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, token=args.token
        ),
    )


def _seed(stub: pb_grpc.DispatchServiceStub, fleet: Fleet) -> dict[str, Any]:
    print(f"seeding {len(fleet):,} units over gRPC...", file=sys.stderr, flush=True)
    try:
        seeded = seed_server(stub, fleet, time.time_ns() // 1_000_000)
    except grpc.RpcError as exc:
        raise TargetError(f"seeding failed: {exc.code().name}: {exc.details()}") from None
    print(
        f"seeded in {seeded['upsert_s'] + seeded['set_status_s'] + seeded['locate_s']:.1f} s "
        f"({seeded['available']:,} AVAILABLE)",
        file=sys.stderr,
        flush=True,
    )
    return seeded


def clean_up(
    stub: pb_grpc.DispatchServiceStub, incident_ids: Sequence[str], unit_ids: Sequence[str]
) -> dict[str, int]:
    """Closes the run's incidents and sets its units OFF_DUTY, on a server others use.

    Closing releases attached units; a unit still COMMITTED (custody) is made AVAILABLE
    first, since OFF_DUTY is only reachable from a free unit.
    """
    closed = _attempt(
        functools.partial(
            stub.CloseIncident.future,
            pb.CloseIncidentRequest(request_id=request_id(), incident_id=i),
        )
        for i in incident_ids
    )
    left = list(unit_ids)
    for statuses in ([UnitStatus.OFF_DUTY], [UnitStatus.AVAILABLE, UnitStatus.OFF_DUTY]):
        for status in statuses:
            done = _attempt(
                functools.partial(
                    stub.SetUnitStatus.future,
                    pb.SetUnitStatusRequest(
                        request_id=request_id(),
                        unit_id=u,
                        status=int(status),  # type: ignore[arg-type]
                    ),
                )
                for u in left
            )
        left = [u for u, ok in zip(left, done, strict=True) if not ok]
    return {
        "incidents_closed": sum(closed),
        "units_off_duty": len(unit_ids) - len(left),
        "units_left": len(left),
    }


def _attempt(calls: Iterable[Callable[[], grpc.Future]], window: int = 64) -> list[bool]:
    """Runs the calls, `window` in flight; whether each succeeded, in order."""

    def succeeded(fut: grpc.Future) -> bool:
        try:
            fut.result()
        except grpc.RpcError:
            return False
        return True

    pending: deque[grpc.Future] = deque()
    out: list[bool] = []
    for call in calls:
        if len(pending) >= window:
            out.append(succeeded(pending.popleft()))
        pending.append(call())
    out.extend(succeeded(f) for f in pending)
    return out


# ----------------------------------------------------------------------------- scenarios


def run_scenario(args: argparse.Namespace) -> tuple[Path, bool]:
    sc = load_scenario(args.scenario).with_overrides(duration_s=args.duration, scale=args.scale)
    run_id = _run_id()
    prefix = f"LT-{run_id}-"
    label = (
        f"{sc.duration_s:.0f} s wall, compression {sc.compression:.1f}x, scale {args.scale},"
        f" dispatcher {args.dispatcher}"
    )
    if args.workers > 1:
        label += f", {args.workers} generator processes"
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        target = _target(args, Path(tmp))
        out_dir = _out_dir(args, sc.name)
        print(f"loadtest {sc.name}: {label}; report -> {out_dir}", file=sys.stderr, flush=True)
        progress = None if args.quiet else sys.stderr
        server_end: dict[str, Any] = {}
        cleanup: dict[str, int] = {}
        try:
            stub = pb_grpc.DispatchServiceStub(target.channel)  # type: ignore[no-untyped-call]
            fleet = namespaced(scenario_fleet(sc), prefix)
            seeded = _seed(stub, fleet)
            srv_cpu0 = _cpu(target)
            if args.workers > 1:
                par = run_parallel(
                    sc,
                    target.target,
                    workers=args.workers,
                    server_pid=target.pid,
                    run_tag=run_id,
                    unit_prefix=prefix,
                    creds=target.creds,
                    out=progress,
                    dispatcher=args.dispatcher,
                )
                loop, samples, flows, run = par.loop, par.samples, par.flows, par.run
                gen_cpu, wall = par.gen_cpu_s, run["wall_s"]
            else:
                runner = runner_class(args.dispatcher)(
                    sc,
                    target.channel,
                    fleet,
                    server_pid=target.pid,
                    run_tag=run_id,
                    out=progress,
                    unit_prefix=prefix,
                )
                # The collector must not pause the send loop on long-lived objects.
                gc.collect()
                gc.freeze()
                cpu0, wall0 = time.process_time(), time.perf_counter()
                run = runner.run()
                gen_cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                assert runner.loop is not None and runner.sampler is not None
                loop, samples, flows = runner.loop, runner.sampler.samples, runner.flows
            srv_cpu1 = _cpu(target)
            if args.target:
                cleanup = clean_up(stub, _open_incidents(flows), fleet.ids)
        finally:
            gc.unfreeze()
            server_end = target.close()
    seconds = sc.duration_s
    rpcs = rep.rpc_table(loop, seconds)
    expected = EXPECTED_WITH_DIVERSIONS if args.dispatcher == "engine" else EXPECTED_CONFLICTS
    by_code, unexpected = rep.error_summary(rpcs, expected)
    requests = sum(r["requests"] for r in rpcs.values())
    ok = sum(r["ok"] for r in rpcs.values())
    generator = rep.generator_stats(loop)
    server_cpu_s = srv_cpu1 - srv_cpu0 if srv_cpu0 is not None and srv_cpu1 is not None else None
    report: dict[str, Any] = {
        "kind": "scenario",
        "valid": not generator["fell_behind"],
        "scenario": sc.summary(),
        "run": {
            "id": run_id,
            "label": label,
            "dispatcher": args.dispatcher,
            "scale": args.scale,
            "duration_override_s": args.duration,
            "time_utc": machine["time_utc"],
            "seeding": seeded,
            **{k: v for k, v in run.items() if not k.endswith("_ns")},
            "wall_s": wall,
            "clean_up": cleanup or None,
        },
        "machine": machine,
        "server": {
            "target": target.target,
            "how": target.how,
            "journal": target.journal,
            "pid": target.pid,
            **server_end,
        },
        "rpcs": rpcs,
        "totals": {
            "requests": requests,
            "ok": ok,
            "offered_per_s": requests / seconds,
            "achieved_per_s": ok / seconds,
            "pings_sent": run["pings_sent"],
        },
        "cost": {
            "server_cpu_s": server_cpu_s,
            "server_cpu_ms_per_1000_requests": (
                1e6 * server_cpu_s / requests if server_cpu_s and requests else None
            ),
            "generator_cpu_s": gen_cpu,
            "generator_cpu_ms_per_1000_requests": 1e6 * gen_cpu / requests if requests else None,
        },
        "errors_by_code": by_code,
        "unexpected_errors": unexpected,
        "generator": generator,
        "resources": rep.resources(samples, gen_cpu, wall),
        "outcomes": dispatch_outcomes(flows, sc.lifecycle_compression, run["end_ns"]),
        "timeseries": rep.timeseries(loop, samples, seconds),
        "plots": [],
    }
    report["plots"] = plots.plot_run(report, out_dir)
    rep.write(report, out_dir, rep.markdown(report))
    # The scenario as run (after --duration/--scale), for the record.
    (out_dir / "scenario.json").write_text(
        json.dumps(_jsonable(dataclasses.asdict(sc)), indent=1) + "\n", encoding="utf-8"
    )
    return out_dir, report["valid"]


def _open_incidents(flows: Sequence[Flow]) -> list[str]:
    return [f.incident_id for f in flows if f.created and not f.closed_done]


def _cpu(target: Target) -> float | None:
    return cap._server_cpu(target)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items() if v is not None}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, int | float | str | bool):
        return x.name if hasattr(x, "name") else x
    return str(x)


# ------------------------------------------------------------------------------ capacity


def run_capacity(args: argparse.Namespace) -> tuple[Path, bool]:
    units = max(100, round(args.units * args.scale))
    rpcs = [r.strip() for r in args.rpcs.split(",") if r.strip()]
    unknown = [r for r in rpcs if r not in cap.RPCS]
    if unknown:
        raise ScenarioError(f"--rpcs: {unknown[0]!r} is not one of {', '.join(cap.RPCS)}")
    run_id = _run_id()
    prefix = f"LT-{run_id}-"
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        target = _target(args, Path(tmp))
        out_dir = _out_dir(args, "capacity")
        print(f"loadtest capacity: {', '.join(rpcs)}; report -> {out_dir}", file=sys.stderr)
        server_end: dict[str, Any] = {}
        cleanup: dict[str, int] = {}
        try:
            stub = pb_grpc.DispatchServiceStub(target.channel)  # type: ignore[no-untyped-call]
            fleet = namespaced(make_fleet(units, seed=42), prefix)
            seeded = _seed(stub, fleet)
            statuses = grpc_reachable_statuses(fleet)
            available = [int(i) for i in np.flatnonzero(statuses == int(UnitStatus.AVAILABLE))]
            found = cap.run_capacity(
                target,
                unit_ids=fleet.ids,
                available=available,
                lat=fleet.lat,
                lon=fleet.lon,
                prefix=prefix,
                rpcs=rpcs,
                step_s=args.step_seconds,
                limit_ms=args.p99_limit_ms,
                workers=args.capacity_workers,
                use_h2load=not args.no_h2load,
                workdir=Path(tmp) / "h2load",
                out=None if args.quiet else sys.stderr,
                max_rate=args.max_rate,
            )
            if args.target:
                cleanup = clean_up(stub, [], fleet.ids)
        finally:
            server_end = target.close()
    report: dict[str, Any] = {
        "kind": "capacity",
        "valid": found["valid"],
        "invalid_because": found["invalid_because"],
        "units": units,
        "seeding": seeded,
        "step_s": args.step_seconds,
        "p99_limit_ms": args.p99_limit_ms,
        "settings": cap.SETTINGS,
        "h2load": found["h2load"],
        "machine": machine,
        "server": {
            "target": target.target,
            "how": target.how,
            "journal": target.journal,
            **server_end,
        },
        "results": found["results"],
        "clean_up": cleanup or None,
        "plots": [],
    }
    report["summary"] = cap.summary(found["results"])
    report["plots"] = plots.plot_capacity(report, out_dir)
    rep.write(report, out_dir, cap.markdown(report))
    return out_dir, report["valid"]


# ---------------------------------------------------------------------------------- cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dispatch-core loadtest",
        description="Open-loop load tests of major-event surges, and the capacity of each "
        "hot RPC (--capacity). Exit codes: 0 valid run, 2 bad input or target, 3 the "
        "generator was the limit (run invalid).",
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
    p.add_argument(
        "--target",
        default=None,
        help="HOST:PORT of a running server (it may hold data: the run keeps to its own "
        "units and incidents); default: start one here",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --target that is not a loopback address (a staging server)",
    )
    p.add_argument(
        "--metrics-url",
        default=None,
        help="the target's /metrics URL: its CPU and gRPC error codes come from there",
    )
    p.add_argument("--server-pid", type=int, default=None, help="a local target's pid (CPU/RSS)")
    p.add_argument("--tls-ca", type=Path, default=None, help="the target's CA: connect with TLS")
    p.add_argument("--tls-cert", type=Path, default=None, help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", type=Path, default=None, help="its private key")
    p.add_argument("--token", default=None, help="a bearer JWT sent with every call")
    p.add_argument(
        "--journal",
        default="sqlite",
        help="--journal of the server started here: sqlite (default, FULL sync: what users "
        "deploy), memory, or a postgresql:// DSN",
    )
    p.add_argument("--out", type=Path, default=None, help="report directory")
    p.add_argument(
        "--dispatcher",
        choices=DISPATCHERS,
        default="engine",
        help="scenario: who decides which units go where. engine (default): the generator"
        " works the engine's pending queue (ListPending) and sends the team RecommendUnits"
        " proposes, diversions included; greedy: each new incident takes its nearest units"
        " at once and waiting ones retry as units free (the client-side policy of before)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="scenario: generator processes (default 1); more when one cannot keep to the "
        "schedule, on a machine with cores to spare",
    )
    p.add_argument("--capacity", action="store_true", help="capacity of each hot RPC")
    p.add_argument("--units", type=int, default=10_000, help="capacity: fleet size")
    p.add_argument(
        "--rpcs",
        default=",".join(cap.RPCS),
        help="capacity: which RPCs, comma-separated (default all: %(default)s)",
    )
    p.add_argument("--step-seconds", type=float, default=5.0, help="capacity: per step")
    p.add_argument("--p99-limit-ms", type=float, default=5.0, help="capacity: p99 limit")
    p.add_argument(
        "--max-rate",
        type=float,
        default=math.inf,
        help="capacity: offer no more than this per second (default: no limit)",
    )
    p.add_argument(
        "--capacity-workers",
        type=int,
        default=2,
        help="capacity: Python generator processes for writes (default 2)",
    )
    p.add_argument(
        "--no-h2load",
        action="store_true",
        help="capacity: use the Python generator for reads too, even where h2load exists",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in ("workers", "capacity_workers", "units"):
        if getattr(args, name) < 1:
            print(
                f"dispatch-core loadtest: --{name.replace('_', '-')} must be >= 1", file=sys.stderr
            )
            return EXIT_BAD_INPUT
    # SIGTERM (a timeout, kill) unwinds like Ctrl-C, so the server subprocess is stopped.
    # Only the main thread may set handlers; the previous one is put back (tests call this).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        out, valid = run_capacity(args) if args.capacity else run_scenario(args)
    except (ScenarioError, TargetError, ValueError, OSError) as exc:
        print(f"dispatch-core loadtest: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"report written to {out}/report.md (JSON: report.json)")
    if not valid:
        print(
            "dispatch-core loadtest: the run is INVALID: the generator could not keep to its "
            "schedule, so the figures measure it, not the server (see report.md)",
            file=sys.stderr,
        )
        return EXIT_INVALID_RUN
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
