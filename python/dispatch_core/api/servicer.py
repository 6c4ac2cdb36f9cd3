"""DispatchService: validate the request, call the engine, map errors to statuses.

Every RPC except Ping goes through `_guarded`, so no exception escapes as grpcio's bare
"Exception calling application": a `DispatchError` becomes its documented status with
error details, anything else becomes INTERNAL with the traceback logged. Ping is left
bare on purpose: it is the benchmarks' measure of what grpcio alone costs.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from dispatch_core._core import MAX_K
from dispatch_core.api.status import internal, to_status
from dispatch_core.api.validation import Validator, coverage_spec, page_token, watch_interval
from dispatch_core.convert import picture_to_proto
from dispatch_core.engine import ANONYMOUS, Engine
from dispatch_core.errors import DispatchError, InvalidArgumentError
from dispatch_core.events import SubscriberOverflowError
from dispatch_core.journal import JournalCompactedError
from dispatch_core.picture import CoverageSpec
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.records import to_event

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["DispatchService"].full_name

F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: DispatchServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except DispatchError as exc:
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


#: gRPC metadata naming the caller for the audit trail, until mutual TLS says who it is.
ACTOR_METADATA = "x-dispatch-actor"
MAX_ACTOR_LEN = 128


def actor_of(context: grpc.ServicerContext) -> str:
    """The journaled actor: the caller's claim, marked as such so an audit reader never
    mistakes it for an authenticated identity."""
    claimed = ANONYMOUS
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA and isinstance(value, str) and value:
            claimed = value
    if len(claimed) > MAX_ACTOR_LEN or not claimed.isprintable():
        raise InvalidArgumentError.one(
            ACTOR_METADATA, f"must be printable and at most {MAX_ACTOR_LEN} characters"
        )
    return f"unauthenticated:{claimed}"


class DispatchServicer(pb_grpc.DispatchServiceServicer):
    """The dispatch.v1 service over one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._check = Validator(engine.index.capability_names(), MAX_K)
        self._capabilities = frozenset(engine.index.capability_names())

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:  # noqa: N802
        return pb.PingResponse()

    # ------------------------------------------------------------------ operating picture

    @_guarded
    def GetOperatingPicture(  # noqa: N802
        self, request: pb.GetOperatingPictureRequest, context: grpc.ServicerContext
    ) -> pb.OperatingPicture:
        spec = coverage_spec(request.coverage, self._capabilities)
        return self._picture(spec, request.coverage.include_uncovered_cells)

    def WatchOperatingPicture(  # noqa: N802
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
            yield self._picture(spec, request.coverage.include_uncovered_cells)
            stopped.wait(interval)

    # ------------------------------------------------------------------------- events

    def WatchEvents(  # noqa: N802
        self, request: pb.WatchEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Event]:
        # A generator, so it maps errors itself (see WatchOperatingPicture).
        engine = self._engine
        after = engine.journal.last_sequence() if request.from_now else request.from_sequence
        if after < 0:
            context.abort_with_status(
                to_status(InvalidArgumentError.one("from_sequence", "must be >= 0"))
            )
        if after > engine.journal.last_sequence():
            context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"from_sequence {after} is ahead of the journal, whose last sequence is"
                f" {engine.journal.last_sequence()}",
            )
        last = after
        try:
            for entry in engine.events.watch(engine.journal, after, active=context.is_active):
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

    def _picture(self, spec: CoverageSpec, include_cells: bool) -> pb.OperatingPicture:
        picture = self._engine.operating_picture(spec)
        return picture_to_proto(picture, include_cells)

    # ---------------------------------------------------------------------------- units

    @_guarded
    def UpsertUnit(  # noqa: N802
        self, request: pb.UpsertUnitRequest, context: grpc.ServicerContext
    ) -> pb.UpsertUnitResponse:
        self._check.upsert_unit(request)
        return self._engine.upsert_unit(request, actor=actor_of(context))

    @_guarded
    def GetUnit(  # noqa: N802
        self, request: pb.GetUnitRequest, context: grpc.ServicerContext
    ) -> pb.GetUnitResponse:
        self._check.get_unit(request)
        return self._engine.get_unit(request.unit_id)

    @_guarded
    def ListUnits(  # noqa: N802
        self, request: pb.ListUnitsRequest, context: grpc.ServicerContext
    ) -> pb.ListUnitsResponse:
        page_size, after_id = self._check.list_units(request)
        response, last = self._engine.list_units(
            statuses=request.statuses,
            agencies=request.agencies,
            home_area=request.home_area,
            page_size=page_size,
            after_id=after_id,
        )
        response.next_page_token = page_token(last)
        return response

    @_guarded
    def SetUnitStatus(  # noqa: N802
        self, request: pb.SetUnitStatusRequest, context: grpc.ServicerContext
    ) -> pb.SetUnitStatusResponse:
        self._check.set_unit_status(request)
        return self._engine.set_unit_status(request, actor=actor_of(context))

    # ------------------------------------------------------------------------ locations

    def _apply_locations(
        self, request: pb.UpdateLocationsRequest, totals: pb.UpdateLocationsResponse
    ) -> None:
        report = self._engine.update_locations(
            request.unit_ids, request.lat, request.lon, request.time_unix_ms
        )
        totals.applied += report.applied
        totals.skipped_unknown_unit += report.skipped_unknown_unit
        totals.skipped_bad_coordinate += report.skipped_bad_coordinate
        totals.skipped_stale += report.skipped_stale
        totals.batches += 1

    @_guarded
    def UpdateLocations(  # noqa: N802
        self, request: pb.UpdateLocationsRequest, context: grpc.ServicerContext
    ) -> pb.UpdateLocationsResponse:
        self._check.update_locations(request)
        totals = pb.UpdateLocationsResponse()
        self._apply_locations(request, totals)
        return totals

    @_guarded
    def StreamLocations(  # noqa: N802
        self, request_iterator: Iterator[pb.UpdateLocationsRequest], context: grpc.ServicerContext
    ) -> pb.UpdateLocationsResponse:
        totals = pb.UpdateLocationsResponse()
        for number, request in enumerate(request_iterator, start=1):
            self._check.update_locations(request, batch=number)
            self._apply_locations(request, totals)
        return totals

    # ------------------------------------------------------------------------ incidents

    @_guarded
    def CreateIncident(  # noqa: N802
        self, request: pb.CreateIncidentRequest, context: grpc.ServicerContext
    ) -> pb.CreateIncidentResponse:
        self._check.create_incident(request)
        return self._engine.create_incident(request, actor=actor_of(context))

    @_guarded
    def GetIncident(  # noqa: N802
        self, request: pb.GetIncidentRequest, context: grpc.ServicerContext
    ) -> pb.GetIncidentResponse:
        self._check.get_incident(request)
        return self._engine.get_incident(request.incident_id)

    @_guarded
    def ListIncidents(  # noqa: N802
        self, request: pb.ListIncidentsRequest, context: grpc.ServicerContext
    ) -> pb.ListIncidentsResponse:
        page_size, after_id = self._check.list_incidents(request)
        response, last = self._engine.list_incidents(
            statuses=request.statuses,
            grades=request.grades,
            page_size=page_size,
            after_id=after_id,
        )
        response.next_page_token = page_token(last)
        return response

    @_guarded
    def UpdateIncident(  # noqa: N802
        self, request: pb.UpdateIncidentRequest, context: grpc.ServicerContext
    ) -> pb.UpdateIncidentResponse:
        self._check.update_incident(request)
        return self._engine.update_incident(request, actor=actor_of(context))

    @_guarded
    def CloseIncident(  # noqa: N802
        self, request: pb.CloseIncidentRequest, context: grpc.ServicerContext
    ) -> pb.CloseIncidentResponse:
        self._check.close_incident(request)
        return self._engine.close_incident(request, actor=actor_of(context))

    # ----------------------------------------------------------- recommend and assign

    @_guarded
    def RecommendUnits(  # noqa: N802
        self, request: pb.RecommendUnitsRequest, context: grpc.ServicerContext
    ) -> pb.RecommendUnitsResponse:
        self._check.recommend_units(request)
        response = pb.RecommendUnitsResponse()
        self._engine.recommend(request, response)
        return response

    @_guarded
    def BatchRecommendUnits(  # noqa: N802
        self, request: pb.BatchRecommendUnitsRequest, context: grpc.ServicerContext
    ) -> pb.BatchRecommendUnitsResponse:
        self._check.batch_recommend_units(request)
        response = pb.BatchRecommendUnitsResponse()
        recommend = self._engine.recommend
        for query in request.queries:
            recommend(query, response.results.add())
        return response

    @_guarded
    def AssignUnits(  # noqa: N802
        self, request: pb.AssignUnitsRequest, context: grpc.ServicerContext
    ) -> pb.AssignUnitsResponse:
        self._check.assign_units(request)
        return self._engine.assign_units(request, actor=actor_of(context))
