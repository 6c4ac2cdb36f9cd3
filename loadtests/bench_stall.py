"""The stall probe: does any request wait behind O(N) work on a loaded, journalled server?

    python -m loadtests.bench_stall [--quick] [--units N] [--incidents N] [--seconds S]
                                    [--isolate] [--out bench-results]

Starts the real server (`dispatch-core serve`) as a subprocess on a free loopback port with
a temporary data directory, the durable SQLite journal (synchronous FULL), a snapshot every
second while anything changes (`--snapshot-interval 1 --snapshot-every 1000000`) and
/metrics on a free port. Seeds it over gRPC (not timed): `--units` units, their positions,
then `--incidents` incidents created and closed. Then measures:

1. the probe: Ping and GetUnit (a random unit) alternately at 200 calls/s, open loop, for
   `--seconds` with nothing else running (the baseline), then for `--seconds` again while
   background threads run: UpdateLocations batches of 1,000 pings every 100 ms, the whole
   operating picture every second, a /metrics scrape every second, ListUnits paging through
   every unit (1,000 a page) again and again, and a trickle of SetUnitStatus toggles (so the
   server keeps snapshotting). Latency runs from the intended send time (no coordinated
   omission); which background activity overlapped the slowest probes says who stalls them;
2. what each background activity took, and the snapshots the server logged meanwhile;
   with `--isolate`, the probe again beside each background activity alone (5 more runs);
3. in this process: a `DispatchCore` loaded through commands (`seed_pipeline`), timed with
   `snapshot_timing()` (how long a snapshot holds the read lock to copy the state, and how
   long encoding takes after it), then again once the same incidents are created and closed.

Writes bench-results/stall.json (every figure) and bench-results/stall.md (the tables).
Timings only: nothing here passes or fails (docs/architecture.md, "Performance: how we measure").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import gc
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from dispatch_core import DispatchCore
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.loadtest.procs import machine_info
from dispatch_core.loadtest.seeding import (
    grpc_reachable_statuses,
    request_id,
    seed_server,
    windowed,
)
from dispatch_core.loadtest.server import Server
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.synthetic.fleet import Fleet, incident_points, make_fleet, seed_pipeline
from dispatch_core.types import Agency, Grade, UnitStatus
from loadtests.bench_grpc import (
    CHANNEL_OPTIONS,
    UPDATE_LOCATIONS,
    CpuMeter,
    LocationFeed,
    dist_us,
    ratio,
)

T = TypeVar("T")

FLEET_SEED = 42  # the fleet of the other benchmarks
POINTS_SEED = 9
PROBE_SEED = 5
GRADES = (Grade.IMMEDIATE, Grade.SIGNIFICANT, Grade.EXTENDED)  # incidents cycle through
PROBE_RATE = 200.0  # probe calls/s, Ping and GetUnit alternately
LATE_NS = 5_000_000  # a probe send this late counts as generator lag
LOC_BATCH = 1_000
LOC_PERIOD_S = 0.1
PICTURE_PERIOD_S = 1.0
SCRAPE_PERIOD_S = 1.0
LIST_PAGE = 1_000
LIST_PAUSE_S = 0.02
TOGGLE_PERIOD_S = 0.25
TOGGLE_POOL = 32
SNAPSHOT_EVERY = 1_000_000  # never reached: snapshots follow the 1 s interval
SNAPSHOT_INTERVAL_S = 1.0
SEED_WINDOW = 64  # calls in flight while seeding
INCIDENT_CHUNK = 2_000  # incidents created (all durable) before they are closed
RPC_TIMEOUT_S = 30.0
WARMUP_S = 1.0  # background load runs this long before the loaded probe starts
QUIET_S = 3.0  # no snapshot for this long after seeding: the server has settled
SLOWEST_SHARE = 0.01  # "slowest probes": the top 1% of the loaded run

# Every channel gets its own TCP connection (grpcio shares one between channels with equal
# arguments otherwise): the probe and each background activity are separate clients.
OWN_CONNECTION = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]

# The goals from the brief, reported beside the figures (never asserted).
GOAL_PROBE_P999_MS = 20.0
GOAL_PROBE_MAX_MS = 50.0
GOAL_CAPTURE_MS = 5.0  # at 100k units
GOAL_SCRAPE_MS = 5.0
GOAL_PICTURE_MS = 20.0

#: The server's log line after each snapshot (durability.Snapshotter), with its timestamp.
SNAPSHOT_LOGGED = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z .*?snapshot at sequence (\d+) written in "
    r"([0-9.]+) s",
    re.MULTILINE,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    units: int
    incidents: int
    seconds: float
    isolate: bool = False  # also the probe beside each background activity alone


def perf_offset_ns() -> int:
    """Wall clock minus perf_counter, to place the server's log times on this timeline."""
    return time.time_ns() - time.perf_counter_ns()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def own_channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=OWN_CONNECTION)


def ms(d: dict[str, Any], key: str) -> float:
    """A dist_us figure in ms (nan when there were no samples)."""
    return float(d[key]) / 1e3 if key in d else float("nan")


# ------------------------------------------------------------------------------ the server


