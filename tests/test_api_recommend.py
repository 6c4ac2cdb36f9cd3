"""RecommendUnits over gRPC: per-group rankings with their breakdown, checked against the
brute-force oracle of tests/oracle.py over the very same fleet."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dispatch_core import UnitIndex
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.types import Agency, Grade, UnitStatus
from tests import oracle
from tests.apihelp import assign, create_incident, group, rid, set_status, uid, upsert
from tests.conftest import ServerProcess, start_server

HOUR_MS = 3_600_000


def ranking(g: pb.GroupRecommendation) -> list[tuple[str, float, float, float]]:
    return [(c.unit_id, c.eta_seconds, c.distance_m, c.score) for c in g.candidates]


def test_incident_recommendation_covers_every_group_with_breakdowns(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    # Far from where other tests put units, so that theirs rank behind these.
    here = (55.0, -3.0)
    near = (here[0] + 0.001, here[1])
    far = (here[0] + 0.02, here[1])
    arv_near = upsert(stub, unit_type="arv", capabilities=["firearms"], at=near)
    arv_far = upsert(stub, unit_type="arv", capabilities=["firearms"], at=far)
    irv = upsert(stub, unit_type="irv", at=near)
    amb = upsert(stub, agency=Agency.AMBULANCE, unit_type="ambulance", at=far)
    incident = create_incident(
        stub,
        at=here,
        groups=[
            group(Agency.POLICE, 2, capabilities=["firearms"]),
            group(Agency.AMBULANCE, 1),
            group(Agency.POLICE, 1, unit_types=["irv"]),
        ],
    )
    answer = stub.RecommendUnits(pb.RecommendUnitsRequest(incident_id=incident.incident_id, k=2))
    assert answer.incident_id == incident.incident_id
    assert [g.group_index for g in answer.groups] == [0, 1, 2]
    assert [g.group for g in answer.groups] == list(incident.requirements)
    assert [c.unit_id for c in answer.groups[0].candidates] == [arv_near, arv_far]
    assert answer.groups[1].candidates[0].unit_id == amb
    assert answer.groups[2].candidates[0].unit_id == irv
    best = answer.groups[0].candidates[0]
    b = best.breakdown
    assert math.isclose(best.eta_seconds, b.mobilisation_seconds + b.travel_seconds)
    assert math.isclose(
        best.score,
        best.eta_seconds
        + b.cross_area_cost_seconds
        + b.shift_overrun_cost_seconds
        + b.specialist_cost_seconds,
    )
    assert 100 < best.distance_m < 120  # 0.001 degree of latitude

    # Once assigned, a unit is no longer recommended (AVAILABLE only by default) ...
    assign(stub, incident.incident_id, arv_near)
    after = stub.RecommendUnits(pb.RecommendUnitsRequest(incident_id=incident.incident_id, k=2))
    assert arv_near not in [c.unit_id for c in after.groups[0].candidates]
    # ... unless the caller asks for DISPATCHED units too.
    wider = stub.RecommendUnits(
        pb.RecommendUnitsRequest(
            incident_id=incident.incident_id,
            k=2,
            eligible_statuses=[pb.UNIT_STATUS_AVAILABLE, pb.UNIT_STATUS_DISPATCHED],
        )
    )
    assert arv_near in [c.unit_id for c in wider.groups[0].candidates]


def test_batch_answers_each_query_like_the_single_call(stub: pb_grpc.DispatchServiceStub) -> None:
    for i in range(6):
        upsert(stub, at=(52.2, 0.12 + 0.001 * i))
    incident = create_incident(stub, at=(52.2, 0.13))
    queries = [
        pb.RecommendUnitsRequest(incident_id=incident.incident_id, k=3),
        pb.RecommendUnitsRequest(
            ad_hoc=pb.AdHocTarget(
                location=pb.Location(lat=52.21, lon=0.12),
                grade=pb.GRADE_SIGNIFICANT,
                requirements=[group(count=2)],
            ),
        ),
    ]
    batch = stub.BatchRecommendUnits(pb.BatchRecommendUnitsRequest(queries=queries))
    assert len(batch.results) == 2
    for query, result in zip(queries, batch.results, strict=True):
        single = stub.RecommendUnits(query)
        assert [ranking(g) for g in result.groups] == [ranking(g) for g in single.groups]
    # k defaults to 5 (the group asks for fewer).
    assert len(batch.results[1].groups[0].candidates) == 5


# --------------------------------------------------------------------- the oracle


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own, so that the oracle knows every unit it ranks."""
    running = start_server(Path(tmp_path_factory.mktemp("oracle-server")))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def own_stub(own_server: ServerProcess) -> Iterator[pb_grpc.DispatchServiceStub]:
    with grpc.insecure_channel(own_server.target) as channel:
        yield pb_grpc.DispatchServiceStub(channel)


