"""What the pipeline reports as it happens, for metrics (or anything else) to record.

The pipeline calls these hooks when an event happens: a recommendation ran, a batch of
pings was applied, an incident got its first unit or its first arrival (events the core
returns with each command), a journal append became durable. State that can be read at any
time (units by status, open incidents) is not reported here: the core keeps those counts
and a scrape reads them.

The base class does nothing, so a pipeline without metrics pays only a method call. Hooks
must be quick and must not raise: they run after the command is durable, and a hook that
raised would turn a success into an error for a command that has happened.
"""

from __future__ import annotations

from dispatch_core._core import LocationReport


class Observer:
    """Receives pipeline events; every hook is a no-op here."""

    def ranked(self, seconds: float) -> None:
        """One recommendation (every requirement group of one target) took `seconds`."""

    def pings(self, report: LocationReport) -> None:
        """A batch of location pings was applied; `report` counts them by outcome."""

    def first_assigned(self, grade: int, waited_s: float) -> None:
        """An incident of `grade` got its first unit `waited_s` after it was created."""

    def first_on_scene(self, grade: int, response_s: float) -> None:
        """An incident of `grade` had its first unit arrive `response_s` after creation."""

    def ack_overdue(self, grade: int) -> None:
        """A unit dispatched to an incident of `grade` was flagged at a tick for not
        acknowledging (going EN_ROUTE) by its deadline."""

    def diverted(self, from_grade: int) -> None:
        """A unit was taken from an incident of `from_grade` for an IMMEDIATE one."""

    def crew_off(self, overtime: bool) -> None:
        """A unit's crew went off shift with no crew following: the unit went OFF_DUTY, or,
        committed to a job, stayed on it (`overtime`)."""

    def journal_durable(self, seconds: float) -> None:
        """A command waited `seconds` from queueing its journal entry to its being durable
        (group-commit queueing included). Called outside the writer lock."""


#: The observer of a pipeline built without one.
NO_OBSERVER = Observer()
