"""A pure-Python brute-force ranking: the model of `UnitIndex.rank` written the slow, obvious
way from `UnitIndex.config()`, for property tests of the Rust search and of the gRPC API."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dispatch_core import UnitIndex
from dispatch_core.types import Agency, Grade, UnitStatus


@dataclass(frozen=True)
class Unit:
    unit_id: str
    agency: int
    unit_type: str
    capabilities: frozenset[str]
    status: int
    lat: float | None
    lon: float | None
    home_area: str | None = None
    shift_start_ms: int | None = None
    shift_end_ms: int | None = None
    #: Time of the position, Unix ms; None leaves the stale-position rules out (a position
    #: taken just before the question).
    location_ms: int | None = None


@dataclass(frozen=True)
class Ranked:
    unit_id: str
    eta_seconds: float
    distance_m: float
    score: float
    terms: dict[str, float] = field(compare=False)


def haversine_m(radius: float, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(min(1.0, h)))


def speed(config: dict[str, object], unit: Unit) -> float:
    agency = Agency(unit.agency).name
    types = config["unit_type_speed_mps"]
    agencies = config["agency_speed_mps"]
    assert isinstance(types, dict) and isinstance(agencies, dict)
    return float(types.get(f"{agency}/{unit.unit_type}", agencies[agency]))


def rank(
    index: UnitIndex,
    units: list[Unit],
    lat: float,
    lon: float,
    *,
    now_ms: int,
    k: int = 5,
    grade: int = Grade.IMMEDIATE,
    required: frozenset[str] = frozenset(),
    agencies: set[int] | None = None,
    statuses: set[int] | None = None,
    unit_types: set[str] | None = None,
    area: str | None = None,
) -> list[Ranked]:
    """Every unit scored, sorted by (score, unit_id), cut at k."""
    config = index.config()
    statuses = statuses or {UnitStatus.AVAILABLE}
    g = Grade(grade).name
    mob, blue, job, overrun = (
        config["mobilisation_seconds"],
        config["blue_light_factor"],
        config["expected_job_seconds"],
        config["shift_overrun_weight"],
    )
    assert isinstance(mob, dict) and isinstance(blue, dict)
    assert isinstance(job, dict) and isinstance(overrun, dict)
    scarce = set(config["scarce_capabilities"])  # type: ignore[call-overload]
    radius = float(config["earth_radius_m"])  # type: ignore[arg-type]
    circuity = float(config["circuity"])  # type: ignore[arg-type]
    out = []
    for u in units:
        if u.lat is None or u.lon is None:
            continue
        if agencies and u.agency not in agencies:
            continue
        if u.status not in statuses or not required <= u.capabilities:
            continue
        if unit_types and u.unit_type not in unit_types:
            continue
        if u.shift_start_ms is not None and now_ms < u.shift_start_ms:
            continue
        if u.shift_end_ms is not None and now_ms >= u.shift_end_ms:
            continue
        age = 0.0 if u.location_ms is None else max(0, now_ms - u.location_ms) / 1000
        if age > float(config["stale_exclude_after_seconds"]):  # type: ignore[arg-type]
            continue
        distance = haversine_m(radius, lat, lon, u.lat, u.lon)
        mobilisation = float(mob[UnitStatus(u.status).name])
        travel = distance * circuity / (speed(config, u) * float(blue[g]))
        eta = mobilisation + travel
        cross = 0.0
        if area is not None and u.home_area is not None and u.home_area != area:
            cross = float(config["cross_area_cost_seconds"])  # type: ignore[arg-type]
        shift = 0.0
        if u.shift_end_ms is not None:
            over = (now_ms + 1000 * (eta + float(job[g])) - u.shift_end_ms) / 1000
            shift = max(0.0, over) * float(overrun[g])
        specialist = len((u.capabilities & scarce) - required) * float(
            config["specialist_cost_seconds"]  # type: ignore[arg-type]
        )
        beyond = age - float(config["stale_after_seconds"])  # type: ignore[arg-type]
        stale = max(0.0, beyond) * float(config["stale_position_weight"])  # type: ignore[arg-type]
        terms = {
            "mobilisation_seconds": mobilisation,
            "travel_seconds": travel,
            "cross_area_cost": cross,
            "shift_overrun_cost": shift,
            "specialist_cost": specialist,
            "stale_position_cost": stale,
        }
        score = eta + cross + shift + specialist + stale
        out.append(Ranked(u.unit_id, eta, distance, score, terms))
    out.sort(key=lambda r: (r.score, r.unit_id))
    return out[:k]


def assert_same_ranking(got: list[tuple[str, float, float, float]], want: list[Ranked]) -> None:
    """Same units in the same order, numbers within 1e-9 relative. Two units whose scores
    differ by less than that may swap: the two computations round differently."""
    assert len(got) == len(want), (got, want)
    for (gid, geta, gdist, gscore), expected in zip(got, want, strict=True):
        assert math.isclose(gscore, expected.score, rel_tol=1e-9, abs_tol=1e-9), (gid, gscore)
        match = expected
        if gid != expected.unit_id:
            tied = [x for x in want if math.isclose(x.score, gscore, rel_tol=1e-9, abs_tol=1e-9)]
            assert gid in {x.unit_id for x in tied}, (got, want)
            match = next(x for x in tied if x.unit_id == gid)
        assert math.isclose(geta, match.eta_seconds, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(gdist, match.distance_m, rel_tol=1e-9, abs_tol=1e-6)
