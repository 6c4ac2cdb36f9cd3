"""Refusals and domain errors → gRPC statuses with google.rpc error details.

The core decides what is wrong and names it (the field, the unit or incident in the wrong
state, the unknown resource); this module only writes that down as a `google.rpc.Status`.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from dispatch_core._core import Refused
from dispatch_core.errors import (
    DispatchError,
    InvalidArgumentError,
    PlanFileError,
    UnavailableError,
)


def _status(code: int, message: str, detail: Message | None = None) -> grpc.Status:
    proto = status_pb2.Status(code=code, message=message)
    if detail is not None:
        packed = any_pb2.Any()
        packed.Pack(detail)
        proto.details.append(packed)
    return rpc_status.to_status(proto)


def _bad_request(violations: list[tuple[str, str]]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=what)
            for field, what in violations
        ]
    )


def refusal_status(exc: Refused) -> grpc.Status:
    """The status of a refusal of the core: its code, with the details it carries."""
    code = getattr(code_pb2, exc.code, code_pb2.INTERNAL)
    message = str(exc)
    if exc.violations:
        return _status(code, message, _bad_request(exc.violations))
    if exc.precondition is not None:
        kind, subject, description = exc.precondition
        detail = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=kind, subject=subject, description=description
                )
            ]
        )
        return _status(code, message, detail)
    if exc.resource is not None:
        resource_type, name = exc.resource
        info = error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name)
        return _status(code, message, info)
    return _status(code, message)


def to_status(exc: Refused | DispatchError) -> grpc.Status:
    """The gRPC status a client sees for `exc`."""
    if isinstance(exc, Refused):
        return refusal_status(exc)
    if isinstance(exc, InvalidArgumentError):
        return _status(code_pb2.INVALID_ARGUMENT, str(exc), _bad_request(exc.violations))
    if isinstance(exc, UnavailableError):
        return _status(code_pb2.UNAVAILABLE, str(exc))
    if isinstance(exc, PlanFileError):
        return _plan_file_status(exc)
    return internal()


def _plan_file_status(exc: PlanFileError) -> grpc.Status:
    """The server's plan file does not validate: a state of the server, not of the request,
    so FAILED_PRECONDITION, one violation per mistake, each naming file:line and key."""
    detail = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="RESPONSE_PLANS_INVALID",
                subject=f"response_plans/{problem.where}",
                description=f"{problem.key}: {problem.message}" if problem.key else problem.message,
            )
            for problem in exc.problems[:MAX_PLAN_PROBLEMS]
        ]
    )
    return _status(code_pb2.FAILED_PRECONDITION, str(exc), detail)


#: Most plan-file problems listed in one status: details travel in the trailer, which
#: clients cap at 16 KiB by default (as the core caps field violations).
MAX_PLAN_PROBLEMS = 16


def internal() -> grpc.Status:
    # The traceback is in the server log; the client gets no internals.
    return _status(code_pb2.INTERNAL, "internal error; the server has logged the details")
