"""The context of one RPC: what the access log, error logs and the audit trail say about a
call.

The interceptor makes one `Call` per RPC and makes it current on the thread that runs the
handler (`current_call`), so a log record written anywhere inside the handler (the
servicer's "unhandled error" included) carries the call's method, request_id, actor and
peer without being passed them. The interceptor fills in `identity` once the caller is
authenticated, and `response` once the handler has answered (the audit trail reads
both). Everything but the method is read lazily from the grpcio context and the request
bytes, once, when a log line or the audit trail first asks.
"""

from __future__ import annotations

import contextvars
from typing import Any

import grpc

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.security.identity import Identity
from dispatch_core.service.servicer import ACTOR_METADATA
from dispatch_core.service.wireformat import first_field

#: Metadata a client may send to correlate a call that has no request_id field (a read).
REQUEST_ID_METADATA = "x-request-id"
#: Longest actor or request_id copied into a log line: they come from the client.
MAX_LOGGED = 128

#: The call whose handler runs on this thread (None outside an RPC).
current_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "dispatch_call", default=None
)


def _request_id_fields() -> dict[str, int]:
    """Full method name → the field number of its request's `request_id`, for the
    dispatch.v1 methods that have one (the mutating commands)."""
    out: dict[str, int] = {}
    service = pb.DESCRIPTOR.services_by_name["DispatchService"]
    for method in service.methods:
        field = method.input_type.fields_by_name.get("request_id")
        if field is not None:
            out[f"{service.full_name}/{method.name}"] = field.number
    return out


_REQUEST_ID_FIELD = _request_id_fields()


def method_name(full_method: str) -> str:
    """grpcio's `/package.Service/Method` as the label and log name: without the leading
    slash, so every service reads alike (`dispatch.v1.DispatchService/Ping`,
    `grpc.health.v1.Health/Check`)."""
    return full_method[1:] if full_method.startswith("/") else full_method


class Call:
    """One RPC, as logs and the audit trail see it."""

    __slots__ = (
        "_context",
        "_peer",
        "_request",
        "_request_id",
        "identity",
        "method",
        "response",
        "sequence",
    )

    def __init__(self, method: str, context: grpc.ServicerContext, request: Any = None) -> None:
        #: The method as `method_name` spells it.
        self.method = method
        self._context = context
        self._request = request
        self._request_id: str | None = None
        self._peer: str | None = None
        #: Who the call was authenticated as (None before that, or on a server that
        #: authenticates nobody: in-process tests).
        self.identity: Identity | None = None
        #: What the handler returned (bytes for most methods), for the audit trail.
        self.response: Any = None
        #: The journal sequence of the command the call applied (0: none), for the trail.
        self.sequence = 0

    @property
    def request_id(self) -> str:
        """The request's `request_id` field (commands), else the `x-request-id` metadata
        (reads), else ""."""
        if self._request_id is None:
            found = ""
            number = _REQUEST_ID_FIELD.get(self.method)
            if number is not None and isinstance(self._request, bytes):
                found = string_field(self._request, number)
            if not found:
                found = self._metadata(REQUEST_ID_METADATA)
            self._request_id = found[:MAX_LOGGED]
        return self._request_id

    @property
    def actor(self) -> str:
        """Who the caller says it is (`x-dispatch-actor`), unauthenticated; "" if unnamed."""
        return self._metadata(ACTOR_METADATA)[:MAX_LOGGED]

    @property
    def principal(self) -> str:
        """Who the caller was authenticated as (its certificate, its JWT's `sub`, or
        `local` on a plaintext loopback server); "" before that or when refused."""
        return self.identity.principal if self.identity is not None else ""

    @property
    def role(self) -> str:
        """The principal's roles, comma-separated ("" when none)."""
        return self.identity.role if self.identity is not None else ""

    @property
    def peer(self) -> str:
        if self._peer is None:
            try:
                self._peer = str(self._context.peer())
            except Exception:  # a context torn down under us: the log line still goes out
                self._peer = ""
        return self._peer

    def fields(self) -> dict[str, object]:
        """The call as log fields."""
        return {
            "method": self.method,
            "request_id": self.request_id,
            "actor": self.actor,
            "principal": self.principal,
            "role": self.role,
            "peer": self.peer,
        }

    @property
    def request(self) -> Any:
        """The request as received: bytes, or None for a client stream."""
        return self._request

    def metadata(self, key: str) -> str:
        """The first value of metadata `key` ("" if absent), printable."""
        return self._metadata(key)

    def _metadata(self, key: str) -> str:
        try:
            metadata = self._context.invocation_metadata() or ()
        except Exception:
            return ""
        for item_key, value in metadata:
            if item_key == key and isinstance(value, str):
                return value if value.isprintable() else value.encode("unicode_escape").decode()
        return ""


def string_field(message: bytes, number: int) -> str:
    """The first top-level string field `number` of a serialized message ("" if absent or
    malformed), read without building the message (`wireformat.py`)."""
    value = first_field(message, number)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""