class StallServer(Server):
    """bench_grpc's server with this benchmark's flags: SQLite FULL, a snapshot every second."""

    def flags(self, help_text: str) -> list[str]:
        for flag in ("--snapshot-interval", "--snapshot-every", "--metrics-port"):
            if flag not in help_text:
                raise SystemExit(f"this dispatch-core serve has no {flag}")
        self.journalled = True
        return [
            "--journal",
            "sqlite",
            "--synchronous",
            "FULL",
            "--snapshot-interval",
            str(SNAPSHOT_INTERVAL_S),
            "--snapshot-every",
            str(SNAPSHOT_EVERY),
            "--metrics-port",
            "0",
        ]

    def snapshot_events(self) -> list[tuple[int, int, float]]:
        """(end on this process's perf_counter, ns; sequence; seconds) of each snapshot logged.

        The log's times are UTC with millisecond resolution (`--log-format text`).
        """
        offset = perf_offset_ns()
        out = []
        for stamp, millis, seq, secs in SNAPSHOT_LOGGED.findall(self.log_text()):
            epoch = (
                dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
            )
            end_ns = int(epoch * 1e9) + int(millis) * 1_000_000 - offset
            out.append((end_ns, int(seq), float(secs)))
        return out

    def wait_quiet(self, min_sequence: int, timeout_s: float = 900.0) -> float:
        """Blocks until a snapshot at `min_sequence` or later is logged and none has followed
        for QUIET_S seconds (clock ticks archiving closed incidents have run their course)."""
        start = time.perf_counter()
        self.wait_snapshot(min_sequence, timeout_s)
        count, changed = len(self.snapshots()), time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            now = time.perf_counter()
            if len(self.snapshots()) != count:
                count, changed = len(self.snapshots()), now
            elif now - changed >= QUIET_S:
                return now - start
            time.sleep(0.25)
        raise SystemExit(f"server still snapshotting after {timeout_s} s:\n{self.log_tail()}")


# ----------------------------------------------------------------------------- seeding


def incident_request(i: int, lat: float, lon: float) -> Any:
    group = pb.RequirementGroup(agency=int(Agency.POLICE), count=1)  # type: ignore[arg-type]
    return pb.CreateIncidentRequest(
        request_id=request_id(),
        incident_id=f"STALL-{i:07d}",
        grade=int(GRADES[i % len(GRADES)]),  # type: ignore[arg-type]
        incident_type="burglary",
        location=pb.Location(lat=lat, lon=lon),
        requirements=[group],
    )


def seed_incidents(stub: pb_grpc.DispatchServiceStub, n: int) -> dict[str, Any]:
    """Creates then closes `n` incidents, SEED_WINDOW calls in flight; prints progress."""
    lat, lon = incident_points(n, seed=POINTS_SEED)
    start = last_print = time.perf_counter()
    for lo in range(0, n, INCIDENT_CHUNK):
        ids = range(lo, min(n, lo + INCIDENT_CHUNK))
        creates = (
            functools.partial(
                stub.CreateIncident.future,
                incident_request(i, float(lat[i]), float(lon[i])),
                timeout=RPC_TIMEOUT_S,
            )
            for i in ids
        )
        windowed(creates, SEED_WINDOW)  # all durable before any of them is closed
        closes = (
            functools.partial(
                stub.CloseIncident.future,
                pb.CloseIncidentRequest(request_id=request_id(), incident_id=f"STALL-{i:07d}"),
                timeout=RPC_TIMEOUT_S,
            )
            for i in ids
        )
        windowed(closes, SEED_WINDOW)
        now = time.perf_counter()
        if now - last_print >= 10.0 or ids.stop == n:
            rate = ids.stop / (now - start)
            print(
                f"  incidents created and closed: {ids.stop:,}/{n:,} ({rate:,.0f}/s, about "
                f"{(n - ids.stop) / rate:,.0f} s to go)",
                flush=True,
            )
            last_print = now
    seconds = time.perf_counter() - start
    return {"incidents": n, "seconds": seconds, "per_s": n / seconds if seconds else None}


def seed(
    server: StallServer, stub: pb_grpc.DispatchServiceStub, fleet: Fleet, st: Settings
) -> dict[str, Any]:
    """Units, their positions, then the incidents; waits until the server has settled."""
    t0 = time.perf_counter()
    units = seed_server(stub, fleet, wall_ms())
    print(
        f"seeded {len(fleet):,} units in {time.perf_counter() - t0:.0f} s "
        f"({units['upsert_per_s']:,.0f} upserts/s); creating and closing "
        f"{st.incidents:,} incidents",
        flush=True,
    )
    incidents = seed_incidents(stub, st.incidents)
    entries = units["journal_entries"] + 2 * st.incidents
    quiet = server.wait_quiet(entries)
    snaps = server.snapshots()
    print(
        f"seeding done; server quiet after {quiet:.1f} s; {len(snaps)} snapshots so far, "
        f"the last {snaps[-1][1]:.3f} s at sequence {snaps[-1][0]:,}",
        flush=True,
    )
    return {
        "units": units,
        "incidents": incidents,
        "journal_entries_min": entries,
        "quiet_wait_s": quiet,
        "snapshots": len(snaps),
        "last_snapshot": snaps[-1],
        "slowest_snapshot_s": max(s for _, s in snaps),
    }


# ------------------------------------------------------------------------------ the probe


