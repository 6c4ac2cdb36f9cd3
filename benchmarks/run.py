"""Ranking benchmarks driver: the Rust core through Python against its baselines and rivals.

    python benchmarks/run.py [--sizes 1000,10000,100000] [--quick] [--out bench-results]
                             [--no-services]

For each fleet size it builds a synthetic London fleet (~20% AVAILABLE), loads it into a
`UnitIndex`, and measures, each against its baseline *in the same run*:

- `UnitIndex.rank` top-5 for a query mix (no capability, common `taser`, rare `dog` and
  `firearms`) against a NumPy brute force over the same arrays;
- `rank_batch` per query against single `rank` calls;
- Redis GEOSEARCH and PostGIS KNN over the same fleet and queries (or "unavailable" with
  the reason: a comparison that could not run is never given a number);
- batch location updates (`update_locations_by_slot`, `update_locations`) against
  per-unit `update_location` calls;
- memory per unit: `memory_bytes()`, the process RSS delta, and the rivals' storage.

It writes `<out>/ranking.json` and `<out>/ranking.md` (p50 and p99 per call in µs, the
ratios, the machine and the data sizes) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from benchlib import (
    AVAILABLE,
    CAP_QUERIES,
    Budget,
    K,
    NumpyBruteForce,
    PostgisKnn,
    RedisGeo,
    Timing,
    build_index,
    machine_info,
    machine_line,
    ratio,
    rss_bytes,
    time_calls,
    time_prepared,
    unavailable,
)

from dispatch_core.synthetic.fleet import Fleet, incident_points, make_fleet

REPO = Path(__file__).resolve().parent.parent
SEED = 42
#: Distinct incident points the queries cycle through: enough that no cache sees one point
#: twice in a row, few enough to generate instantly.
N_QUERY_POINTS = 4_096

Result = dict[str, Any]


def _load_core() -> tuple[Any, str | None]:
    try:
        from dispatch_core import _core  # noqa: PLC0415 - optional until the extension is built
    except ImportError as exc:
        return None, f"dispatch_core._core not importable ({exc}); build it with maturin"
    return _core, None


def _git_rev() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no commit yet, or no git: the JSON says so rather than guessing
    return out.stdout.strip() or None


def _pair(candidate: Timing, baseline: Timing) -> Result:
    """A candidate beside its baseline with the speedups (> 1: the candidate is faster)."""
    return {
        "candidate": candidate.as_dict(),
        "baseline": baseline.as_dict(),
        "speedup_p50": ratio(baseline.p50_us, candidate.p50_us),
        "speedup_p99": ratio(baseline.p99_us, candidate.p99_us),
    }


class SizeRun:
    """Every measurement for one fleet size; each method fills one section of the result."""

    def __init__(self, n: int, core: Any, core_reason: str | None, budget: Budget) -> None:
        self.n = n
        self.core = core
        self.core_reason = core_reason
        self.budget = budget
        self.fleet: Fleet = make_fleet(n, seed=SEED)
        lat, lon = incident_points(N_QUERY_POINTS, seed=SEED + 1)
        self.qlat: list[float] = lat.tolist()
        self.qlon: list[float] = lon.tolist()
        self.qlat_np = lat
        self.qlon_np = lon
        self.numpy = NumpyBruteForce(self.fleet)
        # Loaded "now": a minute ago, so that location pings stamped after it are neither
        # stale nor in the future.
        self.now_ms = int(time.time() * 1000) - 60_000
        self.index: Any = None
        self.slots: npt.NDArray[np.int64] | None = None
        self.rank_timings: dict[str, Timing] = {}
        self.result: Result = {
            "units": n,
            "available": int((self.fleet.status == AVAILABLE).sum()),
            "eligible": {
                label: int(self.numpy.eligible(self.numpy.required_mask(req)).sum())
                for label, req in CAP_QUERIES.items()
            },
        }

    @property
    def bulk_budget(self) -> Budget:
        """For calls that each do a whole batch's work (ms at 100k units): fewer calls give
        as steady a p50, and the minimum count must not turn into tens of seconds."""
        b = self.budget
        return Budget(
            b.seconds, min_calls=max(20, b.min_calls // 10), max_calls=b.max_calls, warmup=2
        )

    def q(self, i: int) -> tuple[float, float]:
        j = i % N_QUERY_POINTS
        return self.qlat[j], self.qlon[j]

    # ---------------------------------------------------------------------------- build

    def build(self) -> None:
        if self.core is None:
            self.result["build"] = unavailable(str(self.core_reason))
            self.result["memory"] = {"numpy_arrays_bytes_per_unit": self.numpy.nbytes_per_unit()}
            return
        gc.collect()
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        self.index, self.slots = build_index(self.core, self.fleet, self.now_ms)
        build_s = time.perf_counter() - t0
        gc.collect()
        rss1 = rss_bytes()
        self.result["build"] = {
            "seconds": build_s,
            "units_per_second": self.n / build_s if build_s > 0 else None,
            "what": "UnitIndex() + upsert_unit per unit + one update_locations_by_slot",
        }
        self.result["memory"] = {
            "index_bytes_per_unit": self.index.memory_bytes() / self.n,
            # The RSS delta also holds allocator slack and whatever the build left behind,
            # so it is an upper bound beside the index's own accounting.
            "rss_delta_bytes_per_unit": (rss1 - rss0) / self.n,
            "numpy_arrays_bytes_per_unit": self.numpy.nbytes_per_unit(),
        }

    # ----------------------------------------------------------------- sanity before timing

    def check(self) -> None:
        """Every rank candidate must be eligible by the baseline's rule, or timings compare
        different questions. Recorded, not asserted: a benchmark must still report."""
        if self.index is None or self.slots is None:
            return
        row_of_slot = {int(s): i for i, s in enumerate(self.slots)}
        problems: list[str] = []
        agree = 0
        total = 0
        for label, req in CAP_QUERIES.items():
            mask = self.numpy.eligible(self.numpy.required_mask(req))
            for i in range(25):
                lat, lon = self.q(i)
                got = self.index.rank(lat, lon, now_ms=self.now_ms, k=K, required=req)
                rows = [row_of_slot.get(int(c.slot), -1) for c in got]
                bad = [self.fleet.ids[r] if r >= 0 else "?" for r in rows if r < 0 or not mask[r]]
                if bad:
                    problems.append(f"{label}@{i}: ineligible {bad[:3]}")
                want, _ = self.numpy.top_k(lat, lon, self.numpy.required_mask(req))
                if len(want):
                    total += 1
                    agree += int(want[0]) in rows
        self.result["sanity"] = {
            "ok": not problems,
            "problems": problems[:10],
            # The engine ranks by ETA plus costs, the baseline by distance: the nearest
            # eligible unit is usually, not always, in the engine's top K.
            "nearest_in_rank_top_k_share": agree / total if total else None,
        }

    # --------------------------------------------------------------------- rank vs NumPy

    def rank_vs_numpy(self) -> None:
        out: Result = {}
        index, now_ms = self.index, self.now_ms
        for label, req in CAP_QUERIES.items():
            req_mask = self.numpy.required_mask(req)

            def baseline(i: int, m: np.uint64 = req_mask) -> object:
                return self.numpy.top_k(*self.q(i), m)

            base = time_calls(baseline, self.budget)
            if self.index is None:
                out[label] = {"baseline": base.as_dict(), **unavailable(str(self.core_reason))}
                continue

            def call(i: int, req: tuple[str, ...] = req) -> object:
                lat, lon = self.q(i)
                return index.rank(lat, lon, now_ms=now_ms, k=K, required=req)

            got = time_calls(call, self.budget)
            self.rank_timings[label] = got
            out[label] = _pair(got, base)
        self.result["rank_vs_numpy"] = out

    # ----------------------------------------------------------------- batch vs single

    def batch_vs_single(self, batch: int) -> None:
        if self.index is None or not self.rank_timings:
            self.result["batch_vs_single"] = unavailable(str(self.core_reason))
            return
        out: Result = {}
        index, now_ms = self.index, self.now_ms
        for label in ("none", "dog"):
            req = CAP_QUERIES[label]

            def call(i: int, req: tuple[str, ...] = req) -> object:
                start = (i * batch) % (N_QUERY_POINTS - batch)
                return index.rank_batch(
                    self.qlat_np[start : start + batch],
                    self.qlon_np[start : start + batch],
                    now_ms=now_ms,
                    k=K,
                    required=req,
                )

            per_call = time_calls(call, self.bulk_budget)
            # Per query: the batch call's time shared by its queries. Its p99 is the p99 of
            # whole calls divided likewise (a batch has no per-query latency of its own).
            per_query = Timing(
                p50_us=per_call.p50_us / batch,
                p99_us=per_call.p99_us / batch,
                mean_us=per_call.mean_us / batch,
                calls=per_call.calls,
            )
            single = self.rank_timings[label]
            out[label] = {
                "batch_size": batch,
                "batch_call": per_call.as_dict(),
                **_pair(per_query, single),
            }
        self.result["batch_vs_single"] = out

    # ------------------------------------------------------------------------- rivals

    def rivals(self, enabled: bool) -> None:
        out: Result = {}
        factories: dict[str, Callable[[], Any]] = {
            "redis_geosearch": lambda: RedisGeo(f"dispatch_bench:{self.n}"),
            "postgis_knn": lambda: PostgisKnn(f"bench_units_{self.n}"),
        }
        for name, factory in factories.items():
            if not enabled:
                out[name] = unavailable("skipped with --no-services")
                continue
            try:
                rival = factory()
            # Any failure to reach the service (refused, auth, missing extension) is
            # recorded as "unavailable" with its reason; the other results still count.
            except Exception as exc:
                out[name] = unavailable(f"{type(exc).__name__}: {exc}")
                continue
            try:
                out[name] = self._measure_rival(rival)
            except Exception as exc:  # a service dying mid-run: recorded, never a number
                out[name] = unavailable(f"failed during the run: {type(exc).__name__}: {exc}")
            finally:
                try:
                    rival.drop()
                    rival.close()
                except Exception:  # best-effort cleanup of bench_* keys and tables
                    pass
        self.result["rivals"] = out

    def _measure_rival(self, rival: RedisGeo | PostgisKnn) -> Result:
        t0 = time.perf_counter()
        rival.load(self.fleet)
        load_s = time.perf_counter() - t0
        storage = rival.memory_bytes() if isinstance(rival, RedisGeo) else rival.relation_bytes()
        res: Result = {
            "load_seconds": load_s,
            "storage_bytes_per_unit": storage / self.n,
            "queries": {},
        }
        if isinstance(rival, PostgisKnn):
            res["plan"] = rival.plan()
        # What one round trip to the service costs, whatever the query: the part of the
        # rival's latency that no index on its side can remove.
        res["round_trip_floor"] = time_calls(lambda _: rival.round_trip(), self.budget).as_dict()
        for label, req in CAP_QUERIES.items():
            cap = req[0] if req else None

            def query(i: int, c: str | None = cap) -> object:
                return rival.nearest(*self.q(i), c)

            got = time_calls(query, self.budget)
            entry: Result = {"rival": got.as_dict()}
            rank = self.rank_timings.get(label)
            if rank is not None:
                # Here the rival is the baseline: speedup of rank over it.
                entry["rank"] = rank.as_dict()
                entry["speedup_p50"] = ratio(got.p50_us, rank.p50_us)
                entry["speedup_p99"] = ratio(got.p99_us, rank.p99_us)
            res["queries"][label] = entry
        return res

    # ----------------------------------------------------------------------- locations

    def locations(self) -> None:
        if self.index is None or self.slots is None:
            self.result["locations"] = unavailable(str(self.core_reason))
            return
        index, slots, n = self.index, self.slots, self.n
        rng = np.random.default_rng(SEED + 2)
        # A few rounds of every unit moving up to ~20 m: real AVL deltas are that small,
        # and reusing precomputed arrays keeps NumPy out of the timed call.
        jitter = [
            (self.fleet.lat + rng.normal(0, 1.5e-4, n), self.fleet.lon + rng.normal(0, 2.5e-4, n))
            for _ in range(4)
        ]
        # Every call must carry newer pings than the last, across the three benchmarks.
        clock: Iterator[int] = itertools.count(self.now_ms + 1)

        def pings(i: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], Any]:
            lat, lon = jitter[i % len(jitter)]
            return lat, lon, np.full(n, next(clock), dtype=np.int64)

        budget = self.bulk_budget
        by_slot = time_prepared(pings, lambda a: index.update_locations_by_slot(slots, *a), budget)
        ids = self.fleet.ids
        by_id = time_prepared(pings, lambda a: index.update_locations(ids, *a), budget)

        # Baseline: the per-unit call a client without the batch API would loop over, over
        # the same units as the batch up to 10k (beyond, a call would take seconds).
        m = min(n, 10_000)
        sub_ids = ids[:m]

        def one_by_one(a: tuple[list[float], list[float], int]) -> object:
            lat, lon, t = a
            for j in range(m):
                index.update_location(sub_ids[j], lat[j], lon[j], t)
            return None

        def single_pings(i: int) -> tuple[list[float], list[float], int]:
            lat, lon = jitter[i % len(jitter)]
            return lat[:m].tolist(), lon[:m].tolist(), next(clock)

        single = time_prepared(single_pings, one_by_one, budget)
        single_rate = m / (single.p50_us / 1e6)

        def entry(t: Timing, units: int) -> Result:
            rate = units / (t.p50_us / 1e6)
            return {
                "units_per_call": units,
                "call": t.as_dict(),
                "updates_per_second": rate,
                "speedup_vs_single": ratio(rate, single_rate) if single_rate else None,
            }

        # One more call of each batch kind, to record that the timed work was real: every
        # ping applied, none skipped as stale or unknown.
        reports = {
            "update_locations_by_slot": index.update_locations_by_slot(slots, *pings(0)),
            "update_locations": index.update_locations(ids, *pings(1)),
        }
        out = {
            "update_locations_by_slot": entry(by_slot, n),
            "update_locations": entry(by_id, n),
            "update_location_loop": entry(single, m),
        }
        for name, rep in reports.items():
            out[name]["check"] = {
                "applied": rep.applied,
                "skipped_stale": rep.skipped_stale,
                "skipped_unknown_unit": rep.skipped_unknown_unit,
                "skipped_bad_coordinate": rep.skipped_bad_coordinate,
            }
        self.result["locations"] = out

    def close(self) -> None:
        self.index = None
        gc.collect()


# ------------------------------------------------------------------------------ Markdown


def _us(x: Any) -> str:
    if not isinstance(x, int | float):
        return "n/a"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def _x(r: Any) -> str:
    return f"{r:.2f}x" if isinstance(r, int | float) else "n/a"


def _why(section: Any) -> str | None:
    if isinstance(section, dict) and section.get("status") == "unavailable":
        return f"unavailable: {section.get('reason')}"
    return None


def to_markdown(doc: Result) -> str:
    m = doc["machine"]
    lines = [
        "# Ranking benchmarks",
        "",
        f"Machine: {machine_line(m)} ({m['platform']}); NumPy {m['numpy']}; "
        f"dispatch_core {m['dispatch_core']}; commit {doc['git_rev']}; "
        f"{doc['started_utc']}; mode {'quick' if doc['quick'] else 'full'}.",
        "",
        "Per-call latency in µs (p50 / p99) over many calls, top-5, queries cycling through "
        f"{N_QUERY_POINTS} population-weighted incident points. Speedup = baseline / "
        "candidate, measured in the same run (> 1: the Rust core is faster). The NumPy "
        "baseline and the rivals rank by distance only, the engine by ETA plus costs.",
    ]
    for key in sorted(doc["sizes"], key=int):
        s = doc["sizes"][key]
        lines += ["", f"## {s['units']:,} units ({s['available']:,} AVAILABLE)", ""]
        b = s.get("build", {})
        mem = s.get("memory", {})
        build = _why(b) or f"{b['seconds']:.3f} s ({b['units_per_second']:,.0f} units/s)"
        lines.append(f"Build (upsert + locate every unit, through Python): {build}.")
        if s.get("sanity"):
            san = s["sanity"]
            share = san["nearest_in_rank_top_k_share"]
            lines.append(
                f"Sanity: rank candidates eligible: {'yes' if san['ok'] else 'NO'}"
                + (f"; nearest eligible unit in rank's top 5 in {share:.0%} of checks" if share
                   is not None else "") + "."
            )  # fmt: skip

        lines += [
            "",
            "### rank vs NumPy brute force",
            "",
            "| query | eligible | rank p50 | rank p99 | numpy p50 | numpy p99 "
            "| speedup p50 | speedup p99 | calls (rank/numpy) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, r in s["rank_vs_numpy"].items():
            base = r["baseline"]
            if "candidate" not in r:
                lines.append(
                    f"| {label} | {s['eligible'][label]:,} | {_why(r)} | | {_us(base['p50_us'])} "
                    f"| {_us(base['p99_us'])} | | | -/{base['calls']} |"
                )
                continue
            c = r["candidate"]
            lines.append(
                f"| {label} | {s['eligible'][label]:,} | {_us(c['p50_us'])} | {_us(c['p99_us'])} "
                f"| {_us(base['p50_us'])} | {_us(base['p99_us'])} | {_x(r['speedup_p50'])} "
                f"| {_x(r['speedup_p99'])} | {c['calls']}/{base['calls']} |"
            )

        lines += ["", "### rank_batch (per query) vs single rank calls", ""]
        bv = s["batch_vs_single"]
        if _why(bv):
            lines.append(str(_why(bv)))
        else:
            lines += [
                "| query | batch size | batch p50 / query | batch p99 / query | rank p50 "
                "| rank p99 | speedup p50 | speedup p99 |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for label, r in bv.items():
                c, base = r["candidate"], r["baseline"]
                lines.append(
                    f"| {label} | {r['batch_size']} | {_us(c['p50_us'])} | {_us(c['p99_us'])} "
                    f"| {_us(base['p50_us'])} | {_us(base['p99_us'])} | {_x(r['speedup_p50'])} "
                    f"| {_x(r['speedup_p99'])} |"
                )

        lines += ["", "### rank vs Redis GEOSEARCH and PostGIS KNN (same fleet, same queries)", ""]
        for name, rv in s["rivals"].items():
            if _why(rv):
                lines.append(f"- {name}: {_why(rv)}")
                continue
            floor = rv["round_trip_floor"]
            lines.append(
                f"- {name}: load {rv['load_seconds']:.2f} s, "
                f"{rv['storage_bytes_per_unit']:,.0f} bytes/unit stored; one round trip "
                f"(no query) p50 {_us(floor['p50_us'])} µs, p99 {_us(floor['p99_us'])} µs"
            )
        lines.append("")
        header = "| query | rank p50 | rank p99 |"
        rule = "|---|---:|---:|"
        for name in s["rivals"]:
            header += f" {name} p50 | {name} p99 | speedup p50 | speedup p99 |"
            rule += "---:|---:|---:|---:|"
        lines += [header, rule]
        for label in CAP_QUERIES:
            rk = s.get("rank_vs_numpy", {}).get(label, {}).get("candidate", {})
            row = f"| {label} | {_us(rk.get('p50_us'))} | {_us(rk.get('p99_us'))} |"
            for rv in s["rivals"].values():
                q = rv.get("queries", {}).get(label)
                if q is None:
                    row += " n/a | n/a | n/a | n/a |"
                    continue
                row += (
                    f" {_us(q['rival']['p50_us'])} | {_us(q['rival']['p99_us'])} "
                    f"| {_x(q.get('speedup_p50'))} | {_x(q.get('speedup_p99'))} |"
                )
            lines.append(row)

        lines += ["", "### Location updates through Python", ""]
        loc = s["locations"]
        if _why(loc):
            lines.append(str(_why(loc)))
        else:
            lines += [
                "| method | units per call | p50 per call (µs) | p99 per call (µs) "
                "| updates/s (p50) | vs per-unit loop |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            checks = [e["check"] for e in loc.values() if "check" in e]
            all_applied = all(
                c["applied"] == s["units"] and c["skipped_stale"] == 0 for c in checks
            )
            lines.insert(
                len(lines) - 2,
                "All units move ~20 m per call; a final call of each batch kind applied "
                f"every ping: {'yes' if all_applied else 'NO, see the JSON'}.\n",
            )
            for name, e in loc.items():
                lines.append(
                    f"| {name} | {e['units_per_call']:,} | {_us(e['call']['p50_us'])} "
                    f"| {_us(e['call']['p99_us'])} | {e['updates_per_second']:,.0f} "
                    f"| {_x(e['speedup_vs_single'])} |"
                )

        lines += ["", "### Memory per unit", "", "| what | bytes/unit |", "|---|---:|"]
        names = {
            "index_bytes_per_unit": "UnitIndex.memory_bytes() / n",
            "rss_delta_bytes_per_unit": "process RSS delta of the build / n",
            "numpy_arrays_bytes_per_unit": "NumPy baseline's arrays / n",
        }
        for k, label in names.items():
            if k in mem:
                lines.append(f"| {label} | {mem[k]:,.0f} |")
        for name, rv in s["rivals"].items():
            if not _why(rv):
                lines.append(f"| {name} storage / n | {rv['storage_bytes_per_unit']:,.0f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated fleet sizes")
    parser.add_argument("--quick", action="store_true", help="short runs (~seconds per size)")
    parser.add_argument("--out", default=str(REPO / "bench-results"), help="output directory")
    parser.add_argument(
        "--no-services", action="store_true", help="skip Redis and PostGIS (recorded as such)"
    )
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    budget = Budget.quick() if args.quick else Budget.full()
    core, core_reason = _load_core()
    if core_reason:
        print(f"warning: {core_reason}; only baselines and rivals are measured", file=sys.stderr)

    doc: Result = {
        "benchmark": "ranking",
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_rev": _git_rev(),
        "quick": args.quick,
        "machine": machine_info(),
        "k": K,
        "query_points": N_QUERY_POINTS,
        "seed": SEED,
        "budget": {"seconds": budget.seconds, "min_calls": budget.min_calls},
        "sizes": {},
    }
    for n in sizes:
        t0 = time.perf_counter()
        sections: dict[str, float] = {}

        def step(
            name: str, fn: Callable[[], None], n: int = n, sections: dict[str, float] = sections
        ) -> None:
            print(f"[{n:,} units] {name} ...", file=sys.stderr, flush=True)
            s0 = time.perf_counter()
            fn()
            sections[name] = round(time.perf_counter() - s0, 3)

        run = SizeRun(n, core, core_reason, budget)
        sections["fleet"] = round(time.perf_counter() - t0, 3)
        step("build", run.build)
        step("sanity", run.check)
        step("rank_vs_numpy", run.rank_vs_numpy)
        step("batch_vs_single", functools.partial(run.batch_vs_single, batch=256))
        step("rivals", functools.partial(run.rivals, enabled=not args.no_services))
        # Last: it moves the units, which the other sections measured in place.
        step("locations", run.locations)
        run.result["wall_seconds"] = round(time.perf_counter() - t0, 3)
        run.result["section_seconds"] = sections
        doc["sizes"][str(n)] = run.result
        run.close()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranking.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md = to_markdown(doc)
    (out / "ranking.md").write_text(md, encoding="utf-8")
    print(md)
    print(f"wrote {out / 'ranking.json'} and {out / 'ranking.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
