"""Bad input over gRPC: INVALID_ARGUMENT naming the field in BadRequest details, and the
server's state exactly as it was before."""

from __future__ import annotations

import math
from collections.abc import Callable

import grpc
import pytest

from dispatch_core import MAX_K
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from tests.apihelp import T0, bad_fields, create_incident, group, rid, uid, upsert

LONDON = pb.Location(lat=51.5, lon=-0.12)


def snapshot(stub: pb_grpc.DispatchServiceStub) -> tuple[list[pb.Unit], list[pb.Incident]]:
    """Every unit and incident on the server."""
    units: list[pb.Unit] = []
    token = ""
    while True:
        page = stub.ListUnits(pb.ListUnitsRequest(page_size=1000, page_token=token))
        units.extend(page.units)
        if not (token := page.next_page_token):
            break
    incidents: list[pb.Incident] = []
    while True:
        ipage = stub.ListIncidents(pb.ListIncidentsRequest(page_size=1000, page_token=token))
        incidents.extend(ipage.incidents)
        if not (token := ipage.next_page_token):
            break
    return units, incidents


def spec(**fields: object) -> pb.UnitSpec:
    base: dict[str, object] = {"unit_id": uid(), "agency": pb.AGENCY_POLICE, "unit_type": "irv"}
    base.update(fields)
    return pb.UnitSpec(**base)  # type: ignore[arg-type]


def incident(**fields: object) -> pb.CreateIncidentRequest:
    base: dict[str, object] = {
        "request_id": rid(),
        "grade": pb.GRADE_IMMEDIATE,
        "incident_type": "test",
        "location": LONDON,
        "requirements": [group()],
    }
    base.update(fields)
    return pb.CreateIncidentRequest(**base)  # type: ignore[arg-type]


def ad_hoc(**fields: object) -> pb.RecommendUnitsRequest:
    target: dict[str, object] = {
        "location": LONDON,
        "grade": pb.GRADE_IMMEDIATE,
        "requirements": [group()],
    }
    k = fields.pop("k", 0)
    statuses = fields.pop("eligible_statuses", [])
    target.update(fields)
    return pb.RecommendUnitsRequest(
        ad_hoc=pb.AdHocTarget(**target),  # type: ignore[arg-type]
        k=k,  # type: ignore[arg-type]
        eligible_statuses=statuses,  # type: ignore[arg-type]
    )


NAN, INF = math.nan, math.inf
Case = tuple[str, Callable[[], object], str]

