"""Units over gRPC: register, read, list, and the status lifecycle of docs/domain.md."""

from __future__ import annotations

import grpc
import pytest

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.types import Agency, IncidentStatus, UnitStatus
from tests.apihelp import (
    T0,
    WESTMINSTER,
    assign,
    create_incident,
    not_found,
    precondition_subjects,
    rid,
    set_status,
    status_of,
    uid,
    upsert,
)

S = UnitStatus


def test_upsert_creates_then_updates_keeping_status_and_position(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    unit_id = uid()
    spec = pb.UnitSpec(
        unit_id=unit_id,
        agency=pb.AGENCY_POLICE,
        unit_type="arv",
        capabilities=["firearms", "taser"],
        home_area="Westminster",
    )
    spec.shift_start.FromMilliseconds(1_700_000_000_000)
    spec.shift_end.FromMilliseconds(1_700_036_000_000)
    first = stub.UpsertUnit(pb.UpsertUnitRequest(request_id=rid(), unit=spec))
    assert first.created
    assert first.unit.unit_id == unit_id
    assert first.unit.status == pb.UNIT_STATUS_AVAILABLE
    assert list(first.unit.capabilities) == ["firearms", "taser"]
    assert first.unit.shift_end.ToMilliseconds() == 1_700_036_000_000
    assert not first.unit.HasField("location")

    stub.UpdateLocations(
        pb.UpdateLocationsRequest(unit_ids=[unit_id], lat=[51.5], lon=[-0.12], time_unix_ms=[T0])
    )
    set_status(stub, unit_id, S.UNAVAILABLE)
    spec.capabilities[:] = ["firearms"]
    spec.home_area = "Camden"
    second = stub.UpsertUnit(pb.UpsertUnitRequest(request_id=rid(), unit=spec))
    assert not second.created
    assert list(second.unit.capabilities) == ["firearms"]
    assert second.unit.home_area == "Camden"
    # Static attributes changed; live state did not.
    assert second.unit.status == pb.UNIT_STATUS_UNAVAILABLE
    assert (second.unit.location.lat, second.unit.location.lon) == (51.5, -0.12)
    assert second.unit.location_time.ToMilliseconds() == T0

    got = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
    assert got == second.unit


def test_get_unknown_unit_is_not_found_naming_it(stub: pb_grpc.DispatchServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.GetUnit(pb.GetUnitRequest(unit_id="NOPE-1"))
    assert not_found(err.value) == ("unit", "NOPE-1")


def test_list_units_filters_and_pages_without_gaps_or_repeats(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    area = uid("AREA")
    police = sorted(upsert(stub, home_area=area) for _ in range(7))
    fire = upsert(stub, agency=Agency.FIRE, unit_type="pump", home_area=area)
    set_status(stub, police[0], S.OFF_DUTY)

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = stub.ListUnits(
            pb.ListUnitsRequest(
                home_area=area,
                agencies=[pb.AGENCY_POLICE],
                statuses=[pb.UNIT_STATUS_AVAILABLE],
                page_size=2,
                page_token=token,
            )
        )
        pages += 1
        assert len(page.units) <= 2
        seen.extend(u.unit_id for u in page.units)
        token = page.next_page_token
        if not token:
            break
    assert seen == police[1:]
    assert pages == 3

    everything = stub.ListUnits(pb.ListUnitsRequest(home_area=area))
    assert [u.unit_id for u in everything.units] == sorted([*police, fire])
    assert everything.next_page_token == ""


def test_the_whole_lifecycle_loop(stub: pb_grpc.DispatchServiceStub) -> None:
    unit_id = upsert(stub)
    incident = create_incident(stub)
    assign(stub, incident.incident_id, unit_id)
    unit = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
    assert unit.status == pb.UNIT_STATUS_DISPATCHED
    assert unit.incident_id == incident.incident_id

    assert set_status(stub, unit_id, S.EN_ROUTE) == ""
    assert set_status(stub, unit_id, S.ON_SCENE) == ""
    attended = stub.GetIncident(pb.GetIncidentRequest(incident_id=incident.incident_id)).incident
    assert attended.status == IncidentStatus.ATTENDED
    assert attended.HasField("first_on_scene_time")
    assert list(attended.attached_unit_ids) == [unit_id]

    # Leaving the scene still tied up releases the unit from the incident.
    assert set_status(stub, unit_id, S.COMMITTED) == incident.incident_id
    after = stub.GetIncident(pb.GetIncidentRequest(incident_id=incident.incident_id)).incident
    assert list(after.attached_unit_ids) == []
    assert list(after.assigned_unit_ids) == [unit_id]
    assert stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit.incident_id == ""

    assert set_status(stub, unit_id, S.AVAILABLE) == ""
    assert set_status(stub, unit_id, S.UNAVAILABLE) == ""
    assert set_status(stub, unit_id, S.OFF_DUTY) == ""
    assert set_status(stub, unit_id, S.AVAILABLE) == ""


def test_stood_down_unit_is_released(stub: pb_grpc.DispatchServiceStub) -> None:
    unit_id = upsert(stub)
    incident = create_incident(stub)
    assign(stub, incident.incident_id, unit_id)
    set_status(stub, unit_id, S.EN_ROUTE)
    assert set_status(stub, unit_id, S.AVAILABLE) == incident.incident_id
    got = stub.GetIncident(pb.GetIncidentRequest(incident_id=incident.incident_id)).incident
    assert list(got.attached_unit_ids) == []
    # Still dispatched: a unit was assigned, even if it has been stood down since.
    assert got.status == IncidentStatus.DISPATCHED


REFUSED = [
    # Only an assignment dispatches.
    (S.AVAILABLE, S.DISPATCHED),
    (S.AVAILABLE, S.ON_SCENE),
    (S.AVAILABLE, S.EN_ROUTE),
    (S.AVAILABLE, S.COMMITTED),
    (S.UNAVAILABLE, S.ON_SCENE),
    (S.OFF_DUTY, S.EN_ROUTE),
    (S.COMMITTED, S.OFF_DUTY),
    # Attached units cannot book off without being released.
    (S.DISPATCHED, S.OFF_DUTY),
    (S.EN_ROUTE, S.UNAVAILABLE),
    (S.ON_SCENE, S.OFF_DUTY),
    (S.ON_SCENE, S.EN_ROUTE),
    (S.EN_ROUTE, S.DISPATCHED),
]


def _put_in(stub: pb_grpc.DispatchServiceStub, unit_id: str, status: UnitStatus) -> None:
    if status in (S.DISPATCHED, S.EN_ROUTE, S.ON_SCENE, S.COMMITTED):
        assign(stub, create_incident(stub).incident_id, unit_id)
        path = {
            S.DISPATCHED: [],
            S.EN_ROUTE: [S.EN_ROUTE],
            S.ON_SCENE: [S.ON_SCENE],
            S.COMMITTED: [S.ON_SCENE, S.COMMITTED],
        }[status]
        for step in path:
            set_status(stub, unit_id, step)
    elif status is not S.AVAILABLE:
        set_status(stub, unit_id, status)
    assert status_of(stub, unit_id) is status


@pytest.mark.parametrize(("start", "target"), REFUSED)
def test_refused_transition_is_failed_precondition_and_changes_nothing(
    stub: pb_grpc.DispatchServiceStub, start: UnitStatus, target: UnitStatus
) -> None:
    unit_id = upsert(stub)
    _put_in(stub, unit_id, start)
    before = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
    with pytest.raises(grpc.RpcError) as err:
        stub.SetUnitStatus(
            pb.SetUnitStatusRequest(request_id=rid(), unit_id=unit_id, status=int(target))
        )
    assert precondition_subjects(err.value) == [f"unit/{unit_id}"]
    assert unit_id in (err.value.details() or "")
    assert stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit == before


def test_set_status_of_unknown_unit_is_not_found(stub: pb_grpc.DispatchServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.SetUnitStatus(pb.SetUnitStatusRequest(request_id=rid(), unit_id="GHOST-9", status=1))
    assert not_found(err.value) == ("unit", "GHOST-9")


def test_status_retry_returns_first_answer_and_changes_nothing_more(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    unit_id = upsert(stub, at=WESTMINSTER)
    request = pb.SetUnitStatusRequest(
        request_id=rid(), unit_id=unit_id, status=pb.UNIT_STATUS_UNAVAILABLE
    )
    first = stub.SetUnitStatus(request)
    set_status(stub, unit_id, S.OFF_DUTY)
    # Replayed, the same request would now be OFF_DUTY -> UNAVAILABLE (allowed) and change
    # the unit; as a retry it must not.
    again = stub.SetUnitStatus(request)
    assert again == first
    assert status_of(stub, unit_id) is S.OFF_DUTY
