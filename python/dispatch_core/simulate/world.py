"""The simulated world: an event loop over simulated time, the units' true motion, and the
real engine driven in-process through `DispatchCore.execute(method, bytes, time)`.

What is modelled (assumptions the report repeats):
- a dispatched unit mobilises (the engine's AVAILABLE mobilisation, 30 s), then drives the
  straight line x the engine's circuity at its type's speed x the grade's blue-light factor,
  multiplied by a log-normal noise (sigma 0.25) drawn per (call, unit), so every policy
  meets the same roads for the same journey;
- it stays on scene for the call's job time, then is AVAILABLE again and drives home (to
  where it started the run) at normal speed, taking calls on the way;
- the control room sees positions only through AVL: every `ping_s` simulated seconds the
  moving units report where they are, and so does every other on-duty unit that arrived
  somewhere since its last report or whose last report would otherwise grow older than the
  engine's trusted age (`stale_after_seconds`) before the next ping: real AVL reports
  standing units too, and the engine leaves out units it has not heard from for a quarter
  of an hour (the engine and every policy rank on those reports);
- an incident's response time runs from the call to its first unit on scene; it closes when
  every place of its requirement has been filled and every unit has cleared.

Time advances only through the commands' time arguments (and the engine's clock command
whenever `tick_due` says a time-driven change is due), never through a real clock.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from dispatch_core._core import DispatchCore
from dispatch_core.loadtest.scenario import Group
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.simulate.demand import Call
from dispatch_core.synthetic.fleet import Fleet
from dispatch_core.types import Agency, Grade, UnitStatus

#: Simulated t = 0 is midnight UTC of 2026-01-01 plus the scenario's `starts_at`.
EPOCH_MS = 1_767_225_600_000
EARTH_RADIUS_M = 6_371_008.8
TRAVEL_NOISE_SIGMA = 0.25
#: After the last call, the run goes on this long for the backlog to be served.
DRAIN_S = 4 * 3600.0

CALL, EN_ROUTE, ARRIVE, CLEAR, PING = range(5)


class SimulationError(RuntimeError):
    """The engine refused a command the simulation believed valid: a bug, not an outcome."""


def distance_m(
    lat0: float, lon0: float, lat1: npt.ArrayLike, lon1: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Great-circle distance (haversine), metres; the engine's own formula."""
    p0, p1 = math.radians(lat0), np.radians(lat1)
    dphi = p1 - p0
    dlmb = np.radians(lon1) - math.radians(lon0)
    h = np.sin(dphi / 2) ** 2 + math.cos(p0) * np.cos(p1) * np.sin(dlmb / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(h, 1.0))))


@dataclasses.dataclass(slots=True)
class Leg:
    """A straight drive from (lat0, lon0) at t0 to (lat1, lon1) at t1, simulated seconds."""

    lat0: float
    lon0: float
    t0: float
    lat1: float
    lon1: float
    t1: float

    def at(self, t: float) -> tuple[float, float]:
        if t >= self.t1 or self.t1 <= self.t0:
            return self.lat1, self.lon1
        f = max(0.0, (t - self.t0) / (self.t1 - self.t0))
        return self.lat0 + f * (self.lat1 - self.lat0), self.lon0 + f * (self.lon1 - self.lon0)


@dataclasses.dataclass(slots=True)
class Incident:
    """A call in the engine, and what the simulation knows of its progress."""

    call: Call
    incident_id: str
    #: Places still to fill, per requirement group.
    needed: list[int]
    units: list[int] = dataclasses.field(default_factory=list)
    first_dispatch_s: float | None = None
    first_arrival_s: float | None = None
    cleared: int = 0
    closed: bool = False

    @property
    def waiting(self) -> bool:
        return any(self.needed)

    @property
    def order(self) -> tuple[int, float, int]:
        """Grade first, then age: the order the engine's pending queue keeps."""
        return (int(self.call.grade), self.call.t_s, self.call.index)


class Policy(Protocol):
    """Decides which units go where. The world calls it when a call arrives and whenever a
    unit becomes free; it answers by calling `world.dispatch`."""

    name: str

    def on_call(self, world: World, incident: Incident) -> None: ...

    def on_unit_free(self, world: World, unit: int) -> None: ...


