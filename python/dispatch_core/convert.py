"""Conversions between the core's and the incident store's values and dispatch.v1 messages.

Kept free of validation: by the time a value gets here it has been checked.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from dispatch_core._core import Candidate, UnitView
from dispatch_core.incidents import Incident, RequirementGroup
from dispatch_core.picture import Picture
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Agency


def timestamp_ms(ts: Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def _set_ms(ts: Timestamp, ms: int | None) -> None:
    if ms is not None:
        ts.FromMilliseconds(ms)


def unit_to_proto(view: UnitView, out: pb.Unit | None = None) -> pb.Unit:
    unit = pb.Unit() if out is None else out
    unit.unit_id = view.unit_id
    unit.agency = view.agency  # type: ignore[assignment]
    unit.unit_type = view.unit_type
    unit.capabilities.extend(view.capabilities)
    if view.home_area:
        unit.home_area = view.home_area
    _set_ms(unit.shift_start, view.shift_start_ms)
    _set_ms(unit.shift_end, view.shift_end_ms)
    unit.status = view.status  # type: ignore[assignment]
    if view.lat is not None and view.lon is not None:
        unit.location.lat = view.lat
        unit.location.lon = view.lon
    _set_ms(unit.location_time, view.location_time_ms)
    if view.incident_id:
        unit.incident_id = view.incident_id
    return unit


def group_from_proto(group: pb.RequirementGroup) -> RequirementGroup:
    return RequirementGroup(
        agency=Agency(group.agency),
        unit_types=tuple(group.unit_types),
        capabilities=tuple(group.capabilities),
        count=group.count,
    )


def groups_from_proto(groups: Iterable[pb.RequirementGroup]) -> tuple[RequirementGroup, ...]:
    return tuple(group_from_proto(g) for g in groups)


def group_to_proto(group: RequirementGroup, out: pb.RequirementGroup) -> None:
    out.agency = int(group.agency)  # type: ignore[assignment]
    out.unit_types.extend(group.unit_types)
    out.capabilities.extend(group.capabilities)
    out.count = group.count


def incident_to_proto(incident: Incident, out: pb.Incident | None = None) -> pb.Incident:
    msg = pb.Incident() if out is None else out
    msg.incident_id = incident.incident_id
    msg.grade = int(incident.grade)  # type: ignore[assignment]
    msg.incident_type = incident.incident_type
    msg.location.lat = incident.lat
    msg.location.lon = incident.lon
    msg.area = incident.area
    for group in incident.requirements:
        group_to_proto(group, msg.requirements.add())
    msg.status = int(incident.status)  # type: ignore[assignment]
    msg.assigned_unit_ids.extend(incident.assigned_unit_ids)
    msg.attached_unit_ids.extend(incident.attached_unit_ids)
    _set_ms(msg.create_time, incident.created_ms)
    _set_ms(msg.first_assigned_time, incident.first_assigned_ms)
    _set_ms(msg.first_on_scene_time, incident.first_on_scene_ms)
    _set_ms(msg.close_time, incident.closed_ms)
    return msg


def candidates_to_proto(candidates: Iterable[Candidate], out: pb.GroupRecommendation) -> None:
    add = out.candidates.add
    for c in candidates:
        b = c.breakdown
        add(
            unit_id=c.unit_id,
            eta_seconds=c.eta_seconds,
            distance_m=c.distance_m,
            score=c.score,
            breakdown=pb.ScoreBreakdown(
                mobilisation_seconds=b.mobilisation_seconds,
                travel_seconds=b.travel_seconds,
                cross_area_cost_seconds=b.cross_area_cost,
                shift_overrun_cost_seconds=b.shift_overrun_cost,
                specialist_cost_seconds=b.specialist_cost,
            ),
        )


def picture_to_proto(picture: Picture, include_cells: bool) -> pb.OperatingPicture:
    spec = picture.spec
    out = pb.OperatingPicture(compute_seconds=picture.compute_seconds)
    _set_ms(out.computed_at, picture.computed_at_ms)
    q = out.coverage
    q.agencies.extend(int(a) for a in spec.agencies)  # type: ignore[misc]
    q.unit_types.extend(spec.unit_types or ("*",))
    q.capabilities.extend(spec.required)
    q.grade = int(spec.grade)  # type: ignore[assignment]
    q.target_seconds = spec.target_seconds
    q.cell_m = spec.cell_m
    q.include_uncovered_cells = include_cells
    cells = covered = 0
    for a in picture.areas:
        area = out.areas.add(
            area=a.area.name,
            bcu=a.area.bcu,
            on_duty=a.on_duty,
            available=a.available,
            unassigned_incidents=a.unassigned_incidents,
            oldest_unassigned_age_seconds=a.oldest_unassigned_age_seconds,
            oldest_unassigned_immediate_age_seconds=a.oldest_unassigned_immediate_age_seconds,
            cells_total=a.cells_total,
            cells_covered=a.cells_covered,
            coverage_ratio=a.coverage_ratio,
        )
        area.units_by_status.update(a.units_by_status)
        area.units_by_type.update(a.units_by_type)
        area.units_by_agency.update(a.units_by_agency)
        area.open_incidents_by_grade.update(a.open_incidents_by_grade)
        cells += a.cells_total
        covered += a.cells_covered
    out.coverage_ratio = covered / cells if cells else 1.0
    if include_cells:
        names = [a.area.name for a in picture.areas]
        for lat, lon, i in zip(
            picture.uncovered_lat, picture.uncovered_lon, picture.uncovered_area, strict=True
        ):
            out.uncovered_cells.add(location=pb.Location(lat=lat, lon=lon), area=names[i])
    return out
