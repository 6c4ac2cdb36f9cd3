"""An open-loop load generator for dispatch-core: requests go out on schedule, always.

The generator decides *when* each request should be sent before the run starts (incident
arrivals, AVL ping batches, console reads) and sends it then, whatever the server is doing:
it never waits for an answer before sending the next request. Every latency is measured
from the request's *intended* send time, so when the server (or this client) stalls, the
requests queued behind the stall are charged for it in full. A closed-loop client would
instead send less while the server is slow and report the stall once, which is coordinated
omission: the tail then says nothing about what a call-taker would have seen.

Requests that depend on an answer (RecommendUnits needs the incident, AssignUnits needs
the recommendation, a unit goes ON_SCENE after it went EN_ROUTE) are scheduled when that
answer arrives, at the time a dispatcher would act on it; their own latency is again
measured from that intended time.

Pieces:
- `OpenLoop`: the schedule (a heap of timed actions, plus sorted sources of base arrivals),
  one sender thread issuing `method.future(...)` calls, and per-RPC records of intended,
  sent and done times. It is bounded by an end time, a request count and the number of
  requests in flight, and stops by itself.
- `Sampler`: once a second, the server's CPU and RSS from /proc/<pid>, this process's CPU
  and the generator's lag, printed as one progress line on stderr and kept for the report.
- `ScenarioRun`: the dispatch workload of a `Scenario` on top of an `OpenLoop`.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import grpc
import numpy as np
import numpy.typing as npt

from dispatch_core.loadtest.procs import machine_jiffies, proc_cpu_s, proc_rss_bytes
from dispatch_core.loadtest.scenario import TARGET_S, IncidentKind, Scenario
from dispatch_core.loadtest.seeding import namespaced, seed_server
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.client import ClientCredentials
from dispatch_core.synthetic.fleet import Fleet, boroughs, incident_points, make_fleet
from dispatch_core.types import Grade, UnitStatus

log = logging.getLogger(__name__)

#: gRPC status names that are an expected outcome of concurrent dispatching, not a fault:
#: two incidents racing for the same unit (docs/architecture.md: FAILED_PRECONDITION or ABORTED).
EXPECTED_CONFLICTS = {("AssignUnits", "FAILED_PRECONDITION"), ("AssignUnits", "ABORTED")}
#: With the engine dispatcher a unit can be diverted while one of its status steps for the
#: incident it leaves is in flight (as a crew's status message can cross a diversion): that
#: step, or the new assignment's own EN_ROUTE after it, is refused. Greedy never diverts.
EXPECTED_WITH_DIVERSIONS = EXPECTED_CONFLICTS | {("SetUnitStatus", "FAILED_PRECONDITION")}

#: A sent request later than this behind its intended time counts as late.
LATE_NS = 5_000_000
#: The generator "fell behind" when more than this share of its sends were late: its own
#: slowness is then part of what was measured.
FELL_BEHIND_SHARE = 0.01

#: Shortest wall-clock interval between two sweeps of the waiting queue. At a high
#: compression a simulated minute is a few milliseconds; sweeping that often would be a
#: polling storm no control room produces.
MIN_SWEEP_NS = 500_000_000
#: Waiting incidents a sweep retries (from the head: IMMEDIATE first, then oldest).
SWEEP_WAKE = 5

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]

Action = Callable[[int], None]


def clock() -> int:
    """The generator's clock: monotonic nanoseconds."""
    return time.perf_counter_ns()


# ------------------------------------------------------------------------------ open loop


@dataclasses.dataclass(slots=True)
class Record:
    """One finished request: times in the generator's clock, status name."""

    intended: int
    sent: int
    done: int
    code: str


