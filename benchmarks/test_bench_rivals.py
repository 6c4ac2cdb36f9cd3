"""rank against what a user would pick instead: Redis GEOSEARCH and PostGIS KNN, 10k units.

Same fleet, same query points. When a service cannot be reached the test is skipped with
the reason (the ratio is then simply absent, never invented).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from benchlib import CAP_QUERIES, K, PostgisKnn, RedisGeo
from conftest import N_UNITS, record
from pytest_benchmark.fixture import BenchmarkFixture

from dispatch_core.synthetic.fleet import Fleet

LABELS = ["none", "taser", "dog"]


@pytest.fixture(scope="module")
def redis_geo(fleet: Fleet) -> Iterator[RedisGeo]:
    try:
        geo = RedisGeo(f"dispatch_bench:pytest:{N_UNITS}")
    except Exception as exc:  # any failure to connect means "unavailable", with the reason
        pytest.skip(f"Redis unavailable: {type(exc).__name__}: {exc}")
    geo.load(fleet)
    yield geo
    geo.drop()
    geo.close()


@pytest.fixture(scope="module")
def postgis(fleet: Fleet) -> Iterator[PostgisKnn]:
    try:
        pg = PostgisKnn(f"bench_units_pytest_{N_UNITS}")
    except Exception as exc:  # any failure to connect means "unavailable", with the reason
        pytest.skip(f"PostGIS unavailable: {type(exc).__name__}: {exc}")
    pg.load(fleet)
    yield pg
    pg.drop()
    pg.close()


def _bench_nearest(
    benchmark: BenchmarkFixture,
    rival: RedisGeo | PostgisKnn,
    queries: tuple[list[float], list[float]],
    label: str,
) -> None:
    req = CAP_QUERIES[label]
    cap = req[0] if req else None
    lat, lon = queries
    points = itertools.cycle(range(len(lat)))

    def call() -> object:
        i = next(points)
        return rival.nearest(lat[i], lon[i], cap, K)

    benchmark.group = f"rank vs rivals, 10k units, required={label}"
    benchmark(call)


@pytest.mark.parametrize("label", LABELS)
def test_rank(
    benchmark: BenchmarkFixture,
    index: Any,
    queries: tuple[list[float], list[float]],
    now_ms: int,
    label: str,
) -> None:
    required = CAP_QUERIES[label]
    lat, lon = queries
    points = itertools.cycle(range(len(lat)))

    def call() -> object:
        i = next(points)
        return index.rank(lat[i], lon[i], now_ms=now_ms, k=K, required=required)

    benchmark.group = f"rank vs rivals, 10k units, required={label}"
    benchmark(call)
    for rival in ("redis", "postgis"):
        record(benchmark, f"{rival}/{label}", "UnitIndex.rank", baseline=False)


@pytest.mark.redis
@pytest.mark.parametrize("label", LABELS)
def test_redis_geosearch(
    benchmark: BenchmarkFixture,
    redis_geo: RedisGeo,
    queries: tuple[list[float], list[float]],
    label: str,
) -> None:
    _bench_nearest(benchmark, redis_geo, queries, label)
    record(benchmark, f"redis/{label}", "Redis GEOSEARCH", baseline=True)


@pytest.mark.postgres
@pytest.mark.parametrize("label", LABELS)
def test_postgis_knn(
    benchmark: BenchmarkFixture,
    postgis: PostgisKnn,
    queries: tuple[list[float], list[float]],
    label: str,
) -> None:
    _bench_nearest(benchmark, postgis, queries, label)
    record(benchmark, f"postgis/{label}", "PostGIS KNN", baseline=True)
