import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Agency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENCY_UNSPECIFIED: _ClassVar[Agency]
    AGENCY_POLICE: _ClassVar[Agency]
    AGENCY_FIRE: _ClassVar[Agency]
    AGENCY_AMBULANCE: _ClassVar[Agency]

class UnitStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNIT_STATUS_UNSPECIFIED: _ClassVar[UnitStatus]
    UNIT_STATUS_AVAILABLE: _ClassVar[UnitStatus]
    UNIT_STATUS_DISPATCHED: _ClassVar[UnitStatus]
    UNIT_STATUS_EN_ROUTE: _ClassVar[UnitStatus]
    UNIT_STATUS_ON_SCENE: _ClassVar[UnitStatus]
    UNIT_STATUS_COMMITTED: _ClassVar[UnitStatus]
    UNIT_STATUS_UNAVAILABLE: _ClassVar[UnitStatus]
    UNIT_STATUS_OFF_DUTY: _ClassVar[UnitStatus]

class Grade(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRADE_UNSPECIFIED: _ClassVar[Grade]
    GRADE_IMMEDIATE: _ClassVar[Grade]
    GRADE_SIGNIFICANT: _ClassVar[Grade]
    GRADE_EXTENDED: _ClassVar[Grade]
    GRADE_REFERRED: _ClassVar[Grade]

class IncidentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INCIDENT_STATUS_UNSPECIFIED: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_OPEN: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_DISPATCHED: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_ATTENDED: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_CLOSED: _ClassVar[IncidentStatus]

class ShortfallReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHORTFALL_REASON_UNSPECIFIED: _ClassVar[ShortfallReason]
    SHORTFALL_REASON_NONE_ON_DUTY: _ClassVar[ShortfallReason]
    SHORTFALL_REASON_ALL_COMMITTED: _ClassVar[ShortfallReason]
    SHORTFALL_REASON_POSITIONS_STALE: _ClassVar[ShortfallReason]
    SHORTFALL_REASON_BEYOND_LIMIT: _ClassVar[ShortfallReason]
    SHORTFALL_REASON_NEEDED_BY_OTHER_GROUP: _ClassVar[ShortfallReason]

class PassedOverReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PASSED_OVER_REASON_UNSPECIFIED: _ClassVar[PassedOverReason]
    PASSED_OVER_REASON_IN_OTHER_GROUP: _ClassVar[PassedOverReason]
    PASSED_OVER_REASON_LATER_ARRIVAL: _ClassVar[PassedOverReason]
AGENCY_UNSPECIFIED: Agency
AGENCY_POLICE: Agency
AGENCY_FIRE: Agency
AGENCY_AMBULANCE: Agency
UNIT_STATUS_UNSPECIFIED: UnitStatus
UNIT_STATUS_AVAILABLE: UnitStatus
UNIT_STATUS_DISPATCHED: UnitStatus
UNIT_STATUS_EN_ROUTE: UnitStatus
UNIT_STATUS_ON_SCENE: UnitStatus
UNIT_STATUS_COMMITTED: UnitStatus
UNIT_STATUS_UNAVAILABLE: UnitStatus
UNIT_STATUS_OFF_DUTY: UnitStatus
GRADE_UNSPECIFIED: Grade
GRADE_IMMEDIATE: Grade
GRADE_SIGNIFICANT: Grade
GRADE_EXTENDED: Grade
GRADE_REFERRED: Grade
INCIDENT_STATUS_UNSPECIFIED: IncidentStatus
INCIDENT_STATUS_OPEN: IncidentStatus
INCIDENT_STATUS_DISPATCHED: IncidentStatus
INCIDENT_STATUS_ATTENDED: IncidentStatus
INCIDENT_STATUS_CLOSED: IncidentStatus
SHORTFALL_REASON_UNSPECIFIED: ShortfallReason
SHORTFALL_REASON_NONE_ON_DUTY: ShortfallReason
SHORTFALL_REASON_ALL_COMMITTED: ShortfallReason
SHORTFALL_REASON_POSITIONS_STALE: ShortfallReason
SHORTFALL_REASON_BEYOND_LIMIT: ShortfallReason
SHORTFALL_REASON_NEEDED_BY_OTHER_GROUP: ShortfallReason
PASSED_OVER_REASON_UNSPECIFIED: PassedOverReason
PASSED_OVER_REASON_IN_OTHER_GROUP: PassedOverReason
PASSED_OVER_REASON_LATER_ARRIVAL: PassedOverReason

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Location(_message.Message):
    __slots__ = ("lat", "lon")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lon: float
    def __init__(self, lat: _Optional[float] = ..., lon: _Optional[float] = ...) -> None: ...

class UnitSpec(_message.Message):
    __slots__ = ("unit_id", "agency", "unit_type", "capabilities", "home_area", "shift_start", "shift_end")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    HOME_AREA_FIELD_NUMBER: _ClassVar[int]
    SHIFT_START_FIELD_NUMBER: _ClassVar[int]
    SHIFT_END_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    agency: Agency
    unit_type: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    home_area: str
    shift_start: _timestamp_pb2.Timestamp
    shift_end: _timestamp_pb2.Timestamp
    def __init__(self, unit_id: _Optional[str] = ..., agency: _Optional[_Union[Agency, str]] = ..., unit_type: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., home_area: _Optional[str] = ..., shift_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., shift_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Unit(_message.Message):
    __slots__ = ("unit_id", "agency", "unit_type", "capabilities", "home_area", "shift_start", "shift_end", "status", "location", "location_time", "incident_id")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    HOME_AREA_FIELD_NUMBER: _ClassVar[int]
    SHIFT_START_FIELD_NUMBER: _ClassVar[int]
    SHIFT_END_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_TIME_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    agency: Agency
    unit_type: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    home_area: str
    shift_start: _timestamp_pb2.Timestamp
    shift_end: _timestamp_pb2.Timestamp
    status: UnitStatus
    location: Location
    location_time: _timestamp_pb2.Timestamp
    incident_id: str
    def __init__(self, unit_id: _Optional[str] = ..., agency: _Optional[_Union[Agency, str]] = ..., unit_type: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., home_area: _Optional[str] = ..., shift_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., shift_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[UnitStatus, str]] = ..., location: _Optional[_Union[Location, _Mapping]] = ..., location_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., incident_id: _Optional[str] = ...) -> None: ...

class UpsertUnitRequest(_message.Message):
    __slots__ = ("request_id", "unit")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    unit: UnitSpec
    def __init__(self, request_id: _Optional[str] = ..., unit: _Optional[_Union[UnitSpec, _Mapping]] = ...) -> None: ...

class UpsertUnitResponse(_message.Message):
    __slots__ = ("unit", "created", "roster_overridden_fields")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ROSTER_OVERRIDDEN_FIELDS_FIELD_NUMBER: _ClassVar[int]
    unit: Unit
    created: bool
    roster_overridden_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, unit: _Optional[_Union[Unit, _Mapping]] = ..., created: _Optional[bool] = ..., roster_overridden_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class GetUnitRequest(_message.Message):
    __slots__ = ("unit_id",)
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    def __init__(self, unit_id: _Optional[str] = ...) -> None: ...

class GetUnitResponse(_message.Message):
    __slots__ = ("unit",)
    UNIT_FIELD_NUMBER: _ClassVar[int]
    unit: Unit
    def __init__(self, unit: _Optional[_Union[Unit, _Mapping]] = ...) -> None: ...

class ListUnitsRequest(_message.Message):
    __slots__ = ("statuses", "agencies", "home_area", "page_size", "page_token")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    HOME_AREA_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[UnitStatus]
    agencies: _containers.RepeatedScalarFieldContainer[Agency]
    home_area: str
    page_size: int
    page_token: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[UnitStatus, str]]] = ..., agencies: _Optional[_Iterable[_Union[Agency, str]]] = ..., home_area: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListUnitsResponse(_message.Message):
    __slots__ = ("units", "next_page_token")
    UNITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    units: _containers.RepeatedCompositeFieldContainer[Unit]
    next_page_token: str
    def __init__(self, units: _Optional[_Iterable[_Union[Unit, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetUnitStatusRequest(_message.Message):
    __slots__ = ("request_id", "unit_id", "status")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    unit_id: str
    status: UnitStatus
    def __init__(self, request_id: _Optional[str] = ..., unit_id: _Optional[str] = ..., status: _Optional[_Union[UnitStatus, str]] = ...) -> None: ...

class SetUnitStatusResponse(_message.Message):
    __slots__ = ("unit", "released_incident_id")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    RELEASED_INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    unit: Unit
    released_incident_id: str
    def __init__(self, unit: _Optional[_Union[Unit, _Mapping]] = ..., released_incident_id: _Optional[str] = ...) -> None: ...

class UpdateLocationsRequest(_message.Message):
    __slots__ = ("unit_ids", "lat", "lon", "time_unix_ms")
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    lat: _containers.RepeatedScalarFieldContainer[float]
    lon: _containers.RepeatedScalarFieldContainer[float]
    time_unix_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, unit_ids: _Optional[_Iterable[str]] = ..., lat: _Optional[_Iterable[float]] = ..., lon: _Optional[_Iterable[float]] = ..., time_unix_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class UpdateLocationsResponse(_message.Message):
    __slots__ = ("applied", "skipped_unknown_unit", "skipped_bad_coordinate", "skipped_stale", "batches", "skipped_bad_time", "skipped_future")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_UNKNOWN_UNIT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_BAD_COORDINATE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_STALE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_BAD_TIME_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FUTURE_FIELD_NUMBER: _ClassVar[int]
    applied: int
    skipped_unknown_unit: int
    skipped_bad_coordinate: int
    skipped_stale: int
    batches: int
    skipped_bad_time: int
    skipped_future: int
    def __init__(self, applied: _Optional[int] = ..., skipped_unknown_unit: _Optional[int] = ..., skipped_bad_coordinate: _Optional[int] = ..., skipped_stale: _Optional[int] = ..., batches: _Optional[int] = ..., skipped_bad_time: _Optional[int] = ..., skipped_future: _Optional[int] = ...) -> None: ...

class StreamLocationsRequest(_message.Message):
    __slots__ = ("unit_ids", "lat", "lon", "time_unix_ms")
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    lat: _containers.RepeatedScalarFieldContainer[float]
    lon: _containers.RepeatedScalarFieldContainer[float]
    time_unix_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, unit_ids: _Optional[_Iterable[str]] = ..., lat: _Optional[_Iterable[float]] = ..., lon: _Optional[_Iterable[float]] = ..., time_unix_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class StreamLocationsResponse(_message.Message):
    __slots__ = ("applied", "skipped_unknown_unit", "skipped_bad_coordinate", "skipped_stale", "batches", "skipped_bad_time", "skipped_future")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_UNKNOWN_UNIT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_BAD_COORDINATE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_STALE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_BAD_TIME_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FUTURE_FIELD_NUMBER: _ClassVar[int]
    applied: int
    skipped_unknown_unit: int
    skipped_bad_coordinate: int
    skipped_stale: int
    batches: int
    skipped_bad_time: int
    skipped_future: int
    def __init__(self, applied: _Optional[int] = ..., skipped_unknown_unit: _Optional[int] = ..., skipped_bad_coordinate: _Optional[int] = ..., skipped_stale: _Optional[int] = ..., batches: _Optional[int] = ..., skipped_bad_time: _Optional[int] = ..., skipped_future: _Optional[int] = ...) -> None: ...

class RequirementGroup(_message.Message):
    __slots__ = ("agency", "unit_types", "capabilities", "count", "arrive_together")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ARRIVE_TOGETHER_FIELD_NUMBER: _ClassVar[int]
    agency: Agency
    unit_types: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    count: int
    arrive_together: bool
    def __init__(self, agency: _Optional[_Union[Agency, str]] = ..., unit_types: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., count: _Optional[int] = ..., arrive_together: _Optional[bool] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("incident_id", "grade", "incident_type", "location", "area", "requirements", "status", "assigned_unit_ids", "attached_unit_ids", "create_time", "first_assigned_time", "first_on_scene_time", "close_time", "response_plan")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FIRST_ASSIGNED_TIME_FIELD_NUMBER: _ClassVar[int]
    FIRST_ON_SCENE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PLAN_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    grade: Grade
    incident_type: str
    location: Location
    area: str
    requirements: _containers.RepeatedCompositeFieldContainer[RequirementGroup]
    status: IncidentStatus
    assigned_unit_ids: _containers.RepeatedScalarFieldContainer[str]
    attached_unit_ids: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    first_assigned_time: _timestamp_pb2.Timestamp
    first_on_scene_time: _timestamp_pb2.Timestamp
    close_time: _timestamp_pb2.Timestamp
    response_plan: str
    def __init__(self, incident_id: _Optional[str] = ..., grade: _Optional[_Union[Grade, str]] = ..., incident_type: _Optional[str] = ..., location: _Optional[_Union[Location, _Mapping]] = ..., area: _Optional[str] = ..., requirements: _Optional[_Iterable[_Union[RequirementGroup, _Mapping]]] = ..., status: _Optional[_Union[IncidentStatus, str]] = ..., assigned_unit_ids: _Optional[_Iterable[str]] = ..., attached_unit_ids: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_assigned_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_on_scene_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., response_plan: _Optional[str] = ...) -> None: ...

class CreateIncidentRequest(_message.Message):
    __slots__ = ("request_id", "incident_id", "grade", "incident_type", "location", "area", "requirements")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    incident_id: str
    grade: Grade
    incident_type: str
    location: Location
    area: str
    requirements: _containers.RepeatedCompositeFieldContainer[RequirementGroup]
    def __init__(self, request_id: _Optional[str] = ..., incident_id: _Optional[str] = ..., grade: _Optional[_Union[Grade, str]] = ..., incident_type: _Optional[str] = ..., location: _Optional[_Union[Location, _Mapping]] = ..., area: _Optional[str] = ..., requirements: _Optional[_Iterable[_Union[RequirementGroup, _Mapping]]] = ...) -> None: ...

class CreateIncidentResponse(_message.Message):
    __slots__ = ("incident",)
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ...) -> None: ...

class GetIncidentRequest(_message.Message):
    __slots__ = ("incident_id",)
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    def __init__(self, incident_id: _Optional[str] = ...) -> None: ...

class GetIncidentResponse(_message.Message):
    __slots__ = ("incident",)
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ...) -> None: ...

class ListIncidentsRequest(_message.Message):
    __slots__ = ("statuses", "grades", "page_size", "page_token")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    GRADES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[IncidentStatus]
    grades: _containers.RepeatedScalarFieldContainer[Grade]
    page_size: int
    page_token: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[IncidentStatus, str]]] = ..., grades: _Optional[_Iterable[_Union[Grade, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIncidentsResponse(_message.Message):
    __slots__ = ("incidents", "next_page_token")
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    incidents: _containers.RepeatedCompositeFieldContainer[Incident]
    next_page_token: str
    def __init__(self, incidents: _Optional[_Iterable[_Union[Incident, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Requirements(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[RequirementGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[RequirementGroup, _Mapping]]] = ...) -> None: ...

class UpdateIncidentRequest(_message.Message):
    __slots__ = ("request_id", "incident_id", "grade", "incident_type", "location", "area", "requirements")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    incident_id: str
    grade: Grade
    incident_type: str
    location: Location
    area: str
    requirements: Requirements
    def __init__(self, request_id: _Optional[str] = ..., incident_id: _Optional[str] = ..., grade: _Optional[_Union[Grade, str]] = ..., incident_type: _Optional[str] = ..., location: _Optional[_Union[Location, _Mapping]] = ..., area: _Optional[str] = ..., requirements: _Optional[_Union[Requirements, _Mapping]] = ...) -> None: ...

class UpdateIncidentResponse(_message.Message):
    __slots__ = ("incident",)
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ...) -> None: ...

class CloseIncidentRequest(_message.Message):
    __slots__ = ("request_id", "incident_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    incident_id: str
    def __init__(self, request_id: _Optional[str] = ..., incident_id: _Optional[str] = ...) -> None: ...

class CloseIncidentResponse(_message.Message):
    __slots__ = ("incident", "released_unit_ids")
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    RELEASED_UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    released_unit_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ..., released_unit_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AdHocTarget(_message.Message):
    __slots__ = ("location", "grade", "area", "requirements")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    location: Location
    grade: Grade
    area: str
    requirements: _containers.RepeatedCompositeFieldContainer[RequirementGroup]
    def __init__(self, location: _Optional[_Union[Location, _Mapping]] = ..., grade: _Optional[_Union[Grade, str]] = ..., area: _Optional[str] = ..., requirements: _Optional[_Iterable[_Union[RequirementGroup, _Mapping]]] = ...) -> None: ...

class RecommendUnitsRequest(_message.Message):
    __slots__ = ("incident_id", "ad_hoc", "k", "eligible_statuses", "include_diversions", "max_eta_seconds", "explain")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    AD_HOC_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_STATUSES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DIVERSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    ad_hoc: AdHocTarget
    k: int
    eligible_statuses: _containers.RepeatedScalarFieldContainer[UnitStatus]
    include_diversions: bool
    max_eta_seconds: float
    explain: bool
    def __init__(self, incident_id: _Optional[str] = ..., ad_hoc: _Optional[_Union[AdHocTarget, _Mapping]] = ..., k: _Optional[int] = ..., eligible_statuses: _Optional[_Iterable[_Union[UnitStatus, str]]] = ..., include_diversions: _Optional[bool] = ..., max_eta_seconds: _Optional[float] = ..., explain: _Optional[bool] = ...) -> None: ...

class ScoreBreakdown(_message.Message):
    __slots__ = ("mobilisation_seconds", "travel_seconds", "cross_area_cost_seconds", "shift_overrun_cost_seconds", "specialist_cost_seconds", "stale_position_cost_seconds", "diversion_cost_seconds")
    MOBILISATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRAVEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CROSS_AREA_COST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHIFT_OVERRUN_COST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SPECIALIST_COST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STALE_POSITION_COST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DIVERSION_COST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    mobilisation_seconds: float
    travel_seconds: float
    cross_area_cost_seconds: float
    shift_overrun_cost_seconds: float
    specialist_cost_seconds: float
    stale_position_cost_seconds: float
    diversion_cost_seconds: float
    def __init__(self, mobilisation_seconds: _Optional[float] = ..., travel_seconds: _Optional[float] = ..., cross_area_cost_seconds: _Optional[float] = ..., shift_overrun_cost_seconds: _Optional[float] = ..., specialist_cost_seconds: _Optional[float] = ..., stale_position_cost_seconds: _Optional[float] = ..., diversion_cost_seconds: _Optional[float] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("unit_id", "eta_seconds", "distance_m", "score", "breakdown", "position_age_seconds", "diverted_from_incident_id")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    POSITION_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DIVERTED_FROM_INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    eta_seconds: float
    distance_m: float
    score: float
    breakdown: ScoreBreakdown
    position_age_seconds: float
    diverted_from_incident_id: str
    def __init__(self, unit_id: _Optional[str] = ..., eta_seconds: _Optional[float] = ..., distance_m: _Optional[float] = ..., score: _Optional[float] = ..., breakdown: _Optional[_Union[ScoreBreakdown, _Mapping]] = ..., position_age_seconds: _Optional[float] = ..., diverted_from_incident_id: _Optional[str] = ...) -> None: ...

class PassedOver(_message.Message):
    __slots__ = ("unit_id", "eta_seconds", "reason", "other_group_index")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OTHER_GROUP_INDEX_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    eta_seconds: float
    reason: PassedOverReason
    other_group_index: int
    def __init__(self, unit_id: _Optional[str] = ..., eta_seconds: _Optional[float] = ..., reason: _Optional[_Union[PassedOverReason, str]] = ..., other_group_index: _Optional[int] = ...) -> None: ...

class TeamMember(_message.Message):
    __slots__ = ("unit_id", "group_index", "eta_seconds", "score", "distance_m", "breakdown", "position_age_seconds", "next_best")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_INDEX_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    POSITION_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEST_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    group_index: int
    eta_seconds: float
    score: float
    distance_m: float
    breakdown: ScoreBreakdown
    position_age_seconds: float
    next_best: PassedOver
    def __init__(self, unit_id: _Optional[str] = ..., group_index: _Optional[int] = ..., eta_seconds: _Optional[float] = ..., score: _Optional[float] = ..., distance_m: _Optional[float] = ..., breakdown: _Optional[_Union[ScoreBreakdown, _Mapping]] = ..., position_age_seconds: _Optional[float] = ..., next_best: _Optional[_Union[PassedOver, _Mapping]] = ...) -> None: ...

class Shortfall(_message.Message):
    __slots__ = ("group_index", "missing", "reason")
    GROUP_INDEX_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    group_index: int
    missing: int
    reason: ShortfallReason
    def __init__(self, group_index: _Optional[int] = ..., missing: _Optional[int] = ..., reason: _Optional[_Union[ShortfallReason, str]] = ...) -> None: ...

class GroupRecommendation(_message.Message):
    __slots__ = ("group_index", "group", "candidates")
    GROUP_INDEX_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    group_index: int
    group: RequirementGroup
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    def __init__(self, group_index: _Optional[int] = ..., group: _Optional[_Union[RequirementGroup, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ...) -> None: ...

class RecommendUnitsResponse(_message.Message):
    __slots__ = ("groups", "incident_id", "team", "shortfalls", "team_eta_seconds")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    SHORTFALLS_FIELD_NUMBER: _ClassVar[int]
    TEAM_ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[GroupRecommendation]
    incident_id: str
    team: _containers.RepeatedCompositeFieldContainer[TeamMember]
    shortfalls: _containers.RepeatedCompositeFieldContainer[Shortfall]
    team_eta_seconds: float
    def __init__(self, groups: _Optional[_Iterable[_Union[GroupRecommendation, _Mapping]]] = ..., incident_id: _Optional[str] = ..., team: _Optional[_Iterable[_Union[TeamMember, _Mapping]]] = ..., shortfalls: _Optional[_Iterable[_Union[Shortfall, _Mapping]]] = ..., team_eta_seconds: _Optional[float] = ...) -> None: ...

class BatchRecommendUnitsRequest(_message.Message):
    __slots__ = ("queries",)
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[RecommendUnitsRequest]
    def __init__(self, queries: _Optional[_Iterable[_Union[RecommendUnitsRequest, _Mapping]]] = ...) -> None: ...

class BatchRecommendUnitsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecommendUnitsResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[RecommendUnitsResponse, _Mapping]]] = ...) -> None: ...

class AssignUnitsRequest(_message.Message):
    __slots__ = ("request_id", "incident_id", "unit_ids", "allow_diversion")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DIVERSION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    incident_id: str
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    allow_diversion: bool
    def __init__(self, request_id: _Optional[str] = ..., incident_id: _Optional[str] = ..., unit_ids: _Optional[_Iterable[str]] = ..., allow_diversion: _Optional[bool] = ...) -> None: ...

class Diversion(_message.Message):
    __slots__ = ("unit_id", "from_incident_id")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    from_incident_id: str
    def __init__(self, unit_id: _Optional[str] = ..., from_incident_id: _Optional[str] = ...) -> None: ...

class AssignUnitsResponse(_message.Message):
    __slots__ = ("incident", "diversions")
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    DIVERSIONS_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    diversions: _containers.RepeatedCompositeFieldContainer[Diversion]
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ..., diversions: _Optional[_Iterable[_Union[Diversion, _Mapping]]] = ...) -> None: ...

class ListPendingRequest(_message.Message):
    __slots__ = ("grades", "area", "page_size", "page_token", "include_diversions")
    GRADES_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DIVERSIONS_FIELD_NUMBER: _ClassVar[int]
    grades: _containers.RepeatedScalarFieldContainer[Grade]
    area: str
    page_size: int
    page_token: str
    include_diversions: bool
    def __init__(self, grades: _Optional[_Iterable[_Union[Grade, str]]] = ..., area: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_diversions: _Optional[bool] = ...) -> None: ...

class PendingIncident(_message.Message):
    __slots__ = ("incident", "wait_seconds", "required_units", "attached_units", "unfilled_group_index", "best_candidate")
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_UNITS_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_UNITS_FIELD_NUMBER: _ClassVar[int]
    UNFILLED_GROUP_INDEX_FIELD_NUMBER: _ClassVar[int]
    BEST_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    wait_seconds: float
    required_units: int
    attached_units: int
    unfilled_group_index: int
    best_candidate: Candidate
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ..., wait_seconds: _Optional[float] = ..., required_units: _Optional[int] = ..., attached_units: _Optional[int] = ..., unfilled_group_index: _Optional[int] = ..., best_candidate: _Optional[_Union[Candidate, _Mapping]] = ...) -> None: ...

class ListPendingResponse(_message.Message):
    __slots__ = ("incidents", "next_page_token")
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    incidents: _containers.RepeatedCompositeFieldContainer[PendingIncident]
    next_page_token: str
    def __init__(self, incidents: _Optional[_Iterable[_Union[PendingIncident, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("from_sequence", "from_now")
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FROM_NOW_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    from_now: bool
    def __init__(self, from_sequence: _Optional[int] = ..., from_now: _Optional[bool] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("sequence", "time", "actor", "method", "request_id", "unit_upserted", "unit_status_set", "incident_created", "incident_updated", "incident_closed", "units_assigned", "clock_ticked", "person_upserted", "shift_upserted", "crew_booked", "response_plans_replaced")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    UNIT_STATUS_SET_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_CREATED_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_UPDATED_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_CLOSED_FIELD_NUMBER: _ClassVar[int]
    UNITS_ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    CLOCK_TICKED_FIELD_NUMBER: _ClassVar[int]
    PERSON_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    SHIFT_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    CREW_BOOKED_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PLANS_REPLACED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    actor: str
    method: str
    request_id: str
    unit_upserted: UpsertUnitResponse
    unit_status_set: SetUnitStatusResponse
    incident_created: CreateIncidentResponse
    incident_updated: UpdateIncidentResponse
    incident_closed: CloseIncidentResponse
    units_assigned: AssignUnitsResponse
    clock_ticked: ClockTick
    person_upserted: UpsertPersonResponse
    shift_upserted: UpsertShiftResponse
    crew_booked: BookCrewResponse
    response_plans_replaced: ReplaceResponsePlansResponse
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., method: _Optional[str] = ..., request_id: _Optional[str] = ..., unit_upserted: _Optional[_Union[UpsertUnitResponse, _Mapping]] = ..., unit_status_set: _Optional[_Union[SetUnitStatusResponse, _Mapping]] = ..., incident_created: _Optional[_Union[CreateIncidentResponse, _Mapping]] = ..., incident_updated: _Optional[_Union[UpdateIncidentResponse, _Mapping]] = ..., incident_closed: _Optional[_Union[CloseIncidentResponse, _Mapping]] = ..., units_assigned: _Optional[_Union[AssignUnitsResponse, _Mapping]] = ..., clock_ticked: _Optional[_Union[ClockTick, _Mapping]] = ..., person_upserted: _Optional[_Union[UpsertPersonResponse, _Mapping]] = ..., shift_upserted: _Optional[_Union[UpsertShiftResponse, _Mapping]] = ..., crew_booked: _Optional[_Union[BookCrewResponse, _Mapping]] = ..., response_plans_replaced: _Optional[_Union[ReplaceResponsePlansResponse, _Mapping]] = ...) -> None: ...

class ClockTick(_message.Message):
    __slots__ = ("time", "expired_request_ids", "archived_incidents", "overdue_acknowledgements", "roster_changes")
    TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_ACKNOWLEDGEMENTS_FIELD_NUMBER: _ClassVar[int]
    ROSTER_CHANGES_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    expired_request_ids: int
    archived_incidents: int
    overdue_acknowledgements: _containers.RepeatedCompositeFieldContainer[OverdueAcknowledgement]
    roster_changes: _containers.RepeatedCompositeFieldContainer[RosterChange]
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expired_request_ids: _Optional[int] = ..., archived_incidents: _Optional[int] = ..., overdue_acknowledgements: _Optional[_Iterable[_Union[OverdueAcknowledgement, _Mapping]]] = ..., roster_changes: _Optional[_Iterable[_Union[RosterChange, _Mapping]]] = ...) -> None: ...

class RosterChange(_message.Message):
    __slots__ = ("unit", "crew_id", "overtime")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    CREW_ID_FIELD_NUMBER: _ClassVar[int]
    OVERTIME_FIELD_NUMBER: _ClassVar[int]
    unit: Unit
    crew_id: str
    overtime: bool
    def __init__(self, unit: _Optional[_Union[Unit, _Mapping]] = ..., crew_id: _Optional[str] = ..., overtime: _Optional[bool] = ...) -> None: ...

class OverdueAcknowledgement(_message.Message):
    __slots__ = ("unit_id", "incident_id", "grade", "deadline", "proposed")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    incident_id: str
    grade: Grade
    deadline: _timestamp_pb2.Timestamp
    proposed: Candidate
    def __init__(self, unit_id: _Optional[str] = ..., incident_id: _Optional[str] = ..., grade: _Optional[_Union[Grade, str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., proposed: _Optional[_Union[Candidate, _Mapping]] = ...) -> None: ...

class CoverageQuery(_message.Message):
    __slots__ = ("agencies", "unit_types", "capabilities", "grade", "target_seconds", "cell_m", "include_uncovered_cells")
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    TARGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CELL_M_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UNCOVERED_CELLS_FIELD_NUMBER: _ClassVar[int]
    agencies: _containers.RepeatedScalarFieldContainer[Agency]
    unit_types: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    grade: Grade
    target_seconds: float
    cell_m: float
    include_uncovered_cells: bool
    def __init__(self, agencies: _Optional[_Iterable[_Union[Agency, str]]] = ..., unit_types: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., grade: _Optional[_Union[Grade, str]] = ..., target_seconds: _Optional[float] = ..., cell_m: _Optional[float] = ..., include_uncovered_cells: _Optional[bool] = ...) -> None: ...

class GetOperatingPictureRequest(_message.Message):
    __slots__ = ("coverage",)
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    coverage: CoverageQuery
    def __init__(self, coverage: _Optional[_Union[CoverageQuery, _Mapping]] = ...) -> None: ...

class WatchOperatingPictureRequest(_message.Message):
    __slots__ = ("coverage", "interval_seconds")
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    coverage: CoverageQuery
    interval_seconds: float
    def __init__(self, coverage: _Optional[_Union[CoverageQuery, _Mapping]] = ..., interval_seconds: _Optional[float] = ...) -> None: ...

class AreaPicture(_message.Message):
    __slots__ = ("area", "bcu", "units_by_status", "units_by_type", "units_by_agency", "on_duty", "available", "open_incidents_by_grade", "unassigned_incidents", "oldest_unassigned_age_seconds", "oldest_unassigned_immediate_age_seconds", "cells_total", "cells_covered", "coverage_ratio", "overdue_acknowledgements")
    class UnitsByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class UnitsByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class UnitsByAgencyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class OpenIncidentsByGradeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AREA_FIELD_NUMBER: _ClassVar[int]
    BCU_FIELD_NUMBER: _ClassVar[int]
    UNITS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    UNITS_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    UNITS_BY_AGENCY_FIELD_NUMBER: _ClassVar[int]
    ON_DUTY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    OPEN_INCIDENTS_BY_GRADE_FIELD_NUMBER: _ClassVar[int]
    UNASSIGNED_INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNASSIGNED_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNASSIGNED_IMMEDIATE_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CELLS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CELLS_COVERED_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_RATIO_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_ACKNOWLEDGEMENTS_FIELD_NUMBER: _ClassVar[int]
    area: str
    bcu: str
    units_by_status: _containers.ScalarMap[str, int]
    units_by_type: _containers.ScalarMap[str, int]
    units_by_agency: _containers.ScalarMap[str, int]
    on_duty: int
    available: int
    open_incidents_by_grade: _containers.ScalarMap[str, int]
    unassigned_incidents: int
    oldest_unassigned_age_seconds: float
    oldest_unassigned_immediate_age_seconds: float
    cells_total: int
    cells_covered: int
    coverage_ratio: float
    overdue_acknowledgements: int
    def __init__(self, area: _Optional[str] = ..., bcu: _Optional[str] = ..., units_by_status: _Optional[_Mapping[str, int]] = ..., units_by_type: _Optional[_Mapping[str, int]] = ..., units_by_agency: _Optional[_Mapping[str, int]] = ..., on_duty: _Optional[int] = ..., available: _Optional[int] = ..., open_incidents_by_grade: _Optional[_Mapping[str, int]] = ..., unassigned_incidents: _Optional[int] = ..., oldest_unassigned_age_seconds: _Optional[float] = ..., oldest_unassigned_immediate_age_seconds: _Optional[float] = ..., cells_total: _Optional[int] = ..., cells_covered: _Optional[int] = ..., coverage_ratio: _Optional[float] = ..., overdue_acknowledgements: _Optional[int] = ...) -> None: ...

class UncoveredCell(_message.Message):
    __slots__ = ("location", "area")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    location: Location
    area: str
    def __init__(self, location: _Optional[_Union[Location, _Mapping]] = ..., area: _Optional[str] = ...) -> None: ...

class OperatingPicture(_message.Message):
    __slots__ = ("computed_at", "compute_seconds", "coverage", "areas", "coverage_ratio", "uncovered_cells")
    COMPUTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    AREAS_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_RATIO_FIELD_NUMBER: _ClassVar[int]
    UNCOVERED_CELLS_FIELD_NUMBER: _ClassVar[int]
    computed_at: _timestamp_pb2.Timestamp
    compute_seconds: float
    coverage: CoverageQuery
    areas: _containers.RepeatedCompositeFieldContainer[AreaPicture]
    coverage_ratio: float
    uncovered_cells: _containers.RepeatedCompositeFieldContainer[UncoveredCell]
    def __init__(self, computed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., compute_seconds: _Optional[float] = ..., coverage: _Optional[_Union[CoverageQuery, _Mapping]] = ..., areas: _Optional[_Iterable[_Union[AreaPicture, _Mapping]]] = ..., coverage_ratio: _Optional[float] = ..., uncovered_cells: _Optional[_Iterable[_Union[UncoveredCell, _Mapping]]] = ...) -> None: ...

class QueryAuditRequest(_message.Message):
    __slots__ = ("principal", "incident_id", "unit_id", "since", "until", "page_size", "page_token")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    principal: str
    incident_id: str
    unit_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, principal: _Optional[str] = ..., incident_id: _Optional[str] = ..., unit_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QueryAuditResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("id", "time", "principal", "roles", "method", "code", "incident_ids", "unit_ids", "location_count", "justification", "request_id", "peer")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_IDS_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    id: int
    time: _timestamp_pb2.Timestamp
    principal: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    method: str
    code: str
    incident_ids: _containers.RepeatedScalarFieldContainer[str]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    location_count: int
    justification: str
    request_id: str
    peer: str
    def __init__(self, id: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., principal: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., method: _Optional[str] = ..., code: _Optional[str] = ..., incident_ids: _Optional[_Iterable[str]] = ..., unit_ids: _Optional[_Iterable[str]] = ..., location_count: _Optional[int] = ..., justification: _Optional[str] = ..., request_id: _Optional[str] = ..., peer: _Optional[str] = ...) -> None: ...

class Skill(_message.Message):
    __slots__ = ("capability", "valid_from", "expiry")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    capability: str
    valid_from: _timestamp_pb2.Timestamp
    expiry: _timestamp_pb2.Timestamp
    def __init__(self, capability: _Optional[str] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expiry: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("person_id", "name", "skills")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SKILLS_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    name: str
    skills: _containers.RepeatedCompositeFieldContainer[Skill]
    def __init__(self, person_id: _Optional[str] = ..., name: _Optional[str] = ..., skills: _Optional[_Iterable[_Union[Skill, _Mapping]]] = ...) -> None: ...

class UpsertPersonRequest(_message.Message):
    __slots__ = ("request_id", "person")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    person: Person
    def __init__(self, request_id: _Optional[str] = ..., person: _Optional[_Union[Person, _Mapping]] = ...) -> None: ...

class UpsertPersonResponse(_message.Message):
    __slots__ = ("person", "created")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    person: Person
    created: bool
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetPersonRequest(_message.Message):
    __slots__ = ("person_id",)
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    def __init__(self, person_id: _Optional[str] = ...) -> None: ...

class GetPersonResponse(_message.Message):
    __slots__ = ("person", "shifts", "crews")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    SHIFTS_FIELD_NUMBER: _ClassVar[int]
    CREWS_FIELD_NUMBER: _ClassVar[int]
    person: Person
    shifts: _containers.RepeatedCompositeFieldContainer[Shift]
    crews: _containers.RepeatedCompositeFieldContainer[Crew]
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ..., shifts: _Optional[_Iterable[_Union[Shift, _Mapping]]] = ..., crews: _Optional[_Iterable[_Union[Crew, _Mapping]]] = ...) -> None: ...

class Shift(_message.Message):
    __slots__ = ("shift_id", "person_id", "start", "end", "role", "area")
    SHIFT_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    shift_id: str
    person_id: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    role: str
    area: str
    def __init__(self, shift_id: _Optional[str] = ..., person_id: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., role: _Optional[str] = ..., area: _Optional[str] = ...) -> None: ...

class UpsertShiftRequest(_message.Message):
    __slots__ = ("request_id", "shift")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    shift: Shift
    def __init__(self, request_id: _Optional[str] = ..., shift: _Optional[_Union[Shift, _Mapping]] = ...) -> None: ...

class UpsertShiftResponse(_message.Message):
    __slots__ = ("shift", "created")
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    shift: Shift
    created: bool
    def __init__(self, shift: _Optional[_Union[Shift, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class CapabilityMinimum(_message.Message):
    __slots__ = ("capability", "holders")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    capability: str
    holders: int
    def __init__(self, capability: _Optional[str] = ..., holders: _Optional[int] = ...) -> None: ...

class Crew(_message.Message):
    __slots__ = ("crew_id", "unit_id", "person_ids", "start", "end", "minimums")
    CREW_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    MINIMUMS_FIELD_NUMBER: _ClassVar[int]
    crew_id: str
    unit_id: str
    person_ids: _containers.RepeatedScalarFieldContainer[str]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    minimums: _containers.RepeatedCompositeFieldContainer[CapabilityMinimum]
    def __init__(self, crew_id: _Optional[str] = ..., unit_id: _Optional[str] = ..., person_ids: _Optional[_Iterable[str]] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., minimums: _Optional[_Iterable[_Union[CapabilityMinimum, _Mapping]]] = ...) -> None: ...

class BookCrewRequest(_message.Message):
    __slots__ = ("request_id", "crew")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREW_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    crew: Crew
    def __init__(self, request_id: _Optional[str] = ..., crew: _Optional[_Union[Crew, _Mapping]] = ...) -> None: ...

class BookCrewResponse(_message.Message):
    __slots__ = ("crew", "created", "unit")
    CREW_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    crew: Crew
    created: bool
    unit: Unit
    def __init__(self, crew: _Optional[_Union[Crew, _Mapping]] = ..., created: _Optional[bool] = ..., unit: _Optional[_Union[Unit, _Mapping]] = ...) -> None: ...

class TimeOfDayWindow(_message.Message):
    __slots__ = ("start_minute", "end_minute")
    START_MINUTE_FIELD_NUMBER: _ClassVar[int]
    END_MINUTE_FIELD_NUMBER: _ClassVar[int]
    start_minute: int
    end_minute: int
    def __init__(self, start_minute: _Optional[int] = ..., end_minute: _Optional[int] = ...) -> None: ...

class ResponsePlan(_message.Message):
    __slots__ = ("name", "incident_type", "grade", "area", "time_window", "groups")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    TIME_WINDOW_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    incident_type: str
    grade: Grade
    area: str
    time_window: TimeOfDayWindow
    groups: _containers.RepeatedCompositeFieldContainer[RequirementGroup]
    def __init__(self, name: _Optional[str] = ..., incident_type: _Optional[str] = ..., grade: _Optional[_Union[Grade, str]] = ..., area: _Optional[str] = ..., time_window: _Optional[_Union[TimeOfDayWindow, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[RequirementGroup, _Mapping]]] = ...) -> None: ...

class ResponsePlanSet(_message.Message):
    __slots__ = ("plans", "source", "install_time")
    PLANS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    INSTALL_TIME_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[ResponsePlan]
    source: str
    install_time: _timestamp_pb2.Timestamp
    def __init__(self, plans: _Optional[_Iterable[_Union[ResponsePlan, _Mapping]]] = ..., source: _Optional[str] = ..., install_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReplaceResponsePlansRequest(_message.Message):
    __slots__ = ("request_id", "plans", "source")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    plans: _containers.RepeatedCompositeFieldContainer[ResponsePlan]
    source: str
    def __init__(self, request_id: _Optional[str] = ..., plans: _Optional[_Iterable[_Union[ResponsePlan, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class ReplaceResponsePlansResponse(_message.Message):
    __slots__ = ("response_plans",)
    RESPONSE_PLANS_FIELD_NUMBER: _ClassVar[int]
    response_plans: ResponsePlanSet
    def __init__(self, response_plans: _Optional[_Union[ResponsePlanSet, _Mapping]] = ...) -> None: ...

class GetResponsePlansRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetResponsePlansResponse(_message.Message):
    __slots__ = ("response_plans",)
    RESPONSE_PLANS_FIELD_NUMBER: _ClassVar[int]
    response_plans: ResponsePlanSet
    def __init__(self, response_plans: _Optional[_Union[ResponsePlanSet, _Mapping]] = ...) -> None: ...

class ReloadResponsePlansRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadResponsePlansResponse(_message.Message):
    __slots__ = ("changed", "response_plans")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PLANS_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    response_plans: ResponsePlanSet
    def __init__(self, changed: _Optional[bool] = ..., response_plans: _Optional[_Union[ResponsePlanSet, _Mapping]] = ...) -> None: ...
