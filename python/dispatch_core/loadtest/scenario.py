"""Load-test scenarios: what a `scenarios/*.toml` file declares, parsed and checked.

A scenario is a span of *simulated* time (a London evening, a New Year's Eve night, a riot
night) run in `duration_s` seconds of wall-clock time: the compression factor is
`simulated_s / duration_s`. Incident arrivals and job times are compressed (an hour of
calls arrives in 3600 / factor seconds and a 60-minute job ties its units up for
3600 / factor seconds), so demand against supply keeps its real shape; AVL pings are not
compressed (every unit still reports every few wall-clock seconds, the real feed's load),
because pinging 24x faster would simulate nothing more and only multiply the largest load.

Rates over time are piecewise-linear profiles: `[[t, value], ...]` with `t` in simulated
seconds from the start, linear between points and held flat after the last one.

Example:
    >>> sc = load_scenario("london-baseline")
    >>> sc.compression
    24.0
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dispatch_core.types import Agency, Grade

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

#: MPS attendance targets (docs/domain.md): IMMEDIATE 15 min (urban), SIGNIFICANT 60 min.
TARGET_S: dict[Grade, float] = {Grade.IMMEDIATE: 15 * 60.0, Grade.SIGNIFICANT: 60 * 60.0}


class ScenarioError(ValueError):
    """A scenario file that does not say what it must, named with the offending key."""


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """A piecewise-linear rate over simulated seconds, held flat after the last point."""

    t: tuple[float, ...]
    value: tuple[float, ...]

    @staticmethod
    def parse(raw: Any, key: str) -> Profile:
        if not isinstance(raw, list) or not raw:
            raise ScenarioError(f"{key}: expected a non-empty list of [t, value] pairs")
        pts: list[tuple[float, float]] = []
        for p in raw:
            if not (isinstance(p, list) and len(p) == 2):
                raise ScenarioError(f"{key}: {p!r} is not a [t, value] pair")
            t, v = float(p[0]), float(p[1])
            if v < 0 or (pts and t < pts[-1][0]):
                raise ScenarioError(f"{key}: times must increase and values be >= 0")
            pts.append((t, v))
        return Profile(tuple(p[0] for p in pts), tuple(p[1] for p in pts))

    def at(self, t: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.interp(np.asarray(t, dtype=np.float64), self.t, self.value)

    def peak(self) -> float:
        return max(self.value)

    def scaled(self, factor: float) -> Profile:
        return Profile(self.t, tuple(v * factor for v in self.value))


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    """One requirement group of a response plan: `count` units of an agency."""

    agency: Agency
    count: int
    unit_types: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentKind:
    """One line of the incident mix: a type, its grade, its plan and how long it lasts."""

    incident_type: str
    grade: Grade
    share: float
    groups: tuple[Group, ...]
    #: Simulated minutes on scene, drawn uniformly from this range.
    job_min: tuple[float, float]
    #: Share of these incidents where one unit ends up COMMITTED (custody, hospital).
    committed_share: float

    @property
    def units(self) -> int:
        return sum(g.count for g in self.groups)


@dataclasses.dataclass(frozen=True, slots=True)
class ReadKind:
    """One read RPC of the mixed-read stream and its share of it."""

    rpc: str
    share: float


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    basis: str
    #: Wall-clock seconds of a full run.
    duration_s: float
    #: Simulated seconds the run represents.
    simulated_s: float
    #: Clock label of simulated t = 0 ("18:00"), for the report only.
    starts_at: str
    seed: int
    # Fleet.
    units: int
    available_share: float
    #: Share of the fleet moved into central London (a planned operation), and its spread.
    centre_share: float
    centre_sigma_m: float
    # AVL feed (wall-clock, not compressed).
    ping_period_s: tuple[float, float]
    ping_interval_s: float
    # Incidents (simulated per hour, before compression and scale).
    incidents_per_hour: Profile
    incident_centre_weight: float
    mix: tuple[IncidentKind, ...]
    mobilisation_s: float
    custody_min: tuple[float, float]
    #: How often (simulated seconds) an incident with no available unit asks again.
    requeue_s: float
    k: int
    # Mixed reads (wall-clock per second, not compressed: they are console load).
    reads_per_s: Profile
    reads: tuple[ReadKind, ...]
    #: Safety bound: the run stops issuing once it has sent this many requests.
    max_requests: int

    #: A representative window at a fixed compression: a shorter --duration cuts the
    #: window short instead of compressing the whole span harder.
    window: bool = False
    #: Wall-clock compression of travel and job times; None: the same as `compression`.
    #: A real-time window (national-stress) still compresses its jobs so units cycle.
    lifecycle_compression_declared: float | None = None

    @property
    def compression(self) -> float:
        return self.simulated_s / self.duration_s

    @property
    def lifecycle_compression(self) -> float:
        return self.lifecycle_compression_declared or self.compression

    def with_overrides(self, *, duration_s: float | None = None, scale: float = 1.0) -> Scenario:
        """A shorter run (same simulated span, so a higher compression) or a scaled one.

        `scale` multiplies the fleet, the incident rate and the read rate together, so the
        balance of demand and supply is kept while the load shrinks (smoke runs).
        """
        if scale <= 0:
            raise ScenarioError(f"scale must be > 0, got {scale}")
        duration = duration_s if duration_s is not None else self.duration_s
        if duration <= 0:
            raise ScenarioError(f"duration must be > 0, got {duration}")
        return dataclasses.replace(
            self,
            duration_s=duration,
            simulated_s=self.compression * duration if self.window else self.simulated_s,
            units=max(20, round(self.units * scale)),
            incidents_per_hour=self.incidents_per_hour.scaled(scale),
            reads_per_s=self.reads_per_s.scaled(scale),
        )

    def wall_incident_rate(self, t_wall: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Incidents per wall-clock second at wall time `t_wall` (compressed)."""
        c = self.compression
        return self.incidents_per_hour.at(np.asarray(t_wall, dtype=np.float64) * c) / 3600.0 * c

    def expected_incidents(self) -> float:
        t = np.linspace(0.0, self.duration_s, 2001)
        return float(np.trapezoid(self.wall_incident_rate(t), t))

    def ping_rate_per_s(self) -> float:
        lo, hi = self.ping_period_s
        mean_inverse = 1.0 / lo if hi == lo else float(np.log(hi / lo) / (hi - lo))
        return self.units * mean_inverse

    def summary(self) -> dict[str, Any]:
        """The declared figures, for the report."""
        return {
            "name": self.name,
            "description": self.description,
            "basis": self.basis,
            "duration_s": self.duration_s,
            "simulated_s": self.simulated_s,
            "simulated_hours": self.simulated_s / 3600.0,
            "starts_at": self.starts_at,
            "compression": self.compression,
            "lifecycle_compression": self.lifecycle_compression,
            "window": self.window,
            "units": self.units,
            "available_share": self.available_share,
            "centre_share": self.centre_share,
            "ping_period_s": list(self.ping_period_s),
            "ping_rate_per_s": self.ping_rate_per_s(),
            "incidents_per_hour_profile": [list(p) for p in zip(*self._prof(), strict=True)],
            "incidents_peak_per_hour": self.incidents_per_hour.peak(),
            "incidents_peak_wall_per_s": self.incidents_per_hour.peak() / 3600 * self.compression,
            "expected_incidents": self.expected_incidents(),
            "reads_peak_per_s": self.reads_per_s.peak(),
            "mix": [
                {
                    "incident_type": m.incident_type,
                    "grade": m.grade.name,
                    "share": m.share,
                    "units": m.units,
                    "job_min": list(m.job_min),
                }
                for m in self.mix
            ],
            "max_requests": self.max_requests,
            "seed": self.seed,
        }

    def _prof(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.incidents_per_hour.t, self.incidents_per_hour.value


# ----------------------------------------------------------------------------- parsing


def _get(table: Mapping[str, Any], key: str, where: str, default: Any = ...) -> Any:
    if key in table:
        return table[key]
    if default is ...:
        raise ScenarioError(f"{where}.{key}: missing")
    return default


#: The keys each table of a scenario file may hold: anything else is a typo, refused by name
#: rather than silently ignored (a misspelt rate would run a different test).
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"scenario", "fleet", "pings", "incidents", "reads"}),
    "scenario": frozenset(
        {
            "name",
            "description",
            "basis",
            "duration_s",
            "simulated_s",
            "starts_at",
            "seed",
            "max_requests",
            "window",
        }
    ),
    "fleet": frozenset({"units", "available_share", "centre_share", "centre_sigma_m"}),
    "pings": frozenset({"period_s", "batch_interval_s"}),
    "incidents": frozenset(
        {
            "per_hour",
            "centre_weight",
            "mix",
            "mobilisation_s",
            "custody_min",
            "requeue_s",
            "k",
            "lifecycle_compression",
        }
    ),
    "incidents.mix": frozenset({"type", "grade", "share", "groups", "job_min", "committed_share"}),
    "groups": frozenset({"agency", "count", "unit_types", "capabilities"}),
    "reads": frozenset({"per_s", "mix"}),
}


