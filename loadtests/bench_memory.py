"""Memory over a week: does the server's memory stay bounded at London's rates?

    python -m loadtests.bench_memory [--days 7] [--incidents-per-day 12500] [--units 2000]
        [--out bench-results]

Drives the real pipeline in-process (the state machine in Rust, a SQLite journal on disk
with synchronous=OFF so the run is about memory, not fsync) through `--days` simulated days:
each incident is created, assigned the nearest free unit, the unit goes en route and on
scene, and the incident is closed: 5 commands per incident. Time is simulated: the
pipeline's clock advances by a day / incidents-per-day per incident, and the clock command
runs whenever it is due, exactly as the server's ticker does. So closed incidents leave
memory after the retention (a day by default) and remembered request_ids after 24 hours.

At the end of each simulated day it records the process's resident memory (RSS, after a
garbage collection) and what the state holds (incidents, request_ids in memory, fingerprints
of older ones). The goal: from the second day on, memory stays within 10 % of the first
day's plateau. Writes memory.json and memory.md. Timings and sizes only: nothing passes or
fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from dispatch_core import DispatchCore
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.durability.recovery import JournalConfig, open_pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.synthetic.fleet import incident_points, make_fleet, seed_pipeline

DAY_MS = 24 * 3_600_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PAGE = os.sysconf("SC_PAGE_SIZE")


class SimClock:
    def __init__(self) -> None:
        self.ms = START_MS

    def __call__(self) -> int:
        return self.ms


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _command(pipeline: Pipeline, method: str, request: Any) -> bytes:
    return pipeline.execute(method, request.SerializeToString())


def one_incident(pipeline: Pipeline, n: int, lat: float, lon: float) -> None:
    """One incident's life: create, recommend, assign the best, en route, on scene, close."""
    created = pb.CreateIncidentResponse.FromString(
        _command(
            pipeline,
            "CreateIncident",
            pb.CreateIncidentRequest(
                request_id=f"c{n}",
                grade=pb.GRADE_IMMEDIATE if n % 5 == 0 else pb.GRADE_SIGNIFICANT,
                incident_type="memory",
                location=pb.Location(lat=lat, lon=lon),
                requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
            ),
        )
    ).incident
    ask = pb.RecommendUnitsRequest(incident_id=created.incident_id, k=1)
    ranked = pb.RecommendUnitsResponse.FromString(
        pipeline.core.recommend(ask.SerializeToString(), pipeline.now_ms())
    )
    candidates = ranked.groups[0].candidates
    if candidates:
        unit = candidates[0].unit_id
        _command(
            pipeline,
            "AssignUnits",
            pb.AssignUnitsRequest(
                request_id=f"a{n}", incident_id=created.incident_id, unit_ids=[unit]
            ),
        )
        for step, status in (("e", pb.UNIT_STATUS_EN_ROUTE), ("o", pb.UNIT_STATUS_ON_SCENE)):
            _command(
                pipeline,
                "SetUnitStatus",
                pb.SetUnitStatusRequest(request_id=f"{step}{n}", unit_id=unit, status=status),
            )
    _command(
        pipeline,
        "CloseIncident",
        pb.CloseIncidentRequest(request_id=f"x{n}", incident_id=created.incident_id),
    )


def run(days: int, per_day: int, units: int, data: Path) -> list[dict[str, Any]]:
    clock = SimClock()
    config = JournalConfig(spec="sqlite", data_dir=data, synchronous="OFF")
    pipeline, _ = open_pipeline(config, core=DispatchCore())
    pipeline._clock_ms = clock  # simulated time, as the server's ticker would see it
    try:
        fleet = make_fleet(units, seed=3, available_share=1.0)
        seed_pipeline(pipeline, fleet, clock.ms, shifts=False)
        lat, lon = incident_points(per_day, seed=11)
        step_ms = DAY_MS // per_day
        rows: list[dict[str, Any]] = []
        n = 0
        for day in range(1, days + 1):
            started = time.perf_counter()
            ticks = 0
            for i in range(per_day):
                one_incident(pipeline, n, float(lat[i]), float(lon[i]))
                n += 1
                clock.ms += step_ms
                ticks += pipeline.tick()
            gc.collect()
            incidents, requests, evicted = pipeline.core.sizes()
            rows.append(
                {
                    "day": day,
                    "rss_mib": rss_bytes() / 2**20,
                    "incidents_held": incidents,
                    "request_ids_in_memory": requests,
                    "request_fingerprints": evicted,
                    "ticks_journaled": ticks,
                    "commands": pipeline.last_sequence,
                    "seconds": time.perf_counter() - started,
                }
            )
            r = rows[-1]
            print(
                f"  day {day}: RSS {r['rss_mib']:.1f} MiB, {incidents:,} incidents held,"
                f" {requests:,} request_ids in memory, {ticks} ticks, {r['seconds']:.1f} s",
                flush=True,
            )
        return rows
    finally:
        pipeline.journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--incidents-per-day", type=int, default=12_500)
    parser.add_argument("--units", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"memory benchmark: {machine}; {args.days} days x {args.incidents_per_day:,} incidents,"
        f" {args.units:,} units"
    )
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        rows = run(args.days, args.incidents_per_day, args.units, Path(tmp))
    plateau = rows[0]["rss_mib"]
    worst = max(r["rss_mib"] for r in rows[1:]) if len(rows) > 1 else plateau
    ratio = worst / plateau
    lines = [
        f"# Memory over {args.days} simulated days ({machine})",
        "",
        f"{args.incidents_per_day:,} incidents a day (5 commands each) through the"
        f" pipeline in-process, {args.units:,} units, SQLite journal (synchronous=OFF),"
        " closed incidents retained a day, request_ids 24 hours.",
        "",
        "| day | RSS MiB | incidents held | request_ids in memory | fingerprints | ticks |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['day']} | {r['rss_mib']:.1f} | {r['incidents_held']:,} |"
            f" {r['request_ids_in_memory']:,} | {r['request_fingerprints']:,} |"
            f" {r['ticks_journaled']:,} |"
        )
    verdict = "met" if ratio <= 1.10 else "**not met**"
    lines += [
        "",
        f"Largest RSS from day 2 on / day 1: {ratio:.3f} (goal ≤ 1.10: {verdict}).",
    ]
    table = "\n".join(lines)
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(
        json.dumps({"machine": machine, "days": rows, "ratio": ratio}, indent=2)
    )
    (args.out / "memory.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
