"""Whether a dispatch call is for an IMMEDIATE incident: what decides, once a call is past
admission, if it may use the dispatch reserve or pass an empty token bucket.

Admission runs before the request is read (`service/admission.py`), so it can go only by
method; this runs on the worker, with the request bytes in hand, and costs a few
microseconds: the grade is read from the wire format without decoding the message
(CreateIncident's `grade`, an ad-hoc RecommendUnits target's `grade`), or, for a call
naming an incident (RecommendUnits, AssignUnits), asked of the core, which holds it.
"""

from __future__ import annotations

from dispatch_core._core import DispatchCore, Refused
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.service.wireformat import first_field

_SERVICE = "/dispatch.v1.DispatchService/"
#: The calls an IMMEDIATE dispatch is made of.
DISPATCH_METHODS = frozenset(
    _SERVICE + name for name in ("CreateIncident", "RecommendUnits", "AssignUnits")
)

# Field numbers in dispatch.proto.
_CREATE_GRADE = pb.CreateIncidentRequest.DESCRIPTOR.fields_by_name["grade"].number
_RECOMMEND_INCIDENT = pb.RecommendUnitsRequest.DESCRIPTOR.fields_by_name["incident_id"].number
_RECOMMEND_AD_HOC = pb.RecommendUnitsRequest.DESCRIPTOR.fields_by_name["ad_hoc"].number
_AD_HOC_GRADE = pb.AdHocTarget.DESCRIPTOR.fields_by_name["grade"].number
_ASSIGN_INCIDENT = pb.AssignUnitsRequest.DESCRIPTOR.fields_by_name["incident_id"].number


class Urgency:
    """Reads the grade a dispatch call is for."""

    def __init__(self, core: DispatchCore) -> None:
        self._core = core

    def immediate(self, full_method: str, request: object) -> bool:
        """Whether the call of `full_method` with these request bytes is for an IMMEDIATE
        incident. Anything unreadable (not bytes, malformed, an unknown incident) is not:
        it gets no privilege, and the handler refuses it properly if it is bad."""
        if not isinstance(request, bytes):
            return False
        name = full_method.removeprefix(_SERVICE)
        if name == "CreateIncident":
            return first_field(request, _CREATE_GRADE) == pb.GRADE_IMMEDIATE
        if name == "RecommendUnits":
            target = first_field(request, _RECOMMEND_AD_HOC)
            if isinstance(target, bytes):
                return first_field(target, _AD_HOC_GRADE) == pb.GRADE_IMMEDIATE
            return self._incident_is_immediate(first_field(request, _RECOMMEND_INCIDENT))
        if name == "AssignUnits":
            return self._incident_is_immediate(first_field(request, _ASSIGN_INCIDENT))
        return False

    def _incident_is_immediate(self, incident_id: int | bytes | None) -> bool:
        if not isinstance(incident_id, bytes) or not incident_id:
            return False
        ask = pb.GetIncidentRequest(incident_id=incident_id.decode("utf-8", "replace"))
        try:
            answer = self._core.get_incident(ask.SerializeToString())
        except Refused:  # unknown (or no longer held): no privilege
            return False
        return pb.GetIncidentResponse.FromString(answer).incident.grade == pb.GRADE_IMMEDIATE