class OpenLoop:
    """Sends requests at scheduled times from one thread; records every outcome.

    Base arrivals come from `add_source` (a sorted array of intended times and a function
    that sends the i-th); follow-ups are added with `at` from completion callbacks. Nothing
    is sent at or after `end_ns`: follow-ups due later are counted as dropped.
    """

    def __init__(
        self,
        *,
        start_ns: int,
        end_ns: int,
        max_requests: int,
        max_in_flight: int = 20_000,
        timeout_s: float = 30.0,
    ) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.max_requests = max_requests
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self._heap: list[tuple[int, int, Action]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._done_lock = threading.Lock()
        self.records: dict[str, list[Record]] = {}
        #: Per send: how late it left, ns (actual - intended).
        self.lag_ns: list[int] = []
        self.lag_at: list[int] = []
        self.issued = 0
        self.completed = 0
        #: Requests not sent, by reason (bounds reached, follow-ups due after the end).
        self.not_sent: Counter[str] = Counter()
        self.callback_errors = 0
        self._stopped = False
        self.finished_ns = 0
        self._pending: dict[int, grpc.Future] = {}

    # -- scheduling

    def at(self, intended_ns: int, action: Action) -> None:
        """Run `action(intended_ns)` on the sender thread at `intended_ns`."""
        with self._cond:
            if self._stopped or intended_ns >= self.end_ns:
                self.not_sent["due_after_end"] += 1
                return
            heapq.heappush(self._heap, (intended_ns, next(self._seq), action))
            self._cond.notify()

    def add_source(self, times_ns: npt.NDArray[np.int64], fire: Callable[[int, int], None]) -> None:
        """Base arrivals: `fire(i, intended)` at `times_ns[i]` (sorted) for every i."""
        times = [int(t) for t in times_ns]
        if not times:
            return

        def step(i: int) -> Action:
            def act(intended: int) -> None:
                # The next arrival goes in first, so a slow `fire` cannot delay its schedule.
                if i + 1 < len(times):
                    self.at(times[i + 1], step(i + 1))
                fire(i, intended)

            return act

        self.at(times[0], step(0))

    # -- sending

    def call(
        self,
        rpc: str,
        method: Any,
        request: Any,
        intended: int,
        on_done: Callable[[grpc.Future, int], None] | None = None,
    ) -> None:
        """Sends `request` with `method.future` now, recording it under `rpc`."""
        if self.issued >= self.max_requests:
            self.not_sent["max_requests"] += 1
            self._stopped = True
            return
        if self.issued - self.completed >= self.max_in_flight:
            # Unbounded buffering in this process would only move the queue here; the
            # shed request is counted (and reported) instead of silently never sent.
            self.not_sent["max_in_flight"] += 1
            return
        sent = clock()
        self.lag_ns.append(sent - intended)
        self.lag_at.append(intended)
        self.issued += 1
        fut = method.future(request, timeout=self.timeout_s)
        key = id(fut)
        self._pending[key] = fut
        fut.add_done_callback(
            functools.partial(
                self._finished, rpc=rpc, intended=intended, sent=sent, on_done=on_done, key=key
            )
        )

    def _finished(
        self,
        fut: grpc.Future,
        *,
        rpc: str,
        intended: int,
        sent: int,
        on_done: Callable[[grpc.Future, int], None] | None,
        key: int,
    ) -> None:
        now = clock()
        code = fut.code()
        name = code.name if code is not None else "UNKNOWN"
        if fut.cancelled():
            name = "CANCELLED"
        rows = self.records.get(rpc)
        if rows is None:
            rows = self.records.setdefault(rpc, [])
        rows.append(Record(intended, sent, now, name))
        with self._done_lock:
            self.completed += 1
            self._pending.pop(key, None)
        if on_done is not None and not fut.cancelled():
            try:
                on_done(fut, now)
            except Exception:
                # A bug in a follow-up must not kill grpc's callback thread silently.
                self.callback_errors += 1
                log.exception("follow-up of %s failed", rpc)

    def run(self) -> None:
        """The sender loop: returns at `end_ns` (or when a bound stops it)."""
        heap, cond = self._heap, self._cond
        while True:
            with cond:
                while True:
                    if self._stopped:
                        self.not_sent["max_requests"] += len(heap)
                        heap.clear()
                        self.finished_ns = clock()
                        return
                    now = clock()
                    if not heap or heap[0][0] >= self.end_ns:
                        if now >= self.end_ns:
                            self.not_sent["due_after_end"] += len(heap)
                            heap.clear()
                            self._stopped = True
                            self.finished_ns = now
                            return
                        cond.wait(min(0.05, (self.end_ns - now) / 1e9))
                        continue
                    t = heap[0][0]
                    if t > now:
                        cond.wait((t - now) / 1e9)
                        continue
                    _, _, action = heapq.heappop(heap)
                    break
            action(t)

    def drain(self, timeout_s: float) -> int:
        """Waits for answers still in flight; cancels what is left after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.issued > self.completed and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._done_lock:
            left = list(self._pending.values())
        for fut in left:
            fut.cancel()
        return len(left)

    def in_flight(self) -> int:
        return self.issued - self.completed


# -------------------------------------------------------------------------------- sampler


@dataclasses.dataclass(slots=True)
class Sample:
    t_s: float
    server_cpu_pct: float | None
    server_rss_mb: float | None
    gen_cpu_pct: float
    gen_rss_mb: float
    #: Busy time of the whole machine minus this process and the server, % of one core:
    #: other work sharing the cores, which shows in lag and tails without being ours.
    other_cpu_pct: float
    issued: int
    completed: int
    in_flight: int
    lag_p99_ms: float
    errors: int


class Sampler:
    """Once a second: resources and progress, one line on `out`, kept as a time series."""

    def __init__(
        self,
        loop: OpenLoop,
        server_pid: int | None,
        *,
        label: str,
        out: TextIO | None = sys.stderr,
        extra: Callable[[], str] | None = None,
        interval_s: float = 1.0,
        publish: Callable[[Sample], None] | None = None,
    ) -> None:
        self.loop = loop
        self.publish = publish
        self.server_pid = server_pid
        self.label = label
        self.out = out
        self.extra = extra
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _server(self) -> tuple[float | None, float | None]:
        if self.server_pid is None:
            return None, None
        try:
            return proc_cpu_s(self.server_pid), proc_rss_bytes(self.server_pid) / 2**20
        except (OSError, IndexError, ValueError):
            return None, None

    def _run(self) -> None:
        loop = self.loop
        prev_wall = time.perf_counter()
        prev_gen = time.process_time()
        prev_srv, _ = self._server()
        prev_machine = machine_jiffies()
        ncpu = len(os.sched_getaffinity(0))
        lag_seen = 0
        err_seen = {rpc: 0 for rpc in loop.records}
        errors = 0
        while not self._stop.wait(self.interval_s):
            wall = time.perf_counter()
            gen = time.process_time()
            srv, rss = self._server()
            machine = machine_jiffies()
            dt = wall - prev_wall
            total, idle, _ = (b - a for a, b in zip(prev_machine, machine, strict=True))
            busy_pct = ncpu * 100.0 * (total - idle) / max(1, total)
            srv_pct = (
                100.0 * (srv - prev_srv) / dt if srv is not None and prev_srv is not None else None
            )
            gen_pct = 100.0 * (gen - prev_gen) / dt
            lags = loop.lag_ns[lag_seen : len(loop.lag_ns)]
            lag_seen += len(lags)
            for rpc, rows in list(loop.records.items()):
                seen = err_seen.get(rpc, 0)
                new = rows[seen : len(rows)]
                err_seen[rpc] = seen + len(new)
                errors += sum(
                    1 for r in new if r.code != "OK" and (rpc, r.code) not in EXPECTED_CONFLICTS
                )
            s = Sample(
                t_s=(clock() - loop.start_ns) / 1e9,
                server_cpu_pct=srv_pct,
                server_rss_mb=rss,
                gen_cpu_pct=gen_pct,
                gen_rss_mb=proc_rss_bytes(os.getpid()) / 2**20,
                other_cpu_pct=max(0.0, busy_pct - gen_pct - (srv_pct or 0.0)),
                issued=loop.issued,
                completed=loop.completed,
                in_flight=loop.in_flight(),
                lag_p99_ms=float(np.percentile(lags, 99)) / 1e6 if lags else 0.0,
                errors=errors,
            )
            self.samples.append(s)
            if self.publish is not None:
                self.publish(s)
            prev_wall, prev_gen, prev_srv, prev_machine = wall, gen, srv, machine
            if self.out is not None:
                srv_txt = (
                    f"server cpu {s.server_cpu_pct:4.0f}% rss {s.server_rss_mb:6.0f} MB"
                    if s.server_cpu_pct is not None and s.server_rss_mb is not None
                    else "server n/a"
                )
                extra = f" | {self.extra()}" if self.extra is not None else ""
                print(
                    f"[{self.label} {s.t_s:6.1f}s] sent {s.issued:,} done {s.completed:,} "
                    f"in flight {s.in_flight:,} errors {s.errors} | lag p99 "
                    f"{s.lag_p99_ms:.1f} ms | {srv_txt} | gen cpu {s.gen_cpu_pct:.0f}% | others "
                    f"{s.other_cpu_pct:.0f}%{extra}",
                    file=self.out,
                    flush=True,
                )


# ---------------------------------------------------------------------------- the fleet


def scenario_fleet(sc: Scenario) -> Fleet:
    """The scenario's fleet: `make_fleet`, with a share moved to central London if declared.

    A planned operation (NYE) concentrates units around Westminster: those units are
    redrawn around its centroid with the declared spread and take it as their home area.
    """
    fleet = make_fleet(sc.units, seed=sc.seed, available_share=sc.available_share)
    if sc.centre_share <= 0:
        return fleet
    rng = np.random.default_rng(sc.seed + 1000)
    n_centre = round(len(fleet) * sc.centre_share)
    pick = rng.choice(len(fleet), size=n_centre, replace=False)
    west = next(b for b in boroughs() if b.borough == "Westminster")
    d_north, d_east = rng.standard_normal((2, n_centre)) * sc.centre_sigma_m
    lat = fleet.lat.copy()
    lon = fleet.lon.copy()
    lat[pick] = west.centroid_lat + d_north / 111_320.0
    lon[pick] = west.centroid_lon + d_east / (111_320.0 * math.cos(math.radians(west.centroid_lat)))
    home = list(fleet.home_area)
    for i in pick:
        home[int(i)] = west.borough
    return dataclasses.replace(fleet, lat=lat, lon=lon, home_area=home)


def seed_fleet(stub: pb_grpc.DispatchServiceStub, fleet: Fleet, now_ms: int) -> dict[str, Any]:
    """Registers the fleet over gRPC (bench_grpc.seed_server), timed but not measured."""
    return seed_server(stub, fleet, now_ms)


def poisson_times(
    rate_of: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
    duration_s: float,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Arrival times (s) of a Poisson process with rate `rate_of(t)`, by thinning."""
    grid = np.linspace(0.0, duration_s, 4001)
    peak = float(np.max(rate_of(grid))) if duration_s > 0 else 0.0
    if peak <= 0:
        return np.empty(0)
    n = rng.poisson(peak * duration_s)
    t = np.sort(rng.uniform(0.0, duration_s, size=n))
    keep = rng.random(n) < rate_of(t) / peak
    return t[keep]


# ------------------------------------------------------------------------ the workload


@dataclasses.dataclass(slots=True)
class Flow:
    """One incident's progress through the dispatch lifecycle, on the generator's clock."""

    i: int
    kind: IncidentKind
    incident_id: str
    created_intended: int
    job_s: float
    committed: bool
    custody_s: float
    created: bool = False
    assign_done: int = 0
    eta_s: float = 0.0
    units: tuple[str, ...] = ()
    etas: tuple[float, ...] = ()
    re_recommended: bool = False
    requeues: int = 0
    conflicts: int = 0
    partial: bool = False
    pending: int = 0
    on_scene_done: int = 0
    closed_done: int = 0
    failed: str = ""
    waiting: bool = False


class ScenarioRun:
    """Drives one scenario's workload through an `OpenLoop` against a server."""

    def __init__(
        self,
        sc: Scenario,
        channel: grpc.Channel,
        fleet: Fleet,
        *,
        server_pid: int | None,
        run_tag: str,
        out: TextIO | None = sys.stderr,
        drain_s: float = 10.0,
        part: int = 0,
        parts: int = 1,
        unit_prefix: str = "",
    ) -> None:
        self.sc = sc
        # Units of this run have ids under `unit_prefix`: on a server that holds other units
        # (a staging server), only those are ever assigned.
        self.unit_prefix = unit_prefix
        # With several generator processes, this one drives incidents, units (pings) and
        # reads whose index is `part` modulo `parts`; the schedule is drawn whole either way,
        # so the union of the parts is exactly the one-process run.
        self.part = part
        self.parts = parts
        self._by_i: dict[int, Flow] = {}
        self.stub = pb_grpc.DispatchServiceStub(channel)  # type: ignore[no-untyped-call]
        self.fleet = fleet
        self.server_pid = server_pid
        self.run_tag = run_tag
        self.out = out
        self.drain_s = drain_s
        self.lc = sc.lifecycle_compression
        self.flows: list[Flow] = []
        self.rng = np.random.default_rng(sc.seed + 7)
        self.ids = np.array(fleet.ids, dtype=object)
        self._created_ids: list[str] = []
        self.loop: OpenLoop | None = None
        self.sampler: Sampler | None = None
        self.wall_start_ms = 0
        self.pings_scheduled = 0
        # Incidents waiting for a free unit, IMMEDIATE first then oldest: a dispatcher
        # works the queue when units come free, rather than every incident polling.
        self._waiting: list[tuple[int, int, int]] = []
        self._waiting_lock = threading.Lock()
        self.sweep_ns = max(self._wall(sc.requeue_s), MIN_SWEEP_NS)
        # Units this process is assigning right now: a dispatcher does not offer a unit it
        # has just sent elsewhere, so only genuine races reach the server as conflicts.
        self._reserved: set[str] = set()

    # -- building the schedule (before the clock starts)

    def _incidents(
        self, start_ns: int
    ) -> tuple[npt.NDArray[np.int64], list[pb.CreateIncidentRequest]]:
        sc = self.sc
        rng = np.random.default_rng(sc.seed + 1)
        t = poisson_times(sc.wall_incident_rate, sc.duration_s, rng)
        n = t.size
        lat, lon = incident_points(
            max(n, 1), seed=sc.seed + 2, centre_weight=sc.incident_centre_weight
        )
        shares = np.array([m.share for m in sc.mix])
        which = rng.choice(len(sc.mix), size=n, p=shares / shares.sum())
        groups = {
            m.incident_type: [
                pb.RequirementGroup(
                    agency=int(g.agency),  # type: ignore[arg-type]
                    count=g.count,
                    unit_types=g.unit_types,
                    capabilities=g.capabilities,
                )
                for g in m.groups
            ]
            for m in sc.mix
        }
        reqs = []
        own: list[int] = []
        for i in range(n):
            kind = sc.mix[int(which[i])]
            incident_id = f"LT-{self.run_tag}-{i:07d}"
            lo, hi = kind.job_min
            job_s = float(rng.uniform(lo, hi)) * 60.0
            committed = bool(rng.random() < kind.committed_share)
            clo, chi = sc.custody_min
            custody_s = float(rng.uniform(clo, chi)) * 60.0
            if i % self.parts != self.part:
                continue  # after the draws, so every part sees the same random stream
            own.append(i)
            self.flows.append(
                Flow(
                    i=i,
                    kind=kind,
                    incident_id=incident_id,
                    created_intended=start_ns + int(t[i] * 1e9),
                    job_s=job_s,
                    committed=committed,
                    custody_s=custody_s,
                )
            )
            reqs.append(
                pb.CreateIncidentRequest(
                    request_id=uuid.uuid4().hex,
                    incident_id=incident_id,
                    grade=int(kind.grade),  # type: ignore[arg-type]
                    incident_type=kind.incident_type,
                    location=pb.Location(lat=float(lat[i]), lon=float(lon[i])),
                    requirements=groups[kind.incident_type],
                )
            )
        self._by_i = {f.i: f for f in self.flows}
        return (start_ns + t[own] * 1e9).astype(np.int64), reqs

    def _ping_plan(self) -> tuple[float, list[list[npt.NDArray[np.int64]]]]:
        """Units due per tick: unit u reports every P_u ticks, at ticks k = phase_u mod P_u.

        Periods are whole ticks so the due set of any tick is a few precomputed index
        arrays joined, not a scan of the fleet in the sender thread.
        """
        sc = self.sc
        iv = sc.ping_interval_s
        rng = np.random.default_rng(sc.seed + 3)
        lo, hi = sc.ping_period_s
        periods = np.maximum(1, np.round(rng.uniform(lo, hi, size=len(self.fleet)) / iv)).astype(
            np.int64
        )
        phases = (rng.random(len(self.fleet)) * periods).astype(np.int64)
        plan: list[list[npt.NDArray[np.int64]]] = []
        mine = np.arange(len(self.fleet)) % self.parts == self.part
        for p in np.unique(periods):
            sel = np.flatnonzero((periods == p) & mine)
            by_phase = [sel[phases[sel] == r] for r in range(int(p))]
            plan.append(by_phase)
        return iv, plan

    # -- the incident lifecycle (each step runs on the sender thread at its time)

    def _wall(self, sim_s: float) -> int:
        """Simulated seconds of travel or work as wall-clock nanoseconds."""
        return int(sim_s / self.lc * 1e9)

    def _create(self, flow: Flow, req: pb.CreateIncidentRequest, intended: int) -> None:
        assert self.loop is not None

        def done(fut: grpc.Future, now: int) -> None:
            if fut.code() != grpc.StatusCode.OK:
                flow.failed = f"CreateIncident {fut.code().name}"
                return
            flow.created = True
            self._created_ids.append(flow.incident_id)
            self._created(flow, now)

        self.loop.call("CreateIncident", self.stub.CreateIncident, req, intended, done)

    def _created(self, flow: Flow, now: int) -> None:
        """The incident exists: greedy asks for its nearest units at once."""
        self.loop.at(now, functools.partial(self._recommend, flow))  # type: ignore[union-attr]

    def _recommend(self, flow: Flow, intended: int) -> None:
        assert self.loop is not None
        loop = self.loop
        need = flow.kind.units
        req = pb.RecommendUnitsRequest(incident_id=flow.incident_id, k=max(self.sc.k, need + 2))

        def done(fut: grpc.Future, now: int) -> None:
            if fut.code() != grpc.StatusCode.OK:
                flow.failed = f"RecommendUnits {fut.code().name}"
                return
            chosen: list[str] = []
            etas: list[float] = []
            short = False
            reserved = self._reserved
            for grp, spec in zip(fut.result().groups, flow.kind.groups, strict=False):
                got = 0
                for cand in grp.candidates:
                    if got == spec.count:
                        break
                    if (
                        cand.unit_id not in chosen
                        and cand.unit_id not in reserved
                        and cand.unit_id.startswith(self.unit_prefix)
                    ):
                        chosen.append(cand.unit_id)
                        etas.append(cand.eta_seconds)
                        got += 1
                short = short or got < spec.count
            if not chosen:
                self._wait(flow, now)
                return
            flow.partial = short
            reserved.update(chosen)
            loop.at(now, functools.partial(self._assign, flow, tuple(chosen), tuple(etas)))

        loop.call("RecommendUnits", self.stub.RecommendUnits, req, intended, done)

    def _assign(
        self, flow: Flow, units: tuple[str, ...], etas: tuple[float, ...], intended: int
    ) -> None:
        assert self.loop is not None
        loop = self.loop
        req = pb.AssignUnitsRequest(
            request_id=uuid.uuid4().hex, incident_id=flow.incident_id, unit_ids=units
        )

        def done(fut: grpc.Future, now: int) -> None:
            self._reserved.difference_update(units)
            code = fut.code()
            if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED):
                # Another incident took a unit between recommendation and assignment:
                # re-recommend once at once; after that the incident waits and asks again.
                flow.conflicts += 1
                if not flow.re_recommended:
                    flow.re_recommended = True
                    loop.at(now, functools.partial(self._recommend, flow))
                else:
                    flow.re_recommended = False
                    self._wait(flow, now)
                return
            if code != grpc.StatusCode.OK:
                flow.failed = f"AssignUnits {code.name}"
                return
            flow.assign_done = now
            flow.units = units
            flow.etas = etas
            flow.eta_s = min(etas)
            flow.pending = len(units)
            for u, eta in zip(units, etas, strict=True):
                # EN_ROUTE after mobilisation (never later than halfway to the scene).
                t = now + self._wall(min(self.sc.mobilisation_s, eta / 2))
                loop.at(t, functools.partial(self._en_route, flow, u, eta))

        loop.call("AssignUnits", self.stub.AssignUnits, req, intended, done)

    def _wait(self, flow: Flow, now: int) -> None:
        """No unit could be assigned: queue the incident until units come free.

        A freed unit wakes the head of the queue (`_wake`); a sweep every `requeue_s`
        simulated (at least MIN_SWEEP_NS of wall clock) retries the first few, for plans no
        freed unit fits.
        """
        flow.requeues += 1
        flow.waiting = True
        with self._waiting_lock:
            heapq.heappush(self._waiting, (int(flow.kind.grade), flow.created_intended, flow.i))

    def _wake(self, freed: int, now: int) -> None:
        """`freed` units came free: the first waiting incidents try again now."""
        loop = self.loop
        assert loop is not None
        woken = 0
        with self._waiting_lock:
            while self._waiting and woken < freed:
                _, _, i = heapq.heappop(self._waiting)
                flow = self._by_i[i]
                if flow.waiting:
                    flow.waiting = False
                    woken += 1
                    loop.at(now, functools.partial(self._recommend, flow))

    def _status(
        self,
        unit_id: str,
        status: UnitStatus,
        intended: int,
        done: Callable[[grpc.Future, int], None] | None = None,
    ) -> None:
        assert self.loop is not None
        req = pb.SetUnitStatusRequest(
            request_id=uuid.uuid4().hex,
            unit_id=unit_id,
            status=int(status),  # type: ignore[arg-type]
        )
        self.loop.call("SetUnitStatus", self.stub.SetUnitStatus, req, intended, done)

    def _en_route(self, flow: Flow, unit_id: str, eta: float, intended: int) -> None:
        loop = self.loop
        assert loop is not None

        def done(fut: grpc.Future, now: int) -> None:
            # ON_SCENE only after EN_ROUTE is acknowledged: sent together they could be
            # applied in the other order by the server's worker threads.
            at = max(now, flow.assign_done + self._wall(eta))
            loop.at(at, functools.partial(self._on_scene, flow, unit_id))

        self._status(unit_id, UnitStatus.EN_ROUTE, intended, done)

    def _on_scene(self, flow: Flow, unit_id: str, intended: int) -> None:
        loop = self.loop
        assert loop is not None

        def done(fut: grpc.Future, now: int) -> None:
            if flow.on_scene_done == 0 and fut.code() == grpc.StatusCode.OK:
                flow.on_scene_done = now
            flow.pending -= 1
            if flow.pending == 0:
                loop.at(now + self._wall(flow.job_s), functools.partial(self._finish, flow))

        self._status(unit_id, UnitStatus.ON_SCENE, intended, done)

    def _finish(self, flow: Flow, intended: int) -> None:
        if not flow.committed:
            self._close(flow, intended)
            return
        self._custody(flow, flow.units[0], intended)

    def _custody(self, flow: Flow, unit_id: str, intended: int) -> None:
        """`unit_id` leaves with someone in custody (or to hospital); the incident closes."""
        loop = self.loop
        assert loop is not None

        def done(fut: grpc.Future, now: int) -> None:
            # Custody or hospital: the unit leaves the incident COMMITTED, is free later;
            # the incident closes now, releasing the rest.
            loop.at(now, functools.partial(self._close, flow))
            loop.at(
                now + self._wall(flow.custody_s),
                lambda t: self._status(
                    unit_id, UnitStatus.AVAILABLE, t, lambda f, n: self._wake(1, n)
                ),
            )

        self._status(unit_id, UnitStatus.COMMITTED, intended, done)

    def _close(self, flow: Flow, intended: int) -> None:
        loop = self.loop
        assert loop is not None
        req = pb.CloseIncidentRequest(request_id=uuid.uuid4().hex, incident_id=flow.incident_id)

        def done(fut: grpc.Future, now: int) -> None:
            if fut.code() == grpc.StatusCode.OK:
                flow.closed_done = now
                self._wake(len(fut.result().released_unit_ids), now)

        loop.call("CloseIncident", self.stub.CloseIncident, req, intended, done)

    # -- pings and reads

    def _pinger(
        self, start_ns: int, iv: float, plan: list[list[npt.NDArray[np.int64]]]
    ) -> tuple[npt.NDArray[np.int64], Callable[[int, int], None]]:
        fleet, ids = self.fleet, self.ids
        rng = np.random.default_rng(self.sc.seed + 4)
        n_ticks = int(self.sc.duration_s / iv)
        times = start_ns + (np.arange(n_ticks) * iv * 1e9).astype(np.int64)
        wall0 = self.wall_start_ms

        def build(k: int) -> pb.UpdateLocationsRequest | None:
            due = np.concatenate([by_phase[k % len(by_phase)] for by_phase in plan])
            if due.size == 0:
                return None
            # Patrols drift a few tens of metres around their post; ranking sees them move.
            jitter = rng.normal(0.0, 2e-4, size=(2, due.size))
            return pb.UpdateLocationsRequest(
                unit_ids=ids[due].tolist(),
                lat=(fleet.lat[due] + jitter[0]).tolist(),
                lon=(fleet.lon[due] + jitter[1]).tolist(),
                time_unix_ms=[wall0 + int(k * iv * 1000)] * due.size,
            )

        # The next batch is built right after the current one is sent, so its protobuf is
        # ready before its own send time.
        ready: dict[int, pb.UpdateLocationsRequest | None] = {0: build(0)}

        def fire(k: int, intended: int) -> None:
            req = ready.pop(k, None)
            if req is None:
                req = build(k)
            if req is not None:
                self.pings_scheduled += len(req.unit_ids)
                self.loop.call(  # type: ignore[union-attr]
                    "UpdateLocations", self.stub.UpdateLocations, req, intended
                )
            if k + 1 < n_ticks:
                ready[k + 1] = build(k + 1)

        return times, fire

    def _reader(self, start_ns: int) -> tuple[npt.NDArray[np.int64], Callable[[int, int], None]]:
        sc = self.sc
        rng = np.random.default_rng(sc.seed + 5)
        if not sc.reads:
            return np.empty(0, dtype=np.int64), lambda i, t: None
        c = sc.compression
        t = poisson_times(lambda x: sc.reads_per_s.at(x * c), sc.duration_s, rng)
        shares = np.array([r.share for r in sc.reads])
        kinds = [
            sc.reads[int(j)].rpc
            for j in rng.choice(len(sc.reads), size=t.size, p=shares / shares.sum())
        ]
        areas = [b.borough for b in boroughs()]
        picks = rng.integers(0, 2**31, size=t.size)
        mine = np.flatnonzero(np.arange(t.size) % self.parts == self.part)
        t, picks = t[mine], picks[mine]
        kinds = [kinds[int(j)] for j in mine]
        stub = self.stub

        def fire(i: int, intended: int) -> None:
            loop = self.loop
            assert loop is not None
            kind, pick = kinds[i], int(picks[i])
            if kind == "GetIncident" and self._created_ids:
                incident_id = self._created_ids[pick % len(self._created_ids)]
                loop.call(
                    kind, stub.GetIncident, pb.GetIncidentRequest(incident_id=incident_id), intended
                )
            elif kind == "ListUnits":
                req = pb.ListUnitsRequest(
                    home_area=areas[pick % len(areas)],
                    statuses=[int(UnitStatus.AVAILABLE)],  # type: ignore[list-item]
                    page_size=50,
                )
                loop.call(kind, stub.ListUnits, req, intended)
            elif kind == "ListIncidents":
                req2 = pb.ListIncidentsRequest(page_size=50)
                loop.call(kind, stub.ListIncidents, req2, intended)
            elif kind == "GetOperatingPicture":
                loop.call(kind, stub.GetOperatingPicture, pb.GetOperatingPictureRequest(), intended)
            else:  # GetUnit, and GetIncident before any incident exists
                unit_id = str(self.ids[pick % len(self.ids)])
                loop.call("GetUnit", stub.GetUnit, pb.GetUnitRequest(unit_id=unit_id), intended)

        return (start_ns + t * 1e9).astype(np.int64), fire

    # -- running

    def progress(self) -> str:
        flows = self.flows
        created = sum(1 for f in flows if f.created)
        assigned = sum(1 for f in flows if f.assign_done)
        closed = sum(1 for f in flows if f.closed_done)
        return f"incidents created {created:,} assigned {assigned:,} closed {closed:,}"

    def run(
        self, start_ns: int | None = None, publish: Callable[[Sample], None] | None = None
    ) -> dict[str, Any]:
        """Runs the workload; `start_ns` fixes t = 0 (several processes share one)."""
        sc = self.sc
        fixed_start = start_ns is not None
        lead_ns = 200_000_000  # building the schedule's first messages before t = 0
        if start_ns is None:
            start_ns = clock() + lead_ns
        # Ping timestamps: the wall clock at t = 0 (the same in every process).
        self.wall_start_ms = (time.time_ns() + (start_ns - clock())) // 1_000_000
        build_t0 = time.perf_counter()
        times_inc, creates = self._incidents(start_ns)
        iv, plan = self._ping_plan()
        ping_times, ping_fire = self._pinger(start_ns, iv, plan)
        read_times, read_fire = self._reader(start_ns)
        build_s = time.perf_counter() - build_t0
        # Building may have taken longer than the lead: start the clock afresh then.
        shift = 0 if fixed_start else max(0, clock() + 50_000_000 - start_ns)
        if shift:
            self.wall_start_ms += shift // 1_000_000
            start_ns += shift
            times_inc += shift
            ping_times += shift
            read_times += shift
            for f in self.flows:
                f.created_intended += shift
        end_ns = start_ns + int(sc.duration_s * 1e9)
        loop = OpenLoop(start_ns=start_ns, end_ns=end_ns, max_requests=sc.max_requests)
        self.loop = loop
        flows = self.flows
        loop.add_source(times_inc, lambda i, t: self._create(flows[i], creates[i], t))
        loop.add_source(ping_times, ping_fire)
        loop.add_source(read_times, read_fire)
        sweeps = start_ns + np.arange(self.sweep_ns, end_ns - start_ns, self.sweep_ns)
        loop.add_source(sweeps.astype(np.int64), lambda i, t: self._wake(SWEEP_WAKE, t))
        with Sampler(
            loop,
            self.server_pid,
            label=sc.name,
            out=self.out,
            extra=self.progress,
            publish=publish,
        ) as s:
            self.sampler = s
            loop.run()
            unfinished = loop.drain(self.drain_s)
        return {
            "start_ns": start_ns,
            "end_ns": end_ns,
            "finished_ns": loop.finished_ns,
            "schedule_build_s": build_s,
            "unfinished_cancelled": unfinished,
            "incidents_scheduled": len(self.flows),
            "ping_batches_scheduled": int(ping_times.size),
            "reads_scheduled": int(read_times.size),
            "pings_sent": self.pings_scheduled,
        }


