"""RecommendUnits with its whole team against RecommendUnits of one group, 10k units.

Both go through `DispatchCore.recommend` (request bytes in, response bytes out: what the
gRPC servicer calls) on the same seeded fleet at the same incident points. The candidate
asks for a 3-group plan (2 police units of any kind, 1 with a taser, 1 dog unit), so it
pays three per-group rankings and the team's own ETA-ordered searches; the baseline asks
for one police unit: one ranking, and a team of one.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import record
from pytest_benchmark.fixture import BenchmarkFixture

from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.synthetic.fleet import Fleet, seed_pipeline
from dispatch_core.types import Agency, Grade

PLANS = {
    "team_3_groups": [((), 2), (("taser",), 1), (("dog",), 1)],
    "one_group": [((), 1)],
}


@pytest.fixture(scope="module")
def seeded(core: Any, fleet: Fleet, now_ms: int) -> Any:
    pipeline = Pipeline(core.DispatchCore(), clock_ms=lambda: now_ms)
    seed_pipeline(pipeline, fleet, now_ms)
    return pipeline.core


@pytest.mark.parametrize("plan", list(PLANS))
def test_recommend(
    benchmark: BenchmarkFixture,
    seeded: Any,
    queries: tuple[list[float], list[float]],
    now_ms: int,
    plan: str,
) -> None:
    groups = [
        pb.RequirementGroup(agency=int(Agency.POLICE), capabilities=list(caps), count=count)
        for caps, count in PLANS[plan]
    ]
    lat, lon = queries
    requests = [
        pb.RecommendUnitsRequest(
            ad_hoc=pb.AdHocTarget(
                location=pb.Location(lat=a, lon=o), grade=int(Grade.IMMEDIATE), requirements=groups
            )
        ).SerializeToString()
        for a, o in zip(lat, lon, strict=True)
    ]
    points = itertools.cycle(requests)
    # Checked once, untimed: the team is really there.
    answer = pb.RecommendUnitsResponse.FromString(seeded.recommend(requests[0], now_ms + 1_000))
    assert len(answer.team) + sum(s.missing for s in answer.shortfalls) == sum(
        count for _, count in PLANS[plan]
    )

    def call() -> object:
        return seeded.recommend(next(points), now_ms + 1_000)

    benchmark.group = "RecommendUnits with its team: 3-group plan vs one group, 10k units"
    benchmark(call)
    baseline = plan == "one_group"
    record(benchmark, "recommend/team", f"DispatchCore.recommend {plan}", baseline=baseline)