# Non-scarce capabilities plus one scarce one, so that the specialist cost shows.
CAPS = ("taser", "first_aid", "advanced_driver", "lang_polish", "dog")
TYPES = {
    Agency.POLICE: ("irv", "arv", "foot", "hovercraft"),
    Agency.FIRE: ("pump",),
    Agency.AMBULANCE: ("ambulance",),
}
AREAS = ("", "Camden", "Hackney")

# A shift that is irrelevant, over, not started yet, or ending far beyond any job; weighted
# towards eligible units so that most examples have something to rank.
SHIFTS = ("none", "none", "none", "long", "ended", "future")

# Police dominate, as in a police index; the others keep multi-agency filtering honest.
agencies = st.sampled_from([Agency.POLICE, Agency.POLICE, Agency.FIRE, Agency.AMBULANCE])

unit_strategy = st.tuples(
    agencies,
    st.integers(0, 3),  # unit type index, modulo the agency's list
    st.frozensets(st.sampled_from(CAPS), max_size=4),
    st.sampled_from([UnitStatus.AVAILABLE, UnitStatus.AVAILABLE, UnitStatus.UNAVAILABLE]),
    st.sampled_from(AREAS),
    st.sampled_from(SHIFTS),
    # Offsets from the query point, in degrees: from metres to tens of kilometres.
    st.floats(-0.3, 0.3, allow_nan=False),
    st.floats(-0.3, 0.3, allow_nan=False),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    units=st.lists(unit_strategy, min_size=0, max_size=40),
    agency=agencies,
    required=st.one_of(st.just(frozenset()), st.frozensets(st.sampled_from(CAPS), max_size=2)),
    type_filter=st.sampled_from([False, False, True]),
    grade=st.sampled_from(list(Grade)),
    statuses=st.sampled_from(
        [
            (),
            (UnitStatus.UNAVAILABLE,),
            (UnitStatus.AVAILABLE, UnitStatus.UNAVAILABLE),
        ]
    ),
    area=st.sampled_from(AREAS),
    k=st.integers(1, 12),
    centre=st.tuples(st.floats(-60.0, 60.0), st.floats(-170.0, 170.0)),
)
def test_recommendation_matches_the_brute_force_oracle(
    own_stub: pb_grpc.DispatchServiceStub,
    *,
    units: list[tuple[object, ...]],
    agency: Agency,
    required: frozenset[str],
    type_filter: bool,
    grade: Grade,
    statuses: tuple[UnitStatus, ...],
    area: str,
    k: int,
    centre: tuple[float, float],
) -> None:
    stub = own_stub
    now_ms = time.time_ns() // 1_000_000
    fleet: list[oracle.Unit] = []
    try:
        for agency_u, t, caps, status, home, shift, dlat, dlon in units:
            assert isinstance(agency_u, Agency) and isinstance(t, int)
            assert isinstance(status, UnitStatus) and isinstance(shift, str)
            assert isinstance(dlat, float) and isinstance(dlon, float)
            assert isinstance(home, str) and isinstance(caps, frozenset)
            types = TYPES[agency_u]
            unit_type = types[t % len(types)]
            start, end = {
                "none": (None, None),
                "ended": (now_ms - 10 * HOUR_MS, now_ms - HOUR_MS),
                "future": (now_ms + HOUR_MS, now_ms + 10 * HOUR_MS),
                "long": (now_ms - HOUR_MS, now_ms + 1000 * HOUR_MS),
            }[shift]
            unit_id = uid("O")
            spec = pb.UnitSpec(
                unit_id=unit_id,
                agency=int(agency_u),
                unit_type=unit_type,
                capabilities=sorted(caps),
                home_area=home,
            )
            if start is not None and end is not None:
                spec.shift_start.FromMilliseconds(start)
                spec.shift_end.FromMilliseconds(end)
            stub.UpsertUnit(pb.UpsertUnitRequest(request_id=rid(), unit=spec))
            lat, lon = centre[0] + dlat, centre[1] + dlon
            stub.UpdateLocations(
                pb.UpdateLocationsRequest(
                    unit_ids=[unit_id], lat=[lat], lon=[lon], time_unix_ms=[now_ms]
                )
            )
            if status is not UnitStatus.AVAILABLE:
                set_status(stub, unit_id, status)
            fleet.append(
                oracle.Unit(
                    unit_id,
                    int(agency_u),
                    unit_type,
                    caps,
                    int(status),
                    lat,
                    lon,
                    home or None,
                    start,
                    end,
                )
            )

        unit_types = list(TYPES[agency][:2]) if type_filter else []
        request = pb.RecommendUnitsRequest(
            ad_hoc=pb.AdHocTarget(
                location=pb.Location(lat=centre[0], lon=centre[1]),
                grade=int(grade),
                area=area,
                requirements=[
                    pb.RequirementGroup(
                        agency=int(agency),
                        unit_types=unit_types,
                        capabilities=sorted(required),
                        count=1,
                    )
                ],
            ),
            k=k,
            eligible_statuses=[int(s) for s in statuses],
        )
        answer = stub.RecommendUnits(request)
        want = oracle.rank(
            UnitIndex(),  # the server runs the default model: same config()
            fleet,
            centre[0],
            centre[1],
            now_ms=now_ms,
            k=len(fleet) + 1,
            grade=int(grade),
            required=required,
            agencies={int(agency)},
            statuses={int(s) for s in statuses} or None,
            unit_types=set(unit_types) or None,
            area=area or None,
        )
        (got,) = answer.groups
        # Shows (with --hypothesis-show-statistics) that most examples rank something.
        event(f"candidates: {'3+' if len(got.candidates) >= 3 else len(got.candidates)}")
        oracle.assert_same_ranking(ranking(got), want[:k])
        for c in got.candidates:
            terms = next(w for w in want if w.unit_id == c.unit_id).terms
            b = c.breakdown
            assert math.isclose(b.mobilisation_seconds, terms["mobilisation_seconds"])
            assert math.isclose(b.travel_seconds, terms["travel_seconds"], rel_tol=1e-9)
            assert b.cross_area_cost_seconds == terms["cross_area_cost"]
            assert b.specialist_cost_seconds == terms["specialist_cost"]
            assert b.shift_overrun_cost_seconds == terms["shift_overrun_cost"] == 0.0
    finally:
        # Retire this example's units: booked off, they are invisible to the next example,
        # which never makes OFF_DUTY eligible.
        for u in fleet:
            set_status(stub, u.unit_id, UnitStatus.OFF_DUTY)


def test_oracle_fleet_retirement_really_hides_units(own_stub: pb_grpc.DispatchServiceStub) -> None:
    # Guards the oracle test's isolation: an OFF_DUTY unit is never recommended by default.
    unit_id = upsert(own_stub, at=(10.0, 10.0))
    set_status(own_stub, unit_id, UnitStatus.OFF_DUTY)
    answer = own_stub.RecommendUnits(
        pb.RecommendUnitsRequest(
            ad_hoc=pb.AdHocTarget(
                location=pb.Location(lat=10.0, lon=10.0),
                grade=pb.GRADE_IMMEDIATE,
                requirements=[group()],
            ),
            eligible_statuses=[s for s in UnitStatus if s is not UnitStatus.OFF_DUTY],
        )
    )
    assert unit_id not in [c.unit_id for c in answer.groups[0].candidates]
