"""The integrated operating picture: demand against resources per area, and coverage.

Areas are the package's London boroughs (with their BCU) or any list a deployment supplies.
Without boundaries a point belongs to the area of the nearest centroid (a Voronoi partition),
an approximation stated wherever the picture is shown. Coverage cells are laid on a grid of
`cell_m` metres; a cell counts when it lies within some area's equivalent radius x
`EXTENT_FACTOR` (so the Thames estuary or Surrey fields are not counted as London cells
left uncovered) and belongs to the nearest area centroid.

Counting happens here with NumPy over columns the core hands out in one call each (units,
open incidents); whether a cell is reachable in time is asked of the Rust core, which
answers for all cells at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import numpy.typing as npt

from dispatch_core._core import EARTH_RADIUS_M, DispatchCore
from dispatch_core.boroughs import boroughs
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Agency, Grade, UnitStatus

#: A cell counts for its nearest area when within this multiple of the area's equivalent
#: radius (the radius of a disc of the same area): boroughs are not discs, and 1.6 keeps
#: the corners of elongated ones while leaving out open country beyond the edge.
EXTENT_FACTOR = 1.6


@dataclass(frozen=True)
class Area:
    """An area of the picture: a borough (or any named zone) with its command unit."""

    name: str
    bcu: str
    lat: float
    lon: float
    area_km2: float


@dataclass(frozen=True)
class CoverageSpec:
    """Which units count for coverage, and how fast they must arrive.

    The default is the question leaders ask first: where could no available incident
    response vehicle reach an IMMEDIATE call within the 15-minute target?
    """

    agencies: tuple[Agency, ...] = (Agency.POLICE,)
    unit_types: tuple[str, ...] = ("irv",)
    required: tuple[str, ...] = ()
    statuses: tuple[UnitStatus, ...] = (UnitStatus.AVAILABLE,)
    grade: Grade = Grade.IMMEDIATE
    target_seconds: float = 900.0
    cell_m: float = 500.0


@dataclass
class AreaPicture:
    """Demand and resources in one area."""

    area: Area
    units_by_status: dict[str, int] = field(default_factory=dict)
    units_by_type: dict[str, int] = field(default_factory=dict)
    units_by_agency: dict[str, int] = field(default_factory=dict)
    on_duty: int = 0
    available: int = 0
    open_incidents_by_grade: dict[str, int] = field(default_factory=dict)
    unassigned_incidents: int = 0
    oldest_unassigned_age_seconds: float = 0.0
    oldest_unassigned_immediate_age_seconds: float = 0.0
    #: Units flagged for not acknowledging their dispatch in time that still have not.
    overdue_acknowledgements: int = 0
    cells_total: int = 0
    cells_covered: int = 0

    @property
    def coverage_ratio(self) -> float:
        return self.cells_covered / self.cells_total if self.cells_total else 1.0


@dataclass
class Picture:
    """The whole operating picture at one moment."""

    computed_at_ms: int
    compute_seconds: float
    spec: CoverageSpec
    areas: list[AreaPicture]
    #: Centres of the cells no eligible unit can reach in time, with their area index.
    uncovered_lat: npt.NDArray[np.float64]
    uncovered_lon: npt.NDArray[np.float64]
    uncovered_area: npt.NDArray[np.int64]


class AreaMap:
    """Areas and the nearest-centroid assignment of points and coverage cells to them."""

    def __init__(self, areas: Sequence[Area]) -> None:
        if not areas:
            raise ValueError("areas: at least one area is needed")
        self.areas = tuple(areas)
        self._lat = np.radians([a.lat for a in self.areas])
        self._lon = np.radians([a.lon for a in self.areas])
        self._xyz = _unit_vectors(
            np.array([a.lat for a in self.areas]), np.array([a.lon for a in self.areas])
        )
        self._radius_m = np.array([math.sqrt(a.area_km2 / math.pi) * 1000 for a in self.areas])

    @classmethod
    def london(cls) -> AreaMap:
        """The 32 MPS boroughs and the City of London, from the package's data."""
        return _london()

    def distances_m(
        self, lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Great-circle metres from each point (rows) to each centroid (columns)."""
        p = np.radians(lat)[:, None]
        dl = np.radians(lon)[:, None] - self._lon[None, :]
        h = (
            np.sin((self._lat[None, :] - p) / 2) ** 2
            + np.cos(p) * np.cos(self._lat[None, :]) * np.sin(dl / 2) ** 2
        )
        out: npt.NDArray[np.float64] = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
        return out

    def nearest(
        self, lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.int64]:
        """Index of the nearest centroid for each point; -1 for a point with no position.

        The nearest centroid on the sphere is the one whose unit vector has the largest dot
        product with the point's: one small matrix product instead of a haversine per pair
        (100k units x 33 areas: milliseconds instead of a quarter of a second)."""
        out = np.full(len(lat), -1, dtype=np.int64)
        known = np.isfinite(lat) & np.isfinite(lon)
        if known.any():
            out[known] = np.argmax(_unit_vectors(lat[known], lon[known]) @ self._xyz.T, axis=1)
        return out

    def cells(
        self, cell_m: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Centres of the coverage cells and their area index (cached per size)."""
        return _cells(self, float(cell_m))


def _unit_vectors(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    p, la = np.radians(lat), np.radians(lon)
    cos_p = np.cos(p)
    return np.stack([cos_p * np.cos(la), cos_p * np.sin(la), np.sin(p)], axis=1)


@cache
def _london() -> AreaMap:
    return AreaMap(
        [Area(b.borough, b.bcu, b.centroid_lat, b.centroid_lon, b.area_km2) for b in boroughs()]
    )


@cache
def _cells(
    areas: AreaMap, cell_m: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    if not (50.0 <= cell_m <= 10_000.0):
        raise ValueError(f"cell_m: {cell_m} is outside [50, 10000] metres")
    reach = float(areas._radius_m.max()) * EXTENT_FACTOR
    lat0 = math.degrees(float(areas._lat.min())) - math.degrees(reach / EARTH_RADIUS_M)
    lat1 = math.degrees(float(areas._lat.max())) + math.degrees(reach / EARTH_RADIUS_M)
    dlat = math.degrees(cell_m / EARTH_RADIUS_M)
    mid = math.radians((lat0 + lat1) / 2)
    dlon = dlat / math.cos(mid)
    lon_reach = math.degrees(reach / EARTH_RADIUS_M) / math.cos(mid)
    lon0 = math.degrees(float(areas._lon.min())) - lon_reach
    lon1 = math.degrees(float(areas._lon.max())) + lon_reach
    lats = np.arange(lat0 + dlat / 2, lat1, dlat)
    lons = np.arange(lon0 + dlon / 2, lon1, dlon)
    grid_lat, grid_lon = (a.ravel() for a in np.meshgrid(lats, lons, indexing="ij"))
    dist = areas.distances_m(grid_lat, grid_lon)
    nearest = np.argmin(dist, axis=1)
    # In London when within the extent of *any* area (a small borough next to a big one
    # must not leave holes), then counted for the nearest centroid.
    inside = (dist <= areas._radius_m[None, :] * EXTENT_FACTOR).any(axis=1)
    return grid_lat[inside], grid_lon[inside], nearest[inside].astype(np.int64)


def compute_picture(
    core: DispatchCore,
    spec: CoverageSpec,
    now_ms: int,
    areas: AreaMap | None = None,
) -> Picture:
    """The picture now: counts per area from the core's unit and open-incident columns, and
    coverage of every cell from the core."""
    started = time.perf_counter()
    areas = areas or AreaMap.london()
    pictures = [AreaPicture(area) for area in areas.areas]
    _count_units(core, areas, pictures)
    _count_incidents(core, areas, pictures, now_ms)
    _count_overdue(core, areas, pictures)
    cell_lat, cell_lon, cell_area = areas.cells(spec.cell_m)
    covered = core.coverage(
        cell_lat,
        cell_lon,
        target_seconds=spec.target_seconds,
        now_ms=now_ms,
        grade=spec.grade,
        required=list(spec.required),
        agencies=[int(a) for a in spec.agencies],
        statuses=[int(s) for s in spec.statuses],
        unit_types=list(spec.unit_types) or None,
    )
    totals = np.bincount(cell_area, minlength=len(pictures))
    hits = np.bincount(cell_area[covered], minlength=len(pictures))
    for i, p in enumerate(pictures):
        p.cells_total, p.cells_covered = int(totals[i]), int(hits[i])
    missed = ~covered
    return Picture(
        computed_at_ms=now_ms,
        compute_seconds=time.perf_counter() - started,
        spec=spec,
        areas=pictures,
        uncovered_lat=cell_lat[missed],
        uncovered_lon=cell_lon[missed],
        uncovered_area=cell_area[missed],
    )


def _count_units(core: DispatchCore, areas: AreaMap, pictures: list[AreaPicture]) -> None:
    agency, status, type_ix, type_names, lat, lon = core.unit_columns()
    area = areas.nearest(lat, lon)
    placed = area >= 0
    area, agency, status, type_ix = area[placed], agency[placed], status[placed], type_ix[placed]
    n_areas = len(pictures)
    by_status = _table(area, status.astype(np.int64), n_areas, max(UnitStatus) + 1)
    by_agency = _table(area, agency.astype(np.int64), n_areas, max(Agency) + 1)
    by_type = _table(area, type_ix.astype(np.int64), n_areas, len(type_names))
    for i, p in enumerate(pictures):
        p.units_by_status = {s.name: int(by_status[i, s]) for s in UnitStatus if by_status[i, s]}
        p.units_by_agency = {a.name: int(by_agency[i, a]) for a in Agency if by_agency[i, a]}
        for t in np.flatnonzero(by_type[i]):
            # One name may be a type of two agencies: add them up.
            name = type_names[t]
            p.units_by_type[name] = p.units_by_type.get(name, 0) + int(by_type[i, t])
        p.on_duty = int(by_status[i].sum() - by_status[i, UnitStatus.OFF_DUTY])
        p.available = int(by_status[i, UnitStatus.AVAILABLE])


def _table(
    rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64], n_rows: int, n_cols: int
) -> npt.NDArray[np.int64]:
    """Counts of each (row, col) pair, as an n_rows x n_cols table."""
    flat = np.bincount(rows * n_cols + cols, minlength=n_rows * n_cols)
    return flat.reshape(n_rows, n_cols)


def _count_incidents(
    core: DispatchCore, areas: AreaMap, pictures: list[AreaPicture], now_ms: int
) -> None:
    lat, lon, grade, created_ms, assigned = core.open_incident_columns()
    if len(lat) == 0:
        return
    where = areas.nearest(lat, lon)
    for a, g, created, was_assigned in zip(
        where.tolist(), grade.tolist(), created_ms.tolist(), assigned.tolist(), strict=True
    ):
        p = pictures[a]
        name = Grade(g).name
        p.open_incidents_by_grade[name] = p.open_incidents_by_grade.get(name, 0) + 1
        if not was_assigned:
            age = max(0.0, (now_ms - created) / 1000)
            p.unassigned_incidents += 1
            p.oldest_unassigned_age_seconds = max(p.oldest_unassigned_age_seconds, age)
            if g == Grade.IMMEDIATE:
                p.oldest_unassigned_immediate_age_seconds = max(
                    p.oldest_unassigned_immediate_age_seconds, age
                )


def _count_overdue(core: DispatchCore, areas: AreaMap, pictures: list[AreaPicture]) -> None:
    # The core keeps the flagged units (few); each is placed by its last position.
    lat, lon = core.overdue_ack_positions()
    if len(lat) == 0:
        return
    where = areas.nearest(lat, lon)
    for a in where[where >= 0].tolist():
        pictures[a].overdue_acknowledgements += 1


def picture_to_proto(picture: Picture, include_cells: bool) -> pb.OperatingPicture:
    spec = picture.spec
    out = pb.OperatingPicture(compute_seconds=picture.compute_seconds)
    out.computed_at.FromMilliseconds(picture.computed_at_ms)
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
            overdue_acknowledgements=a.overdue_acknowledgements,
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


class SharedPictures:
    """Pictures shared by every WatchOperatingPicture stream asking the same question: a
    picture younger than `max_age_s` is reused, and while one is computed, streams asking
    the same question wait for it instead of computing it again. However many dashboards
    watch, the core computes each question about once a `max_age_s`."""

    def __init__(
        self, compute: Callable[[CoverageSpec, bool], pb.OperatingPicture], max_age_s: float = 0.5
    ) -> None:
        self._compute = compute
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._slots: dict[tuple[CoverageSpec, bool], _Slot] = {}

    def get(self, spec: CoverageSpec, include_cells: bool) -> pb.OperatingPicture:
        key = (spec, include_cells)
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
        with slot.lock:
            now = time.monotonic()
            if slot.picture is None or now - slot.at > self._max_age_s:
                slot.picture, slot.at = self._compute(spec, include_cells), now
            return slot.picture


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    picture: pb.OperatingPicture | None = None
    at: float = 0.0