#: `loadtest --dispatcher`: who decides which units go where.
DISPATCHERS = ("greedy", "engine")


def runner_class(dispatcher: str) -> type[ScenarioRun]:
    """`greedy`: this module's client-side policy (each incident takes its nearest units at
    once; waiting ones retry as units free). `engine`: the engine's pending queue and team
    proposals, with no policy in the generator (`engine_dispatch.py`)."""
    if dispatcher == "engine":
        from dispatch_core.loadtest.engine_dispatch import EngineRun  # noqa: PLC0415

        return EngineRun
    if dispatcher != "greedy":
        raise ValueError(f"unknown dispatcher {dispatcher!r} (known: {', '.join(DISPATCHERS)})")
    return ScenarioRun


# ---------------------------------------------------------------------------- outcomes


def dispatch_outcomes(flows: Sequence[Flow], lc: float, end_ns: int) -> dict[str, Any]:
    """Per grade: how many were assigned and attended, time to assign, share within target.

    Time to assign is measured on the wall clock from the incident's intended creation to
    the acknowledged AssignUnits (so queueing in the server and waiting for a free unit
    both count) and also shown in simulated seconds (x the lifecycle compression). The
    response time is that simulated time to assign plus the ranking's ETA of the first
    unit (units do not really drive; the ETA is the engine's own estimate).
    """
    out: dict[str, Any] = {}
    for grade in Grade:
        fl = [f for f in flows if f.kind.grade == grade and f.created_intended < end_ns]
        if not fl:
            continue
        assigned = [f for f in fl if f.assign_done]
        tta_ms = np.array([(f.assign_done - f.created_intended) / 1e6 for f in assigned])
        response_s = tta_ms / 1e3 * lc + np.array([f.eta_s for f in assigned])
        target = TARGET_S.get(grade)
        row: dict[str, Any] = {
            "incidents": len(fl),
            "created": sum(1 for f in fl if f.created),
            "assigned": len(assigned),
            "attended": sum(1 for f in fl if f.on_scene_done),
            "closed": sum(1 for f in fl if f.closed_done),
            "unassigned_at_end": sum(1 for f in fl if f.created and not f.assign_done),
            "partial_plans": sum(1 for f in assigned if f.partial),
            "requeued": sum(1 for f in fl if f.requeues),
            "assign_conflicts": sum(f.conflicts for f in fl),
            "failed": dict(Counter(f.failed for f in fl if f.failed)),
            "time_to_assign_ms": _pcts(tta_ms),
            "time_to_assign_simulated_s": _pcts(tta_ms / 1e3 * lc),
            "response_simulated_s": _pcts(response_s),
            "target_s": target,
        }
        if target is not None:
            met = int((response_s <= target).sum())
            row["within_target"] = met
            # Incidents never assigned by the end missed their target too.
            row["within_target_share"] = met / max(1, row["created"])
            row["within_target_share_of_assigned"] = met / max(1, len(assigned))
        out[grade.name] = row
    return out


