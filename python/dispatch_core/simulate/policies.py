"""Dispatch policies: who decides which unit goes where, on identical demand.

- `closest-idle`, the baseline most CAD systems still run, defined exactly: when a call
  arrives, each place of its requirement gets the nearest AVAILABLE unit by straight-line
  distance (from its last AVL report) that meets the group's agency, type and capability,
  whatever the grade; places no free unit can fill wait, first-in first-out, and a unit
  that becomes free goes to the oldest waiting call it can serve.
- `engine`: the engine decides: a call gets the team RecommendUnits proposes (one unit
  per place, no unit twice, the whole plan on scene soonest); calls that could not be
  covered wait in the engine's pending order (grade, then age), so a freed unit serves the
  most urgent waiting call first.
- `engine+preempt`: `engine`, and the places an IMMEDIATE call's team leaves short take the
  engine's best diverted candidates (`proposals.py`).
"""

from __future__ import annotations

from dispatch_core.proposals import Pick, picks
from dispatch_core.simulate.world import Incident, World, distance_m
from dispatch_core.types import Grade


class _Queueing:
    """A policy with a queue of calls waiting for units: a call is filled as it arrives
    (`_fill`), what it still needs waits, and a freed unit goes down the queue in its order
    to the first call it can serve. `ordered`: grade then age; otherwise arrival order."""

    name = ""
    ordered = False

    def __init__(self) -> None:
        self._waiting: list[Incident] = []

    def _fill(self, world: World, incident: Incident) -> None:
        raise NotImplementedError

    def on_call(self, world: World, incident: Incident) -> None:
        self._fill(world, incident)
        if incident.waiting:
            self._waiting.append(incident)
            if self.ordered:
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


class ClosestIdle(_Queueing):
    """Nearest free unit by straight line, grade ignored; waiting calls first-in first-out."""

    name = "closest-idle"

    def _fill(self, world: World, incident: Incident) -> None:
        call = incident.call
        chosen: list[tuple[int, int]] = []
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
                chosen.append((free[j], g))
                taken.add(free[j])
        world.dispatch(incident, chosen)


class EngineGreedy(_Queueing):
    """The engine's team per call; waiting calls served in grade-then-age order."""

    name = "engine"
    ordered = True

    def _fill(self, world: World, incident: Incident) -> None:
        k = max(5, max(incident.needed) * 2)
        answer = world.recommend(incident, k)
        world.dispatch(incident, _placed(world, incident, picks(answer)))


def _placed(world: World, incident: Incident, chosen: list[Pick]) -> list[tuple[int, int]]:
    """The engine's picks as (unit, group) for the places still open: the engine counts
    the incident's places itself, so its team never exceeds them."""
    out = []
    open_places = list(incident.needed)
    for p in chosen:
        if open_places[p.group_index] > 0:
            open_places[p.group_index] -= 1
            out.append((world.index_of[p.unit_id], p.group_index))
    return out


class EnginePreempt(EngineGreedy):
    """`engine`, and the places an IMMEDIATE call's team leaves short take units on their
    way to lower-grade incidents (the engine's diversion candidates, with their diversion
    cost); the incident a unit leaves waits again, in grade-then-age order."""

    name = "engine+preempt"

    def _fill(self, world: World, incident: Incident) -> None:
        immediate = incident.call.grade == Grade.IMMEDIATE
        k = max(5, max(incident.needed) * 2)
        answer = world.recommend(incident, k, diversions=immediate)
        chosen = _placed(world, incident, picks(answer, diversions=immediate))
        robbed = world.dispatch(incident, chosen, divert=immediate)
        for old in robbed:
            if old not in self._waiting:
                self._waiting.append(old)
        self._waiting.sort(key=lambda i: i.order)


POLICIES = {p.name: p for p in (ClosestIdle, EngineGreedy, EnginePreempt)}
