"""gRPC benchmarks of the dispatch-core service, each beside its baseline in the same run.

    python -m loadtests.bench_grpc [--units 10000,100000] [--quick] [--out bench-results]

Per fleet size it starts the real server (`dispatch-core serve`) as a subprocess on a free
port with a temporary data directory, seeds a London fleet over gRPC (not timed), loads the
identical fleet into a `UnitIndex` in this process, then measures:

1. closed loop, one client, unary: RecommendUnits vs the no-op Ping on the same server
   (calls interleaved one for one) and vs the same ranking in-process (`UnitIndex.rank`,
   and the servicer called directly: validation + rank + protobuf, without gRPC);
2. BatchRecommendUnits per incident for batches of 100 and 1000 vs one RecommendUnits;
3. open loop: RecommendUnits offered at a fixed rate, latency from the intended send time
   (no coordinated omission), with client and server CPU;
4. UpdateLocations (unary) and StreamLocations (client streaming) in pings/s with columnar
   batches of 1k and 10k pings, with the applied counts the server returned, plus the
   client's protobuf build + serialization cost per batch and the server's per-batch Python
   path measured in-process, to show who the bottleneck is.

Writes bench-results/grpc.json (every figure) and bench-results/grpc.md (the tables).
Timings only: nothing here passes or fails (docs/architecture.md, "Performance: how we measure").
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from dispatch_core._core import DispatchCore, UnitIndex
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.loadtest.procs import machine_info, machine_jiffies, proc_cpu_s
from dispatch_core.loadtest.seeding import (
    K,
    grpc_reachable_statuses,
    recommend_requests,
    request_id,
    seed_server,
)
from dispatch_core.loadtest.server import SNAPSHOT_INTERVAL_S, Server
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.service.servicer import SERVICE_NAME, DispatchServicer
from dispatch_core.synthetic.fleet import (
    Fleet,
    incident_points,
    load_into,
    make_fleet,
    seed_pipeline,
)
from dispatch_core.types import Agency, Grade, UnitStatus

#: Same seeds as the ranking benchmarks (benchmarks/README.md), so the fleets are the same.
FLEET_SEED = 42
POINTS_SEED = 8
N_POINTS = 4096
BATCH_SIZES = (100, 1000)
PING_BATCHES = (1_000, 10_000)
OPEN_LOOP_RATE = 1_000.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
UPDATE_LOCATIONS = f"/{SERVICE_NAME}/UpdateLocations"
STREAM_LOCATIONS = f"/{SERVICE_NAME}/StreamLocations"

#: What the journalled server logs at INFO after each snapshot (durability.Snapshotter).

# The goals from the brief, reported beside the figures (never asserted).
GOAL_RECOMMEND_OVER_PING = 1.25
GOAL_OPEN_LOOP_P99_MS = 2.0
GOAL_PINGS_PER_S = 2_000_000.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How long each measurement runs."""

    closed_s: float
    inproc_s: float
    batch_s: float
    open_s: float
    loc_s: float
    warmup: int

    @staticmethod
    def quick() -> Settings:
        return Settings(closed_s=1.0, inproc_s=0.3, batch_s=0.8, open_s=3.0, loc_s=1.0, warmup=50)

    @staticmethod
    def full() -> Settings:
        return Settings(closed_s=3.0, inproc_s=1.0, batch_s=2.0, open_s=10.0, loc_s=3.0, warmup=200)


# --------------------------------------------------------------------------- small helpers


def dist_us(samples_ns: npt.NDArray[np.int64] | Sequence[int]) -> dict[str, float | int]:
    """p50/p99/p99.9/max/mean in microseconds of per-call samples in nanoseconds."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    if us.size == 0:
        return {"n": 0}
    p50, p99, p999 = np.percentile(us, [50, 99, 99.9])
    return {
        "p50_us": float(p50),
        "p99_us": float(p99),
        "p999_us": float(p999),
        "max_us": float(us.max()),
        "mean_us": float(us.mean()),
        "n": int(us.size),
    }


def ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 and math.isfinite(num) and math.isfinite(den) else None


class CpuMeter:
    """Client (this process) and server CPU over a block, as seconds and % of one core."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.result: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._wall = time.perf_counter()
        self._client = time.process_time()
        self._server = proc_cpu_s(self.server_pid)
        self._machine = machine_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        client = time.process_time() - self._client
        server = proc_cpu_s(self.server_pid) - self._server
        total, idle, steal = (b - a for a, b in zip(self._machine, machine_jiffies(), strict=True))
        ncpu = len(os.sched_getaffinity(0))
        self.result = {
            # Whole machine, % of all its cores: what else ran (steal: the hypervisor).
            "machine_busy_pct": 100.0 * (total - idle) / max(1, total),
            "machine_steal_pct": 100.0 * steal / max(1, total),
            "other_processes_cpu_pct_of_core": max(
                0.0,
                ncpu * 100.0 * (total - idle) / max(1, total) - 100.0 * (client + server) / wall,
            ),
            "wall_s": wall,
            "client_cpu_s": client,
            "server_cpu_s": server,
            "client_cpu_pct": 100.0 * client / wall,
            "server_cpu_pct": 100.0 * server / wall,
        }


