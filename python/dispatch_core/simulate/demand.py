"""The calls a simulation serves: when, where, what grade, what it needs, how long it lasts.

Two sources, one shape (`Call`): a scenario's demand profile and incident mix (the load-test
scenarios and `london-day`), or a CSV of real calls so an operator can replay a real day.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from dispatch_core.loadtest.generator import poisson_times
from dispatch_core.loadtest.scenario import Group, Scenario
from dispatch_core.synthetic.fleet import incident_points
from dispatch_core.types import Agency, Grade

#: The requirement of a CSV call whose type the scenario's mix does not know.
DEFAULT_GROUPS: tuple[Group, ...] = (Group(Agency.POLICE, 1),)
CSV_COLUMNS = ("time_s", "lat", "lon", "grade", "type", "job_minutes")


class DemandError(ValueError):
    """A call file that cannot be simulated, named by file, line and column."""


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One call for service. `t_s` counts simulated seconds from the start of the run."""

    t_s: float
    lat: float
    lon: float
    grade: Grade
    incident_type: str
    groups: tuple[Group, ...]
    job_s: float
    #: The call's place in the run, also its incident id's number.
    index: int = 0


def scenario_calls(sc: Scenario, *, days: int, seed: int) -> list[Call]:
    """Poisson arrivals following the scenario's hourly profile, repeated for `days` spans
    of `simulated_s` each; places weighted by borough population; type from the mix."""
    rng = np.random.default_rng([seed, 1])
    span = sc.simulated_s

    def rate(t: np.ndarray) -> np.ndarray:
        return sc.incidents_per_hour.at(np.mod(t, span)) / 3600.0

    t = poisson_times(rate, span * days, rng)
    n = int(t.size)
    lat, lon = incident_points(
        max(n, 1), seed=seed * 7 + 3, centre_weight=sc.incident_centre_weight
    )
    shares = np.array([m.share for m in sc.mix])
    which = rng.choice(len(sc.mix), size=n, p=shares / shares.sum())
    jobs = rng.random(n)
    calls = []
    for i in range(n):
        kind = sc.mix[int(which[i])]
        lo, hi = kind.job_min
        calls.append(
            Call(
                t_s=float(t[i]),
                lat=float(lat[i]),
                lon=float(lon[i]),
                grade=kind.grade,
                incident_type=kind.incident_type,
                groups=kind.groups,
                job_s=(lo + (hi - lo) * float(jobs[i])) * 60.0,
                index=i,
            )
        )
    return calls


def read_calls_csv(path: Path, sc: Scenario | None = None) -> list[Call]:
    """Calls from a CSV with the header `time_s,lat,lon,grade,type,job_minutes`.

    `time_s` is seconds from the start of the run, non-decreasing; `grade` a grade name
    (IMMEDIATE, SIGNIFICANT, EXTENDED, REFERRED); a `type` found in the scenario's mix takes
    that mix line's requirement, any other one police unit. Every problem is reported as
    `file:line: column: what`, before anything is simulated.
    """
    groups_of = {m.incident_type: m.groups for m in sc.mix} if sc is not None else {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DemandError(f"{path}: {exc.strerror or exc}") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise DemandError(f"{path}:1: empty file (expected the header {','.join(CSV_COLUMNS)})")
    header = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise DemandError(f"{path}:1: missing column(s) {', '.join(missing)}")
    col = {name: header.index(name) for name in CSV_COLUMNS}
    calls: list[Call] = []
    last_t = -math.inf
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        line = _Line(path, line_no, row, col)
        number = line.number
        t_s = number("time_s", 0.0, 366 * 86_400.0)
        if t_s < last_t:
            raise DemandError(
                f"{path}:{line_no}: column time_s: {t_s:g} is earlier than the line before"
                f" ({last_t:g}); calls must be in time order"
            )
        last_t = t_s
        lat = number("lat", -90.0, 90.0)
        lon = number("lon", -180.0, 180.0)
        grade_name = line.cell("grade").upper()
        if grade_name not in Grade.__members__:
            known = ", ".join(g.name for g in Grade)
            raise DemandError(
                f"{path}:{line_no}: column grade: unknown grade {grade_name!r} (known: {known})"
            )
        kind = line.cell("type")
        job_s = number("job_minutes", 0.0, 24 * 60.0) * 60.0
        calls.append(
            Call(
                t_s=t_s,
                lat=lat,
                lon=lon,
                grade=Grade[grade_name],
                incident_type=kind,
                groups=groups_of.get(kind, DEFAULT_GROUPS),
                job_s=job_s,
                index=len(calls),
            )
        )
    return calls


@dataclasses.dataclass(frozen=True, slots=True)
class _Line:
    """One row of a call file, read cell by cell with errors naming line and column."""

    path: Path
    line_no: int
    row: list[str]
    col: dict[str, int]

    def cell(self, name: str) -> str:
        i = self.col[name]
        if i >= len(self.row) or not self.row[i].strip():
            raise DemandError(f"{self.path}:{self.line_no}: column {name}: missing value")
        return self.row[i].strip()

    def number(self, name: str, lo: float, hi: float) -> float:
        raw = self.cell(name)
        where = f"{self.path}:{self.line_no}: column {name}"
        try:
            value = float(raw)
        except ValueError:
            raise DemandError(f"{where}: {raw!r} is not a number") from None
        if not (lo <= value <= hi) or math.isnan(value):
            raise DemandError(f"{where}: {value:g} is out of range [{lo:g}, {hi:g}]")
        return value