@dataclasses.dataclass
class ProbeRun:
    """One open-loop probe run: per call, ns on this process's perf_counter."""

    intended: npt.NDArray[np.int64]
    sent: npt.NDArray[np.int64]
    done: npt.NDArray[np.int64]  # -1 when no answer came
    errors: list[str]
    cpu: dict[str, float]
    seconds: float
    all_completed: bool

    @property
    def latency(self) -> npt.NDArray[np.int64]:
        return (self.done - self.intended)[self.done >= 0]


def probe_requests(unit_ids: Sequence[str], n: int) -> list[Any]:
    rng = np.random.default_rng(PROBE_SEED)
    picks = rng.integers(0, len(unit_ids), size=n)
    return [
        pb.PingRequest() if i % 2 == 0 else pb.GetUnitRequest(unit_id=unit_ids[int(picks[i])])
        for i in range(n)
    ]


def run_probe(
    channel: grpc.Channel, unit_ids: Sequence[str], server_pid: int, seconds: float
) -> ProbeRun:
    """Ping and GetUnit alternately at PROBE_RATE calls/s, sent on schedule with `.future`."""
    stub = pb_grpc.DispatchServiceStub(channel)  # type: ignore[no-untyped-call]
    methods = (stub.Ping.future, stub.GetUnit.future)
    n = int(PROBE_RATE * seconds)
    period_ns = int(1e9 / PROBE_RATE)
    reqs = probe_requests(unit_ids, n)
    intended, sent = np.zeros(n, np.int64), np.zeros(n, np.int64)
    done = np.full(n, -1, np.int64)
    errors: list[str] = []
    remaining, lock, all_done = [n], threading.Lock(), threading.Event()
    clock = time.perf_counter_ns

    def finished(i: int, fut: grpc.Future) -> None:
        done[i] = clock()
        if fut.exception() is not None:
            errors.append(str(fut.code()))
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                all_done.set()

    for req in reqs[:40]:  # warm-up outside the schedule
        methods[isinstance(req, pb.GetUnitRequest)](req, timeout=RPC_TIMEOUT_S).result()
    with CpuMeter(server_pid) as cpu:
        t0 = clock() + 5_000_000
        for i in range(n):
            intended[i] = t0 + i * period_ns
            now = clock()
            if intended[i] > now:
                time.sleep((intended[i] - now) / 1e9)
                now = clock()
            sent[i] = now
            fut = methods[i % 2](reqs[i], timeout=RPC_TIMEOUT_S)
            fut.add_done_callback(functools.partial(finished, i))
        completed = all_done.wait(timeout=RPC_TIMEOUT_S + 5.0)
    return ProbeRun(intended, sent, done, errors, cpu.result, seconds, completed)


def summarize_probe(run: ProbeRun) -> dict[str, Any]:
    ok = run.done >= 0
    lag = run.sent - run.intended
    late = int((lag > LATE_NS).sum())
    span_s = (int(run.done[ok].max()) - int(run.intended[0])) / 1e9 if ok.any() else 0.0
    kinds = np.arange(run.intended.size) % 2
    return {
        "seconds": run.seconds,
        "offered_rate_per_s": PROBE_RATE,
        "requests": int(run.intended.size),
        "completed": int(ok.sum()),
        "all_completed": run.all_completed,
        "errors": len(run.errors),
        "error_codes": sorted(set(run.errors)),
        "latency": dist_us(run.latency),
        "latency_ping": dist_us((run.done - run.intended)[ok & (kinds == 0)]),
        "latency_get_unit": dist_us((run.done - run.intended)[ok & (kinds == 1)]),
        "latency_from_send": dist_us((run.done - run.sent)[ok]),
        "achieved_rate_per_s": int(ok.sum()) / span_s if span_s > 0 else 0.0,
        "send_lag": dist_us(lag),
        "sends_late_over_5ms": late,
        "late_share": late / max(1, lag.size),
        "generator_fell_behind": late / max(1, lag.size) > 0.01,
        "cpu": run.cpu,
    }


# ---------------------------------------------------------------------- background load


@dataclasses.dataclass
class Activity:
    """One background activity: each call's (start, end) on perf_counter ns, and errors."""

    name: str
    starts: list[int] = dataclasses.field(default_factory=list)
    ends: list[int] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    counters: dict[str, int] = dataclasses.field(default_factory=dict)

    def call(self, fn: Callable[[], T]) -> T | None:
        start = time.perf_counter_ns()
        try:
            return fn()
        except (grpc.RpcError, OSError) as exc:
            self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            return None
        finally:
            self.starts.append(start)
            self.ends.append(time.perf_counter_ns())

    def count(self, key: str, value: int) -> None:
        self.counters[key] = self.counters.get(key, 0) + value

    def summary(self) -> dict[str, Any]:
        took = np.asarray(self.ends, np.int64) - np.asarray(self.starts, np.int64)
        return {
            "name": self.name,
            "calls": len(self.starts),
            "took": dist_us(took),
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
            **self.counters,
        }


