"""Capacity mode: the rate each hot RPC sustains with p99 under a limit, and its CPU cost.

For each RPC the search offers a steady open-loop rate for a few seconds and judges the
step: *ok* when at least 99 % of the offered rate was answered OK, p99 stayed under the
limit and the generator kept to its schedule. The capacity is the highest ok rate.

- Reads (Ping, RecommendUnits, BatchRecommendUnits, GetUnit) go through h2load when it is
  installed: first closed loop for the ceiling, then steps at fractions of it. gRPC errors
  come from the server's metrics by code (h2load sees only HTTP status).
- Writes (UpdateLocations; CreateIncident followed by AssignUnits and a CloseIncident that
  frees the unit again, each with a fresh request_id) and, without h2load, the reads too,
  go through Python generator processes: geometric steps until two fail in a row.

Every step records the server's CPU seconds (from /proc, or from its metrics'
`process_cpu_seconds_total` for a remote target) and the generator's own, so the report
gives CPU per 1,000 requests: a figure that compares across machines. A step where the
generator could not keep to its schedule (Python: more than 1 % of sends over 5 ms late;
h2load: its thread saturated) is *generator-bound*: it does not count for the server, and
when it is the step that ended a search the run is marked invalid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing as mp
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc
import numpy as np

from dispatch_core.loadtest import h2load
from dispatch_core.loadtest.generator import FELL_BEHIND_SHARE, LATE_NS, OpenLoop, clock
from dispatch_core.loadtest.procs import machine_jiffies, proc_cpu_s
from dispatch_core.loadtest.seeding import K, recommend_requests
from dispatch_core.loadtest.target import CHANNEL_OPTIONS, Target
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.security.client import ClientCredentials
from dispatch_core.service.servicer import SERVICE_NAME
from dispatch_core.synthetic.fleet import incident_points
from dispatch_core.types import Agency, Grade

READS = ("Ping", "RecommendUnits", "BatchRecommendUnits", "GetUnit")
WRITES = ("UpdateLocations", "CreateIncident+AssignUnits")
RPCS = READS + WRITES
#: Incidents per BatchRecommendUnits request and pings per UpdateLocations request.
BATCH_QUERIES = 10
PING_BATCH = 100
#: Closed-loop fractions of the h2load ceiling tried as steady rates, lowest first. A
#: server's p99 limit is usually met well below its ceiling, hence the low first steps.
FRACTIONS = (0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0)
#: Failing steps in a row, after one that passed, that end an h2load search.
H2_PATIENCE = 2
#: h2load's one thread this busy (share of a core) was itself the limit.
H2LOAD_SATURATED = 0.9
#: The Python search: first rate, growth per step, failing steps in a row that end it.
PY_START_PER_S = 200.0
PY_FACTOR = 1.5
PY_PATIENCE = 2
#: Calls a Python worker keeps in flight before it sheds (counted, never silent).
MAX_IN_FLIGHT = 5_000


# ------------------------------------------------------------------------------- requests


def read_request(rpc: str, unit_ids: Sequence[str], i: int) -> bytes:
    """The i-th request of a read RPC, serialized (h2load repeats i = 0)."""
    if rpc == "Ping":
        return pb.PingRequest().SerializeToString()
    if rpc == "GetUnit":
        return pb.GetUnitRequest(unit_id=unit_ids[i % len(unit_ids)]).SerializeToString()
    lat, lon = incident_points(64, seed=8)
    reqs = recommend_requests(lat, lon)
    if rpc == "RecommendUnits":
        return reqs[i % len(reqs)].SerializeToString()  # type: ignore[no-any-return]
    if rpc == "BatchRecommendUnits":
        queries = [reqs[(i + j) % len(reqs)] for j in range(BATCH_QUERIES)]
        return pb.BatchRecommendUnitsRequest(queries=queries).SerializeToString()
    raise ValueError(f"not a read RPC: {rpc}")


# -------------------------------------------------------------------------------- workers


@dataclasses.dataclass
class WorkerJob:
    """One step of one Python worker: its share of the rate, from a shared t = 0."""

    rpc: str
    rate_per_s: float
    seconds: float
    start_ns: int
    step: int


def _pings(unit_ids: Sequence[str], lat: Any, lon: Any, k: int, now_ms: int) -> bytes:
    n = len(unit_ids)
    idx = [(k * PING_BATCH + j) % n for j in range(PING_BATCH)]
    # A few metres of drift each time, so every batch moves its units.
    d = 1e-5 * (k % 7)
    return pb.UpdateLocationsRequest(
        unit_ids=[unit_ids[i] for i in idx],
        lat=[float(lat[i]) + d for i in idx],
        lon=[float(lon[i]) + d for i in idx],
        time_unix_ms=[now_ms] * len(idx),
    ).SerializeToString()


class _Worker:
    """A generator process's state: its channel, its units, one open loop per step."""

    def __init__(
        self,
        target: str,
        *,
        part: int,
        unit_ids: list[str],
        lat: Any,
        lon: Any,
        prefix: str,
        creds: ClientCredentials,
    ) -> None:
        self.channel = creds.channel(target, options=CHANNEL_OPTIONS)
        self.part = part
        self.unit_ids = unit_ids
        self.lat, self.lon = lat, lon
        self.prefix = prefix
        self.position = {
            u: (float(a), float(o)) for u, a, o in zip(unit_ids, lat, lon, strict=True)
        }
        self.free = list(unit_ids)
        self.free_lock = threading.Lock()
        self.ping_k = 0
        # Bytes in, bytes out: the generator's CPU goes to sending, not to protobuf.
        self.methods = {
            rpc: self.channel.unary_unary(f"/{SERVICE_NAME}/{rpc}")
            for rpc in (*READS, "UpdateLocations", "CreateIncident", "AssignUnits", "CloseIncident")
        }

    def run(self, job: WorkerJob) -> dict[str, Any]:
        n = max(1, int(job.rate_per_s * job.seconds))
        loop = OpenLoop(
            start_ns=job.start_ns,
            end_ns=job.start_ns + int(job.seconds * 1e9),
            max_requests=4 * n + 10,
            max_in_flight=MAX_IN_FLIGHT,
        )
        times = job.start_ns + (np.arange(n) * (1e9 / job.rate_per_s)).astype(np.int64)
        loop.add_source(times, self._firer(job, loop))
        cpu0 = time.process_time()
        loop.run()
        loop.drain(10.0)
        cpu = time.process_time() - cpu0
        return {
            "cpu_s": cpu,
            "lag_ns": np.asarray(loop.lag_ns, np.int64),
            "not_sent": dict(loop.not_sent),
            "records": {
                rpc: (
                    np.array([r.done - r.intended for r in rows], np.int64),
                    Counter(r.code for r in rows),
                    np.array([r.code == "OK" for r in rows], bool),
                )
                for rpc, rows in loop.records.items()
            },
        }

    def _firer(self, job: WorkerJob, loop: OpenLoop) -> Callable[[int, int], None]:
        m = self.methods
        if job.rpc in READS:
            bodies = [read_request(job.rpc, self.unit_ids, self.part * 7919 + i) for i in range(64)]
            return lambda i, t: loop.call(job.rpc, m[job.rpc], bodies[i % 64], t)
        if job.rpc == "UpdateLocations":

            def ping(i: int, t: int) -> None:
                self.ping_k += 1
                now_ms = time.time_ns() // 1_000_000
                body = _pings(self.unit_ids, self.lat, self.lon, self.ping_k, now_ms)
                loop.call("UpdateLocations", m["UpdateLocations"], body, t)

            return ping
        return self._dispatch_firer(job, loop)

    def _dispatch_firer(self, job: WorkerJob, loop: OpenLoop) -> Callable[[int, int], None]:
        """CreateIncident, then AssignUnits of a free unit, then CloseIncident frees it."""
        m = self.methods
        prefix = f"{self.prefix}CAP-{job.step}-{self.part}-"

        def give_back(unit_id: str) -> None:
            with self.free_lock:
                self.free.append(unit_id)

        def close(incident_id: str, unit_id: str, t: int) -> None:
            req = pb.CloseIncidentRequest(request_id=uuid.uuid4().hex, incident_id=incident_id)
            loop.call(
                "CloseIncident",
                m["CloseIncident"],
                req.SerializeToString(),
                t,
                lambda fut, now: give_back(unit_id),
            )

        def assign(incident_id: str, unit_id: str, t: int) -> None:
            req = pb.AssignUnitsRequest(
                request_id=uuid.uuid4().hex, incident_id=incident_id, unit_ids=[unit_id]
            )
            # Closed whatever the answer: a refused assignment still leaves the incident open.
            loop.call(
                "AssignUnits",
                m["AssignUnits"],
                req.SerializeToString(),
                t,
                lambda fut, now: loop.at(now, lambda t3: close(incident_id, unit_id, t3)),
            )

        def fire(i: int, t: int) -> None:
            with self.free_lock:
                unit_id = self.free.pop() if self.free else None
            if unit_id is None:
                loop.not_sent["no_free_unit"] += 1
                return
            incident_id = f"{prefix}{i}"
            lat, lon = self.position[unit_id]
            create = pb.CreateIncidentRequest(
                request_id=uuid.uuid4().hex,
                incident_id=incident_id,
                grade=int(Grade.IMMEDIATE),  # type: ignore[arg-type]
                incident_type="capacity",
                location=pb.Location(lat=lat + 0.001, lon=lon),
                requirements=[
                    pb.RequirementGroup(agency=int(Agency.POLICE), count=1)  # type: ignore[arg-type]
                ],
            )

            def created(fut: grpc.Future, now: int) -> None:
                if fut.code() != grpc.StatusCode.OK:
                    give_back(unit_id)
                    return
                loop.at(now, lambda t2: assign(incident_id, unit_id, t2))

            loop.call("CreateIncident", m["CreateIncident"], create.SerializeToString(), t, created)

        return fire


