"""The server's one interceptor: admission, request sizes, authentication and
authorization, the call context, RED metrics, the access log and the audit trail, for
every RPC of every service.

Before a handler runs, in this order: the request's size against its RPC's limit and the
bytes-in-flight budget (`_Intake`, `service/sizes.py`; requests arrive as bytes and are
decoded only after), then the gate (`_gate`): who the caller is (`security/auth.py`),
whether the policy lets it call the method (`security/policy.py`), and its rate limit
(`service/admission.py`). A refusal at any step aborts the call before the handler, so it
changes and journals nothing, and is timed, logged and audited like any other call.

Per call, in grpcio's polling thread (`intercept_service`), it asks `Admission` for a
slot. A refused call gets a handler of its own that answers RESOURCE_EXHAUSTED from a
small pool of its own (so a refusal never waits behind the calls that filled the server)
and is timed, counted and logged like any call. An admitted call runs the method's
wrapped handler, which makes the call's `Call` current (so every log record written
inside carries its method, request_id, actor and peer), records the method's in-flight
gauge and one observation of `dispatch_rpc_duration_seconds{method,code}` with the
*final* status code, and writes the access log line:

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

The `method` label and log field is the full gRPC method name without its leading slash
(`dispatch.v1.DispatchService/Ping`, `grpc.health.v1.Health/Check`): one spelling for
every service.

Cost: the wrapped handler of each method and the label children of each (method, code)
are built once and cached, so a call pays one admission, two gauge updates, one histogram
observation, two clock reads, a `Call` and a context variable, a length check, the
gate's lookups and one queued audit record; the access log's line only when it is on for
that call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from dispatch_core.errors import InvalidArgumentError
from dispatch_core.logs import ACCESS_LOGGER, write_access
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.security.audit import AuditTrail
from dispatch_core.security.auth import Authenticator, UnauthenticatedError
from dispatch_core.security.identity import current_identity
from dispatch_core.security.policy import is_open
from dispatch_core.service.admission import (
    ADMISSION_RETRY_S,
    ADMITTED,
    IN_FLIGHT_RETRY_S,
    RESERVE,
    Admission,
    RateLimits,
    overloaded,
)
from dispatch_core.service.calls import Call, current_call, method_name
from dispatch_core.service.servicer import SERVICE_NAME
from dispatch_core.service.sizes import InFlight, limit_of
from dispatch_core.service.status import to_status
from dispatch_core.service.urgency import DISPATCH_METHODS, Urgency
from dispatch_core.views.metrics import Metrics

#: Handler = (request or request iterator, context) -> response or response iterator.
Behavior = Callable[[Any, grpc.ServicerContext], Any]
#: Checks a call's caller before its handler runs; aborts the call when refused.
Gate = Callable[[Call, grpc.ServicerContext], None]

# Status names as plain str: the label values, computed once.
_OK: str = str(grpc.StatusCode.OK.name)
_CANCELLED: str = str(grpc.StatusCode.CANCELLED.name)
_DEADLINE_EXCEEDED: str = str(grpc.StatusCode.DEADLINE_EXCEEDED.name)
_UNKNOWN: str = str(grpc.StatusCode.UNKNOWN.name)
_RESOURCE_EXHAUSTED: str = str(grpc.StatusCode.RESOURCE_EXHAUSTED.name)

#: `--access-log`: none, failed calls only, or every call.
ACCESS_LOG_MODES = ("off", "errors", "all")

#: Threads answering refused calls: a refusal is a few microseconds of work, and its own
#: pool keeps it from queueing behind the admitted calls that filled the server.
REFUSAL_WORKERS = 2

access_log = logging.getLogger(ACCESS_LOGGER)


def method_label(full_method: str) -> str:
    """The `method` label of a gRPC method (see the module's docstring)."""
    return method_name(full_method)


class AccessLog:
    """One line per RPC (`all`) or per failed RPC (`errors`) on the `dispatch_core.access`
    logger at INFO: method, code, duration_ms, and the call's request_id, actor,
    principal and peer (from the current `Call`, which the formatters add)."""

    def __init__(self, mode: str) -> None:
        if mode not in ACCESS_LOG_MODES:
            raise ValueError(f"access log must be one of {ACCESS_LOG_MODES}, not {mode!r}")
        self.mode = mode
        self._all = mode == "all"

    def wants(self, code: str) -> bool:
        return self.mode != "off" and (self._all or code != _OK)

    def write(self, call: Call, code: str, seconds: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        ms = round(seconds * 1000.0, 3)
        message = f"{call.method} {code} {ms} ms"
        fields = call.fields()
        fields["code"] = code
        fields["duration_ms"] = ms
        # The fast path of `dispatch-core serve`; the ordinary one where logging is the
        # embedding program's (tests, benchmarks in-process).
        if not write_access(ACCESS_LOGGER, message, fields):
            access_log.info("%s", message, extra={"code": code, "duration_ms": ms})


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


def _nothing(*_: object) -> None:
    return None


def _as_is(request: Any, context: grpc.ServicerContext) -> tuple[Any, int]:
    return request, 0


class _MethodMetrics:
    """What the wrapper of one method records: the in-flight gauge and a histogram per
    code (no-ops on a server without metrics), and the access log."""

    def __init__(
        self,
        metrics: Metrics | None,
        method: str,
        access: AccessLog | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.method = method
        #: Authentication and authorization, before the handler (None: nobody checked).
        self.gate = gate
        #: Size checks and decoding of the requests (set for wrapped handlers).
        self.intake: _Intake | None = None
        #: Where every call's record goes (None: a server without an audit trail).
        self.audit: AuditTrail | None = None
        self.access = access if access is not None and access.mode != "off" else None
        self._observe: dict[str, Callable[[float], None]] = {}
        self._lock = threading.Lock()
        self.enter: Callable[[], None]
        self.leave: Callable[[], None]
        if metrics is None:
            self._histogram = None
            self.enter = self.leave = _nothing
            return
        self._histogram = metrics.rpc_duration
        gauge = metrics.rpc_in_flight.labels(method)
        self.enter = gauge.inc
        self.leave = gauge.dec
        # OK exists from the start, so a method's rate is 0 rather than absent before use.
        self.observe(_OK, 0.0, count=False)

    def observe(self, code: str, seconds: float, *, count: bool = True) -> None:
        if self._histogram is None:
            return
        observe = self._observe.get(code)
        if observe is None:
            with self._lock:
                observe = self._histogram.labels(self.method, code).observe
                self._observe[code] = observe
        if count:
            observe(seconds)

    def done(self, call: Call, code: str, seconds: float) -> None:
        """The call's end: its histogram observation and, if wanted, its access line."""
        self.observe(code, seconds)
        access = self.access
        if access is not None and access.wants(code):
            access.write(call, code, seconds)
        audit = self.audit
        if audit is not None:
            audit.record(call, code)


class CallInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Admits, times and logs every RPC of the server it is installed on."""

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        admission: Admission | None = None,
        access: AccessLog | None = None,
        authenticator: Authenticator | None = None,
        in_flight: InFlight | None = None,
        audit: AuditTrail | None = None,
        urgency: Urgency | None = None,
    ) -> None:
        self._metrics = metrics
        self._audit = audit
        #: Tells IMMEDIATE dispatch calls from the rest, for the reserve and rate limits
        #: (None: no call is told apart; the reserve then serves any dispatch call).
        self._urgency = urgency
        self._in_flight = in_flight
        self._admission = admission
        self._access = access
        self._authenticator = authenticator
        self._rate_limits = RateLimits()
        # full method -> (the handler grpcio gave us, our wrapper of it, our refusal, our
        # wrapper for a call admitted into the dispatch reserve)
        self._wrapped: dict[str, tuple[Any, Any, Any, Any]] = {}
        self._lock = threading.Lock()
        self._refusals = futures.ThreadPoolExecutor(
            max_workers=REFUSAL_WORKERS, thread_name_prefix="refuse"
        )
        # Every dispatch.v1 method's series exist before its first call, so dashboards
        # show a rate of 0 rather than no data for a method nobody has called yet.
        for method in pb.DESCRIPTOR.services_by_name["DispatchService"].methods:
            _MethodMetrics(metrics, f"{SERVICE_NAME}/{method.name}")

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
        if cached is None or cached[0] is not handler:
            m = _MethodMetrics(
                self._metrics, method_label(method), self._access, self._gate(method)
            )
            m.intake = _Intake(handler, method, self._in_flight)
            m.audit = self._audit
            wrapped = self._wrap(handler, m)
            cached = (
                handler,
                wrapped,
                self._refusal(handler, m),
                self._reserved(handler, m, wrapped),
            )
            with self._lock:
                self._wrapped[method] = cached
        admission = self._admission
        if admission is None:
            return cached[1]
        slot = admission.admit(method, handler_call_details.invocation_metadata)
        if slot == ADMITTED:
            return cached[1]
        return cached[3] if slot == RESERVE else cached[2]

    def _gate(self, full_method: str) -> Gate | None:
        """The check of `full_method`'s callers: who they are (UNAUTHENTICATED when
        nobody), whether the policy lets them call it (PERMISSION_DENIED), and whether
        their token bucket has a token (RESOURCE_EXHAUSTED with a retry delay). Every
        refusal happens before the handler runs, so it changes and journals nothing."""
        authenticator = self._authenticator
        if authenticator is None or is_open(full_method):
            return None
        name = method_label(full_method)
        buckets = self._rate_limits
        urgency = self._urgency if full_method in DISPATCH_METHODS else None

        def gate(call: Call, context: grpc.ServicerContext) -> None:
            try:
                identity, grant = authenticator.identify(context)
            except UnauthenticatedError as exc:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            call.identity = identity
            current_identity.set(identity)
            if not grant.allows(full_method):
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{identity.principal} (roles: {identity.role or 'none'}) may not call {name}",
                )
            # `local` is every caller of a development server at once: no bucket.
            if identity.authenticated:
                wait = buckets.take(identity.principal, grant.rate, grant.burst)
                # An IMMEDIATE dispatch is never refused for its caller's rate: it uses its
                # token when there is one and goes through when there is not.
                if wait and (urgency is None or not urgency.immediate(full_method, call.request)):
                    context.abort_with_status(
                        overloaded(
                            f"rate limit: {identity.principal} may make {grant.rate:g} calls/s"
                            f" (bursts of {grant.burst:g}); retry in {wait:.3g} s",
                            wait,
                        )
                    )

        return gate

    def _reserved(self, handler: Any, m: _MethodMetrics, wrapped: Any) -> Any:
        """The handler of a dispatch call admitted into the reserve (`admission.RESERVE`):
        served when it is for an IMMEDIATE incident, else RESOURCE_EXHAUSTED with a retry
        delay, after authentication and before anything is applied."""
        urgency = self._urgency
        inner = handler.unary_unary
        full_method = "/" + m.method
        if urgency is None or inner is None or full_method not in DISPATCH_METHODS:
            return wrapped  # the reserve is only ever given to dispatch calls
        status = overloaded(
            "server overloaded: its last slots are kept for IMMEDIATE dispatches; retry with"
            " backoff (same request_id for commands)",
            ADMISSION_RETRY_S,
        )

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            if not urgency.immediate(full_method, request):
                context.abort_with_status(status)
            return inner(request, context)

        return _handler_like(handler, _unary(behavior, m))

    def _refusal(self, handler: Any, m: _MethodMetrics) -> Any:
        """The handler of a call refused admission: RESOURCE_EXHAUSTED, counted and logged."""
        admission = self._admission
        limit = admission.limit if admission is not None else 0
        clock = time.perf_counter
        status = overloaded(
            f"server overloaded: {limit} calls in progress; retry with backoff"
            " (same request_id for commands)",
            ADMISSION_RETRY_S,
        )

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            started = clock()
            call = Call(m.method, context, request)
            current_call.set(call)
            m.done(call, _RESOURCE_EXHAUSTED, clock() - started)
            context.abort_with_status(status)

        # grpcio runs a behaviour on the pool it names (an experimental hook, ignored by a
        # grpcio without it: the refusal then queues with the rest, and still answers).
        refuse.experimental_thread_pool = self._refusals  # type: ignore[attr-defined]
        return _handler_like(handler, refuse)

    def _wrap(self, handler: Any, m: _MethodMetrics) -> Any:
        # A handler has exactly one of the four behaviours set; the flags say which.
        if handler.request_streaming and handler.response_streaming:
            return _handler_like(handler, _streaming(handler.stream_stream, m))
        if handler.request_streaming:
            return _handler_like(handler, _client_streaming(handler.stream_unary, m))
        if handler.response_streaming:
            return _handler_like(handler, _streaming(handler.unary_stream, m))
        return _handler_like(handler, _unary(handler.unary_unary, m))


#: The old name, for callers that only wanted the metrics.
MetricsInterceptor = CallInterceptor


def _handler_like(handler: Any, behavior: Behavior) -> Any:
    """A handler of the same kind and response serializer as `handler`, running
    `behavior` on the raw request bytes."""
    make = (
        (grpc.stream_stream_rpc_method_handler, grpc.stream_unary_rpc_method_handler),
        (grpc.unary_stream_rpc_method_handler, grpc.unary_unary_rpc_method_handler),
    )[0 if handler.request_streaming else 1][0 if handler.response_streaming else 1]
    # Requests reach the wrapper as bytes, which `_Intake` measures before decoding.
    return make(
        behavior,
        request_deserializer=None,
        response_serializer=handler.response_serializer,
    )


class _Intake:
    """A method's requests as they arrive: each message's size against the method's limit
    before it is decoded (`service/sizes.py`), and its bytes against the server's
    in-flight budget while the call is handled."""

    __slots__ = ("_deserialize", "_in_flight", "_limit", "_method", "_streaming")

    def __init__(self, handler: Any, full_method: str, in_flight: InFlight | None) -> None:
        self._limit = limit_of(full_method)
        self._method = method_label(full_method)
        self._deserialize = handler.request_deserializer
        self._streaming = bool(handler.request_streaming)
        self._in_flight = in_flight

    def _too_large(self, size: int) -> InvalidArgumentError:
        return InvalidArgumentError.one(
            "request",
            f"a message of {size} bytes exceeds {self._method}'s limit of {self._limit} bytes",
        )

    def accept(self, request: Any, context: grpc.ServicerContext) -> tuple[Any, int]:
        """The request to hand to the handler (decoded), and the bytes it holds of the
        budget; aborts the call when it is too large or the budget is spent."""
        if self._streaming:
            return self._stream(request), 0
        size = len(request)
        if size > self._limit:
            context.abort_with_status(to_status(self._too_large(size)))
        try:
            decoded = self._decode(request)
        except InvalidArgumentError as exc:
            context.abort_with_status(to_status(exc))
        in_flight = self._in_flight
        if in_flight is not None and not in_flight.take(size):
            context.abort_with_status(
                overloaded(
                    f"server busy: {in_flight.budget} request bytes in flight; retry",
                    IN_FLIGHT_RETRY_S,
                )
            )
        return decoded, size

    def _decode(self, message: bytes) -> Any:
        """The message as the handler takes it; bytes that are no message of its type are
        INVALID_ARGUMENT (grpcio's own deserializer would answer INTERNAL)."""
        deserialize = self._deserialize
        if deserialize is None:
            return message
        try:
            return deserialize(message)
        except DecodeError:
            raise InvalidArgumentError.one(
                "request", f"is not a valid {self._method} request message"
            ) from None

    def release(self, held: int) -> None:
        if held and self._in_flight is not None:
            self._in_flight.release(held)

    def _stream(self, requests: Iterator[bytes]) -> Iterator[Any]:
        # A message over the limit ends the stream with INVALID_ARGUMENT: the handler's
        # own error mapping (`_guarded`) turns the exception into that status.
        in_flight, held = self._in_flight, 0
        try:
            for message in requests:
                if in_flight is not None:
                    in_flight.release(held)
                    held = 0
                size = len(message)
                if size > self._limit:
                    raise self._too_large(size)
                decoded = self._decode(message)
                if in_flight is not None:
                    in_flight.add(size)
                    held = size
                yield decoded
        finally:
            if in_flight is not None:
                in_flight.release(held)


def _unary(behavior: Behavior, m: _MethodMetrics) -> Behavior:
    """Wraps a handler that returns one response (unary or client-streaming request)."""
    clock = time.perf_counter
    enter, leave, done, method, gate = m.enter, m.leave, m.done, m.method, m.gate
    accept = m.intake.accept if m.intake is not None else _as_is
    release = m.intake.release if m.intake is not None else _nothing

    def timed(request: Any, context: grpc.ServicerContext) -> Any:
        enter()
        started = clock()
        call = Call(method, context, request)
        token = current_call.set(call)
        code = _UNKNOWN
        held = 0
        try:
            request, held = accept(request, context)
            if gate is not None:
                gate(call, context)
            response = behavior(request, context)
            call.response = response
            code = _final_code(context)
            return response
        except BaseException:
            # An abort set the code before raising; anything else grpcio reports UNKNOWN.
            code = _set_code(context) or _UNKNOWN
            raise
        finally:
            release(held)
            done(call, code, clock() - started)
            leave()
            current_call.reset(token)
            current_identity.set(None)

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
    enter, leave, done, method, gate = m.enter, m.leave, m.done, m.method, m.gate
    accept = m.intake.accept if m.intake is not None else _as_is

    def timed(request: Any, context: grpc.ServicerContext) -> Any:
        enter()
        started = clock()
        call = Call(method, context)
        token = current_call.set(call)
        code = _UNKNOWN
        deferred = False
        try:
            request, _ = accept(request, context)
            if gate is not None:
                gate(call, context)
            response = behavior(request, context)
            call.response = response
            code = _final_code(context)
            if code == _OK:
                elapsed = clock() - started

                def on_done() -> None:
                    state = getattr(context, "_state", None)
                    cancelled = getattr(state, "client", None) == "cancelled"
                    current_call.set(call)  # the callback runs on another thread
                    done(call, _CANCELLED if cancelled else _OK, elapsed)
                    leave()
                    current_call.set(None)

                deferred = context.add_callback(on_done)
            return response
        except BaseException:
            code = _set_code(context) or _UNKNOWN
            raise
        finally:
            if not deferred:
                done(call, code, clock() - started)
                leave()
            current_call.reset(token)
            current_identity.set(None)

    return timed


def _streaming(behavior: Behavior, m: _MethodMetrics) -> Behavior:
    """Wraps a handler that returns a response iterator (server or bidi streaming)."""
    clock = time.perf_counter
    enter, leave, done, method, gate = m.enter, m.leave, m.done, m.method, m.gate
    accept = m.intake.accept if m.intake is not None else _as_is
    release = m.intake.release if m.intake is not None else _nothing

    def timed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        enter()
        started = clock()
        call = Call(method, context, request)
        # Set, not reset: grpcio runs each RPC in a context of its own, and a generator may
        # be finished from another thread's context, where a reset token is not valid.
        current_call.set(call)
        code = _UNKNOWN
        held = 0
        try:
            request, held = accept(request, context)
            if gate is not None:
                gate(call, context)
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
            release(held)
            done(call, code, clock() - started)
            leave()
            current_call.set(None)
            current_identity.set(None)

    return timed
