"""Engine state as bytes and back: what the journal stores as a snapshot.

A snapshot holds everything replay cannot rebuild from the entries after it: the units
(static attributes, status, incident link, last position *with its time*, since pings are
not journaled), the incidents, and the counter behind server-chosen incident ids. It does
not hold the idempotency log: retries of commands journaled before the snapshot are
answered from the journal itself (`Journal.find`), so truncation must keep at least the
idempotency window of entries.

JSON, because it is versioned, inspectable with standard tools and fast enough: the state
is thousands of units and incidents, not millions. `SNAPSHOT_FORMAT` versions this layout;
a snapshot of another version is refused, never guessed at.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import numpy as np

from dispatch_core._core import UnitIndex, UnitView
from dispatch_core.incidents import Incident, IncidentStore, RequirementGroup
from dispatch_core.types import Agency, Grade, IncidentStatus, UnitStatus

SNAPSHOT_FORMAT = 1

_ATTACHED = (UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE)


class SnapshotFormatError(ValueError):
    """A snapshot this build does not read."""


def _incident(i: Incident, requirement_sets: dict[tuple[RequirementGroup, ...], int]) -> list[Any]:
    # Incidents mostly share a handful of requirement sets: stored once, referred to by
    # index, which keeps snapshots small and restores fast.
    reqs = requirement_sets.setdefault(i.requirements, len(requirement_sets))
    return [
        i.incident_id,
        int(i.grade),
        i.incident_type,
        i.lat,
        i.lon,
        i.area,
        reqs,
        int(i.status),
        list(i.assigned_unit_ids),
        list(i.attached_unit_ids),
        i.created_ms,
        i.first_assigned_ms,
        i.first_on_scene_ms,
        i.closed_ms,
    ]


class Captured(NamedTuple):
    """A copy of the state, taken under the engine's writer lock and encoded outside it."""

    units: list[UnitView]
    incidents: list[Incident]
    next_incident_number: int


def capture(index: UnitIndex, incidents: IncidentStore) -> Captured:
    """Copy the state. Call with the engine's writer lock held; cheap (views are copies and
    incidents immutable values), so the lock is not held for the encoding."""
    return Captured(index.list_units(), incidents.values(), incidents.next_number)


def encode(captured: Captured, sequence: int) -> bytes:
    """The snapshot of `captured` as of journal `sequence`."""
    # Slot order, so a restore gives every unit its old slot (ranking ties break by slot).
    views = sorted(captured.units, key=lambda v: v.slot)
    units = [
        [
            v.unit_id,
            v.agency,
            v.unit_type,
            v.capabilities,
            v.status,
            v.home_area,
            v.shift_start_ms,
            v.shift_end_ms,
            v.incident_id,
            v.lat,
            v.lon,
            v.location_time_ms,
        ]
        for v in views
    ]
    requirement_sets: dict[tuple[RequirementGroup, ...], int] = {}
    incidents = [
        _incident(i, requirement_sets)
        for i in sorted(captured.incidents, key=lambda i: i.incident_id)
    ]
    doc = {
        "format": SNAPSHOT_FORMAT,
        "sequence": sequence,
        "units": units,
        "requirement_sets": [
            [[int(g.agency), list(g.unit_types), list(g.capabilities), g.count] for g in groups]
            for groups in requirement_sets
        ],
        "incidents": incidents,
        "next_incident_number": captured.next_incident_number,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def restore(data: bytes, index: UnitIndex, incidents: IncidentStore) -> int:
    """Loads a snapshot into an empty index and store; returns its journal sequence."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise SnapshotFormatError(f"snapshot is not readable JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise SnapshotFormatError(
            f"snapshot has format {found!r}; this build reads format {SNAPSHOT_FORMAT}"
        )
    ids: list[str] = []
    lat: list[float] = []
    lon: list[float] = []
    times: list[int] = []
    for row in doc["units"]:
        (uid, agency, utype, caps, status, area, s_start, s_end, incident, la, lo, at) = row
        attached = incident is not None and status in _ATTACHED
        # A unit attached to an incident is re-created AVAILABLE and assigned, which sets the
        # link the lifecycle would have; EN_ROUTE / ON_SCENE follow from DISPATCHED.
        index.upsert_unit(
            uid,
            agency=agency,
            unit_type=utype,
            capabilities=caps,
            home_area=area,
            shift_start_ms=s_start,
            shift_end_ms=s_end,
            status=int(UnitStatus.AVAILABLE) if attached else status,
        )
        if attached:
            index.assign(incident, [uid])
            if status == UnitStatus.ON_SCENE:
                index.set_status(uid, int(UnitStatus.EN_ROUTE))
            if status != UnitStatus.DISPATCHED:
                index.set_status(uid, status)
        if at is not None and la is not None and lo is not None:
            ids.append(uid)
            lat.append(la)
            lon.append(lo)
            times.append(at)
    if ids:
        index.update_locations(
            ids,
            np.array(lat, dtype=np.float64),
            np.array(lon, dtype=np.float64),
            np.array(times, dtype=np.int64),
            strict=True,
        )
    requirement_sets = [
        tuple(RequirementGroup(Agency(a), tuple(t), tuple(c), n) for a, t, c, n in groups)
        for groups in doc["requirement_sets"]
    ]
    # Dict lookups instead of Enum calls: this loop runs once per incident ever kept.
    grades = {int(g): g for g in Grade}
    statuses = {int(s): s for s in IncidentStatus}
    for row in doc["incidents"]:
        (iid, grade, itype, la, lo, area, reqs, status, assigned, attached_ids, created) = row[:11]
        first_assigned, first_on_scene, closed = row[11:]
        incidents.put(
            Incident(
                incident_id=iid,
                grade=grades[grade],
                incident_type=itype,
                lat=la,
                lon=lo,
                area=area,
                requirements=requirement_sets[reqs],
                status=statuses[status],
                assigned_unit_ids=tuple(assigned),
                attached_unit_ids=tuple(attached_ids),
                created_ms=created,
                first_assigned_ms=first_assigned,
                first_on_scene_ms=first_on_scene,
                closed_ms=closed,
            )
        )
    incidents.next_number = int(doc["next_incident_number"])
    return int(doc["sequence"])
