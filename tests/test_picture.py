"""The operating picture and coverage: counts per area and covered cells exactly equal a
brute-force computation over small random fleets; and the RPCs over real gRPC."""

from __future__ import annotations

import math
import threading

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch_core import DispatchCore, UnitIndex
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Agency, Grade, IncidentStatus, UnitStatus
from dispatch_core.views.picture import AreaMap, CoverageSpec, SharedPictures, compute_picture
from tests import oracle
from tests.apihelp import T0, bad_fields, upsert

AREAS = AreaMap.london()
TYPES = [(Agency.POLICE, "irv"), (Agency.POLICE, "dog"), (Agency.FIRE, "pump")]

units_s = st.lists(
    st.tuples(
        st.sampled_from(TYPES),
        st.sampled_from(list(UnitStatus)),
        st.booleans(),
        st.none() | st.tuples(st.floats(51.3, 51.7), st.floats(-0.5, 0.3)),
    ),
    max_size=40,
)


#: The statuses a unit passes through after DISPATCHED, in lifecycle order.
_AFTER_DISPATCH = (UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE, UnitStatus.COMMITTED)
NOW_MS = T0 + 60_000


def load(rows: list[tuple]) -> tuple[Pipeline, UnitIndex, list[oracle.Unit]]:  # type: ignore[type-arg]
    """The fleet of `rows` in a real state machine, every status reached through the
    lifecycle (busy statuses through an incident of their own, assigned and walked on),
    and the same fleet in a unit index for the ranking oracle."""
    pipeline = Pipeline(DispatchCore(), clock_ms=lambda: NOW_MS - 30_000)
    index = UnitIndex()
    units = []
    for i, ((agency, utype), status, dog, pos) in enumerate(rows):
        caps = sorted({"dog"} if dog else set())
        spec = pb.UnitSpec(unit_id=f"U{i}", agency=int(agency), unit_type=utype, capabilities=caps)
        pipeline.command(
            "UpsertUnit", pb.UpsertUnitRequest(request_id=f"u{i}", unit=spec), pb.UpsertUnitResponse
        )
        index.upsert_unit(f"U{i}", agency=agency, unit_type=utype, capabilities=caps, status=status)
        if pos:
            ping = pb.UpdateLocationsRequest(
                unit_ids=[f"U{i}"], lat=[pos[0]], lon=[pos[1]], time_unix_ms=[T0]
            )
            assert pipeline.update_locations(ping.SerializeToString()).applied == 1
            index.update_location(f"U{i}", pos[0], pos[1], T0)
        _reach(pipeline, f"U{i}", UnitStatus(status), pos or (51.5, -0.12))
        units.append(
            oracle.Unit(f"U{i}", agency, utype, frozenset(caps), status, *(pos or (None, None)))
        )
    return pipeline, index, units


def _reach(pipeline: Pipeline, unit_id: str, status: UnitStatus, at: tuple[float, float]) -> None:
    def set_status(to: UnitStatus) -> None:
        request = pb.SetUnitStatusRequest(
            request_id=f"s-{unit_id}-{to}", unit_id=unit_id, status=int(to)
        )
        pipeline.command("SetUnitStatus", request, pb.SetUnitStatusResponse)

    if status in (UnitStatus.UNAVAILABLE, UnitStatus.OFF_DUTY):
        set_status(status)
    elif status != UnitStatus.AVAILABLE:
        holder = pb.CreateIncidentRequest(
            request_id=f"h-{unit_id}",
            incident_id=f"H-{unit_id}",
            grade=int(Grade.SIGNIFICANT),
            incident_type="holder",
            location=pb.Location(lat=at[0], lon=at[1]),
            requirements=[pb.RequirementGroup(agency=int(Agency.POLICE), count=1)],
        )
        pipeline.command("CreateIncident", holder, pb.CreateIncidentResponse)
        assign = pb.AssignUnitsRequest(
            request_id=f"a-{unit_id}", incident_id=f"H-{unit_id}", unit_ids=[unit_id]
        )
        pipeline.command("AssignUnits", assign, pb.AssignUnitsResponse)
        for step in _AFTER_DISPATCH:
            if list(UnitStatus).index(step) > list(UnitStatus).index(status):
                break
            set_status(step)


