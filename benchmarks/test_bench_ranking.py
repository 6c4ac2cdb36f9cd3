"""UnitIndex.rank (the Rust core through Python) against a NumPy brute force, 10k units.

Same fleet, same query points, same top-5 and eligibility (AVAILABLE plus the required
capability); see `benchlib.NumpyBruteForce` for how the baseline is written and why.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from benchlib import CAP_QUERIES, K, NumpyBruteForce
from conftest import record
from pytest_benchmark.fixture import BenchmarkFixture


@pytest.mark.parametrize("label", list(CAP_QUERIES))
def test_rank(
    benchmark: BenchmarkFixture,
    index: Any,
    queries: tuple[list[float], list[float]],
    now_ms: int,
    label: str,
) -> None:
    required = CAP_QUERIES[label]
    lat, lon = queries
    # A new point every call, so no call answers the previous one's question again.
    points = itertools.cycle(range(len(lat)))

    def call() -> object:
        i = next(points)
        return index.rank(lat[i], lon[i], now_ms=now_ms, k=K, required=required)

    benchmark.group = f"rank vs numpy, 10k units, required={label}"
    benchmark(call)
    record(benchmark, f"rank/{label}", "UnitIndex.rank", baseline=False)


@pytest.mark.parametrize("label", list(CAP_QUERIES))
def test_numpy_baseline(
    benchmark: BenchmarkFixture,
    numpy_baseline: NumpyBruteForce,
    queries: tuple[list[float], list[float]],
    label: str,
) -> None:
    required = numpy_baseline.required_mask(CAP_QUERIES[label])
    lat, lon = queries
    points = itertools.cycle(range(len(lat)))

    def call() -> object:
        i = next(points)
        return numpy_baseline.top_k(lat[i], lon[i], required, K)

    benchmark.group = f"rank vs numpy, 10k units, required={label}"
    benchmark(call)
    record(benchmark, f"rank/{label}", "numpy brute force", baseline=True)
