"""Dispatch policies: who decides which unit goes where, on identical demand.

- `closest-idle`, the baseline most CAD systems still run, defined exactly: when a call
  arrives, each place of its requirement gets the nearest AVAILABLE unit by straight-line
  distance (from its last AVL report) that meets the group's agency, type and capability,
  whatever the grade; places no free unit can fill wait, first-in first-out, and a unit
  that becomes free goes to the oldest waiting call it can serve.
- `engine`: the engine's ranking decides (ETA, cross-area, shift and specialist costs):
  a call takes the engine's top candidates for each group, no unit twice; calls that could
  not be covered wait in the engine's pending order (grade, then age), so a freed unit
  serves the most urgent waiting call first.
"""

from __future__ import annotations

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.simulate.world import Incident, World, distance_m
from dispatch_core.types import Grade


class ClosestIdle:
    """Nearest free unit by straight line, grade ignored; waiting calls first-in first-out."""

    name = "closest-idle"

    def __init__(self) -> None:
        self._waiting: list[Incident] = []

    def on_call(self, world: World, incident: Incident) -> None:
        self._fill(world, incident)
        if incident.waiting:
            self._waiting.append(incident)

    def on_unit_free(self, world: World, unit: int) -> None:
        for incident in list(self._waiting):
            groups = incident.call.groups
            if any(
                n > 0 and world.group_mask(groups[g])[unit] for g, n in enumerate(incident.needed)
            ):
                self._fill(world, incident)
            if not incident.waiting:
                self._waiting.remove(incident)
            if not world.available[unit]:
                return

    @staticmethod
    def _fill(world: World, incident: Incident) -> None:
        call = incident.call
        picks: list[tuple[int, int]] = []
        taken: set[int] = set()
        for g, group in enumerate(call.groups):
            free = [u for u in world.free_for(group).tolist() if u not in taken]
            if not free or incident.needed[g] <= 0:
                continue
            metres = distance_m(call.lat, call.lon, world.avl_lat[free], world.avl_lon[free])
            # Ties broken by unit id, as the engine breaks its own.
            order = sorted(
                range(len(free)), key=lambda j: (float(metres[j]), world.fleet.ids[free[j]])
            )
            for j in order[: incident.needed[g]]:
                picks.append((free[j], g))
                taken.add(free[j])
        world.dispatch(incident, picks)


class EngineGreedy:
    """The engine's ranking per call; waiting calls served in grade-then-age order."""

    name = "engine"

    def __init__(self) -> None:
        self._waiting: list[Incident] = []

    def on_call(self, world: World, incident: Incident) -> None:
        self._fill(world, incident)
        if incident.waiting:
            self._waiting.append(incident)
            self._waiting.sort(key=lambda i: i.order)

    def on_unit_free(self, world: World, unit: int) -> None:
        for incident in list(self._waiting):
            groups = incident.call.groups
            if any(
                n > 0 and world.group_mask(groups[g])[unit] for g, n in enumerate(incident.needed)
            ):
                self._fill(world, incident)
            if not incident.waiting:
                self._waiting.remove(incident)
            if not world.available[unit]:
                return

    def _fill(self, world: World, incident: Incident) -> None:
        k = max(5, max(incident.needed) * 2)
        answer = world.recommend(incident, k)
        world.dispatch(incident, _team_of(world, incident, answer))


def _team_of(
    world: World, incident: Incident, answer: pb.RecommendUnitsResponse
) -> list[tuple[int, int]]:
    """Each group's best candidates for its open places, no unit twice."""
    picks: list[tuple[int, int]] = []
    taken: set[int] = set()
    for rec in answer.groups:
        g = rec.group_index
        want = incident.needed[g]
        for cand in rec.candidates:
            if want <= 0:
                break
            unit = world.index_of[cand.unit_id]
            if unit in taken:
                continue
            picks.append((unit, g))
            taken.add(unit)
            want -= 1
    return picks


class EnginePreempt(EngineGreedy):
    """`engine`, and an IMMEDIATE call the free units cannot reach soonest may take a unit
    on its way to a lower-grade incident (the engine's diversion candidates, with their
    diversion cost); the incident it came from waits again, in grade-then-age order."""

    name = "engine+preempt"

    def _fill(self, world: World, incident: Incident) -> None:
        immediate = incident.call.grade == Grade.IMMEDIATE
        k = max(5, max(incident.needed) * 2)
        answer = world.recommend(incident, k, diversions=immediate)
        picks = _team_of(world, incident, answer)
        robbed = world.dispatch(incident, picks, divert=immediate)
        for old in robbed:
            if old not in self._waiting:
                self._waiting.append(old)
        self._waiting.sort(key=lambda i: i.order)


POLICIES = {p.name: p for p in (ClosestIdle, EngineGreedy, EnginePreempt)}
