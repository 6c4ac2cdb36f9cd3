"""Incidents over gRPC: lifecycle, assignment (all or none, under contention), closure and
idempotent retries."""

from __future__ import annotations

import threading
from collections import defaultdict

import grpc
import pytest

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.types import Agency, Grade, IncidentStatus, UnitStatus
from tests.apihelp import (
    WESTMINSTER,
    assign,
    bad_fields,
    create_incident,
    group,
    not_found,
    precondition_subjects,
    rid,
    set_status,
    status_of,
    uid,
    upsert,
)


def get(stub: pb_grpc.DispatchServiceStub, incident_id: str) -> pb.Incident:
    return stub.GetIncident(pb.GetIncidentRequest(incident_id=incident_id)).incident


def test_create_get_and_server_chosen_ids(stub: pb_grpc.DispatchServiceStub) -> None:
    plan = [group(Agency.POLICE, 2, capabilities=["firearms"]), group(Agency.AMBULANCE, 1)]
    created = create_incident(stub, grade=Grade.SIGNIFICANT, groups=plan, area="Westminster")
    assert created.incident_id
    assert created.status == IncidentStatus.OPEN
    assert created.grade == Grade.SIGNIFICANT
    assert list(created.requirements) == plan
    assert created.area == "Westminster"
    assert created.HasField("create_time")
    assert not created.HasField("first_assigned_time")
    assert not created.HasField("close_time")
    assert get(stub, created.incident_id) == created
    other = create_incident(stub)
    assert other.incident_id != created.incident_id


def test_client_chosen_id_and_its_reuse(stub: pb_grpc.DispatchServiceStub) -> None:
    wanted = uid("CAD")
    assert create_incident(stub, incident_id=wanted).incident_id == wanted
    with pytest.raises(grpc.RpcError) as err:
        create_incident(stub, incident_id=wanted)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert wanted in (err.value.details() or "")


