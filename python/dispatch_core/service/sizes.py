"""How large a request each RPC accepts, and how many request bytes the server holds at once.

grpcio's own limit (`MAX_REQUEST_BYTES`, the server's `max_receive_message_length`) is the
largest any RPC needs; a larger message is refused by gRPC itself with RESOURCE_EXHAUSTED
before any handler runs. Below it, each RPC has a limit sized to what it carries, checked
on the raw bytes before they are decoded: a Ping or a RecommendUnits is kilobytes, and
only location batches and batch recommendations are megabytes. A larger request is
INVALID_ARGUMENT naming the limit. Bytes held by requests being handled are counted
against `DEFAULT_IN_FLIGHT_BYTES`; a unary request that would pass it is refused with
RESOURCE_EXHAUSTED and a retry delay (streams' messages are counted but wait for nobody:
HTTP/2 flow control already paces a stream).

Why: before these limits every RPC accepted 64 MiB, and 16 concurrent 60 MiB Pings lifted
the server from 60 to 553 MiB.
"""

from __future__ import annotations

import threading

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

KIB = 1024
MIB = 1024 * KIB

_SERVICE = pb.DESCRIPTOR.services_by_name["DispatchService"].full_name

#: Per RPC, the largest request message accepted (worst cases from the field limits in
#: the proto and rust/core/src/wire/limits.rs, with headroom):
PER_RPC: dict[str, int] = {
    "Ping": 1 * KIB,  # empty
    "GetUnit": 4 * KIB,
    "GetIncident": 4 * KIB,
    "ListUnits": 4 * KIB,
    "ListIncidents": 4 * KIB,
    "ListPending": 4 * KIB,  # a page token (~170 bytes), an area and a few grades
    "WatchEvents": 4 * KIB,
    "QueryAudit": 4 * KIB,
    "GetResponsePlans": 1 * KIB,  # empty
    "ReloadResponsePlans": 1 * KIB,  # empty: the server reads its own file
    "SetUnitStatus": 4 * KIB,
    "GetPerson": 4 * KIB,
    "UpsertShift": 4 * KIB,  # five ids of 64 bytes and two timestamps
    "BookCrew": 32 * KIB,  # 16 people and 128 minimums of 64-byte names: 11 kB
    "UpsertPerson": 32 * KIB,  # 128 skills of 64-byte names and two timestamps: 13 kB
    "CloseIncident": 16 * KIB,
    "AssignUnits": 16 * KIB,  # 100 unit ids of 64 bytes: 6.6 kB
    "UpsertUnit": 32 * KIB,  # 128 capabilities of 64 bytes: 8.5 kB
    "GetOperatingPicture": 32 * KIB,
    "WatchOperatingPicture": 32 * KIB,
    # 16 requirement groups of 32 types and 32 capabilities of 64 bytes: 68 kB.
    "RecommendUnits": 128 * KIB,
    "CreateIncident": 128 * KIB,
    "UpdateIncident": 128 * KIB,
    # 100,000 pings: ids of up to 64 bytes (6.6 MB) + three packed columns (2.4 MB).
    "UpdateLocations": 12 * MIB,
    "StreamLocations": 12 * MIB,  # per message
    # 1,000 ad-hoc queries; a realistic plan is a few kilobytes each.
    "BatchRecommendUnits": 16 * MIB,
}
#: Health checks, reflection and anything else.
OTHER_RPC = 64 * KIB
#: gRPC's own limit: the largest of the above.
MAX_REQUEST_BYTES = max(PER_RPC.values())
#: Request bytes held by calls being handled, at most.
DEFAULT_IN_FLIGHT_BYTES = 64 * MIB


def limit_of(full_method: str) -> int:
    """The request limit of `/package.Service/Method`."""
    service, _, name = full_method.lstrip("/").partition("/")
    if service == _SERVICE:
        return PER_RPC.get(name, OTHER_RPC)
    return OTHER_RPC


class InFlight:
    """Request bytes held by calls being handled, against a budget."""

    def __init__(self, budget: int = DEFAULT_IN_FLIGHT_BYTES) -> None:
        if budget < MAX_REQUEST_BYTES:
            raise ValueError(f"in-flight budget must be >= {MAX_REQUEST_BYTES}, not {budget}")
        self.budget = budget
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        return self._held

    def take(self, n: int) -> bool:
        """Holds `n` bytes if the budget allows (True); a call holding none may always take
        its first (False only when others hold the budget)."""
        with self._lock:
            if self._held and self._held + n > self.budget:
                return False
            self._held += n
            return True

    def add(self, n: int) -> None:
        """Holds `n` bytes whatever the budget (a stream's message already received)."""
        with self._lock:
            self._held += n

    def release(self, n: int) -> None:
        if n:
            with self._lock:
                self._held -= n
