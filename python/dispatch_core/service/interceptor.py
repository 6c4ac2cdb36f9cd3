"""RED metrics for every RPC: a grpc.ServerInterceptor feeding `dispatch_core.views.metrics`.

Per call it records the method's in-flight gauge (up on entry, down on exit) and one
observation of `dispatch_rpc_duration_seconds{method,code}` with the *final* status code:

* a normal return is OK, unless the handler set another code with `context.set_code`;
* `context.abort` / `abort_with_status` raise after setting the code on the context, so the
  exception is caught, the context's code recorded, and the exception re-raised untouched
  (grpcio needs it to end the RPC);
* any other exception is what grpcio answers as UNKNOWN;
* a handler that ends after its deadline is DEADLINE_EXCEEDED; one that gives up because
  the client went away (the servicer's `_guarded` returns None then) is CANCELLED. A
  client-streaming handler's OK is confirmed when the call closes (`_client_streaming`),
  since grpcio may report a client cancel to it as the plain end of its request stream.

Streaming: a client-streaming handler (StreamLocations) is timed like a unary one, from
the call to its return (it consumes the request stream inside). A server-streaming
handler's response iterator is wrapped so the clock stops when the stream ends, not when
the generator is created.

Cost: the wrapped handler of each method and the label children of each (method, code)
are built once and cached, so a call pays two gauge updates, one histogram observation
and two clock reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.service.servicer import SERVICE_NAME
from dispatch_core.views.metrics import Metrics

#: Handler = (request or request iterator, context) -> response or response iterator.
Behavior = Callable[[Any, grpc.ServicerContext], Any]

# Status names as plain str: the label values, computed once.
_OK: str = str(grpc.StatusCode.OK.name)
_CANCELLED: str = str(grpc.StatusCode.CANCELLED.name)
_DEADLINE_EXCEEDED: str = str(grpc.StatusCode.DEADLINE_EXCEEDED.name)
_UNKNOWN: str = str(grpc.StatusCode.UNKNOWN.name)


def method_label(full_method: str) -> str:
    """`/dispatch.v1.DispatchService/RecommendUnits` → `RecommendUnits`; other services
    (health, reflection) keep their service name: `grpc.health.v1.Health/Check`."""
    service, _, name = full_method.lstrip("/").rpartition("/")
    return name if service == SERVICE_NAME else f"{service}/{name}"


def _final_code(context: grpc.ServicerContext) -> str:
    """The status grpcio will send for a handler that returned (or raised an abort)."""
    code = _set_code(context)
    if code is not None and code != _OK:
        return code
    # The deadline first, and from the clock rather than from is_active(): when a client
    # stream's deadline passes, grpcio may end the request iterator as if the client had
    # finished sending, the handler returns normally, and the RPC is marked inactive only a
    # moment later by another thread. The clock is not racing anyone: past the deadline
    # the client gets DEADLINE_EXCEEDED, whatever the handler returns.
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return _DEADLINE_EXCEEDED
    if not context.is_active():
        return _CANCELLED
    return _OK


def _set_code(context: grpc.ServicerContext) -> str | None:
    """The code the handler set (`set_code`, or `abort` just before it raised), if any."""
    code = context.code()
    if code is None:
        return None
    return str(code.name) if isinstance(code, grpc.StatusCode) else str(code)


class _MethodMetrics:
    """The label children of one method: the in-flight gauge and a histogram per code."""

    def __init__(self, metrics: Metrics, method: str) -> None:
        self._histogram = metrics.rpc_duration
        self._method = method
        gauge = metrics.rpc_in_flight.labels(method)
        self.enter = gauge.inc
        self.leave = gauge.dec
        self._observe: dict[str, Callable[[float], None]] = {}
        self._lock = threading.Lock()
        # OK exists from the start, so a method's rate is 0 rather than absent before use.
        self.observe(_OK, 0.0, count=False)

    def observe(self, code: str, seconds: float, *, count: bool = True) -> None:
        observe = self._observe.get(code)
        if observe is None:
            with self._lock:
                observe = self._histogram.labels(self._method, code).observe
                self._observe[code] = observe
        if count:
            observe(seconds)


class MetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Times every RPC of the server it is installed on."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # full method -> (the handler grpcio gave us, our wrapper of it)
        self._wrapped: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        # Every dispatch.v1 method's series exist before its first call, so dashboards
        # show a rate of 0 rather than no data for a method nobody has called yet.
        for method in pb.DESCRIPTOR.services_by_name["DispatchService"].methods:
            _MethodMetrics(metrics, method.name)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            # No such method: grpcio answers UNIMPLEMENTED. Not recorded, because the method
            # name comes from the client and would let anyone mint label values.
            return None
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, _MethodMetrics(self._metrics, method_label(method)))
        with self._lock:
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Any, m: _MethodMetrics) -> Any:
        # A handler has exactly one of the four behaviours set; the flags say which.
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                _streaming(handler.stream_stream, m),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                _client_streaming(handler.stream_unary, m),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, m),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary, m),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _unary(behavior: Behavior, m: _MethodMetrics) -> Behavior:
    """Wraps a handler that returns one response (unary or client-streaming request)."""
    clock = time.perf_counter
    enter, leave, observe = m.enter, m.leave, m.observe

    def timed(request: Any, context: grpc.ServicerContext) -> Any:
        enter()
        started = clock()
        code = _UNKNOWN
        try:
            response = behavior(request, context)
            code = _final_code(context)
            return response
        except BaseException:
            # An abort set the code before raising; anything else grpcio reports UNKNOWN.
            code = _set_code(context) or _UNKNOWN
            raise
        finally:
            observe(code, clock() - started)
            leave()

    return timed


def _client_streaming(behavior: Behavior, m: _MethodMetrics) -> Behavior:
    """Wraps a client-streaming handler, recording its code once the RPC has *finished*.

    A client cancel can reach the handler as the plain end of its request stream, and
    grpcio learns it was a cancel only when the call closes, after the handler returned.
    So an OK from the handler is confirmed in the call's termination callback, where
    grpcio's call state says whether the client cancelled. grpcio has no public accessor
    for that state; when the private one is missing (another grpcio), the handler-time
    answer stands, which is what `_unary` records.
    """
    clock = time.perf_counter
    enter, leave, observe = m.enter, m.leave, m.observe

    def timed(request: Any, context: grpc.ServicerContext) -> Any:
        enter()
        started = clock()
        code = _UNKNOWN
        deferred = False
        try:
            response = behavior(request, context)
            code = _final_code(context)
            if code == _OK:
                elapsed = clock() - started

                def on_done() -> None:
                    state = getattr(context, "_state", None)
                    cancelled = getattr(state, "client", None) == "cancelled"
                    observe(_CANCELLED if cancelled else _OK, elapsed)
                    leave()

                deferred = context.add_callback(on_done)
            return response
        except BaseException:
            code = _set_code(context) or _UNKNOWN
            raise
        finally:
            if not deferred:
                observe(code, clock() - started)
                leave()

    return timed


def _streaming(behavior: Behavior, m: _MethodMetrics) -> Behavior:
    """Wraps a handler that returns a response iterator (server or bidi streaming)."""
    clock = time.perf_counter
    enter, leave, observe = m.enter, m.leave, m.observe

    def timed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        enter()
        started = clock()
        code = _UNKNOWN
        try:
            yield from behavior(request, context)
            code = _final_code(context)
        except GeneratorExit:
            # grpcio closed the stream early: the client cancelled.
            code = _CANCELLED
            raise
        except BaseException:
            code = _set_code(context) or _UNKNOWN
            raise
        finally:
            observe(code, clock() - started)
            leave()

    return timed