def test_unknown_incident_is_not_found(stub: pb_grpc.DispatchServiceStub) -> None:
    for call in (
        lambda: stub.GetIncident(pb.GetIncidentRequest(incident_id="INC-NOPE")),
        lambda: stub.CloseIncident(
            pb.CloseIncidentRequest(request_id=rid(), incident_id="INC-NOPE")
        ),
        lambda: assign(stub, "INC-NOPE", upsert(stub)),
        lambda: stub.RecommendUnits(pb.RecommendUnitsRequest(incident_id="INC-NOPE")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert not_found(err.value) == ("incident", "INC-NOPE")


def test_assign_on_scene_close_flow(stub: pb_grpc.DispatchServiceStub) -> None:
    a, b, c = upsert(stub), upsert(stub), upsert(stub)
    incident = create_incident(stub, groups=[group(count=3)])
    iid = incident.incident_id

    first = assign(stub, iid, a, b)
    assert first.status == IncidentStatus.DISPATCHED
    assert list(first.assigned_unit_ids) == [a, b]
    assert first.HasField("first_assigned_time")
    second = assign(stub, iid, c)
    assert list(second.attached_unit_ids) == [a, b, c]
    assert second.first_assigned_time == first.first_assigned_time

    set_status(stub, a, UnitStatus.ON_SCENE)
    set_status(stub, b, UnitStatus.EN_ROUTE)
    attended = get(stub, iid)
    assert attended.status == IncidentStatus.ATTENDED
    set_status(stub, c, UnitStatus.AVAILABLE)  # stood down before closure

    closed = stub.CloseIncident(pb.CloseIncidentRequest(request_id=rid(), incident_id=iid))
    assert sorted(closed.released_unit_ids) == sorted([a, b])
    assert closed.incident.status == IncidentStatus.CLOSED
    assert closed.incident.HasField("close_time")
    assert list(closed.incident.attached_unit_ids) == []
    assert list(closed.incident.assigned_unit_ids) == [a, b, c]
    for unit_id in (a, b, c):
        unit = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
        assert unit.status == pb.UNIT_STATUS_AVAILABLE
        assert unit.incident_id == ""

    for call in (
        lambda: stub.CloseIncident(pb.CloseIncidentRequest(request_id=rid(), incident_id=iid)),
        lambda: assign(stub, iid, a),
        lambda: stub.UpdateIncident(
            pb.UpdateIncidentRequest(request_id=rid(), incident_id=iid, grade=pb.GRADE_EXTENDED)
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert precondition_subjects(err.value) == [f"incident/{iid}"]
    assert get(stub, iid) == closed.incident


def test_committed_unit_is_not_released_again_at_closure(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    unit_id = upsert(stub)
    iid = create_incident(stub).incident_id
    assign(stub, iid, unit_id)
    set_status(stub, unit_id, UnitStatus.ON_SCENE)
    set_status(stub, unit_id, UnitStatus.COMMITTED)
    closed = stub.CloseIncident(pb.CloseIncidentRequest(request_id=rid(), incident_id=iid))
    assert list(closed.released_unit_ids) == []
    assert status_of(stub, unit_id) is UnitStatus.COMMITTED


def test_assignment_is_all_or_none_naming_the_unit(stub: pb_grpc.DispatchServiceStub) -> None:
    free, busy = upsert(stub), upsert(stub)
    assign(stub, create_incident(stub).incident_id, busy)
    iid = create_incident(stub).incident_id
    with pytest.raises(grpc.RpcError) as err:
        assign(stub, iid, free, busy)
    assert precondition_subjects(err.value) == [f"unit/{busy}"]
    assert busy in (err.value.details() or "")
    assert status_of(stub, free) is UnitStatus.AVAILABLE
    assert get(stub, iid).status == IncidentStatus.OPEN

    set_status(stub, free, UnitStatus.OFF_DUTY)
    with pytest.raises(grpc.RpcError) as err:
        assign(stub, iid, free)
    assert precondition_subjects(err.value) == [f"unit/{free}"]

    with pytest.raises(grpc.RpcError) as err:
        assign(stub, iid, "GHOST-77")
    assert not_found(err.value) == ("unit", "GHOST-77")
    assert list(get(stub, iid).assigned_unit_ids) == []


def test_update_incident_changes_only_what_is_set(stub: pb_grpc.DispatchServiceStub) -> None:
    created = create_incident(stub, grade=Grade.EXTENDED, area="Camden")
    updated = stub.UpdateIncident(
        pb.UpdateIncidentRequest(
            request_id=rid(),
            incident_id=created.incident_id,
            grade=pb.GRADE_IMMEDIATE,
            location=pb.Location(lat=51.55, lon=-0.14),
            requirements=pb.Requirements(groups=[group(Agency.FIRE, 2, unit_types=["pump"])]),
        )
    ).incident
    assert updated.grade == Grade.IMMEDIATE
    assert (updated.location.lat, updated.location.lon) == (51.55, -0.14)
    assert list(updated.requirements) == [group(Agency.FIRE, 2, unit_types=["pump"])]
    assert updated.incident_type == created.incident_type
    assert updated.area == "Camden"
    assert updated.create_time == created.create_time
    cleared = stub.UpdateIncident(
        pb.UpdateIncidentRequest(request_id=rid(), incident_id=created.incident_id, area="")
    ).incident
    assert cleared.area == ""
    assert cleared.grade == Grade.IMMEDIATE


def test_list_incidents_filters_and_pages(stub: pb_grpc.DispatchServiceStub) -> None:
    tag = uid("L")
    ids = sorted(
        create_incident(stub, incident_id=f"{tag}-{i}", grade=Grade.REFERRED).incident_id
        for i in range(5)
    )
    closed_id = ids[1]
    stub.CloseIncident(pb.CloseIncidentRequest(request_id=rid(), incident_id=closed_id))

    def all_pages(request: pb.ListIncidentsRequest) -> list[str]:
        out: list[str] = []
        while True:
            page = stub.ListIncidents(request)
            assert len(page.incidents) <= (request.page_size or 100)
            out.extend(i.incident_id for i in page.incidents)
            if not page.next_page_token:
                return out
            request.page_token = page.next_page_token

    referred = all_pages(pb.ListIncidentsRequest(grades=[pb.GRADE_REFERRED], page_size=2))
    assert [i for i in referred if i.startswith(tag)] == ids
    open_referred = all_pages(
        pb.ListIncidentsRequest(
            grades=[pb.GRADE_REFERRED], statuses=[pb.INCIDENT_STATUS_OPEN], page_size=3
        )
    )
    assert [i for i in open_referred if i.startswith(tag)] == [i for i in ids if i != closed_id]
    closed = all_pages(pb.ListIncidentsRequest(statuses=[pb.INCIDENT_STATUS_CLOSED]))
    assert closed_id in closed


# ------------------------------------------------------------------------- idempotency


def test_create_retry_returns_the_same_incident_and_creates_one(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    tag = uid("IDEM")
    request = pb.CreateIncidentRequest(
        request_id=rid(),
        grade=pb.GRADE_IMMEDIATE,
        incident_type=tag,
        location=pb.Location(lat=WESTMINSTER[0], lon=WESTMINSTER[1]),
        requirements=[group()],
    )
    first = stub.CreateIncident(request)
    again = stub.CreateIncident(request)
    assert again == first
    listed = stub.ListIncidents(pb.ListIncidentsRequest(page_size=1000))
    pages = [listed]
    while pages[-1].next_page_token:
        pages.append(
            stub.ListIncidents(
                pb.ListIncidentsRequest(page_size=1000, page_token=pages[-1].next_page_token)
            )
        )
    mine = [i for p in pages for i in p.incidents if i.incident_type == tag]
    assert len(mine) == 1


def test_same_request_id_with_another_payload_is_invalid_and_changes_nothing(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    iid = create_incident(stub).incident_id
    a, b = upsert(stub), upsert(stub)
    request_id = rid()
    stub.AssignUnits(pb.AssignUnitsRequest(request_id=request_id, incident_id=iid, unit_ids=[a]))
    with pytest.raises(grpc.RpcError) as err:
        stub.AssignUnits(
            pb.AssignUnitsRequest(request_id=request_id, incident_id=iid, unit_ids=[b])
        )
    assert bad_fields(err.value) == ["request_id"]
    assert status_of(stub, b) is UnitStatus.AVAILABLE
    assert list(get(stub, iid).assigned_unit_ids) == [a]


def test_request_ids_are_scoped_per_method(stub: pb_grpc.DispatchServiceStub) -> None:
    shared = rid()
    unit_id = upsert(stub)
    incident = stub.CreateIncident(
        pb.CreateIncidentRequest(
            request_id=shared,
            grade=pb.GRADE_IMMEDIATE,
            incident_type="scoped",
            location=pb.Location(lat=51.5, lon=-0.1),
            requirements=[group()],
        )
    ).incident
    assigned = stub.AssignUnits(
        pb.AssignUnitsRequest(
            request_id=shared, incident_id=incident.incident_id, unit_ids=[unit_id]
        )
    ).incident
    assert list(assigned.assigned_unit_ids) == [unit_id]


def test_assign_retry_after_success_does_not_fail_on_its_own_units(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    unit_id = upsert(stub)
    iid = create_incident(stub).incident_id
    request = pb.AssignUnitsRequest(request_id=rid(), incident_id=iid, unit_ids=[unit_id])
    first = stub.AssignUnits(request)
    # The unit is now DISPATCHED: executed again this would be FAILED_PRECONDITION.
    assert stub.AssignUnits(request) == first
    assert list(get(stub, iid).assigned_unit_ids) == [unit_id]


def test_concurrent_retries_of_one_request_execute_it_once(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    tag = uid("RACE")
    request = pb.CreateIncidentRequest(
        request_id=rid(),
        grade=pb.GRADE_SIGNIFICANT,
        incident_type=tag,
        location=pb.Location(lat=51.5, lon=-0.1),
        requirements=[group()],
    )
    answers: list[pb.CreateIncidentResponse] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        answers.append(stub.CreateIncident(request))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 8
    assert len({a.incident.incident_id for a in answers}) == 1


# ---------------------------------------------------------------------- contention


def test_racing_assignments_have_exactly_one_winner_per_unit(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    units = [upsert(stub) for _ in range(6)]
    incidents = [create_incident(stub).incident_id for _ in range(12)]
    # Each incident asks for an overlapping window of 3 units.
    wants = {
        iid: [units[(i + j) % len(units)] for j in range(3)] for i, iid in enumerate(incidents)
    }
    winners: dict[str, list[str]] = {}
    losers: dict[str, str] = {}
    other_errors: list[object] = []
    barrier = threading.Barrier(len(incidents))
    lock = threading.Lock()

    def attempt(iid: str) -> None:
        barrier.wait()
        try:
            assign(stub, iid, *wants[iid])
        except grpc.RpcError as err:
            with lock:
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    (subject,) = precondition_subjects(err)
                    losers[iid] = subject
                else:
                    other_errors.append((err.code(), err.details()))
        else:
            with lock:
                winners[iid] = wants[iid]

    threads = [threading.Thread(target=attempt, args=(iid,)) for iid in incidents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert other_errors == []
    # Windows of 3 over 6 units: at most two can hold disjoint windows at once.
    assert 1 <= len(winners) <= 2, winners
    assert len(winners) + len(losers) == len(incidents)
    holder: dict[str, list[str]] = defaultdict(list)
    for iid, got in winners.items():
        for unit_id in got:
            holder[unit_id].append(iid)
    assert all(len(h) == 1 for h in holder.values()), holder
    for iid, subject in losers.items():
        # The unit named is one it wanted and one that a winner holds.
        unit_id = subject.removeprefix("unit/")
        assert unit_id in wants[iid]
        assert unit_id in holder
        incident = get(stub, iid)
        assert incident.status == IncidentStatus.OPEN
        assert list(incident.assigned_unit_ids) == []
    for unit_id in units:
        unit = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
        if unit_id in holder:
            assert unit.incident_id == holder[unit_id][0]
            assert unit.status == pb.UNIT_STATUS_DISPATCHED
        else:
            assert unit.status == pb.UNIT_STATUS_AVAILABLE