def _worker_main(conn: Any, target: str, **kw: Any) -> None:
    """A generator process: runs the steps it is sent until told to stop."""
    import gc  # noqa: PLC0415

    worker = _Worker(target, **kw)
    gc.collect()
    gc.freeze()  # the send loop must not pause to collect long-lived objects
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            break
        conn.send(worker.run(job))
    worker.channel.close()
    conn.close()


class Workers:
    """Python generator processes, each with its slice of the units, fed one step at a time."""

    def __init__(
        self,
        target: str,
        n: int,
        *,
        unit_ids: list[str],
        lat: Any,
        lon: Any,
        prefix: str,
        creds: ClientCredentials,
    ) -> None:
        ctx = mp.get_context("spawn")  # grpc does not survive fork() with live channels
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        for part in range(n):
            mine = list(range(part, len(unit_ids), n))
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=_worker_main,
                args=(child, target),
                kwargs={
                    "part": part,
                    "unit_ids": [unit_ids[i] for i in mine],
                    "lat": np.asarray(lat)[mine],
                    "lon": np.asarray(lon)[mine],
                    "prefix": prefix,
                    "creds": creds,
                },
                name=f"capacity-worker-{part}",
                daemon=True,
            )
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
        # Spawned workers import for a second or more: the first step starts when all are
        # ready, so their start-up is never counted as lateness.
        for i, conn in enumerate(self.conns):
            if not conn.poll(120.0) or conn.recv() != "ready":
                self.close()
                raise RuntimeError(f"capacity worker {i} did not start")

    def __len__(self) -> int:
        return len(self.procs)

    def step(self, rpc: str, rate_per_s: float, seconds: float, step: int) -> dict[str, Any]:
        """All workers offer `rate_per_s` together; their results merged."""
        start_ns = clock() + 300_000_000  # every worker has its job before t = 0
        share = rate_per_s / len(self.procs)
        for conn in self.conns:
            conn.send(WorkerJob(rpc, share, seconds, start_ns, step))
        parts = []
        for i, conn in enumerate(self.conns):
            if not conn.poll(seconds + 60.0):
                raise RuntimeError(f"capacity worker {i} sent no result")
            parts.append(conn.recv())
        records: dict[str, Any] = {}
        for res in parts:
            for name, (lat_ns, codes, ok) in res["records"].items():
                row = records.setdefault(name, {"lat": [], "codes": Counter(), "ok": []})
                row["lat"].append(lat_ns)
                row["codes"].update(codes)
                row["ok"].append(ok)
        lag = np.concatenate([r["lag_ns"] for r in parts]) if parts else np.empty(0, np.int64)
        not_sent: Counter[str] = Counter()
        for r in parts:
            not_sent.update(r["not_sent"])
        return {
            "records": {
                name: (np.concatenate(v["lat"]), v["codes"], np.concatenate(v["ok"]))
                for name, v in records.items()
            },
            "lag_ns": lag,
            "not_sent": dict(not_sent),
            "cpu_s": sum(r["cpu_s"] for r in parts),
        }

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()