class Background:
    """The load the probe runs beside, each activity in its own thread on its own channel.

    Every loop stops by itself at its deadline (or earlier, at `stop`).
    """

    def __init__(self, target: str, metrics_url: str, fleet: Fleet) -> None:
        self.channels = [own_channel(target) for _ in range(4)]
        new_stub: Any = pb_grpc.DispatchServiceStub
        stubs = [new_stub(c) for c in self.channels]
        _, self.picture_stub, self.list_stub, self.toggle_stub = stubs
        # The batches go pre-serialized (LocationFeed), so the client costs almost nothing.
        self._update_locations = self.channels[0].unary_unary(
            UPDATE_LOCATIONS,
            request_serializer=None,
            response_deserializer=pb.UpdateLocationsResponse.FromString,
        )
        self.metrics_url = metrics_url
        self.feed = LocationFeed(fleet, LOC_BATCH, wall_ms())
        available = np.flatnonzero(grpc_reachable_statuses(fleet) == int(UnitStatus.AVAILABLE))
        self.toggle_ids = [fleet.ids[int(i)] for i in available[:TOGGLE_POOL]]
        self.acts = {
            key: Activity(name)
            for key, name in (
                ("locations", f"UpdateLocations ({LOC_BATCH:,} pings every 100 ms)"),
                ("picture", "GetOperatingPicture (every second)"),
                ("scrape", "/metrics scrape (every second)"),
                ("list", f"ListUnits page ({LIST_PAGE:,} units, paging without end)"),
                ("toggle", "SetUnitStatus toggle (4/s)"),
            )
        }
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, seconds: float, only: str | None = None) -> None:
        """Starts every activity (or `only` that one) for at most `seconds`."""
        deadline = time.perf_counter() + seconds
        loops: list[tuple[str, Callable[[], object], float]] = [
            ("locations", self._locations, LOC_PERIOD_S),
            ("picture", self._picture, PICTURE_PERIOD_S),
            ("scrape", self._scrape, SCRAPE_PERIOD_S),
            ("toggle", self._toggle, TOGGLE_PERIOD_S),
        ]
        for key, body, period in loops:
            if only in (None, key):
                args = (self.acts[key], body, period, deadline)
                thread = threading.Thread(target=self._periodic, args=args, daemon=True)
                self._threads.append(thread)
        if only in (None, "list"):
            thread = threading.Thread(target=self._list, args=(deadline,), daemon=True)
            self._threads.append(thread)
        for t in self._threads:
            t.start()

    def stop(self) -> dict[str, Activity]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=RPC_TIMEOUT_S + 5.0)
        if self.acts["toggle"].counters.get("sent", 0) % 2:
            # Leave the last toggled unit AVAILABLE, as found (not timed).
            with contextlib.suppress(grpc.RpcError):
                self._toggle()
        for c in self.channels:
            c.close()
        return self.acts

    def _periodic(
        self, act: Activity, body: Callable[[], object], period_s: float, deadline: float
    ) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set() and time.perf_counter() < deadline:
            act.call(body)
            next_at = max(next_at + period_s, time.perf_counter())
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def _locations(self) -> None:
        # Stamped with the wall clock (and always later than the batch before): in the
        # server's clock skew, never stale.
        self.feed.next_ms = max(self.feed.next_ms, wall_ms())
        reply = self._update_locations(self.feed.next(), timeout=RPC_TIMEOUT_S)
        act = self.acts["locations"]
        act.count("pings", LOC_BATCH)
        act.count("applied", int(reply.applied))
        act.count("skipped_stale", int(reply.skipped_stale))

    def _picture(self) -> None:
        reply = self.picture_stub.GetOperatingPicture(
            pb.GetOperatingPictureRequest(), timeout=RPC_TIMEOUT_S
        )
        self.acts["picture"].counters["reply_bytes"] = int(reply.ByteSize())

    def _scrape(self) -> None:
        with urllib.request.urlopen(self.metrics_url, timeout=10.0) as answer:
            body = answer.read()
        self.acts["scrape"].counters["reply_bytes"] = len(body)

    def _toggle(self) -> None:
        act = self.acts["toggle"]
        j = act.counters.get("sent", 0)
        act.count("sent", 1)
        status = UnitStatus.UNAVAILABLE if j % 2 == 0 else UnitStatus.AVAILABLE
        self.toggle_stub.SetUnitStatus(
            pb.SetUnitStatusRequest(
                request_id=request_id(),
                unit_id=self.toggle_ids[(j // 2) % len(self.toggle_ids)],
                status=int(status),  # type: ignore[arg-type]
            ),
            timeout=RPC_TIMEOUT_S,
        )

    def _list(self, deadline: float) -> None:
        act, token = self.acts["list"], ""
        while not self._stop.is_set() and time.perf_counter() < deadline:
            req = pb.ListUnitsRequest(page_size=LIST_PAGE, page_token=token)
            reply = act.call(
                functools.partial(self.list_stub.ListUnits, req, timeout=RPC_TIMEOUT_S)
            )
            token = reply.next_page_token if reply is not None else ""
            if reply is not None and not token:
                act.count("full_passes", 1)
            self._stop.wait(LIST_PAUSE_S)


# --------------------------------------------------------------------------- attribution


def overlapping(
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """For each probe call [a_i, b_i]: does any interval [starts_j, ends_j] overlap it?"""
    out = np.zeros(a.size, dtype=bool)
    if starts.size == 0:
        return out
    order = np.argsort(starts)
    first = starts[order]
    # The latest end among intervals that started before the call ended.
    latest_end = np.maximum.accumulate(ends[order])
    idx = np.searchsorted(first, b, side="left") - 1
    has = idx >= 0
    out[has] = latest_end[idx[has]] > a[has]
    return out


def attribution(
    run: ProbeRun, intervals: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]
) -> dict[str, Any]:
    """Share of all probe calls, and of the slowest 1%, that overlapped each activity.

    An activity that overlaps the slowest calls far more often than calls in general is
    what they waited behind (or what competed with them for the machine).
    """
    ok = run.done >= 0
    a, b = run.intended[ok], run.done[ok]
    if a.size == 0:
        return {"slowest_n": 0, "rows": {}}
    k = max(1, round(a.size * SLOWEST_SHARE))
    slow = np.argsort(b - a)[-k:]
    hit_any = np.zeros(a.size, dtype=bool)
    rows = {}
    for key, (starts, ends) in intervals.items():
        hit = overlapping(starts, ends, a, b)
        hit_any |= hit
        rows[key] = {"all": float(hit.mean()), "slowest": float(hit[slow].mean())}
    rows["none"] = {"all": float((~hit_any).mean()), "slowest": float((~hit_any[slow]).mean())}
    return {
        "slowest_n": k,
        "slowest_from_us": float((b - a)[slow].min()) / 1e3,
        "rows": rows,
    }


# ---------------------------------------------------------------------------- measuring


def snapshots_during(server: StallServer, run: ProbeRun) -> list[tuple[int, int, float]]:
    """Snapshots logged as finishing while the probe ran (or while its last answers came)."""
    end = int(run.done.max()) if (run.done >= 0).any() else int(run.intended[-1])
    return [e for e in server.snapshot_events() if run.intended[0] <= e[0] <= end]


def snapshot_summary(events: list[tuple[int, int, float]]) -> dict[str, Any]:
    secs = [s for _, _, s in events]
    return {
        "count": len(secs),
        "median_s": float(np.median(secs)) if secs else None,
        "max_s": max(secs) if secs else None,
        "seconds": secs,
        "sequences": [q for _, q, _ in events],
    }


def loaded_run(
    server: StallServer, metrics_url: str, fleet: Fleet, seconds: float, only: str | None = None
) -> tuple[ProbeRun, dict[str, Activity]]:
    """The probe while the background load (or `only` one activity of it) runs, started
    WARMUP_S before it."""
    bg = Background(server.target, metrics_url, fleet)
    bg.start(WARMUP_S + seconds + 2 * RPC_TIMEOUT_S, only)  # a bound: stop() ends it sooner
    try:
        time.sleep(WARMUP_S)
        with own_channel(server.target) as channel:
            run = run_probe(channel, fleet.ids, server.pid, seconds)
    finally:
        acts = bg.stop()
    return run, acts


def print_probe(label: str, p: dict[str, Any]) -> None:
    lat = p["latency"]
    print(
        f"{label}: p50 {ms(lat, 'p50_us'):.2f} ms, p99 {ms(lat, 'p99_us'):.2f} ms, p99.9 "
        f"{ms(lat, 'p999_us'):.2f} ms, max {ms(lat, 'max_us'):.2f} ms; achieved "
        f"{p['achieved_rate_per_s']:.0f}/s; late sends {p['sends_late_over_5ms']}; errors "
        f"{p['errors']}",
        flush=True,
    )


def isolated(server: StallServer, fleet: Fleet, seconds: float) -> dict[str, Any]:
    """The probe beside each background activity alone (`--isolate`): which one stalls it.

    Pings and commands change the state, so the server snapshots beside those two; the
    toggles are a handful of commands a second, so their run is mostly the snapshots' cost.
    """
    out: dict[str, Any] = {}
    for key in ("locations", "picture", "scrape", "list", "toggle"):
        print(f"isolated: the probe beside {key} only for {seconds:.0f} s", flush=True)
        run, acts = loaded_run(server, server.metrics_url(), fleet, seconds, only=key)
        time.sleep(SNAPSHOT_INTERVAL_S + 0.5)
        out[key] = summarize_probe(run)
        out[key]["snapshots"] = snapshot_summary(snapshots_during(server, run))
        out[key]["activity"] = acts[key].summary()
        print_probe(f"beside {key} only", out[key])
        time.sleep(QUIET_S)  # the last snapshot is done before the next run
    return out


def measure(server: StallServer, fleet: Fleet, seconds: float) -> dict[str, Any]:
    metrics_url = server.metrics_url()
    print(f"baseline: the probe alone for {seconds:.0f} s", flush=True)
    with own_channel(server.target) as channel:
        base = run_probe(channel, fleet.ids, server.pid, seconds)
    out: dict[str, Any] = {"baseline": summarize_probe(base)}
    out["baseline"]["snapshots"] = snapshot_summary(snapshots_during(server, base))
    print_probe("baseline", out["baseline"])
    print(f"loaded: the probe beside the background load for {seconds:.0f} s", flush=True)
    run, acts = loaded_run(server, metrics_url, fleet, seconds)
    time.sleep(SNAPSHOT_INTERVAL_S + 0.5)  # a snapshot under way at the end gets logged
    snaps = snapshots_during(server, run)
    out["loaded"] = summarize_probe(run)
    out["loaded"]["snapshots"] = snapshot_summary(snaps)
    print_probe("loaded", out["loaded"])
    out["background"] = {key: a.summary() for key, a in acts.items()}
    intervals = {
        key: (np.asarray(a.starts, np.int64), np.asarray(a.ends, np.int64))
        for key, a in acts.items()
    }
    ends = np.asarray([e for e, _, _ in snaps], np.int64)
    intervals["snapshot"] = (ends - np.asarray([s * 1e9 for *_, s in snaps], np.int64), ends)
    out["attribution"] = attribution(run, intervals)
    b, lo = out["baseline"]["latency"], out["loaded"]["latency"]
    out["loaded_over_baseline"] = {
        k: ratio(lo.get(k, float("nan")), b.get(k, float("nan")))
        for k in ("p50_us", "p99_us", "p999_us", "max_us")
    }
    return out


# ------------------------------------------------------------------- in-process snapshot


def snapshot_timings(core: DispatchCore, reps: int = 21) -> dict[str, Any]:
    """`core.snapshot_timing()` `reps` times: (read lock held to copy, encoding after), ms."""
    pairs = [core.snapshot_timing() for _ in range(reps)]
    capture = [c * 1e3 for c, _ in pairs]
    encode = [e * 1e3 for _, e in pairs]
    return {
        "capture_ms_median": float(np.median(capture)),
        "encode_ms_median": float(np.median(encode)),
        "capture_ms": capture,
        "encode_ms": encode,
    }


def inprocess_snapshot(fleet: Fleet, incidents: int) -> dict[str, Any]:
    """A core loaded through commands as the server is, timed without the server."""
    now = wall_ms()
    core = DispatchCore()
    pipeline = Pipeline(core, clock_ms=lambda: now)
    t0 = time.perf_counter()
    seed_pipeline(pipeline, fleet, now)
    out: dict[str, Any] = {"units": len(fleet), "seed_s": time.perf_counter() - t0}
    out["units_only"] = snapshot_timings(core)
    out["units_only"]["sizes"] = core.sizes()
    lat, lon = incident_points(incidents, seed=POINTS_SEED)
    t0 = time.perf_counter()
    for i in range(incidents):
        create = incident_request(i, float(lat[i]), float(lon[i]))
        pipeline.execute("CreateIncident", create.SerializeToString())
        close = pb.CloseIncidentRequest(request_id=request_id(), incident_id=create.incident_id)
        pipeline.execute("CloseIncident", close.SerializeToString())
    pipeline.tick()  # archives closed incidents beyond the retention, as the server's ticker
    out["incidents"] = incidents
    out["incidents_s"] = time.perf_counter() - t0
    out["with_incidents"] = snapshot_timings(core)
    # (incidents held, request_ids remembered in memory, request_ids only in the journal)
    out["with_incidents"]["sizes"] = core.sizes()
    return out


# ------------------------------------------------------------------------------- goals


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with the measured figure (ms) and whether it was met: reported, not asserted."""
    m = report["measured"]
    lo, bg, inproc = m["loaded"]["latency"], m["background"], report["inprocess_snapshot"]
    n = inproc["units"]
    at = "" if n == 100_000 else f" (measured at {n:,} units)"
    rows = [
        ("probe p99.9 under load ≤ 20 ms", ms(lo, "p999_us"), GOAL_PROBE_P999_MS),
        ("probe max under load ≤ 50 ms", ms(lo, "max_us"), GOAL_PROBE_MAX_MS),
        (
            f"snapshot capture (lock held) ≤ 5 ms at 100k units{at}",
            inproc["units_only"]["capture_ms_median"],
            GOAL_CAPTURE_MS,
        ),
        (
            f"... with the {inproc['with_incidents']['sizes'][0]:,} incidents a server like"
            " this one holds",
            inproc["with_incidents"]["capture_ms_median"],
            GOAL_CAPTURE_MS,
        ),
        ("/metrics scrape ≤ 5 ms (median)", ms(bg["scrape"]["took"], "p50_us"), GOAL_SCRAPE_MS),
        (
            "whole operating picture ≤ 20 ms (median)",
            ms(bg["picture"]["took"], "p50_us"),
            GOAL_PICTURE_MS,
        ),
    ]
    return [
        {"goal": g, "measured_ms": v, "limit_ms": limit, "met": bool(v <= limit)}
        for g, v, limit in rows
    ]


# ------------------------------------------------------------------------------ markdown


def _ms(d: dict[str, Any], key: str) -> str:
    v = ms(d, key)
    return "n/a" if math.isnan(v) else f"{v:,.2f}"


def _x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}x"


def _met(flag: bool) -> str:
    return "met" if flag else "**not met**"


def md_header(report: dict[str, Any]) -> list[str]:
    m, st, s = report["machine"], report["settings"], report["seeding"]
    return [
        "# Stall probe: does any request wait behind O(N) work?",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu_model']}, Python {m['python']}, grpcio "
        f"{m['grpcio']} (protobuf {m['protobuf_impl']}), load avg at start "
        f"{m['loadavg_1m_at_start']:.2f}; commit {m['commit']}"
        f"{' (dirty tree)' if m['dirty_tree'] else ''}; {m['time_utc']}; mode {report['mode']}.",
        "",
        f"Server: `dispatch-core serve {' '.join(report['server_flags'])}`: the durable SQLite "
        "journal with synchronous FULL, a snapshot every second while anything changes, "
        f"/metrics on. State: {st['units']:,} units seeded over gRPC "
        f"({s['units']['upsert_per_s']:,.0f} upserts/s), then {st['incidents']:,} incidents "
        f"created and closed ({s['incidents']['per_s']:,.0f}/s; the server keeps the latest "
        f"closed ones up to its retention); {s['snapshots']} snapshots during seeding, the "
        f"slowest {s['slowest_snapshot_s']:.2f} s.",
    ]


def md_probe(report: dict[str, Any]) -> list[str]:
    m = report["measured"]
    lines = [
        "",
        f"## Probe: Ping and GetUnit alternately, {PROBE_RATE:.0f} calls/s open loop, "
        f"{report['settings']['seconds']:.0f} s each (ms from the intended send time)",
        "",
        "| run | p50 | p99 | p99.9 | max | p99.9 from actual send | Ping max | GetUnit max "
        "| achieved/s "
        "| late sends (>5 ms) | errors | client CPU | server CPU | other processes' CPU "
        "| snapshots |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("baseline", "baseline (nothing else)"), ("loaded", "under load")):
        p = m[key]
        lat, cpu = p["latency"], p["cpu"]
        lines.append(
            f"| {label} | {_ms(lat, 'p50_us')} | {_ms(lat, 'p99_us')} | {_ms(lat, 'p999_us')} "
            f"| {_ms(lat, 'max_us')} | {_ms(p['latency_from_send'], 'p999_us')} "
            f"| {_ms(p['latency_ping'], 'max_us')} | {_ms(p['latency_get_unit'], 'max_us')} "
            f"| {p['achieved_rate_per_s']:.0f} | {p['sends_late_over_5ms']:,} of "
            f"{p['requests']:,} | {p['errors']} | {cpu['client_cpu_pct']:.0f}% "
            f"| {cpu['server_cpu_pct']:.0f}% | {cpu['other_processes_cpu_pct_of_core']:.0f}% "
            f"| {p['snapshots']['count']} |"
        )
    r = m["loaded_over_baseline"]
    lines.append(
        f"| under load / baseline | {_x(r['p50_us'])} | {_x(r['p99_us'])} | "
        f"{_x(r['p999_us'])} | {_x(r['max_us'])} | | | | | | | | | | |"
    )
    behind = [k for k in ("baseline", "loaded") if m[k]["generator_fell_behind"]]
    lines += [
        "",
        (
            f"**THE GENERATOR FELL BEHIND in {', '.join(behind)}: over 1% of probe sends left"
            " more than 5 ms late, so the client (this process, its threads and the GIL) is"
            " part of what those figures measure.**"
            if behind
            else "The generator kept to its schedule (under 1% of sends more than 5 ms late)."
        ),
        "CPU is % of one core over the run (client: this process, background threads"
        " included; server: /proc/<pid>/stat; other processes: the machine's busy time minus"
        " both). Ping answers without touching the core; GetUnit takes the core's read lock."
        " A stall only GetUnit sees is a wait for that lock (a read queued behind a writer"
        " that waits for a long read, such as a snapshot's copy); one both see is the"
        " server process (GIL, threads) or the machine.",
    ]
    return lines


def md_background(report: dict[str, Any]) -> list[str]:
    m = report["measured"]
    att = m["attribution"]
    lines = [
        "",
        "## Background load during the loaded run, and what the slowest probes overlapped",
        "",
        "| activity | calls | p50 ms | p99 ms | max ms | errors | probes overlapping it: all "
        f"| slowest 1% ({att['slowest_n']}, ≥ {att.get('slowest_from_us', 0) / 1e3:.1f} ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = att["rows"]
    for key, b in m["background"].items():
        share = rows.get(key, {"all": 0.0, "slowest": 0.0})
        lines.append(
            f"| {b['name']} | {b['calls']:,} | {_ms(b['took'], 'p50_us')} "
            f"| {_ms(b['took'], 'p99_us')} | {_ms(b['took'], 'max_us')} | {b['errors']} "
            f"| {share['all']:.0%} | {share['slowest']:.0%} |"
        )
    snaps = m["loaded"]["snapshots"]
    for key, label in (("snapshot", "server snapshot (logged; written in)"), ("none", "none")):
        share = rows.get(key, {"all": 0.0, "slowest": 0.0})
        cells = ["", "", "", "", ""]  # calls, p50, p99, max, errors
        if key == "snapshot" and snaps["count"]:
            cells[:4] = [
                str(snaps["count"]),
                f"{snaps['median_s'] * 1e3:,.0f}",
                "",
                f"{snaps['max_s'] * 1e3:,.0f}",
            ]
        shares = [f"{share['all']:.0%}", f"{share['slowest']:.0%}"]
        lines.append("| " + " | ".join([label, *cells, *shares]) + " |")
    loc = m["background"]["locations"]
    lines += [
        "",
        f"Pings applied {loc.get('applied', 0):,} of {loc.get('pings', 0):,} (stale "
        f"{loc.get('skipped_stale', 0):,}). An activity that overlaps the slowest probes far "
        "more often than probes in general is what they waited behind (or what competed "
        "with them for the 2 cores); the overlap of a snapshot uses the time the server "
        "logged (the copy under the read lock, the encoding and the write together).",
    ]
    return lines


def md_isolated(report: dict[str, Any]) -> list[str]:
    if "isolated" not in report:
        return []
    lines = [
        "",
        "## The probe beside each background activity alone (`--isolate`; ms)",
        "",
        "| beside only | p50 | p99 | p99.9 | max | Ping max | GetUnit max | late sends "
        "| server CPU | snapshots | activity p50 | activity max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report["isolated"].values():
        lat, act = p["latency"], p["activity"]
        lines.append(
            f"| {act['name']} | {_ms(lat, 'p50_us')} | {_ms(lat, 'p99_us')} "
            f"| {_ms(lat, 'p999_us')} | {_ms(lat, 'max_us')} "
            f"| {_ms(p['latency_ping'], 'max_us')} | {_ms(p['latency_get_unit'], 'max_us')} "
            f"| {p['sends_late_over_5ms']:,} "
            f"| {p['cpu']['server_cpu_pct']:.0f}% | {p['snapshots']['count']} "
            f"| {_ms(act['took'], 'p50_us')} | {_ms(act['took'], 'max_us')} |"
        )
    lines += [
        "",
        "Pings and commands change the state, so the server snapshots every second beside"
        " those two runs; the toggles are 4 commands a second, so their run shows mostly what"
        " the snapshots cost.",
    ]
    return lines


def md_snapshots_goals(report: dict[str, Any]) -> list[str]:
    ip = report["inprocess_snapshot"]
    u, w = ip["units_only"], ip["with_incidents"]
    lines = [
        "",
        "## Snapshot cost in-process (`DispatchCore.snapshot_timing()`, median of 21, ms)",
        "",
        "| core state | snapshot capture (lock held) | snapshot encode (no lock) |",
        "|---|---:|---:|",
        f"| {ip['units']:,} units (seed_pipeline) | {u['capture_ms_median']:.1f} "
        f"| {u['encode_ms_median']:.1f} |",
        f"| ... then {ip['incidents']:,} incidents created and closed "
        f"({w['sizes'][0]:,} held, {w['sizes'][1]:,} request_ids in memory) "
        f"| {w['capture_ms_median']:.1f} | {w['encode_ms_median']:.1f} |",
        "",
        "## Goals (measured, not asserted)",
        "",
        "| goal | measured ms | |",
        "|---|---:|---|",
    ]
    for g in report["goals"]:
        lines.append(f"| {g['goal']} | {g['measured_ms']:,.2f} | {_met(g['met'])} |")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    lines = md_header(report) + md_probe(report) + md_background(report) + md_isolated(report)
    return "\n".join(lines + md_snapshots_goals(report)) + "\n"


# -------------------------------------------------------------------------------- driver


def bench(st: Settings, workdir: Path) -> dict[str, Any]:
    """Seeds and measures one server, then stops it; the in-process timing is separate."""
    fleet = make_fleet(st.units, seed=FLEET_SEED)
    server = StallServer(workdir)
    out: dict[str, Any] = {"server_flags": server.command_flags}
    try:
        with grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.DispatchServiceStub(channel)  # type: ignore[no-untyped-call]
            out["server_start_s"] = server.wait_serving(channel)
            out["seeding"] = seed(server, stub, fleet, st)
        # Long-lived objects (the fleet, templates) stay out of the client's collector, so
        # its pauses do not land in the probe; the server's collector is left alone.
        gc.collect()
        gc.freeze()
        out["measured"] = measure(server, fleet, st.seconds)
        if st.isolate:
            out["isolated"] = isolated(server, fleet, st.seconds)
    finally:
        gc.unfreeze()
        out["server_exit_code"] = server.stop()
        out["server_log_tail"] = server.log_tail(10)
    return out


def parse_settings(argv: Sequence[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_stall", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k units, 20k incidents, 8 s")
    parser.add_argument("--units", type=int, help="units (default 100000; --quick 10000)")
    parser.add_argument("--incidents", type=int, help="default 300000; --quick 20000")
    parser.add_argument("--seconds", type=float, help="per probe run (default 30; --quick 8)")
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="then the probe beside each background activity alone (5 more runs)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output dir")
    args = parser.parse_args(argv)
    units, incidents, seconds = (10_000, 20_000, 8.0) if args.quick else (100_000, 300_000, 30.0)
    st = Settings(
        units=args.units if args.units is not None else units,
        incidents=args.incidents if args.incidents is not None else incidents,
        seconds=args.seconds if args.seconds is not None else seconds,
        isolate=args.isolate,
    )
    if st.units < 1 or st.incidents < 0 or st.seconds <= 0:
        parser.error("--units must be >= 1, --incidents >= 0 and --seconds > 0")
    return st, args


def main(argv: Sequence[str] | None = None) -> int:
    st, args = parse_settings(argv)
    if os.getloadavg()[0] > 1.0:
        print(
            f"warning: load average {os.getloadavg()[0]:.1f} before starting: other work on "
            "this machine will show in the tails (see 'other processes' CPU')",
            flush=True,
        )
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the server subprocess is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    machine = machine_info()
    print(f"machine: nproc {machine['nproc']}, {machine['cpu_model']}; settings {st}", flush=True)
    report: dict[str, Any] = {
        "machine": machine,
        "mode": "quick" if args.quick else "full",
        "settings": dataclasses.asdict(st),
    }
    with tempfile.TemporaryDirectory(prefix="bench-stall-") as tmp:
        report.update(bench(st, Path(tmp)))
    print("in-process snapshot timing (server stopped)", flush=True)
    report["inprocess_snapshot"] = inprocess_snapshot(
        make_fleet(st.units, seed=FLEET_SEED), st.incidents
    )
    report["goals"] = goals(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stall.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = to_markdown(report)
    (args.out / "stall.md").write_text(md, encoding="utf-8")
    print("\n" + md)
    print(f"wrote {args.out / 'stall.json'} and {args.out / 'stall.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
