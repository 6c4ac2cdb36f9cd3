"""Admission: how many RPCs the server takes at once, and who is refused beyond that.

It replaces grpcio's `maximum_concurrent_rpcs`, which refuses with RESOURCE_EXHAUSTED
before any interceptor sees the call, so the refusals appeared in no metric and no log.
Here the interceptor asks `admit` for every call, in grpcio's polling thread before the
call is queued for a worker (where grpcio counted too), and a refused call is answered
RESOURCE_EXHAUSTED by a handler that is timed, counted and logged like any other.

A call holds its slot from admission until the worker task grpcio runs for it ends,
whether or not the handler itself ran (grpcio skips it for a call cancelled while queued):
`executor()` is the server's thread pool, and it gives the slot back when that task ends.
So the count is "admitted and not finished", queued calls included, as grpcio's was.

Priorities: `admit` is the one place that decides who is shed first when the server
fills. Each method has a priority (`PRIORITY`): bulk work (lists, pictures, event
streams, location batches, batch recommendations) is admitted only while under 3/4 of
the limit, ordinary calls under 7/8. The calls an IMMEDIATE dispatch is made of
(CreateIncident, RecommendUnits, AssignUnits) are admitted beyond that, through the last
eighth of the limit and a reserve of a quarter more beyond it (`reserve`), but the grade
is in the request, which has not been read when a call is admitted. So `admit` says
`RESERVE` for a dispatch call admitted at or above the ordinary ceiling, and once the
request is in hand the interceptor keeps it only if it is for an IMMEDIATE incident
(`service/urgency.py`): any other grade is refused there, RESOURCE_EXHAUSTED with a retry
delay, as an ordinary call would have been. An IMMEDIATE dispatch is refused only when the
reserve itself is full, which takes a quarter of the limit of IMMEDIATE calls at once
(a force sees a few a minute), since every other call in it leaves as soon as its grade is
read.

Rate limits: `RateLimits` keeps a token bucket per principal, sized by the policy
(`security/policy.py`: each role's `rate` and `burst`); the interceptor asks it once the
caller is known. Every refusal here is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo
saying when to retry (`overloaded`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

#: RPCs admitted at once (running or queued for a worker) before new ones are refused with
#: RESOURCE_EXHAUSTED: overload is refused cleanly rather than queued without bound.
DEFAULT_LIMIT = 512

#: Seconds a client refused for bytes in flight is told to wait (google.rpc.RetryInfo).
IN_FLIGHT_RETRY_S = 0.05
#: ...and one refused admission: about how long a slot takes to come free under load.
ADMISSION_RETRY_S = 0.1

#: Priorities: lower is shed first.
BULK, NORMAL, DISPATCH = 0, 1, 2
#: What `admit` answers: refused (falsy), admitted, or admitted into the dispatch reserve
#: (kept only if the call turns out to be for an IMMEDIATE incident).
REFUSED, ADMITTED, RESERVE = 0, 1, 2
#: By method name; any other method (health, reflection, the rest of dispatch.v1) is
#: NORMAL.
PRIORITY: dict[str, int] = {
    **{
        f"/dispatch.v1.DispatchService/{name}": DISPATCH
        for name in ("CreateIncident", "RecommendUnits", "AssignUnits")
    },
    **{
        f"/dispatch.v1.DispatchService/{name}": BULK
        for name in (
            "ListUnits",
            "ListIncidents",
            "GetOperatingPicture",
            "WatchOperatingPicture",
            "WatchEvents",
            "UpdateLocations",
            "StreamLocations",
            "BatchRecommendUnits",
            "QueryAudit",
            # Roster edits arrive in imports of thousands: they yield to dispatch work.
            "UpsertPerson",
            "UpsertShift",
            "BookCrew",
            # Re-reads and validates a file: rare, and never more urgent than dispatch.
            "ReloadResponsePlans",
        )
    },
    # The queue a dispatcher works from in a surge: a page of it, not a bulk listing, but
    # it assigns nothing, so it yields to the dispatch calls themselves.
    "/dispatch.v1.DispatchService/ListPending": NORMAL,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": BULK,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": BULK,
}


def overloaded(message: str, retry_s: float) -> grpc.Status:
    """RESOURCE_EXHAUSTED with the delay after which a retry is worth making, as
    google.rpc.RetryInfo in the status details (what gRPC clients' retry policies and
    `grpc_status.rpc_status.from_call` read)."""
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(max(1, round(retry_s * 1e9)))
    detail = any_pb2.Any()
    detail.Pack(info)
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])
    )


class Admission:
    """Counts admitted calls against a limit."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"admission limit must be >= 1, not {limit}")
        self.limit = limit
        #: Slots beyond the limit that only IMMEDIATE dispatch calls keep.
        self.reserve = max(1, limit // 4)
        #: Admitted calls beyond which each priority is refused.
        self.ceilings = {
            BULK: limit - limit // 4,
            NORMAL: limit - limit // 8,
            DISPATCH: limit + self.reserve,
        }
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        """Calls admitted and not yet finished."""
        return self._admitted

    def admit(self, method: str, metadata: Sequence[tuple[str, Any]] | None = None) -> int:
        """Takes a slot for a call of `method` (ADMITTED, or RESERVE for a dispatch call
        beyond the ordinary ceiling), or refuses it (REFUSED) when the server holds as many
        calls as `method`'s priority may find there.

        `metadata` is unused: priority goes by method (see the module's docstring)."""
        priority = PRIORITY.get(method, NORMAL)
        ceiling = self.ceilings[priority]
        with self._lock:
            admitted = self._admitted
            if admitted >= ceiling:
                return REFUSED
            self._admitted = admitted + 1
        if priority == DISPATCH and admitted >= self.ceilings[NORMAL]:
            return RESERVE
        return ADMITTED

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def executor(self, max_workers: int) -> futures.ThreadPoolExecutor:
        """The server's worker pool: each task grpcio submits is one admitted call, and
        its slot is released when the task ends."""
        return _ReleasingExecutor(self, max_workers=max_workers, thread_name_prefix="rpc")


class RateLimits:
    """A token bucket per principal: `rate` calls a second on average, `burst` at once,
    both from the policy's roles (the `Grant`)."""

    #: Principals remembered at most; beyond, the bucket idle longest is forgotten (a full
    #: bucket, so forgetting it grants nothing it would not have).
    MAX_PRINCIPALS = 100_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, principal: str, rate: float, burst: float) -> float:
        """Takes a token of `principal`'s bucket: 0.0 when there was one, else the seconds
        until there will be (the call is refused)."""
        if rate <= 0:
            return ADMISSION_RETRY_S
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(principal)
            if bucket is None:
                if len(self._buckets) >= self.MAX_PRINCIPALS:
                    del self._buckets[next(iter(self._buckets))]
                bucket = self._buckets[principal] = [burst, now]
            tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / rate


class _ReleasingExecutor(futures.ThreadPoolExecutor):
    """grpcio submits exactly one task per call it hands to a worker (the handler, or for a
    call cancelled while queued, the task that finds so): the end of that task is the end
    of the call's use of the server."""

    def __init__(self, admission: Admission, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._admission = admission

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        release = self._admission.release

        def task() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                release()

        try:
            return super().submit(task)
        except BaseException:
            release()  # never queued (the pool is shutting down): the slot is free again
            raise