class _NoContext:
    """Stands in for grpc.ServicerContext when the servicer is called in-process.

    The servicer only touches its context on an error; a benchmark call never errs.
    """

    def is_active(self) -> bool:
        return True

    def abort_with_status(self, status: object) -> None:
        raise RuntimeError(f"in-process servicer call failed: {status}")


def rank_args(now_ms: int) -> dict[str, Any]:
    """The keyword arguments the engine passes to rank for the requests above."""
    return {
        "now_ms": now_ms,
        "k": K,
        "grade": int(Grade.IMMEDIATE),
        "required": (),
        "agencies": (int(Agency.POLICE),),
        "statuses": (int(UnitStatus.AVAILABLE),),
        "unit_types": None,
        "area": None,
    }


# ----------------------------------------------------------------- 1. closed loop, unary


def closed_loop(
    stub: pb_grpc.DispatchServiceStub,
    index: UnitIndex,
    *,
    server_pid: int,
    servicer: DispatchServicer,
    reqs: list[Any],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    st: Settings,
) -> dict[str, Any]:
    ping, rec = stub.Ping, stub.RecommendUnits
    ping_req = pb.PingRequest()
    m = len(reqs)
    for i in range(st.warmup):
        ping(ping_req)
        rec(reqs[i % m])
    clock = time.perf_counter_ns
    ping_ns: list[int] = []
    rec_ns: list[int] = []
    deadline = clock() + int(st.closed_s * 1e9)
    i = 0
    # Interleaved one for one, so both see the same machine at the same moments.
    with CpuMeter(server_pid) as cpu:
        while clock() < deadline:
            t0 = clock()
            ping(ping_req)
            t1 = clock()
            rec(reqs[i % m])
            t2 = clock()
            ping_ns.append(t1 - t0)
            rec_ns.append(t2 - t1)
            i += 1

    rank = index.rank
    now_ms = time.time_ns() // 1_000_000
    kw = rank_args(now_ms)
    for j in range(st.warmup):
        rank(float(lat[j % m]), float(lon[j % m]), **kw)
    rank_ns: list[int] = []
    deadline = clock() + int(st.inproc_s * 1e9)
    j = 0
    while clock() < deadline:
        a, o = float(lat[j % m]), float(lon[j % m])
        t0 = clock()
        rank(a, o, **kw)
        rank_ns.append(clock() - t0)
        j += 1

    ctx: Any = _NoContext()
    call = servicer.unary("RecommendUnits")
    raw = [r.SerializeToString() for r in reqs]
    for j in range(st.warmup):
        call(raw[j % m], ctx)
    svc_ns: list[int] = []
    deadline = clock() + int(st.inproc_s * 1e9)
    j = 0
    while clock() < deadline:
        r = raw[j % m]
        t0 = clock()
        call(r, ctx)
        svc_ns.append(clock() - t0)
        j += 1

    # The same two in-process calls paced like the gRPC loop: a sleep of one Ping round trip
    # before each. A core that idles between calls runs the next one cold (caches, clock,
    # power states); the server sees exactly that between closed-loop requests.
    gap_s = float(np.median(ping_ns)) / 1e9
    rank_paced: list[int] = []
    svc_paced: list[int] = []
    deadline = clock() + int(st.inproc_s * 1e9)
    j = 0
    while clock() < deadline or j < 100:
        a, o = float(lat[j % m]), float(lon[j % m])
        time.sleep(gap_s)
        t0 = clock()
        rank(a, o, **kw)
        rank_paced.append(clock() - t0)
        r = raw[j % m]
        time.sleep(gap_s)
        t0 = clock()
        call(r, ctx)
        svc_paced.append(clock() - t0)
        j += 1

    out: dict[str, Any] = {
        "ping_grpc": dist_us(ping_ns),
        "recommend_grpc": dist_us(rec_ns),
        "servicer_inprocess": dist_us(svc_ns),
        "rank_inprocess": dist_us(rank_ns),
        "servicer_inprocess_paced": dist_us(svc_paced),
        "rank_inprocess_paced": dist_us(rank_paced),
        "paced_gap_us": gap_s * 1e6,
        "grpc_loop_cpu": cpu.result,
        "request_bytes": reqs[0].ByteSize(),
        "response_bytes": rec(reqs[0]).ByteSize(),
    }
    r50, p50 = out["recommend_grpc"]["p50_us"], out["ping_grpc"]["p50_us"]
    out["recommend_over_ping_p50"] = ratio(r50, p50)
    out["recommend_over_ping_p99"] = ratio(
        out["recommend_grpc"]["p99_us"], out["ping_grpc"]["p99_us"]
    )
    out["recommend_over_rank_p50"] = ratio(r50, out["rank_inprocess"]["p50_us"])
    out["recommend_over_servicer_p50"] = ratio(r50, out["servicer_inprocess"]["p50_us"])
    out["recommend_minus_ping_p50_us"] = r50 - p50
    out["goal_recommend_over_ping_p50"] = GOAL_RECOMMEND_OVER_PING
    out["goal_met"] = (out["recommend_over_ping_p50"] or math.inf) <= GOAL_RECOMMEND_OVER_PING
    return out