def incidents_of(pipeline: Pipeline) -> list[pb.Incident]:
    request = pb.ListIncidentsRequest(page_size=1000).SerializeToString()
    return list(
        pb.ListIncidentsResponse.FromString(pipeline.core.list_incidents(request)).incidents
    )


def nearest_area(lat: float, lon: float) -> int:
    d = [oracle.haversine_m(6371008.8, lat, lon, a.lat, a.lon) for a in AREAS.areas]
    return int(np.argmin(d))


@settings(max_examples=40, deadline=None)
@given(
    rows=units_s,
    target=st.floats(0, 1500),
    cell_m=st.sampled_from([3000.0, 5000.0]),
    unit_types=st.sampled_from([(), ("irv",), ("dog", "pump")]),
    required=st.sampled_from([(), ("dog",)]),
)
def test_picture_equals_brute_force(
    rows: list,
    target: float,
    cell_m: float,
    unit_types: tuple[str, ...],  # type: ignore[type-arg]
    required: tuple[str, ...],
) -> None:
    pipeline, index, units = load(rows)
    spec = CoverageSpec(
        agencies=(Agency.POLICE, Agency.FIRE),
        unit_types=unit_types,
        required=required,
        target_seconds=target,
        cell_m=cell_m,
    )
    # Besides the holders of busy units, an incident at every placed unit: some closed.
    for i, u in enumerate(units):
        if u.lat is None or u.lon is None:
            continue
        create = pb.CreateIncidentRequest(
            request_id=f"i{i}",
            incident_id=f"I{i}",
            grade=1 + i % 4,  # type: ignore[arg-type]
            incident_type="x",
            location=pb.Location(lat=u.lat, lon=u.lon),
            requirements=[pb.RequirementGroup(agency=int(Agency.POLICE), count=1)],
        )
        pipeline.command("CreateIncident", create, pb.CreateIncidentResponse)
        if i % 3 == 0:
            close = pb.CloseIncidentRequest(request_id=f"c{i}", incident_id=f"I{i}")
            pipeline.command("CloseIncident", close, pb.CloseIncidentResponse)
    incidents = incidents_of(pipeline)
    picture = compute_picture(pipeline.core, spec, now_ms=NOW_MS)

    # Counts per area, unit by unit.
    for i, area in enumerate(picture.areas):
        mine = [u for u in units if u.lat is not None and nearest_area(u.lat, u.lon) == i]
        want_status: dict[str, int] = {}
        for u in mine:
            name = UnitStatus(u.status).name
            want_status[name] = want_status.get(name, 0) + 1
        assert area.units_by_status == want_status
        assert area.available == sum(u.status == UnitStatus.AVAILABLE for u in mine)
        assert area.on_duty == sum(u.status != UnitStatus.OFF_DUTY for u in mine)
        open_here = [
            x
            for x in incidents
            if x.status != IncidentStatus.CLOSED
            and nearest_area(x.location.lat, x.location.lon) == i
        ]
        assert sum(area.open_incidents_by_grade.values()) == len(open_here)
        unassigned = [x for x in open_here if not x.HasField("first_assigned_time")]
        assert area.unassigned_incidents == len(unassigned)
        oldest = max(
            ((NOW_MS - x.create_time.ToMilliseconds()) / 1000 for x in unassigned), default=0.0
        )
        assert area.oldest_unassigned_age_seconds == oldest

    # Coverage, cell by cell, against every eligible unit's ETA.
    lat, lon, cell_area = AREAS.cells(cell_m)
    config = index.config()
    covered = set()
    for j, (a, o) in enumerate(zip(lat, lon, strict=True)):
        ranked = oracle.rank(
            index,
            units,
            float(a),
            float(o),
            now_ms=NOW_MS,
            k=len(units) or 1,
            grade=Grade.IMMEDIATE,
            required=frozenset(required),
            agencies={Agency.POLICE, Agency.FIRE},
            unit_types=set(unit_types) or None,
        )
        if any(r.eta_seconds <= target for r in ranked):
            covered.add(j)
    assert config["circuity"] > 0
    uncovered = {
        (float(a), float(o))
        for a, o in zip(picture.uncovered_lat, picture.uncovered_lon, strict=True)
    }
    want_uncovered = {(float(lat[j]), float(lon[j])) for j in range(len(lat)) if j not in covered}
    assert uncovered == want_uncovered
    for i, area in enumerate(picture.areas):
        assert area.cells_total == int((cell_area == i).sum())
        assert area.cells_covered == sum(1 for j in covered if cell_area[j] == i)


