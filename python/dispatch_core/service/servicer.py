"""DispatchService over gRPC: request bytes in, answer bytes out, errors as statuses.

The commands and reads are registered with identity (de)serializers, so the request bytes
the client sent go to the Rust core untouched and the answer bytes it returns go back
untouched: Python never builds those messages. Every handler but Ping runs through
`_guarded`, so no exception escapes as grpcio's bare "Exception calling application": a
refusal of the core or a `DispatchError` becomes its documented status with error details,
anything else becomes INTERNAL with the traceback logged. Ping is left bare on purpose: it
is the benchmarks' measure of what grpcio alone costs.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from dispatch_core._core import Refused, identifier_refusal
from dispatch_core.durability.journal import JournalCompactedError
from dispatch_core.durability.journal.audit import MAX_PAGE, AuditQuery
from dispatch_core.durability.pipeline import ANONYMOUS, Pipeline
from dispatch_core.durability.records import to_event
from dispatch_core.errors import DispatchError, InvalidArgumentError
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.security.identity import current_identity

if TYPE_CHECKING:
    from dispatch_core.response_plans import ResponsePlans
    from dispatch_core.security.audit import AuditTrail
from dispatch_core.service.status import internal, to_status
from dispatch_core.service.validation import coverage_spec, optional_ids, watch_interval
from dispatch_core.views.events import SubscriberOverflowError
from dispatch_core.views.picture import (
    CoverageSpec,
    SharedPictures,
    compute_picture,
    picture_to_proto,
)

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["DispatchService"].full_name

#: The journaled commands: each goes to the core as (method, request bytes).
COMMANDS = (
    "UpsertUnit",
    "SetUnitStatus",
    "CreateIncident",
    "UpdateIncident",
    "CloseIncident",
    "AssignUnits",
    "UpsertPerson",
    "UpsertShift",
    "BookCrew",
)

F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    name = getattr(method, "__name__", "rpc")

    @functools.wraps(method)
    def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(request, context)
        except (Refused, DispatchError) as exc:
            status = to_status(exc)
        except Exception:
            if not context.is_active():
                # The client cancelled or the deadline passed (a stream's iterator raises
                # then); nobody is left to answer.
                log.debug("%s ended after its RPC was cancelled", name, exc_info=True)
                return None
            log.exception("unhandled error in %s", name)
            status = internal()
        # Outside the try: abort_with_status raises to end the RPC, and that exception is
        # grpcio's, not an error of ours to map.
        context.abort_with_status(status)

    return wrapper  # type: ignore[return-value]


#: gRPC metadata naming the caller, journaled only where nobody is authenticated (a
#: plaintext development server); elsewhere the authenticated principal is.
ACTOR_METADATA = "x-dispatch-actor"
MAX_ACTOR_LEN = 128


def actor_of(context: grpc.ServicerContext) -> str:
    """The journaled actor: the authenticated principal (`mtls:<principal>`,
    `jwt:<sub>`), or, where nobody is authenticated (a plaintext loopback server), the
    caller's claim marked as such so an audit reader never mistakes it for an identity."""
    identity = current_identity.get()
    if identity is not None and identity.authenticated:
        return identity.actor
    claimed = ANONYMOUS
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA and isinstance(value, str) and value:
            claimed = value
    # The claim is journaled and logged: held to the identifier grammar, so it cannot
    # forge a line or read as another name.
    refusal = identifier_refusal(claimed, MAX_ACTOR_LEN)
    if refusal is not None:
        raise InvalidArgumentError.one(ACTOR_METADATA, refusal)
    return f"unauthenticated:{claimed}"