CASES: list[Case] = [
    # UpsertUnit
    ("UpsertUnit", lambda: pb.UpsertUnitRequest(unit=spec()), "request_id"),
    ("UpsertUnit", lambda: pb.UpsertUnitRequest(request_id="r" * 65, unit=spec()), "request_id"),
    ("UpsertUnit", lambda: pb.UpsertUnitRequest(request_id=rid()), "unit"),
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(request_id=rid(), unit=spec(unit_id="")),
        "unit.unit_id",
    ),
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(request_id=rid(), unit=spec(unit_id="U" * 65)),
        "unit.unit_id",
    ),
    # 17 four-byte characters: 17 characters, 68 bytes.
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(request_id=rid(), unit=spec(unit_id="\U0001f693" * 17)),
        "unit.unit_id",
    ),
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(request_id=rid(), unit=spec(agency=0)),
        "unit.agency",
    ),
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(request_id=rid(), unit=spec(agency=9)),
        "unit.agency",
    ),
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(request_id=rid(), unit=spec(unit_type="")),
        "unit.unit_type",
    ),
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(
            request_id=rid(), unit=spec(capabilities=["taser", "firearm"])
        ),
        "unit.capabilities[1]",
    ),
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(request_id=rid(), unit=spec(home_area="A" * 65)),
        "unit.home_area",
    ),
    (
        "UpsertUnit",
        lambda: pb.UpsertUnitRequest(
            request_id=rid(), unit=spec(shift_start={"seconds": 2000}, shift_end={"seconds": 1000})
        ),
        "unit.shift_end",
    ),
    # GetUnit, ListUnits, SetUnitStatus
    ("GetUnit", pb.GetUnitRequest, "unit_id"),
    ("GetUnit", lambda: pb.GetUnitRequest(unit_id="U" * 65), "unit_id"),
    ("ListUnits", lambda: pb.ListUnitsRequest(statuses=[1, 0]), "statuses[1]"),
    ("ListUnits", lambda: pb.ListUnitsRequest(agencies=[42]), "agencies[0]"),
    ("ListUnits", lambda: pb.ListUnitsRequest(page_size=-1), "page_size"),
    ("ListUnits", lambda: pb.ListUnitsRequest(page_size=1001), "page_size"),
    ("ListUnits", lambda: pb.ListUnitsRequest(page_token="%%%not-a-token"), "page_token"),
    ("SetUnitStatus", lambda: pb.SetUnitStatusRequest(request_id=rid(), unit_id="MD21"), "status"),
    (
        "SetUnitStatus",
        lambda: pb.SetUnitStatusRequest(request_id=rid(), unit_id="MD21", status=8),
        "status",
    ),
    ("SetUnitStatus", lambda: pb.SetUnitStatusRequest(request_id=rid(), status=1), "unit_id"),
    ("SetUnitStatus", lambda: pb.SetUnitStatusRequest(unit_id="MD21", status=1), "request_id"),
    # UpdateLocations: refused whole only when malformed.
    (
        "UpdateLocations",
        lambda: pb.UpdateLocationsRequest(
            unit_ids=["a", "b"], lat=[1.0], lon=[1.0, 2.0], time_unix_ms=[1, 2]
        ),
        "lat",
    ),
    (
        "UpdateLocations",
        lambda: pb.UpdateLocationsRequest(unit_ids=["a"], lat=[1.0], lon=[1.0], time_unix_ms=[]),
        "time_unix_ms",
    ),
    (
        "UpdateLocations",
        lambda: pb.UpdateLocationsRequest(
            unit_ids=["a"] * 100_001,
            lat=[1.0] * 100_001,
            lon=[1.0] * 100_001,
            time_unix_ms=[1] * 100_001,
        ),
        "unit_ids",
    ),
    # CreateIncident
    ("CreateIncident", lambda: incident(location=pb.Location(lat=NAN, lon=0.0)), "location.lat"),
    ("CreateIncident", lambda: incident(location=pb.Location(lat=90.5, lon=0.0)), "location.lat"),
    ("CreateIncident", lambda: incident(location=pb.Location(lat=0.0, lon=INF)), "location.lon"),
    (
        "CreateIncident",
        lambda: incident(location=pb.Location(lat=0.0, lon=-180.01)),
        "location.lon",
    ),
    ("CreateIncident", lambda: incident(location=None), "location"),
    ("CreateIncident", lambda: incident(grade=0), "grade"),
    ("CreateIncident", lambda: incident(grade=5), "grade"),
    ("CreateIncident", lambda: incident(incident_type=""), "incident_type"),
    ("CreateIncident", lambda: incident(incident_id="I" * 65), "incident_id"),
    ("CreateIncident", lambda: incident(request_id=""), "request_id"),
    ("CreateIncident", lambda: incident(requirements=[]), "requirements"),
    ("CreateIncident", lambda: incident(requirements=[group()] * 17), "requirements"),
    (
        "CreateIncident",
        lambda: incident(requirements=[group(), pb.RequirementGroup(count=1)]),
        "requirements[1].agency",
    ),
    ("CreateIncident", lambda: incident(requirements=[group(count=0)]), "requirements[0].count"),
    ("CreateIncident", lambda: incident(requirements=[group(count=51)]), "requirements[0].count"),
    (
        "CreateIncident",
        lambda: incident(requirements=[group(capabilities=["dogg"])]),
        "requirements[0].capabilities[0]",
    ),
    (
        "CreateIncident",
        lambda: incident(requirements=[group(unit_types=[""])]),
        "requirements[0].unit_types[0]",
    ),
    # UpdateIncident, CloseIncident, GetIncident, ListIncidents
    (
        "UpdateIncident",
        lambda: pb.UpdateIncidentRequest(
            request_id=rid(), incident_id="X", location=pb.Location(lat=NAN, lon=0.0)
        ),
        "location.lat",
    ),
    (
        "UpdateIncident",
        lambda: pb.UpdateIncidentRequest(request_id=rid(), incident_id="X", grade=0),
        "grade",
    ),
    (
        "UpdateIncident",
        lambda: pb.UpdateIncidentRequest(
            request_id=rid(), incident_id="X", requirements=pb.Requirements()
        ),
        "requirements.groups",
    ),
    ("UpdateIncident", lambda: pb.UpdateIncidentRequest(request_id=rid(), grade=1), "incident_id"),
    ("CloseIncident", lambda: pb.CloseIncidentRequest(request_id=rid()), "incident_id"),
    ("GetIncident", pb.GetIncidentRequest, "incident_id"),
    ("ListIncidents", lambda: pb.ListIncidentsRequest(grades=[9]), "grades[0]"),
    ("ListIncidents", lambda: pb.ListIncidentsRequest(statuses=[0]), "statuses[0]"),
    # RecommendUnits, BatchRecommendUnits
    ("RecommendUnits", pb.RecommendUnitsRequest, "target"),
    ("RecommendUnits", lambda: ad_hoc(k=-1), "k"),
    ("RecommendUnits", lambda: ad_hoc(k=MAX_K + 1), "k"),
    (
        "RecommendUnits",
        lambda: ad_hoc(location=pb.Location(lat=-INF, lon=0.0)),
        "ad_hoc.location.lat",
    ),
    ("RecommendUnits", lambda: ad_hoc(location=None), "ad_hoc.location"),
    ("RecommendUnits", lambda: ad_hoc(grade=0), "ad_hoc.grade"),
    ("RecommendUnits", lambda: ad_hoc(eligible_statuses=[0]), "eligible_statuses[0]"),
    (
        "RecommendUnits",
        lambda: ad_hoc(requirements=[group(capabilities=["firearms", "laser"])]),
        "ad_hoc.requirements[0].capabilities[1]",
    ),
    ("RecommendUnits", lambda: pb.RecommendUnitsRequest(incident_id=""), "incident_id"),
    ("BatchRecommendUnits", pb.BatchRecommendUnitsRequest, "queries"),
    (
        "BatchRecommendUnits",
        lambda: pb.BatchRecommendUnitsRequest(queries=[ad_hoc()] * 1001),
        "queries",
    ),
    (
        "BatchRecommendUnits",
        lambda: pb.BatchRecommendUnitsRequest(queries=[ad_hoc(), ad_hoc(k=-5)]),
        "queries[1].k",
    ),
    # AssignUnits
    ("AssignUnits", lambda: pb.AssignUnitsRequest(request_id=rid(), incident_id="X"), "unit_ids"),
    (
        "AssignUnits",
        lambda: pb.AssignUnitsRequest(request_id=rid(), incident_id="X", unit_ids=["a", "b", "a"]),
        "unit_ids[2]",
    ),
    (
        "AssignUnits",
        lambda: pb.AssignUnitsRequest(
            request_id=rid(), incident_id="X", unit_ids=[f"u{i}" for i in range(101)]
        ),
        "unit_ids",
    ),
    (
        "AssignUnits",
        lambda: pb.AssignUnitsRequest(request_id=rid(), incident_id="X", unit_ids=[""]),
        "unit_ids[0]",
    ),
    ("AssignUnits", lambda: pb.AssignUnitsRequest(request_id=rid(), unit_ids=["a"]), "incident_id"),
]