def _only_known(table: Any, kind: str, where: str) -> None:
    if not isinstance(table, Mapping):
        raise ScenarioError(f"{where or 'the file'}: expected a table")
    unknown = sorted(set(table) - KNOWN_KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(KNOWN_KEYS[kind]))
        raise ScenarioError(
            f"{(where + '.') if where else ''}{unknown[0]}: unknown key (allowed: {allowed})"
        )


def _range(raw: Any, key: str) -> tuple[float, float]:
    if not (isinstance(raw, list) and len(raw) == 2 and 0 <= float(raw[0]) <= float(raw[1])):
        raise ScenarioError(f"{key}: expected [low, high] with 0 <= low <= high")
    return float(raw[0]), float(raw[1])


def _groups(raw: Sequence[Mapping[str, Any]], where: str) -> tuple[Group, ...]:
    out = []
    for i, g in enumerate(raw):
        at = f"{where}.groups[{i}]"
        _only_known(g, "groups", at)
        name = str(_get(g, "agency", at)).upper()
        if name not in Agency.__members__:
            raise ScenarioError(f"{at}.agency: {name!r} is not one of {list(Agency.__members__)}")
        out.append(
            Group(
                agency=Agency[name],
                count=int(_get(g, "count", at, 1)),
                unit_types=tuple(_get(g, "unit_types", at, ())),
                capabilities=tuple(_get(g, "capabilities", at, ())),
            )
        )
    if not out:
        raise ScenarioError(f"{where}.groups: at least one group")
    return tuple(out)


