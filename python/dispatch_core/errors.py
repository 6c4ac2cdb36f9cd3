"""Errors the Python layer itself raises; the core's refusals arrive as `_core.Refused`.

Each maps to one gRPC status in `dispatch_core.service.status`. They live outside
`service/` so the pipeline stays usable without a gRPC server (tests, replay, the
benchmarks' in-process baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class PlanProblem:
    """One mistake in a plan file."""

    file: str
    #: 1-based; 0 when the file as a whole is at fault (it cannot be read).
    line: int
    #: The TOML path of the key at fault (`plan[2].group[0].count`); empty for none.
    key: str
    message: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        key = f": {self.key}" if self.key else ""
        return f"{self.where}{key}: {self.message}"


class PlanFileError(DispatchError):
    """A plan file that does not validate; `problems` lists every mistake found."""

    def __init__(self, path: Path, problems: list[PlanProblem]) -> None:
        self.path = path
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"response plans not loaded: {problems[0]}{more}")
