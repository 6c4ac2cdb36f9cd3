"""Incidents: the Python-held half of the dispatch state.

Incidents are immutable values: a change builds a new `Incident` and swaps it into the store
in one dict assignment, so a reader that does not take the engine's writer lock sees either
the old incident or the new one, never a half-applied change.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Iterator

from dispatch_core.types import Agency, Grade, IncidentStatus


@dataclasses.dataclass(frozen=True, slots=True)
class RequirementGroup:
    """`count` units of `agency`, of any of `unit_types` (any type when empty), each with
    every one of `capabilities`."""

    agency: Agency
    unit_types: tuple[str, ...]
    capabilities: tuple[str, ...]
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class Incident:
    """One incident. Times are Unix milliseconds; None until the event happens."""

    incident_id: str
    grade: Grade
    incident_type: str
    lat: float
    lon: float
    area: str
    requirements: tuple[RequirementGroup, ...]
    status: IncidentStatus
    #: Every unit ever assigned, in assignment order.
    assigned_unit_ids: tuple[str, ...]
    #: Units attached now (DISPATCHED, EN_ROUTE or ON_SCENE for this incident).
    attached_unit_ids: tuple[str, ...]
    created_ms: int
    first_assigned_ms: int | None = None
    first_on_scene_ms: int | None = None
    closed_ms: int | None = None

    def with_assigned(self, unit_ids: Iterable[str], now_ms: int) -> Incident:
        """The incident after `unit_ids` were assigned to it."""
        new = tuple(unit_ids)
        status = self.status
        if status is IncidentStatus.OPEN:
            status = IncidentStatus.DISPATCHED
        return dataclasses.replace(
            self,
            assigned_unit_ids=self.assigned_unit_ids + new,
            attached_unit_ids=self.attached_unit_ids + new,
            status=status,
            first_assigned_ms=(
                self.first_assigned_ms if self.first_assigned_ms is not None else now_ms
            ),
        )

    def with_on_scene(self, now_ms: int) -> Incident:
        """The incident after one of its units arrived; only the first arrival counts."""
        if self.first_on_scene_ms is not None:
            return self
        status = self.status
        if status in (IncidentStatus.OPEN, IncidentStatus.DISPATCHED):
            status = IncidentStatus.ATTENDED
        return dataclasses.replace(self, first_on_scene_ms=now_ms, status=status)

    def without_attached(self, unit_ids: Iterable[str]) -> Incident:
        """The incident after `unit_ids` were released from it."""
        gone = set(unit_ids)
        return dataclasses.replace(
            self, attached_unit_ids=tuple(u for u in self.attached_unit_ids if u not in gone)
        )


class IncidentStore:
    """Incidents by id, plus a sorted id list for stable pagination.

    Mutated only under the engine's writer lock; read without it.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, Incident] = {}
        self._sorted_ids: list[str] = []
        self._next_number = 1

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, incident_id: object) -> bool:
        return incident_id in self._by_id

    def get(self, incident_id: str) -> Incident | None:
        return self._by_id.get(incident_id)

    @property
    def next_number(self) -> int:
        """The number the next server-chosen id tries first (kept in snapshots)."""
        return self._next_number

    @next_number.setter
    def next_number(self, value: int) -> None:
        self._next_number = value

    def new_id(self) -> str:
        """A fresh server-chosen id. Skips ids a client has already taken."""
        while True:
            candidate = f"INC-{self._next_number:06d}"
            self._next_number += 1
            if candidate not in self._by_id:
                return candidate

    def put(self, incident: Incident) -> None:
        incident_id = incident.incident_id
        if incident_id not in self._by_id:
            ids = self._sorted_ids
            if not ids or incident_id > ids[-1]:
                # Server-chosen ids grow, so this is the common case: an append, which a
                # concurrent reader's slice sees either whole or not at all.
                ids.append(incident_id)
            else:
                # Inserting in the middle would shift what a reader is bisecting: build the
                # new list, then swap it in.
                fresh = list(ids)
                bisect.insort(fresh, incident_id)
                self._sorted_ids = fresh
        self._by_id[incident_id] = incident

    def iter_after(self, after_id: str) -> Iterator[Incident]:
        """Incidents with an id greater than `after_id`, in id order."""
        ids = self._sorted_ids
        for incident_id in ids[bisect.bisect_right(ids, after_id) :]:
            incident = self._by_id.get(incident_id)
            if incident is not None:
                yield incident

    def values(self) -> list[Incident]:
        """Every incident, copied in one step so a concurrent writer cannot disturb the walk
        (list() of a dict view runs in C without releasing the GIL)."""
        return list(self._by_id.values())
