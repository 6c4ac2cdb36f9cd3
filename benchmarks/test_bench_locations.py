"""Moving all 10k units once: the NumPy batch calls against a per-unit update_location loop.

Every round stamps its pings one millisecond later than the last, so none is skipped as
stale and each call does the full work. Building the ping arrays is setup, not timed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from conftest import pedantic, record
from pytest_benchmark.fixture import BenchmarkFixture

from dispatch_core.synthetic.fleet import Fleet

ROUNDS = 30
Pings = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]


@pytest.fixture
def make_pings(fleet: Fleet, now_ms: int) -> Callable[[], Pings]:
    rng = np.random.default_rng(7)
    # ~20 m moves, the size of real AVL deltas between two pings.
    moves = [
        (
            fleet.lat + rng.normal(0, 1.5e-4, len(fleet)),
            fleet.lon + rng.normal(0, 2.5e-4, len(fleet)),
        )
        for _ in range(4)
    ]
    clock = itertools.count(now_ms + 1)
    rounds = itertools.count()

    def make() -> Pings:
        lat, lon = moves[next(rounds) % len(moves)]
        return lat, lon, np.full(len(fleet), next(clock), dtype=np.int64)

    return make


def test_update_locations_by_slot(
    benchmark: BenchmarkFixture,
    fresh_index: tuple[Any, npt.NDArray[np.int64]],
    make_pings: Callable[[], Pings],
) -> None:
    index, slots = fresh_index
    benchmark.group = "location updates, all 10k units"
    pedantic(
        benchmark,
        lambda lat, lon, t: index.update_locations_by_slot(slots, lat, lon, t),
        setup=lambda: (make_pings(), {}),
        rounds=ROUNDS,
        warmup_rounds=2,
    )
    record(benchmark, "locations/10k units", "update_locations_by_slot", baseline=False)


def test_update_locations_by_id(
    benchmark: BenchmarkFixture,
    fresh_index: tuple[Any, npt.NDArray[np.int64]],
    fleet: Fleet,
    make_pings: Callable[[], Pings],
) -> None:
    index, _ = fresh_index
    ids = fleet.ids
    benchmark.group = "location updates, all 10k units"
    pedantic(
        benchmark,
        lambda lat, lon, t: index.update_locations(ids, lat, lon, t),
        setup=lambda: (make_pings(), {}),
        rounds=ROUNDS,
        warmup_rounds=2,
    )
    record(benchmark, "locations/10k units", "update_locations (ids)", baseline=False)


def test_update_location_loop(
    benchmark: BenchmarkFixture,
    fresh_index: tuple[Any, npt.NDArray[np.int64]],
    fleet: Fleet,
    make_pings: Callable[[], Pings],
) -> None:
    index, _ = fresh_index
    ids = fleet.ids

    def loop(lat: list[float], lon: list[float], t: int) -> None:
        for i, uid in enumerate(ids):
            index.update_location(uid, lat[i], lon[i], t)

    def setup() -> tuple[tuple[list[float], list[float], int], dict[str, Any]]:
        lat, lon, t = make_pings()
        return (lat.tolist(), lon.tolist(), int(t[0])), {}

    benchmark.group = "location updates, all 10k units"
    pedantic(benchmark, loop, setup, rounds=max(3, ROUNDS // 6), warmup_rounds=1)
    record(benchmark, "locations/10k units", "update_location per unit", baseline=True)