@pytest.fixture(scope="module")
def populated(stub: pb_grpc.DispatchServiceStub) -> None:
    """Some state that a bad request could damage."""
    upsert(stub)
    create_incident(stub)


@pytest.mark.parametrize(
    ("method", "make", "field"), CASES, ids=[f"{m}-{f}-{i}" for i, (m, _, f) in enumerate(CASES)]
)
def test_bad_input_is_invalid_argument_naming_the_field_and_changes_nothing(
    stub: pb_grpc.DispatchServiceStub,
    populated: None,
    method: str,
    make: Callable[[], object],
    field: str,
) -> None:
    before = snapshot(stub)
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(make())
    assert field in bad_fields(err.value)
    assert snapshot(stub) == before


def test_every_violation_is_reported_at_once(stub: pb_grpc.DispatchServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateIncident(
            incident(
                grade=0,
                location=pb.Location(lat=NAN, lon=200.0),
                requirements=[group(count=0, capabilities=["nope"])],
            )
        )
    assert set(bad_fields(err.value)) == {
        "grade",
        "location.lat",
        "location.lon",
        "requirements[0].count",
        "requirements[0].capabilities[0]",
    }


def test_a_malformed_batch_ends_a_stream_after_applying_the_earlier_ones(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    unit_id = upsert(stub, at=None)
    good = pb.UpdateLocationsRequest(
        unit_ids=[unit_id], lat=[51.5], lon=[-0.1], time_unix_ms=[T0 + 10_000]
    )
    bad = pb.UpdateLocationsRequest(
        unit_ids=[unit_id], lat=[51.6], lon=[], time_unix_ms=[T0 + 20_000]
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.StreamLocations(iter([good, bad]))
    assert bad_fields(err.value) == ["lon"]
    assert "batch 2" in (err.value.details() or "")
    unit = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
    assert (unit.location.lat, unit.location_time.ToMilliseconds()) == (51.5, T0 + 10_000)
