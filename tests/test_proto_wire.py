"""The dispatch.v1 wire stays compatible with what clients were built against.

Messages were renamed for buf's lint rules (`Event` became `WatchEventsResponse`) and
StreamLocations got its own request and response messages repeating UpdateLocations' fields.
A rename changes no byte on the wire, and a message that repeats another's field numbers and
types encodes the same bytes; these tests hold the API to that. `V1_WIRE` records every
message, enum and RPC as they were before the renames (generated from the descriptor of
that commit): every field there must still exist with the same number, name and type
(names matter to the JSON mapping), every enum value keeps its number, and every RPC keeps
its path, streaming and a request and response of the same shape. Fields and messages may
be added; nothing recorded may change. Extend it only by adding.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

#: Old name → new name of every renamed message.
RENAMED = {"Event": "WatchEventsResponse"}

V1_WIRE = """
PingRequest:
PingResponse:
Location: 1 lat double; 2 lon double
UnitSpec: 1 unit_id string; 2 agency Agency; 3 unit_type string;
    4 capabilities repeated string; 5 home_area string;
    6 shift_start google.protobuf.Timestamp; 7 shift_end google.protobuf.Timestamp
Unit: 1 unit_id string; 2 agency Agency; 3 unit_type string; 4 capabilities repeated string;
    5 home_area string; 6 shift_start google.protobuf.Timestamp;
    7 shift_end google.protobuf.Timestamp; 8 status UnitStatus; 9 location Location;
    10 location_time google.protobuf.Timestamp; 11 incident_id string
UpsertUnitRequest: 1 request_id string; 2 unit UnitSpec
UpsertUnitResponse: 1 unit Unit; 2 created bool
GetUnitRequest: 1 unit_id string
GetUnitResponse: 1 unit Unit
ListUnitsRequest: 1 statuses repeated UnitStatus; 2 agencies repeated Agency;
    3 home_area string; 4 page_size int32; 5 page_token string
ListUnitsResponse: 1 units repeated Unit; 2 next_page_token string
SetUnitStatusRequest: 1 request_id string; 2 unit_id string; 3 status UnitStatus
SetUnitStatusResponse: 1 unit Unit; 2 released_incident_id string
UpdateLocationsRequest: 1 unit_ids repeated string; 2 lat repeated double;
    3 lon repeated double; 4 time_unix_ms repeated int64
UpdateLocationsResponse: 1 applied uint64; 2 skipped_unknown_unit uint64;
    3 skipped_bad_coordinate uint64; 4 skipped_stale uint64; 5 batches uint64;
    6 skipped_bad_time uint64; 7 skipped_future uint64
RequirementGroup: 1 agency Agency; 2 unit_types repeated string;
    3 capabilities repeated string; 4 count uint32
Incident: 1 incident_id string; 2 grade Grade; 3 incident_type string; 4 location Location;
    5 area string; 6 requirements repeated RequirementGroup; 7 status IncidentStatus;
    8 assigned_unit_ids repeated string; 9 attached_unit_ids repeated string;
    10 create_time google.protobuf.Timestamp;
    11 first_assigned_time google.protobuf.Timestamp;
    12 first_on_scene_time google.protobuf.Timestamp;
    13 close_time google.protobuf.Timestamp
CreateIncidentRequest: 1 request_id string; 2 incident_id string; 3 grade Grade;
    4 incident_type string; 5 location Location; 6 area string;
    7 requirements repeated RequirementGroup
CreateIncidentResponse: 1 incident Incident
GetIncidentRequest: 1 incident_id string
GetIncidentResponse: 1 incident Incident
ListIncidentsRequest: 1 statuses repeated IncidentStatus; 2 grades repeated Grade;
    3 page_size int32; 4 page_token string
ListIncidentsResponse: 1 incidents repeated Incident; 2 next_page_token string
Requirements: 1 groups repeated RequirementGroup
UpdateIncidentRequest: 1 request_id string; 2 incident_id string; 3 grade Grade;
    4 incident_type string; 5 location Location; 6 area string; 7 requirements Requirements
