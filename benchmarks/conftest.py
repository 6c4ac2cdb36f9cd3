"""Fixtures of the pytest-benchmark modules, and a summary that prints each ratio.

    pytest benchmarks --benchmark-only

These benchmarks never assert on time (docs/architecture.md: timings live in benchmarks, never in
pass/fail tests). Each test registers its result as the candidate or the baseline of a
comparison; at the end of the session every comparison is printed with the two medians,
the p99s, the ratio, the data size and the machine, since pytest-benchmark's own table
shows ratios only against the fastest entry of a group.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from benchlib import NumpyBruteForce, build_index, machine_line
from pytest_benchmark.fixture import BenchmarkFixture

from dispatch_core.synthetic.fleet import Fleet, incident_points, make_fleet

#: Fleet size of the pytest-benchmark modules: the size of a busy force on one shift.
#: `run.py` covers 1k to 100k.
N_UNITS = 10_000
N_QUERY_POINTS = 4_096
SEED = 42


@dataclass(slots=True)
class _Entry:
    median_us: float
    p99_us: float
    rounds: int


# comparison -> role ("candidate" or "baseline" name) -> entry
_RESULTS: dict[str, dict[str, _Entry]] = {}
_BASELINE: dict[str, str] = {}


def record(benchmark: BenchmarkFixture, comparison: str, role: str, *, baseline: bool) -> None:
    """Remember a finished benchmark's median and p99 under `comparison`."""
    meta: Any = benchmark.stats
    if meta is None:  # --benchmark-disable: the test ran once, untimed
        return
    data = np.asarray(meta.stats.sorted_data, dtype=np.float64) * 1e6
    _RESULTS.setdefault(comparison, {})[role] = _Entry(
        median_us=float(np.median(data)),
        p99_us=float(np.percentile(data, 99)),
        rounds=int(data.size),
    )
    if baseline:
        _BASELINE[comparison] = role
    benchmark.extra_info.update({"units": N_UNITS, "comparison": comparison, "role": role})


def pedantic(
    benchmark: BenchmarkFixture,
    target: Callable[..., object],
    setup: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]],
    *,
    rounds: int,
    warmup_rounds: int,
) -> None:
    """`benchmark.pedantic` with a fresh input per round from `setup` (untimed)."""
    run: Any = benchmark.pedantic  # pytest-benchmark leaves this method unannotated
    run(target, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("ratios against the baseline of the same run")
    tr.write_line(f"data: {N_UNITS:,} units, ~20% AVAILABLE; machine: {machine_line()}")
    for comparison, entries in sorted(_RESULTS.items()):
        base_name = _BASELINE.get(comparison)
        base = entries.get(base_name) if base_name else None
        for role, e in entries.items():
            line = (
                f"{comparison:<34} {role:<28} "
                f"median {e.median_us:10.1f} µs  p99 {e.p99_us:10.1f} µs"
            )
            if base is not None and role != base_name and e.median_us > 0:
                line += f"  speedup {base.median_us / e.median_us:7.2f}x over {base_name}"
            elif role == base_name:
                line += "  (baseline)"
            tr.write_line(line)


@pytest.fixture(scope="session")
def core() -> Any:
    return pytest.importorskip(
        "dispatch_core._core", reason="the Rust extension is not built (maturin develop)"
    )


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return make_fleet(N_UNITS, seed=SEED)


@pytest.fixture(scope="session")
def queries() -> tuple[list[float], list[float]]:
    lat, lon = incident_points(N_QUERY_POINTS, seed=SEED + 1)
    return lat.tolist(), lon.tolist()


@pytest.fixture(scope="session")
def now_ms() -> int:
    # A minute in the past, so location pings stamped after it are neither stale nor future.
    return int(time.time() * 1000) - 60_000


@pytest.fixture(scope="session")
def index(core: Any, fleet: Fleet, now_ms: int) -> Any:
    """The shared index for read-only benchmarks (ranking, rivals)."""
    idx, _ = build_index(core, fleet, now_ms)
    return idx


@pytest.fixture
def fresh_index(core: Any, fleet: Fleet, now_ms: int) -> tuple[Any, npt.NDArray[np.int64]]:
    """An index of its own for benchmarks that move units, so they disturb no other."""
    return build_index(core, fleet, now_ms)


@pytest.fixture(scope="session")
def numpy_baseline(fleet: Fleet) -> NumpyBruteForce:
    return NumpyBruteForce(fleet)
