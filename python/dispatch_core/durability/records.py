"""Journal entries read back: as WatchEvents messages and as one-line summaries.

An entry's `payload` is the core's record of the command (the time it was applied with and
its canonical request; see `rust/core/src/record.rs`); its `result` is the encoded answer,
which is both what a retry after a restart gets back and what WatchEvents sends.
"""

from __future__ import annotations

from google.protobuf.message import Message

from dispatch_core._core import payload_request
from dispatch_core.durability.journal import Entry
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

#: Method → (request type, response type, WatchEventsResponse field holding the response).
#: The clock command has no request message: its payload carries only the time.
METHODS: dict[str, tuple[type[Message] | None, type[Message], str]] = {
    "UpsertUnit": (pb.UpsertUnitRequest, pb.UpsertUnitResponse, "unit_upserted"),
    "SetUnitStatus": (pb.SetUnitStatusRequest, pb.SetUnitStatusResponse, "unit_status_set"),
    "CreateIncident": (pb.CreateIncidentRequest, pb.CreateIncidentResponse, "incident_created"),
    "UpdateIncident": (pb.UpdateIncidentRequest, pb.UpdateIncidentResponse, "incident_updated"),
    "CloseIncident": (pb.CloseIncidentRequest, pb.CloseIncidentResponse, "incident_closed"),
    "AssignUnits": (pb.AssignUnitsRequest, pb.AssignUnitsResponse, "units_assigned"),
    "Tick": (None, pb.ClockTick, "clock_ticked"),
    "UpsertPerson": (pb.UpsertPersonRequest, pb.UpsertPersonResponse, "person_upserted"),
    "UpsertShift": (pb.UpsertShiftRequest, pb.UpsertShiftResponse, "shift_upserted"),
    "BookCrew": (pb.BookCrewRequest, pb.BookCrewResponse, "crew_booked"),
    "ReplaceResponsePlans": (
        pb.ReplaceResponsePlansRequest,
        pb.ReplaceResponsePlansResponse,
        "response_plans_replaced",
    ),
}


def request_bytes(payload: bytes) -> bytes:
    """The request inside a payload: what a retry's bytes are compared with."""
    return bytes(payload_request(payload))


def to_event(entry: Entry) -> pb.WatchEventsResponse:
    """The WatchEvents message of a journaled entry."""
    event = pb.WatchEventsResponse(
        sequence=entry.sequence,
        actor=entry.actor,
        method=entry.method,
        request_id=entry.request_id,
    )
    event.time.FromMilliseconds(entry.time_unix_ms)
    known = METHODS.get(entry.method)
    if known is not None:
        getattr(event, known[2]).MergeFromString(entry.result)
    return event


def summary(entry: Entry) -> str:
    """One line on what an entry did, for `dispatch-core replay`."""
    known = METHODS.get(entry.method)
    if known is None:
        return f"(unknown method, {len(entry.payload)} payload bytes)"
    response = known[1].FromString(entry.result)
    if isinstance(response, pb.UpsertUnitResponse):
        u = response.unit
        verb = "registered" if response.created else "updated"
        return f"unit {u.unit_id} {verb} ({pb.Agency.Name(u.agency)} {u.unit_type})"
    if isinstance(response, pb.SetUnitStatusResponse):
        u = response.unit
        text = f"unit {u.unit_id} -> {pb.UnitStatus.Name(u.status)}"
        if response.released_incident_id:
            text += f" (released from {response.released_incident_id})"
        return text
    if isinstance(response, pb.AssignUnitsResponse):
        units = ", ".join(a.unit_id for a in entry.assign)
        text = f"incident {response.incident.incident_id} <- {units}"
        for d in response.diversions:
            text += f" ({d.unit_id} diverted from {d.from_incident_id})"
        return text
    if isinstance(response, pb.CloseIncidentResponse):
        released = ", ".join(response.released_unit_ids) or "none"
        return f"incident {response.incident.incident_id} closed (released: {released})"
    if isinstance(response, pb.CreateIncidentResponse | pb.UpdateIncidentResponse):
        i = response.incident
        verb = "opened" if entry.method == "CreateIncident" else "updated"
        return f"incident {i.incident_id} {verb} ({pb.Grade.Name(i.grade)} {i.incident_type})"
    if isinstance(response, pb.UpsertPersonResponse):
        p = response.person
        verb = "registered" if response.created else "updated"
        return f"person {p.person_id} {verb} ({len(p.skills)} skills)"
    if isinstance(response, pb.UpsertShiftResponse):
        s = response.shift
        return f"shift {s.shift_id} of {s.person_id} {'booked' if response.created else 'changed'}"
    if isinstance(response, pb.BookCrewResponse):
        c = response.crew
        return f"crew {c.crew_id} on {c.unit_id}: {', '.join(c.person_ids)}"
    if isinstance(response, pb.ReplaceResponsePlansResponse):
        plans = response.response_plans
        return f"response plans replaced: {len(plans.plans)} plans from {plans.source}"
    if isinstance(response, pb.ClockTick):
        return (
            f"clock tick: {response.expired_request_ids} request_ids past retention forgotten,"
            f" {response.archived_incidents} closed incidents archived"
            + "".join(
                f", {o.unit_id} overdue acknowledging {o.incident_id}"
                for o in response.overdue_acknowledgements
            )
            + "".join(
                f", {c.unit.unit_id}"
                f" {'on overtime' if c.overtime else pb.UnitStatus.Name(c.unit.status)}"
                f" (crew {c.crew_id or 'none'})"
                for c in response.roster_changes
            )
        )
    return entry.method
