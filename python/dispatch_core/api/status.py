"""Domain errors → gRPC statuses with google.rpc error details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from dispatch_core.errors import (
    AlreadyExistsError,
    DispatchError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)


def _status(code: int, message: str, detail: Message | None = None) -> grpc.Status:
    proto = status_pb2.Status(code=code, message=message)
    if detail is not None:
        packed = any_pb2.Any()
        packed.Pack(detail)
        proto.details.append(packed)
    return rpc_status.to_status(proto)


def to_status(exc: DispatchError) -> grpc.Status:
    """The gRPC status a client sees for `exc`."""
    if isinstance(exc, InvalidArgumentError):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=what)
                for field, what in exc.violations
            ]
        )
        return _status(code_pb2.INVALID_ARGUMENT, str(exc), detail)
    if isinstance(exc, NotFoundError):
        info = error_details_pb2.ResourceInfo(
            resource_type=exc.resource_type, resource_name=exc.resource_name
        )
        return _status(code_pb2.NOT_FOUND, str(exc), info)
    if isinstance(exc, AlreadyExistsError):
        info = error_details_pb2.ResourceInfo(
            resource_type=exc.resource_type, resource_name=exc.resource_name
        )
        return _status(code_pb2.ALREADY_EXISTS, str(exc), info)
    if isinstance(exc, FailedPreconditionError):
        detail = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=exc.violation_type, subject=exc.subject, description=exc.description
                )
            ]
        )
        return _status(code_pb2.FAILED_PRECONDITION, str(exc), detail)
    if isinstance(exc, UnavailableError):
        return _status(code_pb2.UNAVAILABLE, str(exc))
    return internal()


def internal() -> grpc.Status:
    # The traceback is in the server log; the client gets no internals.
    return _status(code_pb2.INTERNAL, "internal error; the server has logged the details")
