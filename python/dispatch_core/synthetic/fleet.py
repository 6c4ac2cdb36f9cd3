"""A synthetic London fleet and incident demand, for benchmarks, the demo and load tests.

Units are laid out around the borough centroids of `data/london_boroughs.csv`, weighted by
population, with a gaussian spread sized from each borough's area (the file has no
boundaries, so a centroid plus a spread is the best layout it supports). The mix of
agencies, unit types, capabilities and statuses is a plausible shape of a London shift, not
real deployment data. Everything is deterministic for a given seed, so two runs (or a
benchmark and its baseline) see the very same fleet.

Example:
    >>> from dispatch_core.synthetic.fleet import make_fleet, incident_points
    >>> fleet = make_fleet(10_000, seed=7)
    >>> lat, lon = incident_points(1_000, seed=8)
    >>> slots = load_into(index, fleet, now_ms)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from dispatch_core.boroughs import Borough, boroughs
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Agency, UnitStatus

if TYPE_CHECKING:
    from dispatch_core._core import UnitIndex
    from dispatch_core.durability.pipeline import Pipeline

__all__ = [
    "CAPABILITIES",
    "Borough",
    "Fleet",
    "boroughs",
    "incident_points",
    "load_into",
    "make_fleet",
]

#: Metres per degree of latitude (mean); good to 0.5% over London, ample for a layout.
_M_PER_DEG_LAT = 111_320.0

#: Rough bounding box of Greater London; points drawn outside it are pulled back in so a
#: far gaussian tail does not put a unit in the Channel.
_LAT_RANGE = (51.28, 51.70)
_LON_RANGE = (-0.52, 0.34)

#: The capabilities this generator hands out, all from the shipped default vocabulary.
CAPABILITIES: tuple[str, ...] = (
    "firearms",
    "taser",
    "advanced_driver",
    "public_order",
    "dog",
    "first_aid",
    "paramedic",
    "negotiator",
    "roads_policing",
    "firefighting",
    "rescue",
    "hazmat",
    "lang_polish",
)

# Agency shares of a London shift: police dominate a police C&C index; partners' units are
# present for multi-agency plans (rtc_injury: police + ambulance + fire pump).
_AGENCY_SHARE: dict[Agency, float] = {
    Agency.POLICE: 0.80,
    Agency.FIRE: 0.08,
    Agency.AMBULANCE: 0.12,
}

# Unit types per agency with their share within the agency (docs/domain.md). Response cars
# and foot patrols are the bulk; specialist units (arv, dog) are deliberately scarce, which is
# what makes "rare capability" queries interesting for an index.
_TYPE_SHARE: dict[Agency, dict[str, float]] = {
    Agency.POLICE: {
        "irv": 0.38,
        "area_car": 0.10,
        "arv": 0.04,
        "dog": 0.03,
        "tsg": 0.07,
        "traffic": 0.06,
        "foot": 0.20,
        "cycle": 0.07,
        "motorcycle": 0.05,
    },
    Agency.FIRE: {"pump": 0.75, "aerial": 0.10, "rescue": 0.15},
    Agency.AMBULANCE: {"ambulance": 0.75, "fast_response_car": 0.25},
}

# Capabilities a type always carries (the kit defines the unit: an ARV is armed, a dog van
# has a dog) and ones its crew has with a probability (who is rostered on today).
_TYPE_ALWAYS: dict[str, tuple[str, ...]] = {
    "area_car": ("advanced_driver",),
    "arv": ("firearms", "taser", "advanced_driver", "first_aid"),
    "dog": ("dog",),
    "tsg": ("public_order",),
    "traffic": ("roads_policing", "advanced_driver"),
    "motorcycle": ("roads_policing", "advanced_driver"),
    "pump": ("firefighting",),
    "aerial": ("firefighting", "rescue"),
    "rescue": ("rescue",),
    "ambulance": ("paramedic", "first_aid"),
    "fast_response_car": ("paramedic", "first_aid"),
}
_POLICE_GENERAL_MAYBE: dict[str, float] = {
    "taser": 0.30,
    "first_aid": 0.25,
    "negotiator": 0.01,
    "lang_polish": 0.03,
}
_TYPE_MAYBE: dict[str, dict[str, float]] = {
    "irv": _POLICE_GENERAL_MAYBE,
    "area_car": {**_POLICE_GENERAL_MAYBE, "taser": 0.45},
    "foot": _POLICE_GENERAL_MAYBE,
    "cycle": _POLICE_GENERAL_MAYBE,
    "motorcycle": {"taser": 0.20},
    "traffic": {"taser": 0.25, "first_aid": 0.30},
    "tsg": {"taser": 0.60, "first_aid": 0.40, "negotiator": 0.02},
    "arv": {"negotiator": 0.05},
    "dog": {"taser": 0.30, "advanced_driver": 0.50},
    "pump": {"rescue": 0.30, "first_aid": 0.50},
    "rescue": {"hazmat": 0.50, "first_aid": 0.50},
    "aerial": {"first_aid": 0.30},
    "ambulance": {},
    "fast_response_car": {"advanced_driver": 0.40},
}

# The other 80% of a shift: committed to jobs, on breaks, or booked off but still known.
_OTHER_STATUS_SHARE: dict[UnitStatus, float] = {
    UnitStatus.DISPATCHED: 0.08,
    UnitStatus.EN_ROUTE: 0.12,
    UnitStatus.ON_SCENE: 0.25,
    UnitStatus.COMMITTED: 0.15,
    UnitStatus.UNAVAILABLE: 0.15,
    UnitStatus.OFF_DUTY: 0.25,
}


# eq=False: field-wise == on NumPy arrays is ambiguous; compare fleets by their fields.
@dataclass(frozen=True, slots=True, eq=False)
class Fleet:
    """A synthetic fleet: row i of every field describes unit i.

    Arrays are NumPy for what batch calls and vectorised baselines consume (positions,
    enums as the `dispatch.v1` ints); strings stay Python lists because that is what
    `UnitIndex.upsert_unit` takes.
    """

    ids: list[str]
    agency: npt.NDArray[np.int64]
    unit_type: list[str]
    caps: list[tuple[str, ...]]
    status: npt.NDArray[np.int64]
    home_area: list[str]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    #: Seconds of shift left at load time, so rankings see a realistic spread of
    #: shift-overrun costs rather than everyone fresh on duty.
    shift_remaining_s: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ids)

    def cap_mask(self, vocabulary: Sequence[str] = CAPABILITIES) -> npt.NDArray[np.uint64]:
        """Capabilities as one bitmask per unit (bit i = vocabulary[i]), for vectorised use."""
        bit = {name: np.uint64(1) << np.uint64(i) for i, name in enumerate(vocabulary)}
        out = np.zeros(len(self.ids), dtype=np.uint64)
        for i, caps in enumerate(self.caps):
            mask = np.uint64(0)
            for name in caps:
                mask |= bit[name]
            out[i] = mask
        return out


def _choice(rng: np.random.Generator, shares: dict[str, float], n: int) -> npt.NDArray[np.str_]:
    names = list(shares)
    p = np.array([shares[name] for name in names], dtype=np.float64)
    return rng.choice(np.array(names), size=n, p=p / p.sum())


def _scatter(
    rng: np.random.Generator,
    n: int,
    *,
    centre_weight: float = 1.0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Draw n points: a borough by population, then a gaussian offset around its centroid."""
    rows = boroughs()
    weight = np.array([b.population_2021 for b in rows], dtype=np.float64)
    if centre_weight != 1.0:
        weight[[i for i, b in enumerate(rows) if b.borough == "Westminster"]] *= centre_weight
    which = rng.choice(len(rows), size=n, p=weight / weight.sum()).astype(np.int64)
    c_lat = np.array([b.centroid_lat for b in rows])[which]
    c_lon = np.array([b.centroid_lon for b in rows])[which]
    sigma_m = np.array([b.spread_m for b in rows])[which]
    d_north, d_east = rng.standard_normal((2, n)) * sigma_m
    lat = c_lat + d_north / _M_PER_DEG_LAT
    lon = c_lon + d_east / (_M_PER_DEG_LAT * np.cos(np.radians(c_lat)))
    return which, np.clip(lat, *_LAT_RANGE), np.clip(lon, *_LON_RANGE)


