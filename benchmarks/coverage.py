"""Coverage of all London cells: the Rust core against a NumPy brute force, same run.

    python benchmarks/coverage.py [--sizes 10000,100000] [--map docs/coverage-map.png]

For each fleet size it times `UnitIndex.coverage` over every 500 m cell of London (the
default question: an AVAILABLE police IRV within the 15-minute I-grade target) and the whole
operating picture, then computes the same cell set by brute force (every eligible unit's
ETA to every cell, NumPy, in chunks), checks the two agree exactly, and prints the ratio.
With --map it also renders the coverage map of the first size as a PNG.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dispatch_core import EARTH_RADIUS_M, DispatchCore, UnitIndex
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.synthetic.fleet import load_into, make_fleet, seed_pipeline
from dispatch_core.types import Agency, UnitStatus
from dispatch_core.views.picture import AreaMap, CoverageSpec, compute_picture

NOW_MS = 1_750_000_000_000


def brute_force(
    index: UnitIndex, spec: CoverageSpec, lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Every eligible unit's ETA (the ranking model) to every cell, the obvious way."""
    config = index.config()
    agency, status, type_ix, names, ulat, ulon, _ = index.unit_columns()
    wanted = [i for i, n in enumerate(names) if not spec.unit_types or n in spec.unit_types]
    ok = (
        np.isin(status, [int(s) for s in spec.statuses])
        & np.isin(agency, [int(a) for a in spec.agencies])
        & np.isin(type_ix, wanted)
        & np.isfinite(ulat)
    )
    speeds = config["unit_type_speed_mps"]
    agency_speeds = config["agency_speed_mps"]
    assert isinstance(speeds, dict) and isinstance(agency_speeds, dict)
    speed = np.array(
        [
            speeds.get(f"{Agency(a).name}/{names[t]}", agency_speeds[Agency(a).name])
            for a, t in zip(agency[ok], type_ix[ok], strict=True)
        ]
    )
    blue = config["blue_light_factor"]
    mob = config["mobilisation_seconds"]
    assert isinstance(blue, dict) and isinstance(mob, dict)
    pace = float(config["circuity"]) / (speed * float(blue[spec.grade.name]))  # type: ignore[arg-type]
    mobilisation = np.array([float(mob[UnitStatus(s).name]) for s in status[ok]])
    p2, l2 = np.radians(ulat[ok]), np.radians(ulon[ok])
    covered = np.zeros(len(lat), dtype=bool)
    for start in range(0, len(lat), 256):
        p1 = np.radians(lat[start : start + 256])[:, None]
        l1 = np.radians(lon[start : start + 256])[:, None]
        h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
        dist = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
        eta = mobilisation + dist * pace
        covered[start : start + 256] = (eta <= spec.target_seconds).any(axis=1)
    return covered


def state_machine(n: int) -> DispatchCore:
    """The same fleet in the state machine the server runs, loaded through its commands."""
    pipeline = Pipeline(DispatchCore(), clock_ms=lambda: NOW_MS)
    seed_pipeline(pipeline, make_fleet(n, seed=42), NOW_MS)
    return pipeline.core


def measure(n: int, repeats: int = 5) -> dict[str, object]:
    index = UnitIndex()
    load_into(index, make_fleet(n, seed=42), NOW_MS)
    core = state_machine(n)
    areas = AreaMap.london()
    spec = CoverageSpec()
    lat, lon, _ = areas.cells(spec.cell_m)
    kwargs = {
        "target_seconds": spec.target_seconds,
        "now_ms": NOW_MS,
        "grade": int(spec.grade),
        "agencies": [int(a) for a in spec.agencies],
        "unit_types": list(spec.unit_types),
    }
    core_s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        covered = index.coverage(lat, lon, **kwargs)  # type: ignore[arg-type]
        core_s.append(time.perf_counter() - t0)
    picture_s = [compute_picture(core, spec, NOW_MS, areas).compute_seconds for _ in range(repeats)]
    t0 = time.perf_counter()
    oracle = brute_force(index, spec, lat, lon)
    brute_s = time.perf_counter() - t0
    assert (covered == oracle).all(), "the core and the brute force disagree"
    return {
        "units": n,
        "cells": len(lat),
        "covered_share": float(covered.mean()),
        "core_ms_median": 1e3 * float(np.median(core_s)),
        "picture_ms_median": 1e3 * float(np.median(picture_s)),
        "brute_force_ms": 1e3 * brute_s,
        "speedup": brute_s / float(np.median(core_s)),
    }


def render_map(n: int, path: Path) -> None:
    """Coverage map: covered and uncovered cells, available IRVs, borough centroids."""
    import matplotlib  # noqa: PLC0415 - only the map needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    index = UnitIndex()
    load_into(index, make_fleet(n, seed=42), NOW_MS)
    areas = AreaMap.london()
    spec = CoverageSpec(target_seconds=300.0)
    picture = compute_picture(state_machine(n), spec, NOW_MS, areas)
    lat, lon, _ = areas.cells(spec.cell_m)
    fig, ax = plt.subplots(figsize=(9, 6.5), dpi=110)
    ax.scatter(lon, lat, s=6, c="#b7e4c7", marker="s", label="covered cell")
    ax.scatter(
        picture.uncovered_lon,
        picture.uncovered_lat,
        s=6,
        c="#e76f51",
        marker="s",
        label="uncovered cell",
    )
    _, status, type_ix, names, ulat, ulon, _ = index.unit_columns()
    irv = (status == UnitStatus.AVAILABLE) & (type_ix == names.index("irv"))
    ax.scatter(ulon[irv], ulat[irv], s=3, c="#1d3557", label="available IRV")
    for a in areas.areas:
        ax.annotate(a.name, (a.lon, a.lat), fontsize=5, ha="center", color="#333333")
    share = 1 - len(picture.uncovered_lat) / len(lat)
    ax.set_title(
        f"Where an available IRV arrives within 5 min (I-grade blue lights): {share:.0%} of "
        f"London's 500 m cells\n{n:,} units, synthetic fleet; areas by nearest borough centroid"
    )
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_aspect(1 / np.cos(np.radians(51.5)))
    ax.legend(loc="lower left", fontsize=7, markerscale=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--map", type=Path, default=None, help="also render a coverage map PNG")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    lines = [
        "| units | cells | covered | core ms (p50) | whole picture ms | brute force ms | speedup |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['units']:,} | {r['cells']:,} | {r['covered_share']:.1%} "
            f"| {r['core_ms_median']:.1f} | {r['picture_ms_median']:.1f} "
            f"| {r['brute_force_ms']:.0f} | {r['speedup']:.0f}x |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(rows, indent=2))
    (args.out / "coverage.md").write_text(
        "# Coverage of all London cells (AVAILABLE police IRV within 15 min)\n\n" + table + "\n"
    )
    if args.map is not None:
        render_map(int(args.sizes.split(",")[0]), args.map)
        print(f"map written to {args.map}")


if __name__ == "__main__":
    main()
