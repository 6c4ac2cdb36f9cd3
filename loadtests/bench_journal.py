"""Journal benchmarks: durable commands/s at the engine, and recovery time.

    python -m loadtests.bench_journal [--quick] [--threads 32] [--seconds 4]
        [--recovery-entries 1000000] [--out bench-results]

1. Throughput: `--threads` submitters call the engine (CreateIncident, AssignUnits,
   SetUnitStatus, CloseIncident in a cycle, each with its own request_id) for `--seconds`
   per journal, in the same run: memory (no durability: the baseline), SQLite FULL (every
   commit fsynced; group commit), SQLite NORMAL, PostgreSQL (synchronous_commit on).
   Acknowledged commands/s, latency p50/p99 per command, the ratio to memory and the
   journal's own counters (commits, entries per commit: group commit at work).
2. Recovery: a SQLite journal of `--recovery-entries` entries (built with the same command
   cycle through the engine), then the time to open it and rebuild the engine (a) from the
   entries alone and (b) from a snapshot taken at the end. `--quick` uses 50,000 entries
   and extrapolates (b) and (a) linearly to 1M, labelled as such.

Writes bench-results/journal.json and journal.md. Timings only: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from dispatch_core._core import DispatchCore
from dispatch_core.durability.journal import NewEntry
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.durability.recovery import JournalConfig, open_pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

PG_DSN = os.environ.get("DISPATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
UNITS_PER_THREAD = 4


def _units(engine: Pipeline, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for uid in ids:
        request = pb.UpsertUnitRequest(
            request_id=str(uuid.uuid4()),
            unit=pb.UnitSpec(unit_id=uid, agency=pb.AGENCY_POLICE, unit_type="car"),
        )
        engine.execute("UpsertUnit", request.SerializeToString())
    return ids


def _cycle(engine: Pipeline, unit_id: str) -> list[float]:
    """One incident's life: 5 commands (create, assign, en route, on scene, close), each
    sent as the request bytes a gRPC client sends."""
    rid = uuid.uuid4().hex
    latencies = []
    t = time.perf_counter()
    created_bytes = engine.execute(
        "CreateIncident",
        pb.CreateIncidentRequest(
            request_id=f"{rid}c",
            grade=pb.GRADE_IMMEDIATE,
            incident_type="bench",
            location=pb.Location(lat=51.5, lon=-0.12),
            requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
        ).SerializeToString(),
    )
    incident_id = pb.CreateIncidentResponse.FromString(created_bytes).incident.incident_id
    latencies.append(time.perf_counter() - t)
    steps: list[Any] = [
        (
            "AssignUnits",
            pb.AssignUnitsRequest(
                request_id=f"{rid}a", incident_id=incident_id, unit_ids=[unit_id]
            ),
        ),
        (
            "SetUnitStatus",
            pb.SetUnitStatusRequest(
                request_id=f"{rid}e", unit_id=unit_id, status=pb.UNIT_STATUS_EN_ROUTE
            ),
        ),
        (
            "SetUnitStatus",
            pb.SetUnitStatusRequest(
                request_id=f"{rid}o", unit_id=unit_id, status=pb.UNIT_STATUS_ON_SCENE
            ),
        ),
        (
            "CloseIncident",
            pb.CloseIncidentRequest(request_id=f"{rid}x", incident_id=incident_id),
        ),
    ]
    execute = engine.execute
    for method, request in steps:
        t = time.perf_counter()
        execute(method, request.SerializeToString())
        latencies.append(time.perf_counter() - t)
    return latencies


def _drive(engine: Pipeline, threads: int, seconds: float) -> dict[str, Any]:
    units = _units(engine, "B", threads * UNITS_PER_THREAD)
    stop = threading.Event()
    per_thread: list[list[float]] = [[] for _ in range(threads)]

    def work(k: int) -> None:
        mine = units[k * UNITS_PER_THREAD : (k + 1) * UNITS_PER_THREAD]
        i = 0
        while not stop.is_set():
            per_thread[k].extend(_cycle(engine, mine[i % len(mine)]))
            i += 1

    before = engine.journal.stats()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    after = engine.journal.stats()
    lat = sorted(x for xs in per_thread for x in xs)
    commits = after.commits - before.commits
    appends = after.appends - before.appends
    return {
        "commands": len(lat),
        "seconds": elapsed,
        "commands_per_s": len(lat) / elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "mean_ms": 1000 * statistics.fmean(lat),
        "commits": commits,
        "entries_per_commit": appends / commits if commits else 0.0,
        "largest_batch": after.largest_batch,
    }


def throughput(threads: int, seconds: float, tmp: Path) -> dict[str, dict[str, Any]]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    configs = {
        "memory": JournalConfig(spec="memory", data_dir=tmp / "mem"),
        "sqlite FULL": JournalConfig(spec="sqlite", data_dir=tmp / "full", synchronous="FULL"),
        "sqlite NORMAL": JournalConfig(
            spec="sqlite", data_dir=tmp / "normal", synchronous="NORMAL"
        ),
        "postgresql": JournalConfig(spec=PG_DSN, data_dir=tmp / "pg", name=schema),
    }
    results: dict[str, dict[str, Any]] = {}
    try:
        for label, config in configs.items():
            engine, _ = open_pipeline(config)
            try:
                results[label] = _drive(engine, threads, seconds)
            finally:
                engine.journal.close()
            r = results[label]
            print(
                f"  {label:<14} {r['commands_per_s']:>9,.0f} cmd/s  p50 {r['p50_ms']:.2f} ms"
                f"  p99 {r['p99_ms']:.2f} ms  {r['entries_per_commit']:.1f} entries/commit",
                flush=True,
            )
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    base = results["memory"]["commands_per_s"]
    for r in results.values():
        r["ratio_to_memory"] = r["commands_per_s"] / base
    return results


def recovery(entries: int, tmp: Path) -> dict[str, Any]:
    data = tmp / "recovery"
    # Built fast: the engine runs over an in-memory journal (one thread, no sync to wait
    # for) and its entries are copied in bulk into SQLite; recovery then reads exactly what
    # the engine would have journaled.
    engine = Pipeline(DispatchCore())
    units = _units(engine, "R", 32)
    cycles = max(1, (entries - len(units)) // 5)
    build = JournalConfig(spec="sqlite", data_dir=data, synchronous="OFF").open()
    started = time.perf_counter()
    copied = 0
    pending = None
    for i in range(cycles):
        _cycle(engine, units[i % len(units)])
        if i % 20_000 == 19_999 or i == cycles - 1:
            for e in engine.journal.entries_since(copied):
                pending = build.submit(
                    NewEntry(
                        e.method,
                        e.request_id,
                        e.payload,
                        e.result,
                        e.actor,
                        e.assign,
                        e.release,
                        e.time_unix_ms,
                    )
                )
                copied = e.sequence
            # Keep the builder's memory flat: its own entries are no longer needed.
            engine.journal.write_snapshot(copied, b"")
            engine.journal.truncate_before(copied + 1)
    if pending is not None:
        pending.result()
    built_s = time.perf_counter() - started
    total = build.last_sequence()
    build.close()
    print(f"  built {total:,} entries in {built_s:.1f} s", flush=True)

    config = JournalConfig(spec="sqlite", data_dir=data, synchronous="FULL")
    t = time.perf_counter()
    engine, report = open_pipeline(config)
    no_snapshot_s = time.perf_counter() - t
    assert report.replayed == total, report
    assert report.answers_differ == 0, report
    incidents = engine.core.sizes()[0]
    t = time.perf_counter()
    engine.snapshot()
    snapshot_write_s = time.perf_counter() - t
    engine.journal.close()
    t = time.perf_counter()
    engine, report = open_pipeline(config)
    with_snapshot_s = time.perf_counter() - t
    assert report.replayed == 0 and report.snapshot_sequence == total, report
    size = (data / "journal.sqlite3").stat().st_size
    engine.journal.close()
    return {
        "entries": total,
        "incidents": incidents,
        "journal_bytes": size,
        "build_s": built_s,
        "recover_without_snapshot_s": no_snapshot_s,
        "snapshot_write_s": snapshot_write_s,
        "recover_with_snapshot_s": with_snapshot_s,
        "replay_entries_per_s": total / no_snapshot_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--recovery-entries", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    entries = args.recovery_entries or (50_000 if args.quick else 1_000_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"journal benchmark: {machine}; {args.threads} submitters, {seconds:g} s per journal")
    try:
        print("throughput (acknowledged = durable per the journal's sync policy):")
        tput = throughput(args.threads, seconds, tmp)
        print(f"recovery ({entries:,} entries, SQLite):")
        rec = recovery(entries, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    scale = 1_000_000 / rec["entries"]
    rec["extrapolated_1m"] = {
        "recover_without_snapshot_s": rec["recover_without_snapshot_s"] * scale,
        "recover_with_snapshot_s": rec["recover_with_snapshot_s"] * scale,
        "note": "linear extrapolation from the measured run; snapshot size scales with"
        " the incidents kept, which the 5-commands-per-incident cycle makes entries/5",
    }
    lines = [
        f"# Journal benchmark ({machine})",
        "",
        f"{args.threads} concurrent submitters at the engine, {seconds:g} s each,"
        " commands = create/assign/en-route/on-scene/close cycles.",
        "",
        "| journal | cmd/s | ratio to memory | p50 ms | p99 ms | entries/commit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, r in tput.items():
        lines.append(
            f"| {label} | {r['commands_per_s']:,.0f} | {r['ratio_to_memory']:.2f} |"
            f" {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['entries_per_commit']:.1f} |"
        )
    measured = entries >= 1_000_000
    lines += [
        "",
        f"Recovery, SQLite journal of {rec['entries']:,} entries"
        f" ({rec['incidents']:,} incidents, {rec['journal_bytes'] / 1e6:.0f} MB):",
        "",
        "| | measured s | 1M entries s |",
        "|---|---:|---:|",
        f"| replay all entries (no snapshot) | {rec['recover_without_snapshot_s']:.2f} |"
        f" {rec['extrapolated_1m']['recover_without_snapshot_s']:.2f}"
        f"{'' if measured else ' (extrapolated)'} |",
        f"| from a snapshot at the end | {rec['recover_with_snapshot_s']:.2f} |"
        f" {rec['extrapolated_1m']['recover_with_snapshot_s']:.2f}"
        f"{'' if measured else ' (extrapolated)'} |",
        f"| writing that snapshot | {rec['snapshot_write_s']:.2f} | |",
        "",
        f"Replay speed: {rec['replay_entries_per_s']:,.0f} entries/s.",
    ]
    table = "\n".join(lines)
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "journal.json").write_text(
        json.dumps({"machine": machine, "throughput": tput, "recovery": rec}, indent=2)
    )
    (args.out / "journal.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