# ---------------------------------------------------------------------------------- steps


def pcts_ms(values_ms: np.ndarray[Any, Any]) -> dict[str, float | int]:
    if values_ms.size == 0:
        return {"n": 0}
    p50, p99, p999 = np.percentile(values_ms, [50, 99, 99.9])
    return {
        "n": int(values_ms.size),
        "p50": float(p50),
        "p99": float(p99),
        "p99.9": float(p999),
        "max": float(values_ms.max()),
    }


def _server_cpu(target: Target) -> float | None:
    """The server's CPU seconds so far: /proc where it runs here, else its metrics."""
    if target.pid is not None:
        try:
            return proc_cpu_s(target.pid)
        except (OSError, IndexError, ValueError):
            return None
    m = target.metrics()
    return None if m is None else m.get(("process_cpu_seconds_total", ()))


def _server_codes(target: Target, methods: Sequence[str]) -> Counter[str] | None:
    """Calls the server has answered so far, by code, for these methods (from its metrics)."""
    m = target.metrics()
    if m is None:
        return None
    out: Counter[str] = Counter()
    for (name, labels), value in m.items():
        if name != "dispatch_rpc_duration_seconds_count":
            continue
        d = dict(labels)
        method = d.get("method", "")
        if any(method == x or method.endswith(f"/{x}") for x in methods):
            out[d.get("code", "UNKNOWN")] += int(value)
    return out


