"""Field-level validation of dispatch.v1 requests: every limit the proto documents, in one
module.

Each check collects every violation of a request before raising, so a client fixing its
input sees all of them at once. Field names in violations are the proto paths the client
wrote (`ad_hoc.location.lat`, `requirements[1].capabilities[0]`, `queries[3].k`). State
checks (does the unit exist, is the transition allowed) are the engine's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from google.protobuf.timestamp_pb2 import Timestamp

from dispatch_core.errors import InvalidArgumentError
from dispatch_core.picture import CoverageSpec
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Agency, Grade, IncidentStatus, UnitStatus

#: Longest id accepted (unit, incident, request, area and type names), in UTF-8 bytes: the
#: core's limit, which counts bytes.
MAX_ID_LENGTH = 64
#: Most pings in one location batch.
MAX_LOCATION_BATCH = 100_000
#: Most requirement groups in one response plan.
MAX_GROUPS = 16
#: Most units one requirement group may ask for.
MAX_GROUP_COUNT = 50
#: Most unit types or capabilities named in one requirement group.
MAX_GROUP_NAMES = 32
#: Most capabilities on one unit.
MAX_UNIT_CAPABILITIES = 128
#: Most units in one AssignUnits call.
MAX_ASSIGN = 100
#: Most queries in one BatchRecommendUnits call.
MAX_BATCH_QUERIES = 1_000
#: Largest page of ListUnits / ListIncidents, and the size of a page when none is asked.
MAX_PAGE_SIZE = 1_000
DEFAULT_PAGE_SIZE = 100

Violations: TypeAlias = list[tuple[str, str]]

_AGENCIES = frozenset(int(a) for a in Agency)
_UNIT_STATUSES = frozenset(int(s) for s in UnitStatus)
_GRADES = frozenset(int(g) for g in Grade)
_INCIDENT_STATUSES = frozenset(int(s) for s in IncidentStatus)


def _raise_if(violations: Violations) -> None:
    if violations:
        raise InvalidArgumentError(violations)


def _id(v: Violations, field: str, value: str, *, required: bool = True) -> None:
    if not value:
        if required:
            v.append((field, "must not be empty"))
    elif len(value) > MAX_ID_LENGTH // 4 and len(value.encode()) > MAX_ID_LENGTH:
        # Up to 16 characters cannot exceed 64 bytes: the common case skips the encode.
        v.append((field, f"is {len(value.encode())} bytes long; the limit is {MAX_ID_LENGTH}"))


def _enum(v: Violations, field: str, value: int, valid: frozenset[int], name: str) -> None:
    if value not in valid:
        what = "must be set" if value == 0 else f"{value} is not a known {name}"
        v.append((field, what))


def _enums(
    v: Violations, field: str, values: Sequence[int], valid: frozenset[int], name: str
) -> None:
    for i, value in enumerate(values):
        _enum(v, f"{field}[{i}]", value, valid, name)


def _location(v: Violations, field: str, present: bool, location: pb.Location) -> None:
    if not present:
        v.append((field, "must be set"))
        return
    # Written so that NaN fails too: every comparison with NaN is false.
    if not -90.0 <= location.lat <= 90.0:
        v.append((f"{field}.lat", f"{location.lat} is not a latitude in [-90, 90]"))
    if not -180.0 <= location.lon <= 180.0:
        v.append((f"{field}.lon", f"{location.lon} is not a longitude in [-180, 180]"))


def _ids(v: Violations, field: str, values: Iterable[str]) -> None:
    for i, value in enumerate(values):
        _id(v, f"{field}[{i}]", value)


def _page(v: Violations, page_size: int, page_token: str) -> tuple[int, str]:
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        v.append(("page_size", f"{page_size} is outside [0, {MAX_PAGE_SIZE}]"))
    after = ""
    if page_token:
        try:
            after = base64.urlsafe_b64decode(page_token.encode("ascii") + b"==").decode()
        except (UnicodeError, binascii.Error, ValueError):
            v.append(("page_token", "is not a token this server issued"))
    return page_size or DEFAULT_PAGE_SIZE, after


def page_token(after_id: str | None) -> str:
    """The opaque token of the page after `after_id` (empty: no more pages)."""
    if after_id is None:
        return ""
    return base64.urlsafe_b64encode(after_id.encode()).rstrip(b"=").decode("ascii")


def _timestamp_ms(ts: Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


class Validator:
    """Checks requests against the documented limits and the capability vocabulary."""

    def __init__(self, capabilities: Iterable[str], max_k: int) -> None:
        self.capabilities = frozenset(capabilities)
        self.max_k = max_k

    def _capabilities(self, v: Violations, field: str, names: Sequence[str]) -> None:
        for i, name in enumerate(names):
            if name not in self.capabilities:
                v.append((f"{field}[{i}]", f"{name!r} is not in the capability vocabulary"))

    def _groups(self, v: Violations, field: str, groups: Sequence[pb.RequirementGroup]) -> None:
        if not groups:
            v.append((field, "needs at least one requirement group"))
        elif len(groups) > MAX_GROUPS:
            v.append((field, f"has {len(groups)} groups; the limit is {MAX_GROUPS}"))
            return
        for i, group in enumerate(groups):
            at = f"{field}[{i}]"
            _enum(v, f"{at}.agency", group.agency, _AGENCIES, "Agency")
            if len(group.unit_types) > MAX_GROUP_NAMES:
                v.append((f"{at}.unit_types", f"names more than {MAX_GROUP_NAMES} types"))
            else:
                _ids(v, f"{at}.unit_types", group.unit_types)
            if len(group.capabilities) > MAX_GROUP_NAMES:
                v.append((f"{at}.capabilities", f"names more than {MAX_GROUP_NAMES}"))
            else:
                self._capabilities(v, f"{at}.capabilities", group.capabilities)
            if not 1 <= group.count <= MAX_GROUP_COUNT:
                v.append((f"{at}.count", f"{group.count} is outside [1, {MAX_GROUP_COUNT}]"))

    # ---------------------------------------------------------------------------- units

    def upsert_unit(self, request: pb.UpsertUnitRequest) -> None:
        v: Violations = []
        _id(v, "request_id", request.request_id)
        if not request.HasField("unit"):
            v.append(("unit", "must be set"))
            _raise_if(v)
        spec = request.unit
        _id(v, "unit.unit_id", spec.unit_id)
        _enum(v, "unit.agency", spec.agency, _AGENCIES, "Agency")
        _id(v, "unit.unit_type", spec.unit_type)
        if len(spec.capabilities) > MAX_UNIT_CAPABILITIES:
            v.append(("unit.capabilities", f"has more than {MAX_UNIT_CAPABILITIES} entries"))
        else:
            self._capabilities(v, "unit.capabilities", spec.capabilities)
        _id(v, "unit.home_area", spec.home_area, required=False)
        if (
            spec.HasField("shift_start")
            and spec.HasField("shift_end")
            and _timestamp_ms(spec.shift_end) <= _timestamp_ms(spec.shift_start)
        ):
            v.append(("unit.shift_end", "must be after unit.shift_start"))
        _raise_if(v)

    def get_unit(self, request: pb.GetUnitRequest) -> None:
        v: Violations = []
        _id(v, "unit_id", request.unit_id)
        _raise_if(v)

    def list_units(self, request: pb.ListUnitsRequest) -> tuple[int, str]:
        """Returns the page size and the id the page starts after."""
        v: Violations = []
        _enums(v, "statuses", request.statuses, _UNIT_STATUSES, "UnitStatus")
        _enums(v, "agencies", request.agencies, _AGENCIES, "Agency")
        _id(v, "home_area", request.home_area, required=False)
        page = _page(v, request.page_size, request.page_token)
        _raise_if(v)
        return page

    def set_unit_status(self, request: pb.SetUnitStatusRequest) -> None:
        v: Violations = []
        _id(v, "request_id", request.request_id)
        _id(v, "unit_id", request.unit_id)
        _enum(v, "status", request.status, _UNIT_STATUSES, "UnitStatus")
        _raise_if(v)

    def update_locations(self, request: pb.UpdateLocationsRequest, batch: int = 0) -> None:
        """Only the batch's shape: a bad ping is skipped and counted, never refused."""
        n = len(request.unit_ids)
        where = f" (batch {batch} of the stream)" if batch else ""
        v: Violations = []
        if n > MAX_LOCATION_BATCH:
            v.append(("unit_ids", f"has {n} pings; the limit is {MAX_LOCATION_BATCH}{where}"))
        for field, values in (
            ("lat", request.lat),
            ("lon", request.lon),
            ("time_unix_ms", request.time_unix_ms),
        ):
            if len(values) != n:
                v.append((field, f"has {len(values)} values but unit_ids has {n}{where}"))
        _raise_if(v)

    # ------------------------------------------------------------------------ incidents

    def create_incident(self, request: pb.CreateIncidentRequest) -> None:
        v: Violations = []
        _id(v, "request_id", request.request_id)
        _id(v, "incident_id", request.incident_id, required=False)
        _enum(v, "grade", request.grade, _GRADES, "Grade")
        _id(v, "incident_type", request.incident_type)
        _location(v, "location", request.HasField("location"), request.location)
        _id(v, "area", request.area, required=False)
        self._groups(v, "requirements", request.requirements)
        _raise_if(v)

    def get_incident(self, request: pb.GetIncidentRequest) -> None:
        v: Violations = []
        _id(v, "incident_id", request.incident_id)
        _raise_if(v)

    def list_incidents(self, request: pb.ListIncidentsRequest) -> tuple[int, str]:
        """Returns the page size and the id the page starts after."""
        v: Violations = []
        _enums(v, "statuses", request.statuses, _INCIDENT_STATUSES, "IncidentStatus")
        _enums(v, "grades", request.grades, _GRADES, "Grade")
        page = _page(v, request.page_size, request.page_token)
        _raise_if(v)
        return page

    def update_incident(self, request: pb.UpdateIncidentRequest) -> None:
        v: Violations = []
        _id(v, "request_id", request.request_id)
        _id(v, "incident_id", request.incident_id)
        if request.HasField("grade"):
            _enum(v, "grade", request.grade, _GRADES, "Grade")
        if request.HasField("incident_type"):
            _id(v, "incident_type", request.incident_type)
        if request.HasField("location"):
            _location(v, "location", True, request.location)
        if request.HasField("area"):
            _id(v, "area", request.area, required=False)
        if request.HasField("requirements"):
            self._groups(v, "requirements.groups", request.requirements.groups)
        _raise_if(v)

    def close_incident(self, request: pb.CloseIncidentRequest) -> None:
        v: Violations = []
        _id(v, "request_id", request.request_id)
        _id(v, "incident_id", request.incident_id)
        _raise_if(v)

    # --------------------------------------------------------------------- recommendation

    def _recommend(self, v: Violations, at: str, request: pb.RecommendUnitsRequest) -> None:
        target = request.WhichOneof("target")
        if target == "incident_id":
            _id(v, f"{at}incident_id", request.incident_id)
        elif target == "ad_hoc":
            ad_hoc = request.ad_hoc
            _location(v, f"{at}ad_hoc.location", ad_hoc.HasField("location"), ad_hoc.location)
            _enum(v, f"{at}ad_hoc.grade", ad_hoc.grade, _GRADES, "Grade")
            _id(v, f"{at}ad_hoc.area", ad_hoc.area, required=False)
            self._groups(v, f"{at}ad_hoc.requirements", ad_hoc.requirements)
        else:
            v.append((f"{at}target", "set incident_id or ad_hoc"))
        if request.k and not 1 <= request.k <= self.max_k:
            v.append((f"{at}k", f"{request.k} is outside [1, {self.max_k}] (0 for the default)"))
        _enums(v, f"{at}eligible_statuses", request.eligible_statuses, _UNIT_STATUSES, "UnitStatus")

    def recommend_units(self, request: pb.RecommendUnitsRequest) -> None:
        v: Violations = []
        self._recommend(v, "", request)
        _raise_if(v)

    def batch_recommend_units(self, request: pb.BatchRecommendUnitsRequest) -> None:
        v: Violations = []
        n = len(request.queries)
        if not 1 <= n <= MAX_BATCH_QUERIES:
            v.append(("queries", f"has {n} queries; between 1 and {MAX_BATCH_QUERIES} allowed"))
        else:
            for i, query in enumerate(request.queries):
                self._recommend(v, f"queries[{i}].", query)
        _raise_if(v)

    def assign_units(self, request: pb.AssignUnitsRequest) -> None:
        v: Violations = []
        _id(v, "request_id", request.request_id)
        _id(v, "incident_id", request.incident_id)
        n = len(request.unit_ids)
        if not 1 <= n <= MAX_ASSIGN:
            v.append(("unit_ids", f"has {n} units; between 1 and {MAX_ASSIGN} allowed"))
        else:
            _ids(v, "unit_ids", request.unit_ids)
            seen: set[str] = set()
            for i, unit_id in enumerate(request.unit_ids):
                if unit_id in seen:
                    v.append((f"unit_ids[{i}]", f"{unit_id!r} is listed twice"))
                seen.add(unit_id)
        _raise_if(v)


