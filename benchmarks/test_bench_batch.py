"""rank_batch over 256 query points against 256 single rank calls, 10k units.

Both answer the same 256 questions; the difference is the per-call crossing into Rust
(argument conversion, result objects) that a batch pays once.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from benchlib import CAP_QUERIES, K
from conftest import record
from pytest_benchmark.fixture import BenchmarkFixture

BATCH = 256


@pytest.mark.parametrize("label", ["none", "dog"])
def test_rank_batch(
    benchmark: BenchmarkFixture,
    index: Any,
    queries: tuple[list[float], list[float]],
    now_ms: int,
    label: str,
) -> None:
    required = CAP_QUERIES[label]
    lat = np.asarray(queries[0])
    lon = np.asarray(queries[1])
    starts = itertools.cycle(range(0, lat.size - BATCH, BATCH))

    def call() -> object:
        s = next(starts)
        return index.rank_batch(
            lat[s : s + BATCH], lon[s : s + BATCH], now_ms=now_ms, k=K, required=required
        )

    benchmark.group = f"rank_batch vs rank x{BATCH}, 10k units, required={label}"
    benchmark(call)
    record(benchmark, f"batch/{label} ({BATCH} queries)", "rank_batch", baseline=False)


@pytest.mark.parametrize("label", ["none", "dog"])
def test_rank_loop(
    benchmark: BenchmarkFixture,
    index: Any,
    queries: tuple[list[float], list[float]],
    now_ms: int,
    label: str,
) -> None:
    required = CAP_QUERIES[label]
    lat, lon = queries
    starts = itertools.cycle(range(0, len(lat) - BATCH, BATCH))

    def call() -> object:
        s = next(starts)
        return [
            index.rank(lat[i], lon[i], now_ms=now_ms, k=K, required=required)
            for i in range(s, s + BATCH)
        ]

    benchmark.group = f"rank_batch vs rank x{BATCH}, 10k units, required={label}"
    benchmark(call)
    record(benchmark, f"batch/{label} ({BATCH} queries)", f"rank x{BATCH}", baseline=True)
