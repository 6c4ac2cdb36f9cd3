"""The engine: the one place where a command becomes state and an answer.

Every mutating command runs the same steps, under one writer lock:

    idempotency check → validate → journal hook → apply → remember the response → respond

`validate` reads state and raises a `DispatchError` without changing anything; it returns a
*plan*: everything `apply` needs, including the clock reading and any id it chose, so that
a journal written between the two (issue 4) can replay `apply` and get the same state.
`apply` must not fail for a reason `validate` could have seen.

Reads (GetUnit, ListUnits, GetIncident, ListIncidents, RecommendUnits) do not take the lock:
the Rust core is safe to read concurrently and incidents are immutable values swapped in
whole (see `incidents.py`), so a reader never sees a half-applied change to one object.

Location pings do not take the lock either: they touch only positions, which the core
updates atomically per unit, and no command reads a position to decide anything. Putting a
high-rate AVL feed behind the writer lock would make every command wait for it.

Messages are dispatch.v1 protobufs on both sides: the request's serialized bytes are the
idempotency fingerprint (and, later, the journal record), and answering with the message the
servicer returns avoids building every response twice.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np
from google.protobuf.message import Message

from dispatch_core import _core
from dispatch_core._core import MAX_K, LocationReport, UnitIndex, UnitView
from dispatch_core.convert import (
    candidates_to_proto,
    group_to_proto,
    groups_from_proto,
    incident_to_proto,
    timestamp_ms,
    unit_to_proto,
)
from dispatch_core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from dispatch_core.incidents import Incident, IncidentStore, RequirementGroup
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Grade, IncidentStatus, UnitStatus

log = logging.getLogger(__name__)

#: How long a request_id is remembered (design.md: at least 24 hours).
IDEMPOTENCY_TTL_S = 24 * 3600.0

#: Candidates per group when the request leaves k at 0, unless the group needs more units.
DEFAULT_K = 5

_AVAILABLE_ONLY = (int(UnitStatus.AVAILABLE),)


class MutatingRequest(Protocol):
    """What every mutating dispatch.v1 request has."""

    request_id: str

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # noqa: N802


#: Called between validate and apply with the method name, the request and the plan. A
#: no-op until the write-ahead journal exists (issue 4); it must raise to refuse the
#: command, and whatever it raises reaches the client.
JournalHook = Callable[[str, Message, object], None]


def no_journal(method: str, request: Message, plan: object) -> None:
    """The journal hook until there is a journal: durability is not promised yet."""


Req = TypeVar("Req", bound=MutatingRequest)
Plan = TypeVar("Plan")
Resp = TypeVar("Resp", bound=Message)


@dataclasses.dataclass(frozen=True, slots=True)
class _Remembered:
    payload: bytes
    response: bytes
    at_s: float


class RequestLog:
    """request_id → (request bytes, response bytes), per method, for IDEMPOTENCY_TTL_S.

    In memory for now; surviving restarts is the journal's job (issue 4).
    """

    def __init__(self, ttl_s: float = IDEMPOTENCY_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str], _Remembered] = OrderedDict()

    def get(self, method: str, request_id: str) -> _Remembered | None:
        return self._entries.get((method, request_id))

    def put(self, method: str, request_id: str, payload: bytes, response: bytes) -> None:
        now = time.monotonic()
        self._entries[(method, request_id)] = _Remembered(payload, response, now)
        # Entries are in insertion order, which is time order: expire from the front.
        horizon = now - self._ttl_s
        while self._entries:
            key, first = next(iter(self._entries.items()))
            if first.at_s >= horizon:
                break
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


@dataclasses.dataclass(frozen=True, slots=True)
class UpsertPlan:
    unit_id: str
    agency: int
    unit_type: str
    capabilities: tuple[str, ...]
    home_area: str | None
    shift_start_ms: int | None
    shift_end_ms: int | None
    created: bool


@dataclasses.dataclass(frozen=True, slots=True)
class StatusPlan:
    unit_id: str
    status: int
    now_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class AssignPlan:
    incident: Incident
    unit_ids: tuple[str, ...]
    now_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class ClosePlan:
    incident: Incident
    now_ms: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Engine:
    """Units (in the Rust core), incidents (in Python) and the commands that change them."""

    def __init__(
        self,
        index: UnitIndex,
        *,
        journal: JournalHook = no_journal,
        clock_ms: Callable[[], int] = _now_ms,
        idempotency_ttl_s: float = IDEMPOTENCY_TTL_S,
    ) -> None:
        self.index = index
        self.incidents = IncidentStore()
        self._journal = journal
        self._clock_ms = clock_ms
        self._write_lock = threading.Lock()
        self._requests = RequestLog(idempotency_ttl_s)

    # ---------------------------------------------------------------- the command pipeline

    def _command(
        self,
        method: str,
        request: Req,
        validate: Callable[[Req], Plan],
        apply: Callable[[Plan], Resp],
        response_type: type[Resp],
    ) -> Resp:
        # The whole request, request_id included, is the fingerprint: a retry has the same
        # id, so any difference in the bytes is a difference in the payload.
        payload = request.SerializeToString(deterministic=True)
        with self._write_lock:
            seen = self._requests.get(method, request.request_id)
            if seen is not None:
                if seen.payload != payload:
                    raise InvalidArgumentError.one(
                        "request_id",
                        f"{request.request_id!r} was already used for a different {method}"
                        " request; use a new request_id for a new command",
                    )
                return response_type.FromString(seen.response)
            plan = validate(request)
            self._journal(method, request, plan)  # type: ignore[arg-type]
            response = apply(plan)
            # Failures are not remembered: they changed nothing, so a retry may run again
            # and succeed once the state allows it.
            self._requests.put(method, request.request_id, payload, response.SerializeToString())
            return response

    # ---------------------------------------------------------------------------- units

    def _view(self, unit_id: str) -> UnitView:
        try:
            return self.index.get_unit(unit_id)
        except _core.UnknownUnit:
            raise NotFoundError("unit", unit_id) from None

    def upsert_unit(self, request: pb.UpsertUnitRequest) -> pb.UpsertUnitResponse:
        return self._command(
            "UpsertUnit",
            request,
            self._validate_upsert,
            self._apply_upsert,
            pb.UpsertUnitResponse,
        )

    def _validate_upsert(self, request: pb.UpsertUnitRequest) -> UpsertPlan:
        spec = request.unit
        try:
            self.index.get_unit(spec.unit_id)
            created = False
        except _core.UnknownUnit:
            created = True
        return UpsertPlan(
            unit_id=spec.unit_id,
            agency=int(spec.agency),
            unit_type=spec.unit_type,
            capabilities=tuple(spec.capabilities),
            home_area=spec.home_area or None,
            shift_start_ms=timestamp_ms(spec.shift_start) if spec.HasField("shift_start") else None,
            shift_end_ms=timestamp_ms(spec.shift_end) if spec.HasField("shift_end") else None,
            created=created,
        )

    def _apply_upsert(self, plan: UpsertPlan) -> pb.UpsertUnitResponse:
        try:
            # status=None: an existing unit keeps its status; a new one starts AVAILABLE.
            self.index.upsert_unit(
                plan.unit_id,
                agency=plan.agency,
                unit_type=plan.unit_type,
                capabilities=plan.capabilities,
                home_area=plan.home_area,
                shift_start_ms=plan.shift_start_ms,
                shift_end_ms=plan.shift_end_ms,
            )
        except _core.InvalidArgument as exc:
            # The API layer checks every field the core checks; reaching here means the two
            # disagree, and the core still names the field.
            raise InvalidArgumentError.one(f"unit.{exc.field}", str(exc)) from None
        response = pb.UpsertUnitResponse(created=plan.created)
        unit_to_proto(self.index.get_unit(plan.unit_id), response.unit)
        return response

    def get_unit(self, unit_id: str) -> pb.GetUnitResponse:
        response = pb.GetUnitResponse()
        unit_to_proto(self._view(unit_id), response.unit)
        return response

    def list_units(
        self,
        *,
        statuses: Sequence[int],
        agencies: Sequence[int],
        home_area: str,
        page_size: int,
        after_id: str,
    ) -> tuple[pb.ListUnitsResponse, str | None]:
        """One page of units with ids after `after_id`; also the last id when more follow."""
        views = self.index.list_units(
            statuses=list(statuses) or None,
            agencies=list(agencies) or None,
            home_area=home_area or None,
        )
        page = sorted((v for v in views if v.unit_id > after_id), key=lambda v: v.unit_id)
        response = pb.ListUnitsResponse()
        for view in page[:page_size]:
            unit_to_proto(view, response.units.add())
        more = len(page) > page_size
        return response, (page[page_size - 1].unit_id if more else None)

    def set_unit_status(self, request: pb.SetUnitStatusRequest) -> pb.SetUnitStatusResponse:
        return self._command(
            "SetUnitStatus",
            request,
            self._validate_status,
            self._apply_status,
            pb.SetUnitStatusResponse,
        )

    def _validate_status(self, request: pb.SetUnitStatusRequest) -> StatusPlan:
        self._view(request.unit_id)
        if int(request.status) == UnitStatus.DISPATCHED:
            raise FailedPreconditionError(
                "INVALID_TRANSITION",
                f"unit/{request.unit_id}",
                f"unit {request.unit_id!r} cannot be set DISPATCHED directly:"
                " only AssignUnits dispatches a unit",
            )
        # The core owns the lifecycle table; checking here refuses before the journal.
        try:
            self.index.check_transition(request.unit_id, int(request.status))
        except _core.InvalidTransition as exc:
            raise FailedPreconditionError(
                "INVALID_TRANSITION", f"unit/{exc.field}", str(exc)
            ) from None
        return StatusPlan(request.unit_id, int(request.status), self._clock_ms())

    def _apply_status(self, plan: StatusPlan) -> pb.SetUnitStatusResponse:
        try:
            released = self.index.set_status(plan.unit_id, plan.status)
        except _core.InvalidTransition as exc:
            raise FailedPreconditionError(
                "INVALID_TRANSITION", f"unit/{exc.field}", str(exc)
            ) from None
        view = self.index.get_unit(plan.unit_id)
        if plan.status == UnitStatus.ON_SCENE and view.incident_id:
            incident = self.incidents.get(view.incident_id)
            if incident is not None:
                self.incidents.put(incident.with_on_scene(plan.now_ms))
        if released:
            incident = self.incidents.get(released)
            if incident is not None:
                self.incidents.put(incident.without_attached((plan.unit_id,)))
        response = pb.SetUnitStatusResponse(released_incident_id=released or "")
        unit_to_proto(view, response.unit)
        return response

    def update_locations(
        self,
        unit_ids: Sequence[str],
        lat: Sequence[float],
        lon: Sequence[float],
        time_unix_ms: Sequence[int],
    ) -> LocationReport:
        """Applies what it can of a batch; bad pings are counted, not raised (design.md)."""
        return self.index.update_locations(
            list(unit_ids),
            np.fromiter(lat, dtype=np.float64, count=len(lat)),
            np.fromiter(lon, dtype=np.float64, count=len(lon)),
            np.fromiter(time_unix_ms, dtype=np.int64, count=len(time_unix_ms)),
            strict=False,
        )

    # ------------------------------------------------------------------------ incidents

    def _incident(self, incident_id: str) -> Incident:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise NotFoundError("incident", incident_id)
        return incident

    def _open_incident(self, incident_id: str) -> Incident:
        incident = self._incident(incident_id)
        if incident.status is IncidentStatus.CLOSED:
            raise FailedPreconditionError(
                "INCIDENT_CLOSED",
                f"incident/{incident_id}",
                f"incident {incident_id!r} is closed",
            )
        return incident

    def create_incident(self, request: pb.CreateIncidentRequest) -> pb.CreateIncidentResponse:
        return self._command(
            "CreateIncident",
            request,
            self._validate_create,
            self._apply_incident,
            pb.CreateIncidentResponse,
        )

    def _validate_create(self, request: pb.CreateIncidentRequest) -> Incident:
        incident_id = request.incident_id
        if incident_id:
            if incident_id in self.incidents:
                raise AlreadyExistsError("incident", incident_id)
        else:
            incident_id = self.incidents.new_id()
        return Incident(
            incident_id=incident_id,
            grade=Grade(request.grade),
            incident_type=request.incident_type,
            lat=request.location.lat,
            lon=request.location.lon,
            area=request.area,
            requirements=groups_from_proto(request.requirements),
            status=IncidentStatus.OPEN,
            assigned_unit_ids=(),
            attached_unit_ids=(),
            created_ms=self._clock_ms(),
        )

    def _apply_incident(self, incident: Incident) -> pb.CreateIncidentResponse:
        self.incidents.put(incident)
        response = pb.CreateIncidentResponse()
        incident_to_proto(incident, response.incident)
        return response

    def get_incident(self, incident_id: str) -> pb.GetIncidentResponse:
        response = pb.GetIncidentResponse()
        incident_to_proto(self._incident(incident_id), response.incident)
        return response

    def list_incidents(
        self,
        *,
        statuses: Sequence[int],
        grades: Sequence[int],
        page_size: int,
        after_id: str,
    ) -> tuple[pb.ListIncidentsResponse, str | None]:
        """One page of incidents with ids after `after_id`; also the last id when more follow."""
        wanted_status = set(statuses)
        wanted_grade = set(grades)
        response = pb.ListIncidentsResponse()
        last: str | None = None
        for incident in self.incidents.iter_after(after_id):
            if wanted_status and incident.status not in wanted_status:
                continue
            if wanted_grade and incident.grade not in wanted_grade:
                continue
            if len(response.incidents) == page_size:
                return response, last
            incident_to_proto(incident, response.incidents.add())
            last = incident.incident_id
        return response, None

    def update_incident(self, request: pb.UpdateIncidentRequest) -> pb.UpdateIncidentResponse:
        return self._command(
            "UpdateIncident",
            request,
            self._validate_update,
            self._apply_update,
            pb.UpdateIncidentResponse,
        )

    def _validate_update(self, request: pb.UpdateIncidentRequest) -> Incident:
        incident = self._open_incident(request.incident_id)
        changes: dict[str, object] = {}
        if request.HasField("grade"):
            changes["grade"] = Grade(request.grade)
        if request.HasField("incident_type"):
            changes["incident_type"] = request.incident_type
        if request.HasField("location"):
            changes["lat"] = request.location.lat
            changes["lon"] = request.location.lon
        if request.HasField("area"):
            changes["area"] = request.area
        if request.HasField("requirements"):
            changes["requirements"] = groups_from_proto(request.requirements.groups)
        return dataclasses.replace(incident, **changes)  # type: ignore[arg-type]

    def _apply_update(self, incident: Incident) -> pb.UpdateIncidentResponse:
        self.incidents.put(incident)
        response = pb.UpdateIncidentResponse()
        incident_to_proto(incident, response.incident)
        return response

    def close_incident(self, request: pb.CloseIncidentRequest) -> pb.CloseIncidentResponse:
        return self._command(
            "CloseIncident",
            request,
            self._validate_close,
            self._apply_close,
            pb.CloseIncidentResponse,
        )

    def _validate_close(self, request: pb.CloseIncidentRequest) -> ClosePlan:
        return ClosePlan(self._open_incident(request.incident_id), self._clock_ms())

    def _apply_close(self, plan: ClosePlan) -> pb.CloseIncidentResponse:
        incident = plan.incident
        released = self.index.release_incident(
            incident.incident_id, list(incident.attached_unit_ids)
        )
        closed = dataclasses.replace(
            incident,
            status=IncidentStatus.CLOSED,
            closed_ms=plan.now_ms,
            attached_unit_ids=(),
        )
        self.incidents.put(closed)
        response = pb.CloseIncidentResponse(released_unit_ids=released)
        incident_to_proto(closed, response.incident)
        return response

    # ------------------------------------------------------------------------ assignment

    def assign_units(self, request: pb.AssignUnitsRequest) -> pb.AssignUnitsResponse:
        return self._command(
            "AssignUnits",
            request,
            self._validate_assign,
            self._apply_assign,
            pb.AssignUnitsResponse,
        )

    def _validate_assign(self, request: pb.AssignUnitsRequest) -> AssignPlan:
        incident = self._open_incident(request.incident_id)
        unit_ids = tuple(request.unit_ids)
        try:
            self.index.check_assignable(unit_ids)
        except _core.UnknownUnit as exc:
            raise NotFoundError("unit", exc.field) from None
        except _core.NotAssignable as exc:
            raise FailedPreconditionError(
                "UNIT_NOT_ASSIGNABLE", f"unit/{exc.field}", str(exc)
            ) from None
        return AssignPlan(incident, unit_ids, self._clock_ms())

    def _apply_assign(self, plan: AssignPlan) -> pb.AssignUnitsResponse:
        self.index.assign(plan.incident.incident_id, plan.unit_ids)
        incident = plan.incident.with_assigned(plan.unit_ids, plan.now_ms)
        self.incidents.put(incident)
        response = pb.AssignUnitsResponse()
        incident_to_proto(incident, response.incident)
        return response

    # --------------------------------------------------------------------- recommendation

    def recommend(self, request: pb.RecommendUnitsRequest, out: pb.RecommendUnitsResponse) -> None:
        """Fills `out` with the ranking for each requirement group of the request's target."""
        if request.WhichOneof("target") == "incident_id":
            incident = self._incident(request.incident_id)
            lat, lon, grade, area = incident.lat, incident.lon, incident.grade, incident.area
            out.incident_id = incident.incident_id
            groups: Sequence[RequirementGroup] = incident.requirements
        else:
            target = request.ad_hoc
            lat, lon, area = target.location.lat, target.location.lon, target.area
            grade = Grade(target.grade)
            groups = groups_from_proto(target.requirements)
        statuses = list(request.eligible_statuses) or _AVAILABLE_ONLY
        now_ms = self._clock_ms()
        rank = self.index.rank
        for i, group in enumerate(groups):
            entry = out.groups.add(group_index=i)
            group_to_proto(group, entry.group)
            try:
                candidates = rank(
                    lat,
                    lon,
                    now_ms=now_ms,
                    k=request.k or min(MAX_K, max(DEFAULT_K, group.count)),
                    grade=int(grade),
                    required=group.capabilities,
                    agencies=(int(group.agency),),
                    statuses=statuses,
                    unit_types=group.unit_types or None,
                    area=area or None,
                )
            except _core.InvalidArgument as exc:
                # Validated requirements never get here; the core still names the field.
                raise InvalidArgumentError.one(f"requirements[{i}].{exc.field}", str(exc)) from None
            candidates_to_proto(candidates, entry)
