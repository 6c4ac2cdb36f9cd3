"""Domain errors raised by the engine and the request validation.

Each maps to one gRPC status in `dispatch_core.api.status`; they live outside `api/` so that
the engine stays usable without a gRPC server (tests, replay, the benchmarks' in-process
baseline).
"""

from __future__ import annotations

from collections.abc import Sequence


class DispatchError(Exception):
    """Base of every error a client is meant to see."""


class InvalidArgumentError(DispatchError):
    """Malformed input: every offending field, each with what is wrong with it."""

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(f"{field}: {what}" for field, what in self.violations))

    @classmethod
    def one(cls, field: str, description: str) -> InvalidArgumentError:
        return cls([(field, description)])


class NotFoundError(DispatchError):
    """An unknown unit or incident."""

    def __init__(self, resource_type: str, resource_name: str) -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        super().__init__(f"{resource_type} {resource_name!r} not found")


class AlreadyExistsError(DispatchError):
    """A client-chosen id that is taken."""

    def __init__(self, resource_type: str, resource_name: str) -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        super().__init__(f"{resource_type} {resource_name!r} already exists")


class FailedPreconditionError(DispatchError):
    """The command is well-formed but the state forbids it (a unit already taken, a
    transition the lifecycle refuses, a closed incident). `subject` names the resource in
    the wrong state, e.g. `unit/MD21`."""

    def __init__(self, violation_type: str, subject: str, description: str) -> None:
        self.violation_type = violation_type
        self.subject = subject
        self.description = description
        super().__init__(f"{subject}: {description}")


class UnavailableError(DispatchError):
    """The engine cannot take writes: its journal failed, so durability cannot be promised.

    The command's outcome may be unknown to the client; retrying with the same request_id
    once the server is back is safe (exactly-once by request_id)."""
