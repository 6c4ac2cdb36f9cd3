"""How a command is written into the journal and read back out of it.

A journal entry's `payload` is an envelope around the request: the clock reading and the
server-chosen incident id the command's plan used, then the request's deterministic bytes.
Replaying `apply` needs exactly these: given the same state, the same request, the same
clock and the same chosen id, validate → apply yields the same plan and the same state.
The `result` is the serialized response, which is both what a retry after a restart gets
back and what WatchEvents sends.

    payload = b"D1" | now_ms: int64 BE | len(chosen_id): uint16 BE | chosen_id | request
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from google.protobuf.message import Message

from dispatch_core.journal import Entry
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

_MAGIC = b"D1"
_HEAD = struct.Struct(">2sqH")

#: Method → (request type, response type, Event field holding the response).
METHODS: dict[str, tuple[type[Message], type[Message], str]] = {
    "UpsertUnit": (pb.UpsertUnitRequest, pb.UpsertUnitResponse, "unit_upserted"),
    "SetUnitStatus": (pb.SetUnitStatusRequest, pb.SetUnitStatusResponse, "unit_status_set"),
    "CreateIncident": (pb.CreateIncidentRequest, pb.CreateIncidentResponse, "incident_created"),
    "UpdateIncident": (pb.UpdateIncidentRequest, pb.UpdateIncidentResponse, "incident_updated"),
    "CloseIncident": (pb.CloseIncidentRequest, pb.CloseIncidentResponse, "incident_closed"),
    "AssignUnits": (pb.AssignUnitsRequest, pb.AssignUnitsResponse, "units_assigned"),
}


class RecordError(ValueError):
    """A payload this build cannot read (written by another format, or damaged)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a plan took from outside the request: the clock and a server-chosen id."""

    now_ms: int
    chosen_id: str
    request: bytes


def encode_payload(now_ms: int, chosen_id: str, request: bytes) -> bytes:
    chosen = chosen_id.encode()
    return _HEAD.pack(_MAGIC, now_ms, len(chosen)) + chosen + request


def decode_payload(payload: bytes) -> Envelope:
    if len(payload) < _HEAD.size:
        raise RecordError("journal payload is too short to hold its header")
    magic, now_ms, id_len = _HEAD.unpack_from(payload)
    if magic != _MAGIC:
        raise RecordError(f"journal payload has format {magic!r}; this build reads {_MAGIC!r}")
    start = _HEAD.size
    chosen = payload[start : start + id_len].decode()
    return Envelope(now_ms, chosen, payload[start + id_len :])


def request_bytes(payload: bytes) -> bytes:
    """The request inside a payload: what a retry's bytes are compared with."""
    return decode_payload(payload).request


def to_event(entry: Entry) -> pb.Event:
    """The WatchEvents message of a journaled entry."""
    event = pb.Event(
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
        return f"incident {response.incident.incident_id} <- {units}"
    if isinstance(response, pb.CloseIncidentResponse):
        released = ", ".join(response.released_unit_ids) or "none"
        return f"incident {response.incident.incident_id} closed (released: {released})"
    if isinstance(response, pb.CreateIncidentResponse | pb.UpdateIncidentResponse):
        i = response.incident
        verb = "opened" if entry.method == "CreateIncident" else "updated"
        return f"incident {i.incident_id} {verb} ({pb.Grade.Name(i.grade)} {i.incident_type})"
    return entry.method