def parse_scenario(data: Mapping[str, Any], *, name: str) -> Scenario:
    _only_known(data, "", "")
    for table in ("scenario", "fleet", "pings", "incidents", "reads"):
        if table in data:
            _only_known(data[table], table, table)
    sc = _get(data, "scenario", "")
    fleet = _get(data, "fleet", "")
    pings = _get(data, "pings", "")
    inc = _get(data, "incidents", "")
    reads = data.get("reads", {})
    mix = []
    for i, m in enumerate(_get(inc, "mix", "incidents")):
        at = f"incidents.mix[{i}]"
        _only_known(m, "incidents.mix", at)
        grade = str(_get(m, "grade", at)).upper()
        if grade not in Grade.__members__:
            raise ScenarioError(f"{at}.grade: {grade!r} is not one of {list(Grade.__members__)}")
        mix.append(
            IncidentKind(
                incident_type=str(_get(m, "type", at)),
                grade=Grade[grade],
                share=float(_get(m, "share", at)),
                groups=_groups(_get(m, "groups", at), at),
                job_min=_range(_get(m, "job_min", at), f"{at}.job_min"),
                committed_share=float(_get(m, "committed_share", at, 0.0)),
            )
        )
    total = sum(m.share for m in mix)
    if not 0.99 <= total <= 1.01:
        raise ScenarioError(f"incidents.mix: shares add up to {total:.3f}, not 1")
    read_mix = tuple(
        ReadKind(rpc=str(k), share=float(v)) for k, v in dict(reads.get("mix", {})).items()
    )
    known_reads = {"GetIncident", "GetUnit", "ListUnits", "GetOperatingPicture", "ListIncidents"}
    for r in read_mix:
        if r.rpc not in known_reads:
            raise ScenarioError(f"reads.mix.{r.rpc}: not one of {sorted(known_reads)}")
    duration = float(_get(sc, "duration_s", "scenario"))
    simulated = float(_get(sc, "simulated_s", "scenario", duration))
    if duration <= 0 or simulated <= 0:
        raise ScenarioError("scenario.duration_s and simulated_s must be > 0")
    return Scenario(
        name=str(_get(sc, "name", "scenario", name)),
        description=str(_get(sc, "description", "scenario")),
        basis=str(_get(sc, "basis", "scenario", "")),
        duration_s=duration,
        simulated_s=simulated,
        starts_at=str(_get(sc, "starts_at", "scenario", "00:00")),
        seed=int(_get(sc, "seed", "scenario", 1)),
        units=int(_get(fleet, "units", "fleet")),
        available_share=float(_get(fleet, "available_share", "fleet", 0.7)),
        centre_share=float(_get(fleet, "centre_share", "fleet", 0.0)),
        centre_sigma_m=float(_get(fleet, "centre_sigma_m", "fleet", 1500.0)),
        ping_period_s=_range(_get(pings, "period_s", "pings"), "pings.period_s"),
        ping_interval_s=float(_get(pings, "batch_interval_s", "pings", 0.25)),
        incidents_per_hour=Profile.parse(_get(inc, "per_hour", "incidents"), "incidents.per_hour"),
        incident_centre_weight=float(_get(inc, "centre_weight", "incidents", 1.0)),
        mix=tuple(mix),
        mobilisation_s=float(_get(inc, "mobilisation_s", "incidents", 60.0)),
        custody_min=_range(_get(inc, "custody_min", "incidents", [60, 180]), "custody_min"),
        requeue_s=float(_get(inc, "requeue_s", "incidents", 60.0)),
        k=int(_get(inc, "k", "incidents", 5)),
        reads_per_s=Profile.parse(reads.get("per_s", [[0, 0]]), "reads.per_s"),
        reads=read_mix,
        max_requests=int(_get(sc, "max_requests", "scenario", 5_000_000)),
        window=bool(_get(sc, "window", "scenario", False)),
        lifecycle_compression_declared=(
            float(inc["lifecycle_compression"]) if "lifecycle_compression" in inc else None
        ),
    )


def scenario_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    # A path names a file; a bare name a shipped scenario, even beside a folder of that name
    # (a report directory, say).
    if p.suffix == ".toml" or p.is_file():
        return p
    return SCENARIO_DIR / f"{name_or_path}.toml"


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by name (one of `scenarios/*.toml`) or by the path of a .toml file."""
    path = scenario_path(name_or_path)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
        raise ScenarioError(f"no scenario {name_or_path!r} (known: {known})")
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise ScenarioError(f"{path}: {exc}") from None
    return parse_scenario(data, name=path.stem)


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