class World:
    """One run of one policy over a fleet and a list of calls."""

    def __init__(
        self,
        fleet: Fleet,
        calls: Sequence[Call],
        *,
        seed: int,
        start_ms: int = EPOCH_MS,
        ping_s: float = 30.0,
        travel_noise: float = TRAVEL_NOISE_SIGMA,
    ) -> None:
        self.fleet = fleet
        self.calls = calls
        self.seed = seed
        self.start_ms = start_ms
        self.ping_s = ping_s
        self.travel_noise = travel_noise
        self.core = DispatchCore()
        config: dict[str, Any] = self.core.config()
        self._circuity = float(config["circuity"])
        self._mobilise_s = float(config["mobilisation_seconds"]["AVAILABLE"])
        self._blue = {Grade[k]: float(v) for k, v in config["blue_light_factor"].items()}
        self._trusted_age_s = float(config["stale_after_seconds"])
        type_speed = config["unit_type_speed_mps"]
        agency_speed = config["agency_speed_mps"]
        n = len(fleet)
        self.n_units = n
        self.index_of = {uid: i for i, uid in enumerate(fleet.ids)}
        self.speed = np.array(
            [
                float(
                    type_speed.get(
                        f"{Agency(int(fleet.agency[i])).name}/{fleet.unit_type[i]}",
                        agency_speed[Agency(int(fleet.agency[i])).name],
                    )
                )
                for i in range(n)
            ]
        )
        self.on_duty = np.asarray(fleet.status == int(UnitStatus.AVAILABLE))
        self.available = self.on_duty.copy()
        self.home_lat = fleet.lat.copy()
        self.home_lon = fleet.lon.copy()
        #: Positions as last reported by AVL: what the engine and every policy rank on.
        self.avl_lat = fleet.lat.copy()
        self.avl_lon = fleet.lon.copy()
        #: When each unit last reported, simulated seconds (-inf: report at the next ping).
        self.avl_s = np.zeros(n)
        self.legs: list[Leg | None] = [None] * n
        self.busy_since = np.full(n, np.nan)
        self.busy_s = np.zeros(n)
        self.incidents: list[Incident] = []
        #: Per unit: the assignment it is on now (a token), and that assignment's incident
        #: and group. A diversion gives the unit a new token, so the steps planned for its
        #: old assignment (EN_ROUTE, ARRIVE) find a stale token and are dropped.
        self.token = np.zeros(n, dtype=np.int64)
        self._assignments: dict[int, tuple[Incident, int]] = {}
        self._arrived = np.zeros(n, dtype=bool)
        self._tokens = 0
        self.diversions = 0
        self._mask_cache: dict[Group, npt.NDArray[np.bool_]] = {}
        self._events: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        self.now_s = 0.0
        self.commands = 0
        self._load_fleet()

    # ------------------------------------------------------------------------ engine

    def now_ms(self) -> int:
        return self.start_ms + round(self.now_s * 1000.0)

    def _execute(self, method: str, message: Message) -> bytes:
        now = self.now_ms()
        if self.core.tick_due(now):
            self._apply("Tick", b"", now)
        return self._apply(method, message.SerializeToString(), now)

    def _apply(self, method: str, request: bytes, now: int) -> bytes:
        outcome = self.core.execute(method, request, now)
        self.commands += 1
        if outcome.kind != "applied":
            raise SimulationError(
                f"{method} at {self.now_s:.0f} s: {outcome.kind}: {outcome.error()}"
            )
        return outcome.response

    def _request_id(self) -> str:
        return f"sim-{self.commands}"

    def _load_fleet(self) -> None:
        fleet = self.fleet
        for i in range(self.n_units):
            spec = pb.UnitSpec(
                unit_id=fleet.ids[i],
                agency=int(fleet.agency[i]),  # type: ignore[arg-type]
                unit_type=fleet.unit_type[i],
                capabilities=fleet.caps[i],
                home_area=fleet.home_area[i],
            )
            self._execute(
                "UpsertUnit", pb.UpsertUnitRequest(request_id=self._request_id(), unit=spec)
            )
            if not self.on_duty[i]:
                self._set_status(i, UnitStatus.OFF_DUTY)
        now = self.now_ms()
        batch = pb.UpdateLocationsRequest(
            unit_ids=list(fleet.ids),
            lat=fleet.lat.tolist(),
            lon=fleet.lon.tolist(),
            time_unix_ms=[now] * self.n_units,
        )
        self.core.update_locations(batch.SerializeToString(), now)

    def _set_status(self, unit: int, status: UnitStatus) -> None:
        self._execute(
            "SetUnitStatus",
            pb.SetUnitStatusRequest(
                request_id=self._request_id(),
                unit_id=self.fleet.ids[unit],
                status=int(status),  # type: ignore[arg-type]
            ),
        )

    def recommend(
        self, incident: Incident, k: int, *, diversions: bool = False
    ) -> pb.RecommendUnitsResponse:
        """The engine's ranking for every requirement group of `incident`, as of now; with
        `diversions`, units it may pre-empt from lower-grade incidents too."""
        request = pb.RecommendUnitsRequest(
            incident_id=incident.incident_id, k=k, include_diversions=diversions
        )
        answer = self.core.recommend(request.SerializeToString(), self.now_ms())
        return pb.RecommendUnitsResponse.FromString(answer)

    # ---------------------------------------------------------------------- the fleet

    def group_mask(self, group: Group) -> npt.NDArray[np.bool_]:
        """Units that can ever fill a place of `group`: agency, type and capabilities."""
        mask = self._mask_cache.get(group)
        if mask is None:
            fleet = self.fleet
            need = set(group.capabilities)
            types = set(group.unit_types)
            mask = np.array(
                [
                    int(fleet.agency[i]) == int(group.agency)
                    and (not types or fleet.unit_type[i] in types)
                    and need.issubset(fleet.caps[i])
                    for i in range(self.n_units)
                ],
                dtype=bool,
            )
            self._mask_cache[group] = mask
        return mask

    def free_for(self, group: Group) -> npt.NDArray[np.int64]:
        """Indices of the units free now that can fill a place of `group`."""
        return np.flatnonzero(self.group_mask(group) & self.available)

    def position(self, unit: int) -> tuple[float, float]:
        """Where the unit truly is now."""
        leg = self.legs[unit]
        if leg is None:
            return float(self.avl_lat[unit]), float(self.avl_lon[unit])
        return leg.at(self.now_s)

    # ---------------------------------------------------------------------- dispatch

    def dispatch(
        self, incident: Incident, picks: Sequence[tuple[int, int]], *, divert: bool = False
    ) -> list[Incident]:
        """Sends units to `incident`: (unit, group index) pairs, each filling a place still
        open in its group. One AssignUnits command. A unit on its way to another incident
        is taken from it only with `divert` (the engine checks the grades); the incidents
        units were taken from are returned, short of a unit again."""
        if not picks:
            return []
        for unit, g in picks:
            moving = not self.available[unit] and self._divertible(unit)
            if (not self.available[unit] and not (divert and moving)) or incident.needed[g] <= 0:
                raise SimulationError(
                    f"policy sent unit {self.fleet.ids[unit]} to group {g} of"
                    f" {incident.incident_id} (free={bool(self.available[unit])},"
                    f" needed={incident.needed[g]})"
                )
            incident.needed[g] -= 1
        self._execute(
            "AssignUnits",
            pb.AssignUnitsRequest(
                request_id=self._request_id(),
                incident_id=incident.incident_id,
                unit_ids=[self.fleet.ids[u] for u, _ in picks],
                allow_diversion=divert,
            ),
        )
        call = incident.call
        if incident.first_dispatch_s is None:
            incident.first_dispatch_s = self.now_s
        robbed: list[Incident] = []
        for unit, g in picks:
            if not self.available[unit]:
                old, old_group = self._assignments.pop(int(self.token[unit]))
                old.units.remove(unit)
                old.needed[old_group] += 1
                robbed.append(old)
                self.diversions += 1
            else:
                self.busy_since[unit] = self.now_s
            self.available[unit] = False
            self._tokens += 1
            self.token[unit] = self._tokens
            self._assignments[self._tokens] = (incident, g)
            incident.units.append(unit)
            lat, lon = self.position(unit)
            metres = float(distance_m(lat, lon, call.lat, call.lon))
            noise = (
                math.exp(self.travel_noise * self._noise(call.index, unit))
                if self.travel_noise
                else 1.0
            )
            drive = metres * self._circuity / (self.speed[unit] * self._blue[call.grade]) * noise
            depart = self.now_s + self._mobilise_s
            arrive = depart + drive
            self.legs[unit] = Leg(lat, lon, depart, call.lat, call.lon, arrive)
            self._at(depart, EN_ROUTE, unit, self._tokens)
            self._at(arrive, ARRIVE, unit, self._tokens)
        return robbed

    def _divertible(self, unit: int) -> bool:
        """On its way to an incident and not yet there: what the engine may pre-empt."""
        return int(self.token[unit]) in self._assignments and not self._arrived[unit]

    def _noise(self, call_index: int, unit: int) -> float:
        """A standard normal draw fixed by (seed, call, unit): the same journey costs the
        same under every policy."""
        return float(np.random.default_rng([self.seed, 2, call_index, unit]).standard_normal())

    # ---------------------------------------------------------------------- the loop

    def _at(self, t: float, kind: int, a: int, b: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, kind, self._seq, a, b))

    def run(self, policy: Policy, progress: Callable[[float], None] | None = None) -> None:
        """Serves every call with `policy`, then lets the backlog drain (at most DRAIN_S)."""
        for call in self.calls:
            self._at(call.t_s, CALL, call.index)
        end = (self.calls[-1].t_s if self.calls else 0.0) + DRAIN_S
        self._at(self.ping_s, PING, 0)
        next_report = 0.0
        while self._events:
            t, kind, _, a, b = heapq.heappop(self._events)
            if t > end:
                break
            self.now_s = t
            if kind == CALL:
                incident = self._create(self.calls[a])
                policy.on_call(self, incident)
            elif kind == PING:
                self._ping()
                if self._events:  # AVL reports while anything else is still to happen
                    self._at(t + self.ping_s, PING, 0)
            elif self.token[a] != b:
                continue  # a step of an assignment the unit was diverted from
            elif kind == EN_ROUTE:
                self._set_status(a, UnitStatus.EN_ROUTE)
            elif kind == ARRIVE:
                self._arrive(a, self._assignments[b][0])
            elif kind == CLEAR:
                self._clear(a, self._assignments.pop(b)[0])
                policy.on_unit_free(self, a)
            if progress is not None and t >= next_report:
                progress(min(1.0, t / end) if end > 0 else 1.0)
                next_report = t + end / 200.0
        for unit in np.flatnonzero(~np.isnan(self.busy_since)):
            self.busy_s[unit] += self.now_s - self.busy_since[unit]
        if progress is not None:
            progress(1.0)

    def _create(self, call: Call) -> Incident:
        incident_id = f"SIM-{call.index:07d}"
        request = pb.CreateIncidentRequest(
            request_id=self._request_id(),
            incident_id=incident_id,
            grade=int(call.grade),  # type: ignore[arg-type]
            incident_type=call.incident_type,
            location=pb.Location(lat=call.lat, lon=call.lon),
            requirements=[
                pb.RequirementGroup(
                    agency=int(g.agency),  # type: ignore[arg-type]
                    count=g.count,
                    unit_types=g.unit_types,
                    capabilities=g.capabilities,
                )
                for g in call.groups
            ],
        )
        self._execute("CreateIncident", request)
        incident = Incident(call, incident_id, [g.count for g in call.groups])
        self.incidents.append(incident)
        return incident

    def _arrive(self, unit: int, incident: Incident) -> None:
        self._set_status(unit, UnitStatus.ON_SCENE)
        self.legs[unit] = None
        self.avl_lat[unit], self.avl_lon[unit] = incident.call.lat, incident.call.lon
        self.avl_s[unit] = -math.inf
        if incident.first_arrival_s is None:
            incident.first_arrival_s = self.now_s
        self._arrived[unit] = True
        self._at(self.now_s + incident.call.job_s, CLEAR, unit, int(self.token[unit]))

    def _clear(self, unit: int, incident: Incident) -> None:
        self._set_status(unit, UnitStatus.AVAILABLE)
        self.available[unit] = True
        self._arrived[unit] = False
        self.token[unit] = 0
        self.busy_s[unit] += self.now_s - self.busy_since[unit]
        self.busy_since[unit] = np.nan
        incident.cleared += 1
        if incident.cleared == len(incident.units) and not incident.waiting:
            self._execute(
                "CloseIncident",
                pb.CloseIncidentRequest(
                    request_id=self._request_id(), incident_id=incident.incident_id
                ),
            )
            incident.closed = True
        lat, lon = incident.call.lat, incident.call.lon
        home_lat, home_lon = float(self.home_lat[unit]), float(self.home_lon[unit])
        metres = float(distance_m(lat, lon, home_lat, home_lon))
        drive = metres * self._circuity / self.speed[unit]
        self.legs[unit] = Leg(lat, lon, self.now_s, home_lat, home_lon, self.now_s + drive)

    def _ping(self) -> None:
        """AVL: every moving unit reports where it is now; a standing on-duty unit reports
        where it stands when it arrived there since its last report, or when its last report
        would be older than the trusted age by the next ping. So no position the engine ranks
        on is ever charged as stale, or left out, for want of a report."""
        moving = [u for u, leg in enumerate(self.legs) if leg is not None and self.now_s >= leg.t0]
        for u in moving:
            leg = self.legs[u]
            assert leg is not None
            self.avl_lat[u], self.avl_lon[u] = leg.at(self.now_s)
            if self.now_s >= leg.t1 and self.available[u]:
                self.legs[u] = None  # home again
        due = self.on_duty & (self.now_s - self.avl_s + self.ping_s > self._trusted_age_s)
        due[moving] = True
        report = np.flatnonzero(due)
        if report.size == 0:
            return
        self.avl_s[report] = self.now_s
        now = self.now_ms()
        batch = pb.UpdateLocationsRequest(
            unit_ids=[self.fleet.ids[u] for u in report],
            lat=self.avl_lat[report].tolist(),
            lon=self.avl_lon[report].tolist(),
            time_unix_ms=[now] * report.size,
        )
        self.core.update_locations(batch.SerializeToString(), now)