def agreement(
    stub: pb_grpc.DispatchServiceStub,
    index: UnitIndex,
    *,
    reqs: list[Any],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    checks: int = 200,
) -> float:
    """Share of queries where gRPC and the in-process rank return the same top-5 unit set."""
    same = 0
    for i in range(checks):
        grpc_ids = {c.unit_id for c in stub.RecommendUnits(reqs[i]).groups[0].candidates}
        kw = rank_args(time.time_ns() // 1_000_000)
        local_ids = {c.unit_id for c in index.rank(float(lat[i]), float(lon[i]), **kw)}
        same += grpc_ids == local_ids
    return same / checks


# ------------------------------------------------------------------------ 2. batch calls


def batch_recommend(
    stub: pb_grpc.DispatchServiceStub,
    index: UnitIndex,
    *,
    reqs: list[Any],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    single_p50_us: float,
    st: Settings,
) -> list[dict[str, Any]]:
    rows = []
    clock = time.perf_counter_ns
    for size in BATCH_SIZES:
        req = pb.BatchRecommendUnitsRequest(queries=reqs[:size])
        reply = stub.BatchRecommendUnits(req)  # warm-up, and a check of the answer's shape
        if len(reply.results) != size:
            raise SystemExit(f"BatchRecommendUnits answered {len(reply.results)} of {size}")
        samples: list[int] = []
        deadline = clock() + int(st.batch_s * 1e9)
        while clock() < deadline or len(samples) < 3:
            t0 = clock()
            stub.BatchRecommendUnits(req)
            samples.append(clock() - t0)
        call = dist_us(samples)
        kw = rank_args(time.time_ns() // 1_000_000)
        core: list[int] = []
        for _ in range(5):
            t0 = clock()
            index.rank_batch(lat[:size], lon[:size], **kw)
            core.append(clock() - t0)
        per = call["p50_us"] / size
        rows.append(
            {
                "batch": size,
                "call": call,
                "request_bytes": req.ByteSize(),
                "response_bytes": reply.ByteSize(),
                "per_incident_p50_us": per,
                "per_incident_p99_us": call["p99_us"] / size,
                "single_recommend_p50_us": single_p50_us,
                "single_over_batch_per_incident": ratio(single_p50_us, per),
                "core_rank_batch_per_query_us": float(np.median(core)) / 1e3 / size,
            }
        )
    return rows


# --------------------------------------------------------------------------- 3. open loop


def open_loop(
    method: Any, reqs: Sequence[Any], server_pid: int, seconds: float, *, rpc: str
) -> dict[str, Any]:
    """`method` (a stub's unary callable) offered at OPEN_LOOP_RATE requests/s.

    One thread sends on schedule with `method.future` and never waits for an answer; each
    latency runs from the intended send time to the completion callback, so a stall on
    either side shows up in full instead of silently lowering the offered rate.
    """
    rate = OPEN_LOOP_RATE
    n = int(rate * seconds)
    period_ns = int(1e9 / rate)
    m = len(reqs)
    latency = np.full(n, -1, dtype=np.int64)
    send_lag = np.zeros(n, dtype=np.int64)
    sent_at = np.zeros(n, dtype=np.int64)
    done_at = np.zeros(n, dtype=np.int64)
    errors: list[str] = []
    remaining = [n]
    lock = threading.Lock()
    all_done = threading.Event()
    clock = time.perf_counter_ns
    future = method.future

    def finished(i: int, intended: int, fut: grpc.Future) -> None:
        now = clock()
        latency[i] = now - intended
        done_at[i] = now
        if fut.exception() is not None:
            errors.append(str(fut.code()))
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                all_done.set()

    for i in range(200):  # warm-up outside the schedule
        method(reqs[i % m])
    with CpuMeter(server_pid) as cpu:
        t0 = clock() + 5_000_000
        for i in range(n):
            intended = t0 + i * period_ns
            now = clock()
            if intended > now:
                time.sleep((intended - now) / 1e9)
                now = clock()
            send_lag[i] = now - intended
            sent_at[i] = now
            future(reqs[i % m]).add_done_callback(functools.partial(finished, i, intended))
        last_send = clock()
        completed = all_done.wait(timeout=60.0)
    lat_done = latency[latency >= 0]
    out: dict[str, Any] = {
        "rpc": rpc,
        "offered_rate_per_s": rate,
        "seconds": seconds,
        "requests": n,
        "completed": int(lat_done.size),
        "all_completed": completed,
        "errors": len(errors),
        "error_codes": sorted(set(errors)),
        "latency": dist_us(lat_done),
        # From the actual send instead: what the client's own lateness hides or adds.
        "latency_from_send": dist_us((done_at - sent_at)[latency >= 0]),
        "send_rate_per_s": n / ((last_send - t0) / 1e9),
        "achieved_rate_per_s": lat_done.size / ((int(done_at.max()) - t0) / 1e9),
        "send_lag": dist_us(send_lag),
        "sends_late_over_1ms": int((send_lag > 1_000_000).sum()),
        "fell_behind": bool((send_lag > 1_000_000).mean() > 0.01),
        "cpu": cpu.result,
        "goal_p99_ms": GOAL_OPEN_LOOP_P99_MS,
    }
    out["goal_met"] = bool(
        completed and not errors and out["latency"]["p99_us"] <= GOAL_OPEN_LOOP_P99_MS * 1e3
    )
    return out


# --------------------------------------------------------------------------- 4. locations


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class LocationFeed:
    """An endless supply of fresh, pre-serialized columnar location batches.

    Batch j covers units [j*B, (j+1)*B) mod n, moved by a few metres (alternating offsets so
    every unit keeps moving); every batch is stamped one millisecond later than the one
    before, so nothing is stale when batches arrive in order. The unit_ids/lat/lon part of
    each template is serialized once; the time column (field 4, packed varints, all equal
    within a batch) is appended as raw bytes, since two serialized messages concatenated
    parse as their merge. The client therefore spends almost nothing per batch and the
    measurement is of the transport and the server; what a client building each batch
    from NumPy would pay is measured on its own (`serialization_cost`).
    """

    TIME_TAG = bytes([(4 << 3) | 2])

    def __init__(self, fleet: Fleet, batch: int, first_ms: int) -> None:
        n = len(fleet)
        self.batch = batch
        self.next_ms = first_ms
        self.templates: list[bytes] = []
        self.arrays: list[tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
        rows = max(1, math.ceil(n / batch))
        for variant in range(2):
            step = 1e-4 if variant else -1e-4  # about 11 m north/south, 7 m east/west
            for j in range(rows):
                idx = (j * batch + np.arange(batch)) % n
                ids = [fleet.ids[int(i)] for i in idx]
                lat = fleet.lat[idx] + step
                lon = fleet.lon[idx] - step
                self.arrays.append((ids, lat, lon))
                self.templates.append(
                    pb.UpdateLocationsRequest(
                        unit_ids=ids, lat=lat.tolist(), lon=lon.tolist()
                    ).SerializeToString()
                )
        self._j = 0

    def next(self) -> bytes:
        t = self.next_ms
        self.next_ms += 1
        body = _varint(t) * self.batch
        template = self.templates[self._j % len(self.templates)]
        self._j += 1
        return template + self.TIME_TAG + _varint(len(body)) + body

    def check(self) -> None:
        """The raw bytes parse as the batch they claim to be."""
        raw = self.next()
        msg = pb.UpdateLocationsRequest.FromString(raw)
        ids, lat, _ = self.arrays[(self._j - 1) % len(self.arrays)]
        if list(msg.unit_ids) != ids or list(msg.lat) != lat.tolist():
            raise SystemExit("LocationFeed: a template does not round-trip")
        if list(msg.time_unix_ms) != [self.next_ms - 1] * self.batch:
            raise SystemExit("LocationFeed: the time column does not round-trip")


def _sum_replies(replies: Sequence[Any]) -> dict[str, int]:
    keys = ("applied", "skipped_unknown_unit", "skipped_bad_coordinate", "skipped_stale", "batches")
    return {k: int(sum(getattr(r, k) for r in replies)) for k in keys}


def locations_unary(
    channel: grpc.Channel, feed: LocationFeed, server_pid: int, seconds: float, window: int
) -> dict[str, Any]:
    call = channel.unary_unary(
        UPDATE_LOCATIONS,
        request_serializer=None,  # the feed hands over serialized bytes
        response_deserializer=pb.UpdateLocationsResponse.FromString,
    )
    for _ in range(3):
        call(feed.next())
    replies: list[Any] = []
    pending: deque[grpc.Future] = deque()
    sent = 0
    with CpuMeter(server_pid) as cpu:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            if len(pending) >= window:
                replies.append(pending.popleft().result())
            pending.append(call.future(feed.next()))
            sent += feed.batch
        replies.extend(f.result() for f in pending)
    totals = _sum_replies(replies)
    wall = cpu.result["wall_s"]
    return {
        "rpc": "UpdateLocations",
        "batch": feed.batch,
        "in_flight": window,
        "pings_sent": sent,
        **totals,
        "pings_per_s": sent / wall,
        "applied_per_s": totals["applied"] / wall,
        "cpu": cpu.result,
    }


def locations_stream(
    channel: grpc.Channel, feed: LocationFeed, server_pid: int, seconds: float
) -> dict[str, Any]:
    call = channel.stream_unary(
        STREAM_LOCATIONS,
        request_serializer=None,
        response_deserializer=pb.StreamLocationsResponse.FromString,
    )
    call(iter([feed.next() for _ in range(3)]))  # warm-up
    sent = [0]

    def batches(deadline: float) -> Iterator[bytes]:
        while time.perf_counter() < deadline:
            sent[0] += feed.batch
            yield feed.next()

    with CpuMeter(server_pid) as cpu:
        reply = call(batches(time.perf_counter() + seconds))
    totals = _sum_replies([reply])
    wall = cpu.result["wall_s"]
    return {
        "rpc": "StreamLocations",
        "batch": feed.batch,
        "in_flight": 1,
        "pings_sent": sent[0],
        **totals,
        "pings_per_s": sent[0] / wall,
        "applied_per_s": totals["applied"] / wall,
        "cpu": cpu.result,
    }


def serialization_cost(feed: LocationFeed, reps: int = 20) -> dict[str, Any]:
    """What a client pays per batch to build the message from NumPy columns and encode it."""
    ids, lat, lon = feed.arrays[0]
    times = np.full(feed.batch, feed.next_ms, dtype=np.int64)
    build: list[int] = []
    encode: list[int] = []
    decode: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(reps):
        t0 = clock()
        msg = pb.UpdateLocationsRequest(
            unit_ids=ids, lat=lat.tolist(), lon=lon.tolist(), time_unix_ms=times.tolist()
        )
        t1 = clock()
        raw = msg.SerializeToString()
        t2 = clock()
        pb.UpdateLocationsRequest.FromString(raw)
        t3 = clock()
        build.append(t1 - t0)
        encode.append(t2 - t1)
        decode.append(t3 - t2)
    b, e = float(np.median(build)) / 1e3, float(np.median(encode)) / 1e3
    return {
        "batch": feed.batch,
        "bytes": len(raw),
        "build_from_numpy_us": b,
        "serialize_us": e,
        "client_total_us": b + e,
        "client_limit_pings_per_s": feed.batch / ((b + e) / 1e6),
        "parse_us": float(np.median(decode)) / 1e3,
    }


def server_path_inprocess(
    servicer: DispatchServicer, feed: LocationFeed, reps: int = 20
) -> dict[str, Any]:
    """The server's per-batch Python work without gRPC: parse + validate + apply."""
    ctx: Any = _NoContext()
    samples: list[int] = []
    applied = 0
    clock = time.perf_counter_ns
    for _ in range(reps):
        raw = feed.next()
        t0 = clock()
        reply = servicer.unary("UpdateLocations")(raw, ctx)
        samples.append(clock() - t0)
        applied += pb.UpdateLocationsResponse.FromString(reply).applied
    per = float(np.median(samples)) / 1e3
    return {
        "batch": feed.batch,
        "per_batch_us": per,
        "pings_per_s": feed.batch / (per / 1e6),
        "applied": applied,
        "pings": reps * feed.batch,
    }


# ------------------------------------------------------------------- 5. snapshot stall


def snapshot_stall(
    stub: pb_grpc.DispatchServiceStub,
    server: Server,
    unit_id: str,
    seconds: float = SNAPSHOT_INTERVAL_S + 4.0,
) -> dict[str, Any]:
    """Closed-loop Pings while one journalled command makes the server snapshot.

    The command is an UNAVAILABLE -> OFF_DUTY change of a unit no ranking can see. The
    snapshot follows within the server's snapshot interval; what the Pings see while it is
    written is what every client of a journalled server sees every `--snapshot-every`
    commands or `--snapshot-interval` seconds under real traffic.
    """
    before = len(server.snapshots())
    ping, req = stub.Ping, pb.PingRequest()
    clock = time.perf_counter_ns
    samples: list[int] = []
    start = clock()
    sent = False
    while clock() - start < seconds * 1e9:
        if not sent and clock() - start > 0.5e9:
            stub.SetUnitStatus(
                pb.SetUnitStatusRequest(
                    request_id=request_id(),
                    unit_id=unit_id,
                    status=int(UnitStatus.OFF_DUTY),  # type: ignore[arg-type]
                )
            )
            sent = True
        t0 = clock()
        ping(req)
        samples.append(clock() - t0)
    snaps = server.snapshots()[before:]
    return {
        "ping": dist_us(samples),
        "snapshots": snaps,
        "snapshot_s": snaps[-1][1] if snaps else None,
        "seconds": seconds,
    }


# -------------------------------------------------------------------------------- driver


def bench_size(n: int, st: Settings, workdir: Path) -> dict[str, Any]:
    print(f"\n== {n:,} units", flush=True)
    fleet = make_fleet(n, seed=FLEET_SEED)
    lat, lon = incident_points(N_POINTS, seed=POINTS_SEED)
    reqs = recommend_requests(lat, lon)
    seed_ms = time.time_ns() // 1_000_000

    reachable = dataclasses.replace(fleet, status=grpc_reachable_statuses(fleet))
    index = UnitIndex()
    load_into(index, reachable, seed_ms)
    pipeline = Pipeline(DispatchCore())
    seed_pipeline(pipeline, reachable, seed_ms)
    servicer = DispatchServicer(pipeline)

    server = Server(workdir)
    result: dict[str, Any] = {"units": n}
    try:
        channel = grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS)
        stub = pb_grpc.DispatchServiceStub(channel)  # type: ignore[no-untyped-call]
        result["server_start_s"] = server.wait_serving(channel)
        result["server_pid"] = server.pid
        result["seeding"] = seed_server(stub, fleet, seed_ms)
        s = result["seeding"]
        print(
            f"seeded {n:,} units ({s['available']:,} AVAILABLE) over gRPC: upsert "
            f"{s['upsert_s']:.1f} s, status {s['set_status_s']:.1f} s, locate "
            f"{s['locate_s']:.1f} s",
            flush=True,
        )
        if server.journalled:
            result["snapshot_wait_s"] = server.wait_snapshot(s["journal_entries"])
            result["seeding_snapshots"] = server.snapshots()
            print(
                f"waited {result['snapshot_wait_s']:.1f} s for "
                f"the post-seeding snapshot; snapshots so far (sequence, s): "
                f"{result['seeding_snapshots']}",
                flush=True,
            )
        # The fleet, the index and 4,096 requests are long-lived: keep the client's
        # collector from walking them during measurements (the load generator must not
        # pause); the server's collector is left alone, it is part of what is measured.
        gc.collect()
        gc.freeze()
        result["agreement_top5"] = agreement(stub, index, reqs=reqs, lat=lat, lon=lon)
        print(f"gRPC vs in-process top-5 agreement: {result['agreement_top5']:.1%}", flush=True)

        result["closed_loop"] = closed_loop(
            stub,
            index,
            server_pid=server.pid,
            servicer=servicer,
            reqs=reqs,
            lat=lat,
            lon=lon,
            st=st,
        )
        c = result["closed_loop"]
        print(
            f"closed loop p50: Ping {c['ping_grpc']['p50_us']:.0f} µs, RecommendUnits "
            f"{c['recommend_grpc']['p50_us']:.0f} µs, servicer in-process "
            f"{c['servicer_inprocess']['p50_us']:.0f} µs, rank {c['rank_inprocess']['p50_us']:.1f}"
            f" µs; Recommend/Ping {c['recommend_over_ping_p50']:.2f}x",
            flush=True,
        )
        result["batch"] = batch_recommend(
            stub,
            index,
            reqs=reqs,
            lat=lat,
            lon=lon,
            single_p50_us=c["recommend_grpc"]["p50_us"],
            st=st,
        )
        for row in result["batch"]:
            print(
                f"batch {row['batch']}: {row['per_incident_p50_us']:.1f} µs per incident "
                f"({row['single_over_batch_per_incident']:.1f}x cheaper than one call)",
                flush=True,
            )
        result["open_loop"] = [
            open_loop(stub.Ping, [pb.PingRequest()], server.pid, st.open_s, rpc="Ping"),
            open_loop(stub.RecommendUnits, reqs, server.pid, st.open_s, rpc="RecommendUnits"),
        ]
        for o in result["open_loop"]:
            print(
                f"open loop {o['rpc']} {o['offered_rate_per_s']:.0f}/s: p50 "
                f"{o['latency']['p50_us']:.0f} µs, p99 {o['latency']['p99_us']:.0f} µs, max "
                f"{o['latency']['max_us']:.0f} µs, achieved {o['achieved_rate_per_s']:.0f}/s, "
                f"errors {o['errors']}",
                flush=True,
            )

        loc_rows: list[dict[str, Any]] = []
        ser_rows: list[dict[str, Any]] = []
        srv_rows: list[dict[str, Any]] = []
        first_ms = seed_ms + 1_000
        for batch in PING_BATCHES:
            feed = LocationFeed(fleet, batch, first_ms)
            feed.check()
            ser_rows.append(serialization_cost(feed))
            local = LocationFeed(fleet, batch, first_ms)
            srv_rows.append(server_path_inprocess(servicer, local))
            for window in (1, 4):
                loc_rows.append(locations_unary(channel, feed, server.pid, st.loc_s, window))
            loc_rows.append(locations_stream(channel, feed, server.pid, st.loc_s))
            first_ms = feed.next_ms + 1
            for row in loc_rows[-3:]:
                print(
                    f"{row['rpc']} batch {batch} x{row['in_flight']}: "
                    f"{row['pings_per_s'] / 1e6:.2f} M pings/s sent, applied "
                    f"{row['applied']:,}/{row['pings_sent']:,} (stale {row['skipped_stale']:,})",
                    flush=True,
                )
        result["locations"] = loc_rows
        result["serialization"] = ser_rows
        result["server_path_inprocess"] = srv_rows
        result["locations_goal_pings_per_s"] = GOAL_PINGS_PER_S
        if server.journalled:
            busy_unit = fleet.ids[
                int(np.flatnonzero(grpc_reachable_statuses(fleet) == UnitStatus.UNAVAILABLE)[0])
            ]
            result["snapshot_stall"] = snapshot_stall(stub, server, busy_unit)
            ss = result["snapshot_stall"]
            print(
                f"snapshot stall: Ping max {ss['ping']['max_us'] / 1e3:.1f} ms while the server"
                f" wrote a snapshot in {ss['snapshot_s']} s",
                flush=True,
            )
        channel.close()
    finally:
        gc.unfreeze()
        result["server_exit_code"] = server.stop()
        result["server_log_tail"] = server.log_tail(10)
    return result


# ------------------------------------------------------------------------------ markdown


def _f(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _met(flag: bool) -> str:
    return "met" if flag else "**not met**"


def to_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# gRPC benchmarks",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu_model']}, Python {m['python']}, grpcio "
        f"{m['grpcio']} (protobuf {m['protobuf_impl']}), load avg at start "
        f"{m['loadavg_1m_at_start']:.2f}; commit {m['commit']}"
        f"{' (dirty tree)' if m['dirty_tree'] else ''}; {m['time_utc']}; mode {report['mode']}.",
        "",
        "Client and server are two Python processes on the same machine (loopback). Latencies"
        " in µs per call unless stated; ratios are measured in the same run.",
    ]
    for r in report["sizes"]:
        s = r["seeding"]
        c = r["closed_loop"]
        lines += [
            "",
            f"## {r['units']:,} units ({s['available']:,} AVAILABLE)",
            "",
            f"Seeding over gRPC (not measured below): UpsertUnit {s['upsert_s']:.1f} s "
            f"({s['upsert_per_s']:,.0f}/s, {s['window']} in flight), SetUnitStatus "
            f"{s['set_status_s']:.1f} s, UpdateLocations {s['locate_s']:.2f} s. gRPC and "
            f"in-process rank agree on the top-5 set in {r['agreement_top5']:.0%} of checks.",
            "",
            "### RecommendUnits, closed loop (1 client, unary, top-5, one police group)",
            "",
            "| call | p50 | p99 | p99.9 | calls |",
            "|---|---:|---:|---:|---:|",
        ]
        for key, label in (
            ("ping_grpc", "Ping over gRPC (no-op baseline)"),
            ("recommend_grpc", "RecommendUnits over gRPC"),
            ("servicer_inprocess", "servicer in-process (validate + rank + protobuf)"),
            ("rank_inprocess", "UnitIndex.rank in-process"),
            ("servicer_inprocess_paced", "servicer in-process, paced like gRPC (see below)"),
            ("rank_inprocess_paced", "UnitIndex.rank in-process, paced like gRPC"),
        ):
            d = c[key]
            lines.append(
                f"| {label} | {_f(d['p50_us'], 1)} | {_f(d['p99_us'], 1)} | "
                f"{_f(d['p999_us'], 1)} | {d['n']:,} |"
            )
        lines += [
            "",
            f"RecommendUnits / Ping: p50 {_x(c['recommend_over_ping_p50'])}, p99 "
            f"{_x(c['recommend_over_ping_p99'])} (goal p50 ≤ {GOAL_RECOMMEND_OVER_PING}x: "
            f"{_met(c['goal_met'])}). RecommendUnits / rank p50: "
            f"{_x(c['recommend_over_rank_p50'])} (what Python and gRPC cost); / servicer "
            f"in-process: {_x(c['recommend_over_servicer_p50'])}. RecommendUnits minus Ping p50: "
            f"{c['recommend_minus_ping_p50_us']:.0f} µs. Request {c['request_bytes']} B, "
            f"response {c['response_bytes']} B. Other processes used "
            f"{c['grpc_loop_cpu']['other_processes_cpu_pct_of_core']:.0f}% of a core during "
            "the gRPC loop. *Paced*: a sleep of one Ping p50 "
            f"({c['paced_gap_us']:.0f} µs) before each in-process call, as the server idles "
            "between closed-loop requests; an idle core runs the next call cold.",
            "",
            "### BatchRecommendUnits (same queries) vs one RecommendUnits per incident",
            "",
            "| batch | call p50 ms | call p99 ms | per incident p50 | vs single call p50 "
            "| core rank_batch per query | calls |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for b in r["batch"]:
            lines.append(
                f"| {b['batch']:,} | {b['call']['p50_us'] / 1e3:.1f} | "
                f"{b['call']['p99_us'] / 1e3:.1f} | {b['per_incident_p50_us']:.1f} | "
                f"{_x(b['single_over_batch_per_incident'])} cheaper | "
                f"{b['core_rank_batch_per_query_us']:.1f} | {b['call']['n']} |"
            )
        o0 = r["open_loop"][0]
        lines += [
            "",
            f"### Open loop at {o0['offered_rate_per_s']:,.0f} requests/s for "
            f"{o0['seconds']:.0f} s each (latency from the intended send time)",
            "",
            "| RPC | p50 | p99 | p99.9 | max | p99 from actual send | achieved/s "
            "| late sends (>1 ms) | send lag p99 | errors | client CPU | server CPU "
            "| other processes' CPU | steal | goal p99 ≤ 2 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for o in r["open_loop"]:
            lat, cpu, lag = o["latency"], o["cpu"], o["send_lag"]
            lines.append(
                f"| {o['rpc']} | {_f(lat['p50_us'])} | {_f(lat['p99_us'])} | "
                f"{_f(lat['p999_us'])} | {_f(lat['max_us'])} | "
                f"{_f(o['latency_from_send']['p99_us'])} | "
                f"{o['achieved_rate_per_s']:,.0f} | {o['sends_late_over_1ms']:,} of "
                f"{o['requests']:,} | {_f(lag['p99_us'])} | {o['errors']} | "
                f"{cpu['client_cpu_pct']:.0f}% | {cpu['server_cpu_pct']:.0f}% | "
                f"{cpu['other_processes_cpu_pct_of_core']:.0f}% | "
                f"{cpu['machine_steal_pct']:.1f}% | "
                f"{_met(o['goal_met']) if o['rpc'] == 'RecommendUnits' else 'baseline'} |"
            )
        lines += [
            "",
            "Fell behind schedule (over 1% of sends more than 1 ms late): "
            + ", ".join(f"{o['rpc']} {'yes' if o['fell_behind'] else 'no'}" for o in r["open_loop"])
            + ". CPU is % of one core over the run (client: this process; server: "
            "/proc/<pid>/stat; other processes: the machine's busy time from /proc/stat minus "
            "both). Other work on the machine inflates the tail: compare runs where it is near 0.",
            "",
            "### Location pings (columnar batches; all units moving, times increasing)",
            "",
            "| RPC | batch | in flight | pings/s sent | applied/s | applied / sent | stale "
            "| client CPU | server CPU | other processes' CPU | goal ≥ 2 M/s applied |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in r["locations"]:
            lines.append(
                f"| {row['rpc']} | {row['batch']:,} | {row['in_flight']} | "
                f"{row['pings_per_s']:,.0f} | {row['applied_per_s']:,.0f} | "
                f"{row['applied']:,} / {row['pings_sent']:,} | "
                f"{row['skipped_stale']:,} | {row['cpu']['client_cpu_pct']:.0f}% | "
                f"{row['cpu']['server_cpu_pct']:.0f}% | "
                f"{row['cpu']['other_processes_cpu_pct_of_core']:.0f}% | "
                f"{_met(row['applied_per_s'] >= GOAL_PINGS_PER_S)} |"
            )
        lines += [
            "",
            "Who is the bottleneck, per batch (µs; medians):",
            "",
            "| batch | bytes | client build from NumPy | client serialize | client limit pings/s "
            "| server path in-process (parse + validate + apply) | server limit pings/s |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for ser, srv in zip(r["serialization"], r["server_path_inprocess"], strict=True):
            lines.append(
                f"| {ser['batch']:,} | {ser['bytes']:,} | {ser['build_from_numpy_us']:,.0f} | "
                f"{ser['serialize_us']:,.0f} | {ser['client_limit_pings_per_s']:,.0f} | "
                f"{srv['per_batch_us']:,.0f} | {srv['pings_per_s']:,.0f} |"
            )
        if "snapshot_stall" in r:
            ss = r["snapshot_stall"]
            snaps = r.get("seeding_snapshots", [])
            worst = max((sec for _, sec in snaps), default=None)
            lines += [
                "",
                "### Journal snapshots (the server's background thread)",
                "",
                f"During seeding ({s['journal_entries']:,} journal entries) the server wrote "
                f"{len(snaps)} snapshots, the slowest in {_f(worst, 2)} s; measurements above "
                "start after the post-seeding one. Closed-loop Pings while one journalled "
                f"command provokes a snapshot ({ss['seconds']:.0f} s window): p50 "
                f"{_f(ss['ping']['p50_us'])} µs, p99 {_f(ss['ping']['p99_us'])} µs, max "
                f"{_f(ss['ping']['max_us'] / 1e3, 1)} ms; snapshot written in "
                f"{_f(ss['snapshot_s'], 2)} s.",
            ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_grpc", description=__doc__)
    parser.add_argument("--units", default="10000,100000", help="fleet sizes, comma-separated")
    parser.add_argument("--quick", action="store_true", help="short measurements (smoke run)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output dir")
    args = parser.parse_args(argv)
    if os.getloadavg()[0] > 1.0:
        print(
            f"warning: load average {os.getloadavg()[0]:.1f} before starting: other work on "
            "this machine will show in the tails (see the 'other processes' CPU' columns)",
            flush=True,
        )
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the server subprocess is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sizes = [int(s.replace("_", "")) for s in args.units.split(",") if s.strip()]
    st = Settings.quick() if args.quick else Settings.full()
    machine = machine_info()
    print(
        f"machine: nproc {machine['nproc']}, {machine['cpu_model']}, Python {machine['python']},"
        f" grpcio {machine['grpcio']}, protobuf {machine['protobuf_impl']}, load avg "
        f"{machine['loadavg_1m_at_start']:.2f}; sizes {sizes}; mode "
        f"{'quick' if args.quick else 'full'}",
        flush=True,
    )
    report: dict[str, Any] = {
        "machine": machine,
        "mode": "quick" if args.quick else "full",
        "settings": dataclasses.asdict(st),
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        for n in sizes:
            workdir = Path(tmp) / str(n)
            workdir.mkdir()
            report["sizes"].append(bench_size(n, st, workdir))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grpc.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = to_markdown(report)
    (args.out / "grpc.md").write_text(md, encoding="utf-8")
    print("\n" + md)
    print(f"wrote {args.out / 'grpc.json'} and {args.out / 'grpc.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
