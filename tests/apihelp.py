"""Helpers shared by the API tests: request builders and error-detail readers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.types import Agency, Grade, UnitStatus

WESTMINSTER = (51.4975, -0.1357)

#: A fixed valid time (2025-06-15T00:00:00Z) for tests that need exact ping times.
T0 = 1_750_000_000_000


def recent_ms() -> int:
    """A valid ping time a second ago: a test's later pings at "now" are newer, and the
    position is fresh enough that ranking neither penalises nor excludes it (stale AVL
    starts at 120 s)."""
    return int(time.time() * 1000) - 1_000


class Clock:
    """A settable clock (Unix ms) for in-process pipelines: time is an input."""

    def __init__(self, start_ms: int = T0) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


def rid() -> str:
    return str(uuid.uuid4())


def uid(prefix: str = "U") -> str:
    """A unit or incident id no other test uses (the server is shared by the session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def upsert(
    stub: pb_grpc.DispatchServiceStub,
    unit_id: str | None = None,
    *,
    agency: Agency = Agency.POLICE,
    unit_type: str = "irv",
    capabilities: Sequence[str] = (),
    home_area: str = "",
    at: tuple[float, float] | None = WESTMINSTER,
    time_ms: int | None = None,
) -> str:
    """Registers a unit (and places it, unless `at` is None); returns its id."""
    unit_id = unit_id or uid()
    stub.UpsertUnit(
        pb.UpsertUnitRequest(
            request_id=rid(),
            unit=pb.UnitSpec(
                unit_id=unit_id,
                agency=int(agency),
                unit_type=unit_type,
                capabilities=capabilities,
                home_area=home_area,
            ),
        )
    )
    if at is not None:
        report = stub.UpdateLocations(
            pb.UpdateLocationsRequest(
                unit_ids=[unit_id],
                lat=[at[0]],
                lon=[at[1]],
                time_unix_ms=[recent_ms() if time_ms is None else time_ms],
            )
        )
        assert report.applied == 1
    return unit_id


def group(
    agency: Agency = Agency.POLICE,
    count: int = 1,
    unit_types: Sequence[str] = (),
    capabilities: Sequence[str] = (),
) -> pb.RequirementGroup:
    return pb.RequirementGroup(
        agency=int(agency), count=count, unit_types=unit_types, capabilities=capabilities
    )


def create_incident(
    stub: pb_grpc.DispatchServiceStub,
    *,
    grade: Grade = Grade.IMMEDIATE,
    at: tuple[float, float] = WESTMINSTER,
    groups: Sequence[pb.RequirementGroup] = (),
    incident_id: str = "",
    area: str = "",
) -> pb.Incident:
    return stub.CreateIncident(
        pb.CreateIncidentRequest(
            request_id=rid(),
            incident_id=incident_id,
            grade=int(grade),
            incident_type="test",
            location=pb.Location(lat=at[0], lon=at[1]),
            area=area,
            requirements=list(groups) or [group()],
        )
    ).incident


def assign(stub: pb_grpc.DispatchServiceStub, incident_id: str, *unit_ids: str) -> pb.Incident:
    return stub.AssignUnits(
        pb.AssignUnitsRequest(request_id=rid(), incident_id=incident_id, unit_ids=unit_ids)
    ).incident


def set_status(stub: pb_grpc.DispatchServiceStub, unit_id: str, status: UnitStatus) -> str:
    """Sets a status; returns the incident it released from ('' for none)."""
    response = stub.SetUnitStatus(
        pb.SetUnitStatusRequest(request_id=rid(), unit_id=unit_id, status=int(status))
    )
    assert response.unit.status == status
    return response.released_incident_id


def status_of(stub: pb_grpc.DispatchServiceStub, unit_id: str) -> UnitStatus:
    return UnitStatus(stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id)).unit.status)


def _details(err: grpc.RpcError) -> list[object]:
    status = rpc_status.from_call(err)
    assert status is not None, f"no rich status on {err.code()}: {err.details()}"
    out: list[object] = []
    for any_ in status.details:
        for cls in (
            error_details_pb2.BadRequest,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.ResourceInfo,
        ):
            if any_.Is(cls.DESCRIPTOR):
                msg = cls()
                any_.Unpack(msg)
                out.append(msg)
    return out


def bad_fields(err: grpc.RpcError) -> list[str]:
    """Fields named by the BadRequest details of an INVALID_ARGUMENT error."""
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    fields = [
        v.field
        for d in _details(err)
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    ]
    assert fields, "INVALID_ARGUMENT without field violations"
    return fields


def precondition_subjects(err: grpc.RpcError) -> list[str]:
    """Subjects of the PreconditionFailure details of a FAILED_PRECONDITION error."""
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, (err.code(), err.details())
    subjects = [
        v.subject
        for d in _details(err)
        if isinstance(d, error_details_pb2.PreconditionFailure)
        for v in d.violations
    ]
    assert subjects, "FAILED_PRECONDITION without a subject"
    return subjects


def not_found(err: grpc.RpcError) -> tuple[str, str]:
    """(resource_type, resource_name) of a NOT_FOUND error."""
    assert err.code() == grpc.StatusCode.NOT_FOUND, (err.code(), err.details())
    infos = [d for d in _details(err) if isinstance(d, error_details_pb2.ResourceInfo)]
    assert len(infos) == 1
    return infos[0].resource_type, infos[0].resource_name
