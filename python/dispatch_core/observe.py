"""What the engine reports as it happens, for metrics (or anything else) to record.

The engine calls these hooks at the moment an event happens (a ranking ran, a batch of
pings was applied, an incident got its first unit, its first arrival); state that can be
read at any time (units by status, open incidents) is *not* reported here but read at scrape
time, so nothing has to be kept in step with the engine.

The base class does nothing, so an engine without metrics pays only a method call. Hooks
run inside `apply`, under the engine's writer lock: they must be quick and must not raise
(a hook that raised would fail a command that has already been journalled).
"""

from __future__ import annotations

from dispatch_core._core import LocationReport
from dispatch_core.incidents import Incident


class EngineObserver:
    """Receives engine events; every hook is a no-op here."""

    def ranked(self, seconds: float) -> None:
        """One `UnitIndex.rank` call took `seconds`."""

    def pings(self, report: LocationReport) -> None:
        """A batch of location pings was applied; `report` counts them by outcome."""

    def first_assigned(self, incident: Incident, now_ms: int) -> None:
        """`incident` (as it was before) gets its first unit at `now_ms`."""

    def first_on_scene(self, incident: Incident, now_ms: int) -> None:
        """`incident` (as it was before) has its first unit arrive at `now_ms`."""

    def journal_durable(self, seconds: float) -> None:
        """A command waited `seconds` from queueing its journal entry to its being durable
        (group-commit queueing included). Called outside the writer lock."""


#: The observer of an engine built without one.
NO_OBSERVER = EngineObserver()