def _verdict(
    *, offered: float, achieved: float, errors: int, p99: float, limit_ms: float, bound: bool
) -> str:
    if bound:
        return "generator-bound"
    if errors:
        return "errors"
    if not p99 <= limit_ms:
        return f"p99 over {limit_ms:g} ms"
    if achieved < 0.99 * offered:
        return "achieved < 99% of offered"
    return "ok"


class Search:
    """Runs the steps of every RPC against one target and keeps their rows."""

    def __init__(
        self,
        target: Target,
        *,
        unit_ids: list[str],
        available: list[int],
        lat: Any,
        lon: Any,
        prefix: str,
        step_s: float,
        limit_ms: float,
        workers: int,
        use_h2load: bool,
        workdir: Path,
        out: TextIO | None = sys.stderr,
        max_steps: int = 12,
        max_rate: float = math.inf,
    ) -> None:
        self.target = target
        self.max_rate = max_rate
        self.unit_ids = unit_ids
        self.available = available
        self.step_s = step_s
        self.limit_ms = limit_ms
        self.out = out
        self.max_steps = max_steps
        # h2load presents no client certificate: against mutual TLS, Python does the reads.
        mtls = target.creds.cert is not None
        self.h2load = h2load.find() if use_h2load and not mtls else None
        self.workdir = workdir
        av = np.asarray(available)
        self.workers = Workers(
            target.target,
            workers,
            unit_ids=[unit_ids[i] for i in available],
            lat=np.asarray(lat)[av],
            lon=np.asarray(lon)[av],
            prefix=prefix,
            creds=target.creds,
        )
        self.steps_run = 0

    def close(self) -> None:
        self.workers.close()

    def _say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def _measure(
        self, rpc: str, methods: Sequence[str], run: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Runs one step between two readings of the server's CPU and answer codes."""
        cpu0 = _server_cpu(self.target)
        codes0 = _server_codes(self.target, methods)
        machine0, wall0 = machine_jiffies(), time.perf_counter()
        row = run()
        machine1, wall = machine_jiffies(), time.perf_counter() - wall0
        cpu1 = _server_cpu(self.target)
        codes1 = _server_codes(self.target, methods)
        row["server_cpu_s"] = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
        # Cores busy with neither the server nor the generator: work sharing the machine,
        # which shows in the tails without being ours.
        total, idle, _ = (b - a for a, b in zip(machine0, machine1, strict=True))
        busy_cores = (os.cpu_count() or 1) * (total - idle) / max(1, total)
        ours = ((row["server_cpu_s"] or 0.0) if self.target.pid else 0.0) + row["generator_cpu_s"]
        row["other_cpu_cores"] = max(0.0, busy_cores - ours / max(1e-9, wall))
        if codes0 is not None and codes1 is not None:
            row["server_codes"] = {c: n for c, n in (codes1 - codes0).items() if n}
        # The CPU readings span every call the step made, h2load's warm-up included: divide
        # by the calls the server itself counted in that span where its metrics say.
        served = sum(row.get("server_codes", {}).values()) or row["requests"]
        row["server_cpu_ms_per_1000"] = (
            1e6 * row["server_cpu_s"] / served if row["server_cpu_s"] and served else None
        )
        row["generator_cpu_ms_per_1000"] = 1e6 * row["generator_cpu_s"] / served if served else None
        return row

    # -- h2load

    def _h2(self, rpc: str, rate: float | None) -> dict[str, Any]:
        assert self.h2load is not None
        body = read_request(rpc, self.unit_ids, 0)

        def run() -> dict[str, Any]:
            r = h2load.run(
                self.h2load,  # type: ignore[arg-type]
                self.target.target,
                rpc,
                body,
                seconds=self.step_s,
                rate_per_s=rate,
                workdir=self.workdir,
                tls=self.target.creds.ca is not None,
                token=self.target.creds.token,
            )
            return {
                "offered_per_s": rate,
                "requests": r.requests,
                "achieved_per_s": r.achieved_per_s,
                "http_errors": r.non_200,
                "latency_ms": pcts_ms(r.latency_ms),
                "generator": "h2load",
                "generator_cpu_s": r.cpu_s,
                "generator_busy": r.cpu_s / self.step_s,
                "seconds": r.seconds,
            }

        row = self._measure(rpc, [rpc], run)
        codes = row.get("server_codes")
        # CANCELLED is always the client's doing: h2load cancels what is in flight when its
        # duration ends. Counted apart, not as the server's error.
        row["cancelled_by_generator"] = codes.get("CANCELLED", 0) if codes else 0
        row["errors"] = row["http_errors"] + (
            sum(n for c, n in codes.items() if c not in ("OK", "CANCELLED")) if codes else 0
        )
        if codes is None:
            row["note"] = "no metrics URL: gRPC errors inside HTTP 200 were not counted"
        return row

    def _h2load_search(self, rpc: str) -> dict[str, Any]:
        ceiling = self._h2(rpc, None)
        top = ceiling["achieved_per_s"]
        self._say(
            f"[capacity {rpc}] closed loop (h2load, {h2load.CLIENTS}x{h2load.STREAMS} streams):"
            f" {top:,.0f}/s, p99 {ceiling['latency_ms'].get('p99', math.nan):.2f} ms"
        )
        steps: list[dict[str, Any]] = []
        passed, failed = False, 0
        for f in FRACTIONS:
            if passed and failed >= H2_PATIENCE:
                break
            rate = float(max(1, round(min(top, self.max_rate) * f)))
            row = self._h2(rpc, rate)
            bound = row["generator_busy"] >= H2LOAD_SATURATED
            row["verdict"] = _verdict(
                offered=rate,
                achieved=row["achieved_per_s"],
                errors=row["errors"],
                p99=row["latency_ms"].get("p99", math.inf),
                limit_ms=self.limit_ms,
                bound=bound,
            )
            steps.append(row)
            self._step_line(rpc, row)
            ok = row["verdict"] == "ok"
            passed, failed = passed or ok, 0 if ok else failed + 1
        return {"generator": "h2load", "closed_loop": ceiling, "steps": steps}

    # -- Python workers

    def _py(self, rpc: str, rate: float) -> dict[str, Any]:
        names = ["CreateIncident", "AssignUnits", "CloseIncident"] if "+" in rpc else [rpc]
        step = self.steps_run
        self.steps_run += 1

        def run() -> dict[str, Any]:
            res = self.workers.step(rpc, rate, self.step_s, step)
            recs = res["records"]
            lat_all, ok_all = [], []
            codes_all: Counter[str] = Counter()
            per: dict[str, Any] = {}
            for name in names:
                if name not in recs:
                    continue
                lat_ns, codes, ok = recs[name]
                lat_all.append(lat_ns[ok])
                ok_all.append(ok)
                codes_all.update(codes)
                per[name] = {
                    "requests": int(ok.size),
                    "codes": dict(codes),
                    "latency_ms": pcts_ms(lat_ns[ok] / 1e6),
                }
            lag = res["lag_ns"]
            late = float((lag > LATE_NS).mean()) if lag.size else 0.0
            first = recs.get(names[0])
            done_first = int(first[2].sum()) if first is not None else 0
            requests = sum(int(o.size) for o in ok_all)
            return {
                "offered_per_s": rate,
                "requests": requests,
                # For the dispatch pair the rate is of whole operations: OK CreateIncidents
                # whose AssignUnits also answered OK.
                "achieved_per_s": (
                    min(
                        done_first,
                        int(recs["AssignUnits"][2].sum()) if "AssignUnits" in recs else 0,
                    )
                    if "+" in rpc
                    else done_first
                )
                / self.step_s,
                "codes": dict(codes_all),
                "errors": sum(n for c, n in codes_all.items() if c != "OK"),
                "latency_ms": pcts_ms(np.concatenate(lat_all) / 1e6 if lat_all else np.empty(0)),
                "per_rpc": per,
                "generator": f"python x{len(self.workers)}",
                "generator_cpu_s": res["cpu_s"],
                "late_share": late,
                "not_sent": res["not_sent"],
                "seconds": self.step_s,
            }

        row = self._measure(rpc, names, run)
        shed = sum(n for k, n in row["not_sent"].items() if k != "due_after_end")
        row["verdict"] = _verdict(
            offered=rate,
            achieved=row["achieved_per_s"],
            errors=row["errors"],
            p99=row["latency_ms"].get("p99", math.inf),
            limit_ms=self.limit_ms,
            bound=row["late_share"] > FELL_BEHIND_SHARE or shed > 0,
        )
        self._step_line(rpc, row)
        return row

    def _python_search(self, rpc: str) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        rate, failed = PY_START_PER_S, 0
        for _ in range(self.max_steps):
            if rate > self.max_rate:
                break
            row = self._py(rpc, float(round(rate)))
            steps.append(row)
            if row["verdict"] == "generator-bound":
                break
            failed = failed + 1 if row["verdict"] != "ok" else 0
            if failed >= PY_PATIENCE:
                break
            rate *= PY_FACTOR
        return {"generator": f"python x{len(self.workers)}", "steps": steps}

    def _step_line(self, rpc: str, row: dict[str, Any]) -> None:
        lat = row["latency_ms"]
        cpu = row.get("server_cpu_ms_per_1000")
        self._say(
            f"[capacity {rpc}] offered {row['offered_per_s']:,.0f}/s achieved "
            f"{row['achieved_per_s']:,.0f}/s p99 {lat.get('p99', math.nan):.2f} ms errors "
            f"{row['errors']} server CPU {cpu if cpu is None else round(cpu, 1)} ms/1000: "
            f"{row['verdict']}"
        )

    def rpc(self, rpc: str) -> dict[str, Any]:
        """The search of one RPC, with its capacity and the step it was found at."""
        if rpc in READS and self.h2load is not None:
            found = self._h2load_search(rpc)
        else:
            found = self._python_search(rpc)
        steps = found["steps"]
        good = [s for s in steps if s["verdict"] == "ok"]
        best = max(good, key=lambda s: s["offered_per_s"]) if good else None
        last = steps[-1] if steps else None
        # The generator ended the search before the server failed: the figure is a floor.
        bound = (
            last is not None
            and last["verdict"] == "generator-bound"
            and (best is None or last["offered_per_s"] > best["offered_per_s"])
        )
        found.update(
            capacity_per_s=best["offered_per_s"] if best else None,
            at_capacity=best,
            generator_bound=bound,
        )
        return found


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Capacity and CPU of each RPC against Ping's, and the goals of the issue."""

    def cpu_of(r: dict[str, Any], key: str = "server_cpu_ms_per_1000") -> float | None:
        # The median over every step: a request's CPU cost barely depends on the rate, and
        # the median holds when no step met the p99 limit.
        vals = [s[key] for s in r.get("steps", []) if s.get(key)]
        return float(np.median(vals)) if vals else None

    ping = results.get("Ping", {})
    ping_cap = ping.get("capacity_per_s")
    ping_cpu = cpu_of(ping)
    rows = {}
    for rpc, r in results.items():
        at = r.get("at_capacity") or {}
        cap, cpu = r.get("capacity_per_s"), cpu_of(r)
        rows[rpc] = {
            "capacity_per_s": cap,
            "closed_loop_per_s": (r.get("closed_loop") or {}).get("achieved_per_s"),
            "p99_ms_at_capacity": (at.get("latency_ms") or {}).get("p99"),
            "server_cpu_ms_per_1000": cpu,
            "generator_cpu_ms_per_1000": cpu_of(r, "generator_cpu_ms_per_1000"),
            "other_cpu_cores": cpu_of(r, "other_cpu_cores"),
            "generator": r.get("generator"),
            "generator_bound": r.get("generator_bound"),
            "capacity_over_ping": cap / ping_cap if cap and ping_cap else None,
            "cpu_over_ping": cpu / ping_cpu if cpu and ping_cpu else None,
        }
    rec = rows.get("RecommendUnits", {})
    goals = [
        {
            "goal": "RecommendUnits capacity >= 80% of Ping's",
            "measured": rec.get("capacity_over_ping"),
            "met": (rec.get("capacity_over_ping") or 0) >= 0.8,
        },
        {
            "goal": "server CPU per RecommendUnits <= 1.3x Ping's",
            "measured": rec.get("cpu_over_ping"),
            "met": rec.get("cpu_over_ping") is not None and rec["cpu_over_ping"] <= 1.3,
        },
    ]
    return {"rpcs": rows, "goals": goals}


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["summary"]

    def f(x: Any, d: int = 0) -> str:
        return "n/a" if x is None else f"{x:,.{d}f}"

    lines = [
        "# Capacity per RPC",
        "",
        f"Each RPC alone at steady open-loop rates, {report['step_s']:g} s per step; a step is "
        f"ok when >= 99% of the offered rate was answered OK with p99 <= "
        f"{report['p99_limit_ms']:g} ms and the generator kept to its schedule. "
        f"{report['units']:,} units; server: {report['server']['how']}; journal: "
        f"{report['server']['journal']}. {m['nproc']} cores ({m['cpu_model']}), "
        f"{m['time_utc']}, dispatch_core {m['dispatch_core']}"
        + (f", commit {m['commit']}" if m.get("commit") else "")
        + ".",
        "",
        f"**Run {'VALID' if report['valid'] else 'INVALID: ' + report['invalid_because']}.**",
        "",
        "| RPC | capacity/s | x Ping | closed loop/s | p99 ms at capacity | server CPU ms "
        "per 1,000 | x Ping | generator CPU ms per 1,000 | other processes (cores) "
        "| generator |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rpc, r in s["rpcs"].items():
        floor = " (generator-bound: a floor)" if r["generator_bound"] else ""
        lines.append(
            f"| {rpc} | {f(r['capacity_per_s'])}{floor} | {f(r['capacity_over_ping'], 2)} | "
            f"{f(r['closed_loop_per_s'])} | {f(r['p99_ms_at_capacity'], 2)} | "
            f"{f(r['server_cpu_ms_per_1000'], 1)} | {f(r['cpu_over_ping'], 2)} | "
            f"{f(r['generator_cpu_ms_per_1000'], 1)} | {f(r['other_cpu_cores'], 2)} | "
            f"{r['generator']} |"
        )
    lines += ["", "Goals:", ""]
    for g in s["goals"]:
        lines.append(f"- {g['goal']}: {f(g['measured'], 2)} ({'met' if g['met'] else 'NOT met'})")
    lines += [
        "",
        f"BatchRecommendUnits carries {BATCH_QUERIES} queries per request and UpdateLocations "
        f"{PING_BATCH} pings; CreateIncident+AssignUnits counts whole operations (each also "
        "closes its incident to free the unit, so three journal entries). Every step is in "
        "report.json.",
    ]
    return "\n".join(lines) + "\n"


def run_capacity(
    target: Target,
    *,
    unit_ids: list[str],
    available: list[int],
    lat: Any,
    lon: Any,
    prefix: str,
    rpcs: Sequence[str],
    step_s: float,
    limit_ms: float,
    workers: int,
    use_h2load: bool,
    workdir: Path,
    out: TextIO | None,
    max_rate: float = math.inf,
) -> dict[str, Any]:
    """Every RPC's search; the results and whether the run is valid."""
    search = Search(
        target,
        unit_ids=unit_ids,
        available=available,
        lat=lat,
        lon=lon,
        prefix=prefix,
        step_s=step_s,
        limit_ms=limit_ms,
        workers=workers,
        use_h2load=use_h2load,
        workdir=workdir,
        out=out,
        max_rate=max_rate,
    )
    try:
        results = {rpc: search.rpc(rpc) for rpc in rpcs}
    finally:
        search.close()
    bound = [rpc for rpc, r in results.items() if r["generator_bound"]]
    return {
        "results": results,
        "h2load": search.h2load,
        "valid": not bound,
        "invalid_because": (
            f"the generator, not the server, ended the search of {', '.join(bound)}"
            if bound
            else ""
        ),
        "generator_pid": os.getpid(),
    }


#: Named so the report states the RPC set and batch sizes it was run with.
SETTINGS = {"k": K, "batch_queries": BATCH_QUERIES, "ping_batch": PING_BATCH}