def _pcts(v: npt.NDArray[np.float64]) -> dict[str, float | int]:
    if v.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {
        "n": int(v.size),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(v.max()),
    }


# ------------------------------------------------------------- several generator processes

#: Seconds the parent gives spawned workers to import, build their schedule and connect
#: before the shared t = 0.
WORKER_STARTUP_S = 8.0


@dataclasses.dataclass
class ParallelResult:
    """The merged outcome of several worker processes, shaped like one ScenarioRun."""

    loop: OpenLoop
    samples: list[Sample]
    flows: list[Flow]
    run: dict[str, Any]
    gen_cpu_s: float


def _worker(
    conn: Any,
    *,
    sc: Scenario,
    target: str,
    run_tag: str,
    part: int,
    parts: int,
    start_ns: int,
    shared: Any,
    unit_prefix: str,
    creds: ClientCredentials,
    dispatcher: str = "greedy",
) -> None:
    """One generator process: its part of the schedule, results sent back whole."""
    import gc  # noqa: PLC0415

    channel = creds.channel(target, options=CHANNEL_OPTIONS)
    runner = runner_class(dispatcher)(
        sc,
        channel,
        namespaced(scenario_fleet(sc), unit_prefix),
        server_pid=None,
        run_tag=run_tag,
        out=None,
        part=part,
        parts=parts,
        unit_prefix=unit_prefix,
    )

    def publish(s: Sample) -> None:
        base = part * 4
        shared[base : base + 4] = [s.issued, s.completed, s.errors, int(s.lag_p99_ms * 1000)]

    gc.collect()
    gc.freeze()  # the send loop must not pause for a collection of long-lived objects
    cpu0 = time.process_time()
    run = runner.run(start_ns=start_ns, publish=publish)
    loop = runner.loop
    assert loop is not None
    conn.send(
        {
            "run": run,
            "records": {
                rpc: [(r.intended, r.sent, r.done, r.code) for r in rows]
                for rpc, rows in loop.records.items()
            },
            "lag_ns": loop.lag_ns,
            "not_sent": dict(loop.not_sent),
            "callback_errors": loop.callback_errors,
            "flows": runner.flows,
            "cpu_s": time.process_time() - cpu0,
        }
    )
    conn.close()
    channel.close()


