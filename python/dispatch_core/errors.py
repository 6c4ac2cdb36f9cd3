"""Errors the Python layer itself raises; the core's refusals arrive as `_core.Refused`.

Each maps to one gRPC status in `dispatch_core.service.status`. They live outside
`service/` so the pipeline stays usable without a gRPC server (tests, replay, the
benchmarks' in-process baseline).
"""

from __future__ import annotations

from collections.abc import Sequence


class DispatchError(Exception):
    """Base of every error a client is meant to see."""


class InvalidArgumentError(DispatchError):
    """Malformed input checked in Python (metadata, the picture's coverage question):
    every offending field, each with what is wrong with it."""

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(f"{field}: {what}" for field, what in self.violations))

    @classmethod
    def one(cls, field: str, description: str) -> InvalidArgumentError:
        return cls([(field, description)])


class UnavailableError(DispatchError):
    """The pipeline cannot take writes: its journal failed, so durability cannot be
    promised.

    The command's outcome may be unknown to the client; retrying with the same request_id
    once the server is back is safe (exactly-once by request_id)."""