def test_cells_belong_to_london() -> None:
    lat, lon, area = AREAS.cells(500.0)
    assert len(lat) > 5_000
    assert set(area.tolist()) == set(range(len(AREAS.areas)))
    assert lat.min() > 51.2 and lat.max() < 51.8 and lon.min() > -0.6 and lon.max() < 0.4


def test_get_operating_picture_over_grpc(stub) -> None:  # type: ignore[no-untyped-def]
    westminster = next(a for a in AREAS.areas if a.name == "Westminster")
    upsert(stub, unit_type="irv", at=(westminster.lat, westminster.lon))
    picture = stub.GetOperatingPicture(
        pb.GetOperatingPictureRequest(
            coverage=pb.CoverageQuery(target_seconds=300, include_uncovered_cells=True)
        )
    )
    assert len(picture.areas) == len(AREAS.areas)
    area = next(a for a in picture.areas if a.area == "Westminster")
    assert area.units_by_status["AVAILABLE"] >= 1 and area.cells_covered >= 1
    assert 0 < picture.coverage_ratio < 1
    assert len(picture.uncovered_cells) == sum(
        a.cells_total - a.cells_covered for a in picture.areas
    )
    assert picture.coverage.target_seconds == 300 and list(picture.coverage.unit_types) == ["irv"]
    assert math.isclose(area.coverage_ratio, area.cells_covered / area.cells_total)


@pytest.mark.parametrize(
    ("coverage", "field"),
    [
        (pb.CoverageQuery(cell_m=10), "coverage.cell_m"),
        (pb.CoverageQuery(target_seconds=-5), "coverage.target_seconds"),
        (pb.CoverageQuery(capabilities=["tazer"]), "coverage.capabilities[0]"),
        (pb.CoverageQuery(agencies=[9]), "coverage.agencies[0]"),
    ],
)
def test_bad_picture_request_names_the_field(stub, coverage: pb.CoverageQuery, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        stub.GetOperatingPicture(pb.GetOperatingPictureRequest(coverage=coverage))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(err.value)


def test_watch_operating_picture_streams_until_cancelled(stub) -> None:  # type: ignore[no-untyped-def]
    stream = stub.WatchOperatingPicture(pb.WatchOperatingPictureRequest(interval_seconds=1))
    first = next(stream)
    second = next(stream)
    stream.cancel()
    assert second.computed_at.ToMilliseconds() >= first.computed_at.ToMilliseconds() + 900


def test_coverage_answered_chunk_by_chunk_equals_one_pass() -> None:
    # Thousands of cells: the state machine answers them a chunk per read lock, the unit
    # index in one pass; a cell must not change its answer at a chunk boundary.
    rows = [
        (TYPES[i % 3], UnitStatus.AVAILABLE, i % 2 == 0, (51.3 + 0.01 * i, -0.5 + 0.02 * i))
        for i in range(40)
    ]
    pipeline, index, _ = load(rows)
    lat, lon, _ = AREAS.cells(500.0)
    assert len(lat) > 4 * 512
    kwargs = {"target_seconds": 300.0, "now_ms": NOW_MS, "agencies": [int(Agency.POLICE)]}
    chunked = pipeline.core.coverage(lat, lon, **kwargs)  # type: ignore[arg-type]
    whole = index.coverage(lat, lon, **kwargs)  # type: ignore[arg-type]
    assert chunked.any() and not chunked.all()
    assert (chunked == whole).all()


def test_watching_streams_share_one_computation() -> None:
    calls: list[CoverageSpec] = []
    started = threading.Event()

    def compute(spec: CoverageSpec, include_cells: bool) -> pb.OperatingPicture:
        calls.append(spec)
        started.wait(1.0)
        return pb.OperatingPicture(compute_seconds=len(calls))

    shared = SharedPictures(compute, max_age_s=60.0)
    spec = CoverageSpec()
    results: list[pb.OperatingPicture] = []
    threads = [
        threading.Thread(target=lambda: results.append(shared.get(spec, False))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    started.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 8
    assert {r.compute_seconds for r in results} == {1}
    # Another question is computed on its own.
    shared.get(CoverageSpec(target_seconds=300.0), False)
    assert len(calls) == 2
