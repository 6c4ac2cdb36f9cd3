"""The operating picture and coverage: counts per area and covered cells exactly equal a
brute-force computation over small random fleets; and the RPCs over real gRPC."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch_core import UnitIndex
from dispatch_core.incidents import Incident
from dispatch_core.picture import AreaMap, CoverageSpec, compute_picture
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Agency, Grade, IncidentStatus, UnitStatus
from tests import oracle
from tests.apihelp import bad_fields, upsert

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


def load(rows: list[tuple]) -> tuple[UnitIndex, list[oracle.Unit]]:  # type: ignore[type-arg]
    index = UnitIndex()
    units = []
    for i, ((agency, utype), status, dog, pos) in enumerate(rows):
        caps = frozenset({"dog"} if dog else set())
        index.upsert_unit(
            f"U{i}", agency=agency, unit_type=utype, capabilities=sorted(caps), status=status
        )
        if pos:
            index.update_location(f"U{i}", pos[0], pos[1], 1)
        units.append(oracle.Unit(f"U{i}", agency, utype, caps, status, *(pos or (None, None))))
    return index, units


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
    index, units = load(rows)
    spec = CoverageSpec(
        agencies=(Agency.POLICE, Agency.FIRE),
        unit_types=unit_types,
        required=required,
        target_seconds=target,
        cell_m=cell_m,
    )
    incidents = [
        Incident(
            f"I{i}",
            Grade(1 + i % 4),
            "x",
            u.lat,
            u.lon,
            "",
            (),
            IncidentStatus.OPEN if i % 3 else IncidentStatus.CLOSED,
            (),
            (),
            0,
            first_assigned_ms=None if i % 2 else 500,
        )
        for i, u in enumerate(units)
        if u.lat is not None and u.lon is not None
    ]
    picture = compute_picture(index, incidents, AREAS, spec, now_ms=60_000)

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
            if x.status != IncidentStatus.CLOSED and nearest_area(x.lat, x.lon) == i
        ]
        assert sum(area.open_incidents_by_grade.values()) == len(open_here)
        assert area.unassigned_incidents == sum(x.first_assigned_ms is None for x in open_here)

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
            now_ms=60_000,
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
