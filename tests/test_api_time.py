"""Times from clients over gRPC: a shift bound outside the valid range is refused naming the
field and changes nothing; a ping outside it, or dated beyond the allowed skew, is skipped
and counted and freezes nothing; every read still answers."""

from __future__ import annotations

import time

import grpc
import pytest

from dispatch_core._core import DEFAULT_MAX_FUTURE_SKEW_MS, MAX_TIME_MS, MIN_TIME_MS
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from tests.apihelp import bad_fields, rid, uid, upsert


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ping(
    stub: pb_grpc.DispatchServiceStub, unit_id: str, lat: float, at: int
) -> pb.UpdateLocationsResponse:
    return stub.UpdateLocations(
        pb.UpdateLocationsRequest(unit_ids=[unit_id], lat=[lat], lon=[-0.12], time_unix_ms=[at])
    )


@pytest.mark.parametrize("seconds", [-(2**62), -1, 0, MAX_TIME_MS // 1000, 2**62])
def test_a_shift_bound_outside_the_range_is_refused_naming_it(
    stub: pb_grpc.DispatchServiceStub, seconds: int
) -> None:
    unit_id = uid()
    spec = pb.UnitSpec(unit_id=unit_id, agency=pb.AGENCY_POLICE, unit_type="irv")
    spec.shift_start.seconds = seconds
    with pytest.raises(grpc.RpcError) as err:
        stub.UpsertUnit(pb.UpsertUnitRequest(request_id=rid(), unit=spec))
    assert "unit.shift_start" in bad_fields(err.value)
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_bounds_of_the_range_are_accepted(stub: pb_grpc.DispatchServiceStub) -> None:
    spec = pb.UnitSpec(unit_id=uid(), agency=pb.AGENCY_POLICE, unit_type="irv")
    spec.shift_start.FromMilliseconds(MIN_TIME_MS)
    spec.shift_end.FromMilliseconds(MAX_TIME_MS - 1)
    unit = stub.UpsertUnit(pb.UpsertUnitRequest(request_id=rid(), unit=spec)).unit
    assert unit.shift_start.ToMilliseconds() == MIN_TIME_MS
    assert unit.shift_end.ToMilliseconds() == MAX_TIME_MS - 1


@pytest.mark.parametrize("at", [-(2**63), 0, MIN_TIME_MS - 1, MAX_TIME_MS, 2**63 - 1])
def test_a_ping_outside_the_range_is_skipped_and_every_read_still_answers(
    stub: pb_grpc.DispatchServiceStub, at: int
) -> None:
    unit_id = upsert(stub, at=None)
    report = ping(stub, unit_id, 51.5, at)
    assert (report.applied, report.skipped_bad_time) == (0, 1)
    unit = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
    assert not unit.HasField("location")
    listed = stub.ListUnits(pb.ListUnitsRequest(page_size=1000))
    assert len(listed.units) >= 1


def test_a_ping_from_the_future_is_skipped_and_does_not_freeze_the_position(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    unit_id = upsert(stub, at=None)
    ahead = now_ms() + DEFAULT_MAX_FUTURE_SKEW_MS + 3_600_000
    report = ping(stub, unit_id, 51.6, ahead)
    assert (report.applied, report.skipped_future) == (0, 1)
    # A real ping after it still moves the unit: nothing from the future is stored.
    assert ping(stub, unit_id, 51.5, now_ms()).applied == 1
    unit = stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit
    assert unit.location.lat == 51.5
    # Within the skew is fine: AVL boxes and the server disagree by seconds.
    assert ping(stub, unit_id, 51.49, now_ms() + DEFAULT_MAX_FUTURE_SKEW_MS // 2).applied == 1


def test_a_refused_command_is_evaluated_afresh_when_retried(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    unit_id = upsert(stub)
    incident = stub.CreateIncident(
        pb.CreateIncidentRequest(
            request_id=rid(),
            grade=pb.GRADE_IMMEDIATE,
            incident_type="t",
            location=pb.Location(lat=51.5, lon=-0.12),
            requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
        )
    ).incident
    stub.SetUnitStatus(
        pb.SetUnitStatusRequest(
            request_id=rid(), unit_id=unit_id, status=pb.UNIT_STATUS_UNAVAILABLE
        )
    )
    assign = pb.AssignUnitsRequest(
        request_id=rid(), incident_id=incident.incident_id, unit_ids=[unit_id]
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.AssignUnits(assign)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stub.SetUnitStatus(
        pb.SetUnitStatusRequest(request_id=rid(), unit_id=unit_id, status=pb.UNIT_STATUS_AVAILABLE)
    )
    # The same request_id: the refusal changed nothing and was not remembered.
    assigned = stub.AssignUnits(assign).incident
    assert list(assigned.attached_unit_ids) == [unit_id]
    assert stub.AssignUnits(assign).incident == assigned