class DispatchServicer:
    """The dispatch.v1 service over one pipeline."""

    def __init__(
        self,
        pipeline: Pipeline,
        audit: AuditTrail | None = None,
        response_plans: ResponsePlans | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._audit = audit
        self._response_plans = response_plans
        self._core = pipeline.core
        self._capabilities = frozenset(self._core.capability_names())
        self._raw = self._bytes_handlers()
        self._watched = SharedPictures(self._picture)

    def unary(self, name: str) -> Callable[[bytes, Any], bytes]:
        """The bytes-in, bytes-out handler of a unary RPC, as grpcio calls it (in-process
        benchmarks measure the server's own work with it)."""
        return self._raw[name]

    def _bytes_handlers(self) -> dict[str, Callable[[bytes, grpc.ServicerContext], bytes]]:
        raw: dict[str, Callable[[bytes, grpc.ServicerContext], bytes]] = {
            name: _guarded(self._command(name)) for name in COMMANDS
        }
        core, pipeline = self._core, self._pipeline
        return raw | {
            "GetUnit": _guarded(lambda request, context: core.get_unit(request)),
            "GetPerson": _guarded(lambda request, context: core.get_person(request)),
            "ListUnits": _guarded(lambda request, context: core.list_units(request)),
            "GetIncident": _guarded(lambda request, context: pipeline.get_incident(request)),
            "ListIncidents": _guarded(lambda request, context: core.list_incidents(request)),
            "ListPending": _guarded(
                lambda request, context: core.list_pending(request, pipeline.now_ms())
            ),
            "RecommendUnits": _guarded(self._recommend(core.recommend)),
            "BatchRecommendUnits": _guarded(self._recommend(core.batch_recommend)),
            "UpdateLocations": _guarded(self._update_locations),
            "GetResponsePlans": _guarded(lambda request, context: core.get_response_plans(request)),
        }

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's method handlers, for `server.add_generic_rpc_handlers`."""
        unary = grpc.unary_unary_rpc_method_handler
        handlers: dict[str, grpc.RpcMethodHandler] = {
            name: unary(fn, request_deserializer=None, response_serializer=None)
            for name, fn in self._raw.items()
        }
        handlers["Ping"] = unary(
            self.Ping,
            request_deserializer=pb.PingRequest.FromString,
            response_serializer=pb.PingResponse.SerializeToString,
        )
        # Each streamed batch (a StreamLocationsRequest) goes to the core as bytes, which
        # decodes it as the UpdateLocationsRequest it repeats field for field.
        handlers["StreamLocations"] = grpc.stream_unary_rpc_method_handler(
            _guarded(self._stream_locations),
            request_deserializer=None,
            response_serializer=pb.StreamLocationsResponse.SerializeToString,
        )
        handlers["GetOperatingPicture"] = unary(
            _guarded(self._get_picture),
            request_deserializer=pb.GetOperatingPictureRequest.FromString,
            response_serializer=pb.OperatingPicture.SerializeToString,
        )
        handlers["WatchOperatingPicture"] = grpc.unary_stream_rpc_method_handler(
            self._watch_picture,
            request_deserializer=pb.WatchOperatingPictureRequest.FromString,
            response_serializer=pb.OperatingPicture.SerializeToString,
        )
        handlers["QueryAudit"] = unary(
            _guarded(self._query_audit),
            request_deserializer=pb.QueryAuditRequest.FromString,
            response_serializer=pb.QueryAuditResponse.SerializeToString,
        )
        handlers["ReloadResponsePlans"] = unary(
            _guarded(self._reload_response_plans),
            request_deserializer=pb.ReloadResponsePlansRequest.FromString,
            response_serializer=pb.ReloadResponsePlansResponse.SerializeToString,
        )
        handlers["WatchEvents"] = grpc.unary_stream_rpc_method_handler(
            self._watch_events,
            request_deserializer=pb.WatchEventsRequest.FromString,
            response_serializer=pb.WatchEventsResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:  # noqa: N802
        return pb.PingResponse()

    # ------------------------------------------------------------------------ commands

    def _command(self, method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        execute = self._pipeline.execute

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            return execute(method, request, actor=actor_of(context))

        handle.__name__ = method
        return handle

    # --------------------------------------------------------------------------- reads

    def _recommend(
        self, rank: Callable[[bytes, int], bytes]
    ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        pipeline = self._pipeline

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            started = time.perf_counter()
            answer = rank(request, pipeline.now_ms())
            pipeline.observer.ranked(time.perf_counter() - started)
            return answer

        return handle

    # ----------------------------------------------------------------------- locations

    def _update_locations(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        report = self._pipeline.update_locations(request)
        totals = pb.UpdateLocationsResponse(batches=1)
        _add(totals, report)
        return totals.SerializeToString()

    def _stream_locations(
        self, requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> pb.StreamLocationsResponse:
        totals = pb.StreamLocationsResponse()
        update = self._pipeline.update_locations
        for number, request in enumerate(requests, start=1):
            _add(totals, update(request, number))
            totals.batches += 1
        return totals

    # ----------------------------------------------------------------- operating picture

    def _get_picture(
        self, request: pb.GetOperatingPictureRequest, context: grpc.ServicerContext
    ) -> pb.OperatingPicture:
        spec = coverage_spec(request.coverage, self._capabilities)
        return self._picture(spec, request.coverage.include_uncovered_cells)

    def _watch_picture(
        self, request: pb.WatchOperatingPictureRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.OperatingPicture]:
        # A generator: `_guarded` cannot wrap it (its body runs after the call returns),
        # so it maps errors itself, the same way.
        try:
            spec = coverage_spec(request.coverage, self._capabilities)
            interval = watch_interval(request)
        except DispatchError as exc:
            context.abort_with_status(to_status(exc))
        stopped = threading.Event()
        context.add_callback(stopped.set)
        while not stopped.is_set() and context.is_active():
            yield self._watched.get(spec, request.coverage.include_uncovered_cells)
            stopped.wait(interval)

    def _picture(self, spec: CoverageSpec, include_cells: bool) -> pb.OperatingPicture:
        picture = compute_picture(self._core, spec, self._pipeline.now_ms())
        return picture_to_proto(picture, include_cells)

    # -------------------------------------------------------------------------- events

    def _watch_events(
        self, request: pb.WatchEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchEventsResponse]:
        # A generator, so it maps errors itself (see _watch_picture).
        pipeline = self._pipeline
        journal = pipeline.journal
        after = journal.last_sequence() if request.from_now else request.from_sequence
        if after < 0:
            context.abort_with_status(
                to_status(InvalidArgumentError.one("from_sequence", "must be >= 0"))
            )
        if after > journal.last_sequence():
            context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"from_sequence {after} is ahead of the journal, whose last sequence is"
                f" {journal.last_sequence()}",
            )
        last = after
        try:
            for entry in pipeline.events.watch(journal, after, active=context.is_active):
                yield to_event(entry)
                last = entry.sequence
        except JournalCompactedError as exc:
            code, message = (
                grpc.StatusCode.OUT_OF_RANGE,
                f"events after {exc.after} are no longer kept; the earliest available is"
                f" sequence {exc.earliest}: resume with from_sequence={exc.earliest - 1}"
                " after rebuilding state from a snapshot (or the current state)",
            )
        except SubscriberOverflowError as exc:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
        else:
            if not context.is_active():
                return
            # The bus closed: the server is shutting down.
            code, message = (
                grpc.StatusCode.UNAVAILABLE,
                f"the server is shutting down; reconnect with from_sequence={last} to resume",
            )
        context.abort(code, message)

    # ------------------------------------------------------------------ response plans

    def _reload_response_plans(
        self, request: pb.ReloadResponsePlansRequest, context: grpc.ServicerContext
    ) -> pb.ReloadResponsePlansResponse:
        plans = self._response_plans
        if plans is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this server was started without a response-plan file; start it with"
                " --response-plans PATH",
            )
        assert plans is not None  # abort raised
        # The caller is journaled as the actor of the install, as for any command.
        changed, in_force = plans.install(actor=actor_of(context))
        return pb.ReloadResponsePlansResponse(changed=changed, response_plans=in_force)

    # --------------------------------------------------------------------------- audit

    def _query_audit(
        self, request: pb.QueryAuditRequest, context: grpc.ServicerContext
    ) -> pb.QueryAuditResponse:
        audit = self._audit
        if audit is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this server keeps no audit trail")
        assert audit is not None  # abort raised
        page_size = request.page_size or 100
        if not 1 <= page_size <= MAX_PAGE:
            raise InvalidArgumentError.one("page_size", f"must be 0 to {MAX_PAGE}")
        if request.page_token and not request.page_token.isdigit():
            raise InvalidArgumentError.one("page_token", "is not a token this server gave")
        optional_ids((("incident_id", request.incident_id), ("unit_id", request.unit_id)))
        optional_ids((("principal", request.principal),), MAX_ACTOR_LEN)
        rows = audit.query(
            AuditQuery(
                principal=request.principal,
                incident_id=request.incident_id,
                unit_id=request.unit_id,
                since_unix_ms=request.since.ToMilliseconds() if request.HasField("since") else None,
                until_unix_ms=request.until.ToMilliseconds() if request.HasField("until") else None,
                after_id=int(request.page_token or 0),
                limit=page_size + 1,
            )
        )
        answer = pb.QueryAuditResponse()
        for row in rows[:page_size]:
            record = answer.records.add(
                id=row.id,
                principal=row.principal,
                roles=row.roles.split(",") if row.roles else [],
                method=row.method,
                code=row.code,
                incident_ids=row.incident_ids,
                unit_ids=row.unit_ids,
                location_count=row.location_count,
                justification=row.justification,
                request_id=row.request_id,
                peer=row.peer,
            )
            record.time.FromMilliseconds(row.time_unix_ms)
        if len(rows) > page_size:
            answer.next_page_token = str(rows[page_size - 1].id)
        return answer


def _add(totals: pb.UpdateLocationsResponse | pb.StreamLocationsResponse, report: Any) -> None:
    totals.applied += report.applied
    totals.skipped_unknown_unit += report.skipped_unknown_unit
    totals.skipped_bad_coordinate += report.skipped_bad_coordinate
    totals.skipped_stale += report.skipped_stale
    totals.skipped_bad_time += report.skipped_bad_time
    totals.skipped_future += report.skipped_future
