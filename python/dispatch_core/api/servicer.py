"""DispatchService: validate the request, call the engine, map errors to statuses.

Every RPC except Ping goes through `_guarded`, so no exception escapes as grpcio's bare
"Exception calling application": a `DispatchError` becomes its documented status with
error details, anything else becomes INTERNAL with the traceback logged. Ping is left
bare on purpose: it is the benchmarks' measure of what grpcio alone costs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from dispatch_core._core import MAX_K
from dispatch_core.api.status import internal, to_status
from dispatch_core.api.validation import Validator, page_token
from dispatch_core.engine import Engine
from dispatch_core.errors import DispatchError
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc

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


class DispatchServicer(pb_grpc.DispatchServiceServicer):
    """The dispatch.v1 service over one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._check = Validator(engine.index.capability_names(), MAX_K)

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:  # noqa: N802
        return pb.PingResponse()

    # ---------------------------------------------------------------------------- units

    @_guarded
    def UpsertUnit(  # noqa: N802
        self, request: pb.UpsertUnitRequest, context: grpc.ServicerContext
    ) -> pb.UpsertUnitResponse:
        self._check.upsert_unit(request)
        return self._engine.upsert_unit(request)

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
        return self._engine.set_unit_status(request)

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
        return self._engine.create_incident(request)

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
        return self._engine.update_incident(request)

    @_guarded
    def CloseIncident(  # noqa: N802
        self, request: pb.CloseIncidentRequest, context: grpc.ServicerContext
    ) -> pb.CloseIncidentResponse:
        self._check.close_incident(request)
        return self._engine.close_incident(request)

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
        return self._engine.assign_units(request)