#: Longest coverage target accepted, seconds: a day is already beyond any response target.
MAX_TARGET_SECONDS = 86_400.0
#: Bounds of a coverage cell's side, metres: finer is noise, coarser hides the gaps.
MIN_CELL_M, MAX_CELL_M = 50.0, 10_000.0
#: Bounds of WatchOperatingPicture's interval, seconds.
MIN_INTERVAL_S, MAX_INTERVAL_S = 1.0, 3_600.0


def coverage_spec(
    query: pb.CoverageQuery, capabilities: frozenset[str], at: str = "coverage"
) -> CoverageSpec:
    """The coverage question of a picture request, with its documented defaults filled in."""
    v: Violations = []
    _enums(v, f"{at}.agencies", query.agencies, _AGENCIES, "Agency")
    if query.grade != 0:
        _enum(v, f"{at}.grade", query.grade, _GRADES, "Grade")
    for i, name in enumerate(query.unit_types):
        _id(v, f"{at}.unit_types[{i}]", name)
    for i, name in enumerate(query.capabilities):
        if name not in capabilities:
            v.append((f"{at}.capabilities[{i}]", f"unknown capability {name!r}"))
    target = query.target_seconds or 900.0
    if not (0.0 < target <= MAX_TARGET_SECONDS):
        v.append((f"{at}.target_seconds", f"{target} is outside (0, {MAX_TARGET_SECONDS:.0f}]"))
    cell = query.cell_m or 500.0
    if not (MIN_CELL_M <= cell <= MAX_CELL_M):
        v.append((f"{at}.cell_m", f"{cell} is outside [{MIN_CELL_M:.0f}, {MAX_CELL_M:.0f}]"))
    _raise_if(v)
    types = tuple(query.unit_types) or ("irv",)
    return CoverageSpec(
        agencies=tuple(Agency(a) for a in query.agencies) or (Agency.POLICE,),
        unit_types=() if types == ("*",) else types,
        required=tuple(query.capabilities),
        grade=Grade(query.grade or Grade.IMMEDIATE),
        target_seconds=target,
        cell_m=cell,
    )


def watch_interval(request: pb.WatchOperatingPictureRequest) -> float:
    interval = request.interval_seconds or 5.0
    if not (MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S):
        raise InvalidArgumentError.one(
            "interval_seconds",
            f"{interval} is outside [{MIN_INTERVAL_S:.0f}, {MAX_INTERVAL_S:.0f}]",
        )
    return interval