def run_parallel(
    sc: Scenario,
    target: str,
    *,
    workers: int,
    server_pid: int | None,
    run_tag: str,
    unit_prefix: str = "",
    creds: ClientCredentials | None = None,
    out: TextIO | None = sys.stderr,
    dispatcher: str = "greedy",
) -> ParallelResult:
    """The scenario split over `workers` spawned processes sharing one t = 0.

    Each drives the incidents, units and reads of its residue class (ScenarioRun `part`);
    the parent only watches: once a second it sums the workers' counters and reads the
    server's and the workers' CPU and RSS from /proc, printing one progress line.
    """
    import multiprocessing as mp  # noqa: PLC0415

    ctx = mp.get_context("spawn")  # grpc does not survive fork() with live channels
    shared = ctx.Array("q", workers * 4, lock=False)
    start_ns = clock() + int(WORKER_STARTUP_S * 1e9)
    end_ns = start_ns + int(sc.duration_s * 1e9)
    procs = []
    conns = []
    for part in range(workers):
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_worker,
            args=(child_conn,),
            kwargs={
                "sc": sc,
                "target": target,
                "run_tag": run_tag,
                "part": part,
                "parts": workers,
                "start_ns": start_ns,
                "shared": shared,
                "unit_prefix": unit_prefix,
                "creds": creds or ClientCredentials(),
                "dispatcher": dispatcher,
            },
            name=f"loadtest-worker-{part}",
            daemon=True,
        )
        p.start()
        child_conn.close()
        procs.append(p)
        conns.append(parent_conn)
    samples: list[Sample] = []
    results: list[dict[str, Any] | None] = [None] * workers
    stop = threading.Event()

    def watch() -> None:
        ncpu = len(os.sched_getaffinity(0))
        prev = _usage(server_pid, procs)
        while not stop.wait(1.0):
            cur = _usage(server_pid, procs)
            dt = cur[0] - prev[0]
            srv_pct = (
                100.0 * (cur[1] - prev[1]) / dt
                if cur[1] is not None and prev[1] is not None
                else None
            )
            gen_pct = 100.0 * (cur[2] - prev[2]) / dt
            total, idle, _ = (b - a for a, b in zip(prev[4], cur[4], strict=True))
            busy = ncpu * 100.0 * (total - idle) / max(1, total)
            prev = cur
            t_s = (clock() - start_ns) / 1e9
            if t_s < 0:
                continue
            vals = list(shared)
            s = Sample(
                t_s=t_s,
                server_cpu_pct=srv_pct,
                server_rss_mb=cur[5],
                gen_cpu_pct=gen_pct,
                gen_rss_mb=cur[3],
                other_cpu_pct=max(0.0, busy - gen_pct - (srv_pct or 0.0)),
                issued=sum(vals[0::4]),
                completed=sum(vals[1::4]),
                in_flight=sum(vals[0::4]) - sum(vals[1::4]),
                lag_p99_ms=max(vals[3::4]) / 1000.0,
                errors=sum(vals[2::4]),
            )
            samples.append(s)
            if out is not None:
                srv = (
                    f"server cpu {srv_pct:4.0f}% rss {cur[5]:6.0f} MB"
                    if srv_pct is not None and cur[5] is not None
                    else "server n/a"
                )
                print(
                    f"[{sc.name} x{workers} {t_s:6.1f}s] sent {s.issued:,} done {s.completed:,} "
                    f"in flight {s.in_flight:,} errors {s.errors} | lag p99 (worst worker) "
                    f"{s.lag_p99_ms:.1f} ms | {srv} | gen cpu {gen_pct:.0f}% | others "
                    f"{s.other_cpu_pct:.0f}%",
                    file=out,
                    flush=True,
                )

    watcher = threading.Thread(target=watch, name="watch", daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + WORKER_STARTUP_S + sc.duration_s + 120.0
        for i, conn in enumerate(conns):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"generator worker {i} sent no result in time")
            results[i] = conn.recv()
    finally:
        stop.set()
        watcher.join()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    # From the shared t = 0 (the workers' start-up is not part of the run).
    wall = (clock() - start_ns) / 1e9
    merged = OpenLoop(start_ns=start_ns, end_ns=end_ns, max_requests=sc.max_requests)
    flows: list[Flow] = []
    run: dict[str, Any] = {}
    gen_cpu = 0.0
    for res in results:
        assert res is not None
        for rpc, rows in res["records"].items():
            merged.records.setdefault(rpc, []).extend(Record(*r) for r in rows)
        merged.lag_ns.extend(res["lag_ns"])
        merged.not_sent.update(res["not_sent"])
        merged.callback_errors += res["callback_errors"]
        flows.extend(res["flows"])
        gen_cpu += res["cpu_s"]
        for k, v in res["run"].items():
            if k in ("start_ns", "end_ns", "finished_ns", "schedule_build_s"):
                run[k] = max(run.get(k, v), v)
            else:
                run[k] = run.get(k, 0) + v
    run["workers"] = workers
    run["wall_s"] = wall
    return ParallelResult(merged, samples, flows, run, gen_cpu)


def _usage(
    server_pid: int | None, procs: Sequence[Any]
) -> tuple[float, float | None, float, float, tuple[int, int, int], float | None]:
    """(wall, server CPU s, workers' CPU s, workers' RSS MB, machine jiffies, server RSS MB)."""
    srv: float | None = None
    srv_rss: float | None = None
    if server_pid is not None:
        try:
            srv = proc_cpu_s(server_pid)
            srv_rss = proc_rss_bytes(server_pid) / 2**20
        except (OSError, IndexError, ValueError):
            pass
    gen = 0.0
    rss = 0.0
    for p in procs:
        try:
            gen += proc_cpu_s(p.pid)
            rss += proc_rss_bytes(p.pid) / 2**20
        except (OSError, IndexError, ValueError, TypeError):
            pass  # a worker that already exited
    return time.perf_counter(), srv, gen, rss, machine_jiffies(), srv_rss