UpdateIncidentResponse: 1 incident Incident
CloseIncidentRequest: 1 request_id string; 2 incident_id string
CloseIncidentResponse: 1 incident Incident; 2 released_unit_ids repeated string
AdHocTarget: 1 location Location; 2 grade Grade; 3 area string;
    4 requirements repeated RequirementGroup
RecommendUnitsRequest: 1 incident_id string; 2 ad_hoc AdHocTarget; 3 k int32;
    4 eligible_statuses repeated UnitStatus
ScoreBreakdown: 1 mobilisation_seconds double; 2 travel_seconds double;
    3 cross_area_cost_seconds double; 4 shift_overrun_cost_seconds double;
    5 specialist_cost_seconds double
Candidate: 1 unit_id string; 2 eta_seconds double; 3 distance_m double; 4 score double;
    5 breakdown ScoreBreakdown
GroupRecommendation: 1 group_index uint32; 2 group RequirementGroup;
    3 candidates repeated Candidate
RecommendUnitsResponse: 1 groups repeated GroupRecommendation; 2 incident_id string
BatchRecommendUnitsRequest: 1 queries repeated RecommendUnitsRequest
BatchRecommendUnitsResponse: 1 results repeated RecommendUnitsResponse
AssignUnitsRequest: 1 request_id string; 2 incident_id string; 3 unit_ids repeated string
AssignUnitsResponse: 1 incident Incident
WatchEventsRequest: 1 from_sequence int64; 2 from_now bool
Event: 1 sequence int64; 2 time google.protobuf.Timestamp; 3 actor string; 4 method string;
    5 request_id string; 10 unit_upserted UpsertUnitResponse;
    11 unit_status_set SetUnitStatusResponse; 12 incident_created CreateIncidentResponse;
    13 incident_updated UpdateIncidentResponse; 14 incident_closed CloseIncidentResponse;
    15 units_assigned AssignUnitsResponse; 16 clock_ticked ClockTick
ClockTick: 1 time google.protobuf.Timestamp; 2 expired_request_ids uint64;
    3 archived_incidents uint64
CoverageQuery: 1 agencies repeated Agency; 2 unit_types repeated string;
    3 capabilities repeated string; 4 grade Grade; 5 target_seconds double; 6 cell_m double;
    7 include_uncovered_cells bool
GetOperatingPictureRequest: 1 coverage CoverageQuery
WatchOperatingPictureRequest: 1 coverage CoverageQuery; 2 interval_seconds double
AreaPicture: 1 area string; 2 bcu string; 3 units_by_status map<string, int64>;
    4 units_by_type map<string, int64>; 5 units_by_agency map<string, int64>;
    6 on_duty int64; 7 available int64; 8 open_incidents_by_grade map<string, int64>;
    9 unassigned_incidents int64; 10 oldest_unassigned_age_seconds double;
    11 oldest_unassigned_immediate_age_seconds double; 12 cells_total int64;
    13 cells_covered int64; 14 coverage_ratio double
UncoveredCell: 1 location Location; 2 area string
OperatingPicture: 1 computed_at google.protobuf.Timestamp; 2 compute_seconds double;
    3 coverage CoverageQuery; 4 areas repeated AreaPicture; 5 coverage_ratio double;
    6 uncovered_cells repeated UncoveredCell
Agency: 0 AGENCY_UNSPECIFIED; 1 AGENCY_POLICE; 2 AGENCY_FIRE; 3 AGENCY_AMBULANCE
UnitStatus: 0 UNIT_STATUS_UNSPECIFIED; 1 UNIT_STATUS_AVAILABLE; 2 UNIT_STATUS_DISPATCHED;
    3 UNIT_STATUS_EN_ROUTE; 4 UNIT_STATUS_ON_SCENE; 5 UNIT_STATUS_COMMITTED;
    6 UNIT_STATUS_UNAVAILABLE; 7 UNIT_STATUS_OFF_DUTY
Grade: 0 GRADE_UNSPECIFIED; 1 GRADE_IMMEDIATE; 2 GRADE_SIGNIFICANT; 3 GRADE_EXTENDED;
    4 GRADE_REFERRED
IncidentStatus: 0 INCIDENT_STATUS_UNSPECIFIED; 1 INCIDENT_STATUS_OPEN;
    2 INCIDENT_STATUS_DISPATCHED; 3 INCIDENT_STATUS_ATTENDED; 4 INCIDENT_STATUS_CLOSED