def make_fleet(n: int, *, seed: int = 0, available_share: float = 0.20) -> Fleet:
    """A deterministic synthetic fleet of `n` units.

    Exactly `round(n * available_share)` units are AVAILABLE (a ranking benchmark's
    selectivity must not wobble with the seed); the rest follow `_OTHER_STATUS_SHARE`.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if not 0.0 <= available_share <= 1.0:
        raise ValueError(f"available_share must be within [0, 1], got {available_share}")
    rng = np.random.default_rng(seed)
    rows = boroughs()
    which, lat, lon = _scatter(rng, n)

    agencies = list(_AGENCY_SHARE)
    agency_p = np.array([_AGENCY_SHARE[a] for a in agencies])
    agency = np.array(agencies, dtype=np.int64)[rng.choice(len(agencies), size=n, p=agency_p)]

    unit_type = np.empty(n, dtype=object)
    for a in agencies:
        sel = np.flatnonzero(agency == int(a))
        unit_type[sel] = _choice(rng, _TYPE_SHARE[a], sel.size)

    # One uniform draw per (unit, optional capability) keeps the stream of random numbers
    # independent of how many optional capabilities a type happens to have.
    draws = rng.random((n, len(CAPABILITIES)))
    col = {name: j for j, name in enumerate(CAPABILITIES)}
    caps: list[tuple[str, ...]] = []
    for i in range(n):
        t = str(unit_type[i])
        have = set(_TYPE_ALWAYS.get(t, ()))
        have.update(c for c, p in _TYPE_MAYBE.get(t, {}).items() if draws[i, col[c]] < p)
        # Vocabulary order, so the same crew always prints the same way.
        caps.append(tuple(c for c in CAPABILITIES if c in have))

    n_avail = round(n * available_share)
    others = list(_OTHER_STATUS_SHARE)
    other_p = np.array([_OTHER_STATUS_SHARE[s] for s in others])
    status = np.concatenate(
        [
            np.full(n_avail, int(UnitStatus.AVAILABLE), dtype=np.int64),
            np.array(others, dtype=np.int64)[
                rng.choice(len(others), size=n - n_avail, p=other_p / other_p.sum())
            ],
        ]
    )
    rng.shuffle(status)

    # Callsign-like ids, unique by construction: the type then a serial.
    ids = [f"{str(t).upper().replace('_', '')}-{i:06d}" for i, t in enumerate(unit_type)]
    # Shifts of 8-10 h seen at a uniform point: between 0 and 10 h left.
    shift_remaining_s = rng.uniform(0.0, 10.0 * 3600.0, size=n)

    return Fleet(
        ids=ids,
        agency=agency,
        unit_type=[str(t) for t in unit_type],
        caps=caps,
        status=status,
        home_area=[rows[int(b)].borough for b in which],
        lat=lat,
        lon=lon,
        shift_remaining_s=shift_remaining_s,
    )


def incident_points(
    n: int, *, seed: int = 1, centre_weight: float = 1.0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """`n` incident locations, population-weighted like the fleet.

    `centre_weight` multiplies Westminster's weight: an event night draws far more demand
    to the centre than its resident population suggests (docs/domain.md).
    """
    rng = np.random.default_rng(seed)
    _, lat, lon = _scatter(rng, n, centre_weight=centre_weight)
    return lat, lon


def load_into(index: UnitIndex, fleet: Fleet, now_ms: int) -> npt.NDArray[np.int64]:
    """Upsert every unit of `fleet` into `index` and place it; returns the slots, in order.

    Shifts started two hours before `now_ms` and end after each unit's remaining time.
    Locations go in with one batch call stamped `now_ms`, the way an AVL feed would.
    """
    n = len(fleet)
    slots = np.empty(n, dtype=np.int64)
    start = now_ms - 2 * 3600 * 1000
    ends = (now_ms + fleet.shift_remaining_s * 1000.0).astype(np.int64)
    for i in range(n):
        slots[i] = index.upsert_unit(
            fleet.ids[i],
            agency=int(fleet.agency[i]),
            unit_type=fleet.unit_type[i],
            capabilities=fleet.caps[i],
            home_area=fleet.home_area[i],
            shift_start_ms=start,
            shift_end_ms=int(ends[i]),
            status=int(fleet.status[i]),
        )
    index.update_locations_by_slot(slots, fleet.lat, fleet.lon, np.full(n, now_ms, dtype=np.int64))
    return slots


def unit_spec(fleet: Fleet, i: int, now_ms: int) -> pb.UnitSpec:
    """Unit `i` of the fleet as an UpsertUnit spec: shifts as in `load_into` (started two
    hours before `now_ms`, ending after the unit's remaining time)."""
    spec = pb.UnitSpec(
        unit_id=fleet.ids[i],
        agency=int(fleet.agency[i]),  # type: ignore[arg-type]
        unit_type=fleet.unit_type[i],
        capabilities=fleet.caps[i],
        home_area=fleet.home_area[i],
    )
    spec.shift_start.FromMilliseconds(now_ms - 2 * 3600 * 1000)
    spec.shift_end.FromMilliseconds(now_ms + int(fleet.shift_remaining_s[i] * 1000.0))
    return spec


def seed_pipeline(pipeline: Pipeline, fleet: Fleet, now_ms: int, *, shifts: bool = True) -> None:
    """Loads `fleet` into a pipeline through its commands, as a client would over gRPC:
    UpsertUnit per unit (shifts as in `load_into`), SetUnitStatus for units the API can
    make busy on their own (UNAVAILABLE, OFF_DUTY; other busy statuses need an incident, so
    they become UNAVAILABLE), and one location batch stamped `now_ms`. Without `shifts`, units
    carry no shift (always on duty: for runs over simulated days)."""
    for i in range(len(fleet)):
        spec = unit_spec(fleet, i, now_ms)
        if not shifts:
            spec.ClearField("shift_start")
            spec.ClearField("shift_end")
        request = pb.UpsertUnitRequest(request_id=f"seed-{fleet.ids[i]}", unit=spec)
        pipeline.execute("UpsertUnit", request.SerializeToString())
        status = int(fleet.status[i])
        if status != UnitStatus.AVAILABLE:
            busy = UnitStatus.OFF_DUTY if status == UnitStatus.OFF_DUTY else UnitStatus.UNAVAILABLE
            change = pb.SetUnitStatusRequest(
                request_id=f"seed-status-{fleet.ids[i]}",
                unit_id=fleet.ids[i],
                status=int(busy),  # type: ignore[arg-type]
            )
            pipeline.execute("SetUnitStatus", change.SerializeToString())
    batch = pb.UpdateLocationsRequest(
        unit_ids=list(fleet.ids),
        lat=fleet.lat.tolist(),
        lon=fleet.lon.tolist(),
        time_unix_ms=[now_ms] * len(fleet),
    )
    pipeline.update_locations(batch.SerializeToString())