rpc Ping: PingRequest -> PingResponse
rpc UpsertUnit: UpsertUnitRequest -> UpsertUnitResponse
rpc GetUnit: GetUnitRequest -> GetUnitResponse
rpc ListUnits: ListUnitsRequest -> ListUnitsResponse
rpc SetUnitStatus: SetUnitStatusRequest -> SetUnitStatusResponse
rpc UpdateLocations: UpdateLocationsRequest -> UpdateLocationsResponse
rpc StreamLocations: stream UpdateLocationsRequest -> UpdateLocationsResponse
rpc CreateIncident: CreateIncidentRequest -> CreateIncidentResponse
rpc GetIncident: GetIncidentRequest -> GetIncidentResponse
rpc ListIncidents: ListIncidentsRequest -> ListIncidentsResponse
rpc UpdateIncident: UpdateIncidentRequest -> UpdateIncidentResponse
rpc CloseIncident: CloseIncidentRequest -> CloseIncidentResponse
rpc RecommendUnits: RecommendUnitsRequest -> RecommendUnitsResponse
rpc BatchRecommendUnits: BatchRecommendUnitsRequest -> BatchRecommendUnitsResponse
rpc AssignUnits: AssignUnitsRequest -> AssignUnitsResponse
rpc WatchEvents: WatchEventsRequest -> stream Event
rpc GetOperatingPicture: GetOperatingPictureRequest -> OperatingPicture
rpc WatchOperatingPicture: WatchOperatingPictureRequest -> stream OperatingPicture
"""

#: An `Event` as encoded before the rename: sequence 42, AssignUnits by cad-17, incident
#: INC-000007 dispatched with CW-IRV-1.
OLD_EVENT = bytes.fromhex(
    "082a120608808292c9061a16756e61757468656e746963617465643a6361642d3137220b41737369676e"
    "556e6974732a03722d317a1a0a180a0a494e432d3030303030373802420843572d4952562d31"
)

_TYPES = {
    v: k.removeprefix("TYPE_").lower()
    for k, v in vars(FieldDescriptor).items()
    if k.startswith("TYPE_")
}


def _field(f: FieldDescriptor) -> str:
    kind = _TYPES[f.type]
    if f.message_type is not None:
        if f.message_type.GetOptions().map_entry:
            key, value = (f.message_type.fields_by_name[n] for n in ("key", "value"))
            return f"{f.number} {f.name} map<{_TYPES[key.type]}, {_TYPES[value.type]}>"
        kind = f.message_type.full_name.removeprefix("dispatch.v1.")
    elif f.enum_type is not None:
        kind = f.enum_type.full_name.removeprefix("dispatch.v1.")
    repeated = "repeated " if f.is_repeated else ""
    return f"{f.number} {f.name} {repeated}{kind}"


def _message(m: Descriptor) -> list[str]:
    return [_field(f) for f in sorted(m.fields, key=lambda f: f.number)]


def shapes(file: FileDescriptor) -> dict[str, list[str]]:
    """Every message's fields and every enum's values, as `V1_WIRE` writes them."""
    out = {name: _message(m) for name, m in file.message_types_by_name.items()}
    for name, enum in file.enum_types_by_name.items():
        out[name] = [f"{v.number} {v.name}" for v in enum.values]
    return out


def rpcs(file: FileDescriptor) -> dict[str, tuple[str, str]]:
    """Method → (request, response), each prefixed `stream ` when streamed."""
    out = {}
    for method in file.services_by_name["DispatchService"].methods:
        request = ("stream " if method.client_streaming else "") + method.input_type.name
        response = ("stream " if method.server_streaming else "") + method.output_type.name
        out[method.name] = (request, response)
    return out


def _recorded() -> tuple[dict[str, list[str]], dict[str, tuple[str, str]]]:
    entries: list[str] = []
    for line in V1_WIRE.strip().splitlines():
        if line.startswith(" "):
            entries[-1] += " " + line.strip()
        else:
            entries.append(line)
    old_shapes: dict[str, list[str]] = {}
    old_rpcs: dict[str, tuple[str, str]] = {}
    for entry in entries:
        if entry.startswith("rpc "):
            name, signature = entry.removeprefix("rpc ").split(": ")
            request, response = signature.split(" -> ")
            old_rpcs[name] = (request, response)
        else:
            name, _, fields = entry.partition(":")
            old_shapes[name] = [f.strip() for f in fields.split(";") if f.strip()]
    return old_shapes, old_rpcs


def _renamed(field: str) -> str:
    number, name, *kind = field.split(" ")
    kind = [RENAMED.get(word, word) for word in kind]
    return " ".join([number, name, *kind])


def test_the_recorded_wire_parses() -> None:
    old_shapes, old_rpcs = _recorded()
    assert len(old_shapes) == 51 and len(old_rpcs) == 18
    assert old_shapes["Event"][0] == "1 sequence int64"


def test_every_recorded_message_and_enum_keeps_its_fields() -> None:
    now = shapes(pb.DESCRIPTOR)
    old_shapes, _ = _recorded()
    for old_name, fields in old_shapes.items():
        name = RENAMED.get(old_name, old_name)
        assert name in now, f"{old_name} is gone"
        missing = {_renamed(f) for f in fields} - set(now[name])
        assert not missing, f"{name} (was {old_name}) changed or dropped {sorted(missing)}"


def test_every_recorded_rpc_keeps_its_path_streaming_and_shapes() -> None:
    now, now_rpcs = shapes(pb.DESCRIPTOR), rpcs(pb.DESCRIPTOR)
    old_shapes, old_rpcs = _recorded()
    for method, old_pair in old_rpcs.items():
        assert method in now_rpcs, f"rpc {method} is gone"
        for old, new in zip(old_pair, now_rpcs[method], strict=True):
            assert old.startswith("stream ") == new.startswith("stream "), method
            old_type, new_type = old.removeprefix("stream "), new.removeprefix("stream ")
            missing = {_renamed(f) for f in old_shapes[old_type]} - set(now[new_type])
            assert not missing, f"{method}: {new_type} lacks {old_type}'s {sorted(missing)}"


def test_stream_locations_messages_repeat_update_locations_exactly() -> None:
    # The core decodes every streamed batch as an UpdateLocationsRequest and the servicer
    # totals a stream the way it answers one batch: the pairs must not drift apart.
    now = shapes(pb.DESCRIPTOR)
    assert now["StreamLocationsRequest"] == now["UpdateLocationsRequest"]
    assert now["StreamLocationsResponse"] == now["UpdateLocationsResponse"]
    batch = pb.UpdateLocationsRequest(
        unit_ids=["A", "B"], lat=[51.5, 51.6], lon=[-0.1, -0.2], time_unix_ms=[1, 2]
    )
    streamed = pb.StreamLocationsRequest.FromString(batch.SerializeToString())
    assert streamed.SerializeToString() == batch.SerializeToString()
    assert list(streamed.unit_ids) == ["A", "B"] and list(streamed.time_unix_ms) == [1, 2]
    totals = pb.UpdateLocationsResponse(applied=3, skipped_stale=1, batches=2, skipped_future=4)
    again = pb.StreamLocationsResponse.FromString(totals.SerializeToString())
    assert again.SerializeToString() == totals.SerializeToString()


def test_old_event_bytes_decode_as_watch_events_response() -> None:
    event = pb.WatchEventsResponse.FromString(OLD_EVENT)
    assert (event.sequence, event.actor, event.method, event.request_id) == (
        42,
        "unauthenticated:cad-17",
        "AssignUnits",
        "r-1",
    )
    assert event.time.ToMilliseconds() == 1_764_000_000_000
    assert event.WhichOneof("change") == "units_assigned"
    incident = event.units_assigned.incident
    assert (incident.incident_id, list(incident.assigned_unit_ids)) == ("INC-000007", ["CW-IRV-1"])
    assert incident.status == pb.INCIDENT_STATUS_DISPATCHED
    assert event.SerializeToString() == OLD_EVENT


def test_enums_keep_their_unspecified_zero() -> None:
    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        zero = enum.values_by_number[0].name
        assert zero.endswith("_UNSPECIFIED"), enum.name
