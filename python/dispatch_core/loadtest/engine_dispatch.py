"""`loadtest --dispatcher engine`: the load generator follows the engine's dispatch policy.

The greedy generator (`ScenarioRun`) is today's client-side policy: each new incident asks
for its nearest units at once, and waiting incidents retry when units come free. Here the
generator has no policy of its own. One dispatch cycle at a time walks `ListPending` in the
engine's order (grade, then age) and, for each incident, sends exactly what RecommendUnits
proposes (its team, and for the places an IMMEDIATE incident's team leaves short the best
diverted candidates: `proposals.py`) through AssignUnits. A
cycle runs when an incident is created, when units come free, and on the sweep timer.

Units move between incidents when the engine diverts them, so their lifecycle (EN_ROUTE,
ON_SCENE) is driven per unit, each step carrying the assignment it belongs to: a step of an
assignment the unit has since been diverted from is dropped, not sent.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import uuid
from typing import Any

import grpc

from dispatch_core.loadtest.generator import Flow, ScenarioRun
from dispatch_core.proposals import picks
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Grade, UnitStatus

#: Pending incidents read per cycle.
PAGE = 100
#: A cycle ends after this many incidents in a row get no unit: the rest of the queue is
#: waiting for the same free units, and asking again before any frees up is wasted load.
EMPTY_STREAK = 8


@dataclasses.dataclass(frozen=True, slots=True)
class Seat:
    """One unit's place on one assignment: its lifecycle steps carry it, and run only while
    the unit still holds that assignment."""

    flow: Flow
    unit: str
    token: int
    eta: float
    assigned: int


@dataclasses.dataclass(frozen=True, slots=True)
class Proposal:
    """What RecommendUnits proposed for one incident: the team, and the units of it that
    are diverted (unit -> the incident they leave)."""

    units: tuple[str, ...]
    etas: tuple[float, ...]
    diverted: dict[str, str]


class EngineRun(ScenarioRun):
    """A `ScenarioRun` whose dispatch decisions are the engine's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_id: dict[str, Flow] = {}
        #: unit -> (flow index, assignment token) of its current assignment.
        self._owner: dict[str, tuple[int, int]] = {}
        self._tokens = itertools.count(1)
        self._cycling = False
        self._again = False
        #: Units on scene per flow, in arrival order (the custody unit is the first).
        self._arrived: dict[int, list[str]] = {}
        self.cycles = 0
        self.diversions = 0

    # -- triggers: creation, units freed, the sweep

    def _create(self, flow: Flow, req: pb.CreateIncidentRequest, intended: int) -> None:
        self._by_id[flow.incident_id] = flow
        super()._create(flow, req, intended)

    def _created(self, flow: Flow, now: int) -> None:
        self._cycle(now)  # the engine's queue decides when it gets units

    def _wake(self, freed: int, now: int) -> None:
        self._cycle(now)

    # -- the dispatch cycle

    def _cycle(self, now: int) -> None:
        """Starts a cycle, or asks the running one to be followed by another."""
        if self._cycling:
            self._again = True
            return
        self._cycling, self._again = True, False
        self.cycles += 1
        assert self.loop is not None
        req = pb.ListPendingRequest(page_size=PAGE)

        def done(fut: grpc.Future, t: int) -> None:
            if fut.code() != grpc.StatusCode.OK:
                self._end_cycle(t)
                return
            mine = [p for p in fut.result().incidents if p.incident.incident_id in self._by_id]
            self._next(mine, 0, 0, t)

        self.loop.call("ListPending", self.stub.ListPending, req, now, done)

    def _end_cycle(self, now: int) -> None:
        self._cycling = False
        if self._again:
            self._cycle(now)

    def _next(self, queue: list[Any], i: int, empty: int, now: int) -> None:
        if i >= len(queue) or empty >= EMPTY_STREAK:
            self._end_cycle(now)
            return
        assert self.loop is not None
        flow = self._by_id[queue[i].incident.incident_id]
        immediate = flow.kind.grade == Grade.IMMEDIATE
        req = pb.RecommendUnitsRequest(
            incident_id=flow.incident_id, k=max(self.sc.k, flow.kind.units + 2)
        )
        req.include_diversions = immediate

        def recommended(fut: grpc.Future, t: int) -> None:
            if fut.code() != grpc.StatusCode.OK:
                self._next(queue, i + 1, empty + 1, t)
                return
            chosen = [
                p
                for p in picks(fut.result(), diversions=immediate)
                if p.unit_id.startswith(self.unit_prefix)
            ]
            if not chosen:
                flow.requeues += 1
                self._next(queue, i + 1, empty + 1, t)
                return
            proposal = Proposal(
                tuple(p.unit_id for p in chosen),
                tuple(p.eta_seconds for p in chosen),
                {p.unit_id: p.diverted_from for p in chosen if p.diverted_from},
            )
            self._assign_team(flow, proposal, (queue, i), t)

        self.loop.call("RecommendUnits", self.stub.RecommendUnits, req, now, recommended)

    def _assign_team(
        self, flow: Flow, proposal: Proposal, place: tuple[list[Any], int], now: int
    ) -> None:
        """AssignUnits of the proposed team, then the cycle goes on at `place` + 1."""
        assert self.loop is not None
        queue, i = place
        req = pb.AssignUnitsRequest(
            request_id=uuid.uuid4().hex, incident_id=flow.incident_id, unit_ids=proposal.units
        )
        req.allow_diversion = any(u in proposal.diverted for u in proposal.units)

        def done(fut: grpc.Future, t: int) -> None:
            code = fut.code()
            if code == grpc.StatusCode.OK:
                self._assigned(flow, proposal, t)
            elif code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED):
                flow.conflicts += 1  # a unit changed between the proposal and the assignment
            else:
                flow.failed = f"AssignUnits {code.name}"
            self._next(queue, i + 1, 0, t)

        self.loop.call("AssignUnits", self.stub.AssignUnits, req, now, done)

    # -- per-unit lifecycle

    def _assigned(self, flow: Flow, proposal: Proposal, now: int) -> None:
        held = tuple(u for u in flow.units if self._owner.get(u, (-1, 0))[0] == flow.i)
        if not held and not flow.on_scene_done:
            # First units, or the first since all were diverted away: the response runs
            # from here (the report's time to assign plus the ETA).
            flow.assign_done = now
            flow.eta_s = min(proposal.etas)
        flow.units = held + proposal.units
        flow.etas = proposal.etas
        loop = self.loop
        assert loop is not None
        for unit, eta in zip(proposal.units, proposal.etas, strict=True):
            if unit in proposal.diverted:
                self.diversions += 1
                old = self._by_id.get(proposal.diverted[unit])
                if old is not None:
                    old.units = tuple(u for u in old.units if u != unit)
            seat = Seat(flow, unit, next(self._tokens), eta, now)
            self._owner[unit] = (flow.i, seat.token)
            t = now + self._wall(min(self.sc.mobilisation_s, eta / 2))
            loop.at(t, functools.partial(self._unit_en_route, seat))

    def _holds(self, seat: Seat) -> bool:
        return self._owner.get(seat.unit) == (seat.flow.i, seat.token)

    def _unit_en_route(self, seat: Seat, intended: int) -> None:
        if not self._holds(seat):
            return  # diverted, or the incident closed, since this step was planned
        loop = self.loop
        assert loop is not None

        def done(fut: grpc.Future, now: int) -> None:
            at = max(now, seat.assigned + self._wall(seat.eta))
            loop.at(at, functools.partial(self._unit_on_scene, seat))

        self._status(seat.unit, UnitStatus.EN_ROUTE, intended, done)

    def _unit_on_scene(self, seat: Seat, intended: int) -> None:
        if not self._holds(seat):
            return
        flow, loop = seat.flow, self.loop
        assert loop is not None

        def done(fut: grpc.Future, now: int) -> None:
            if fut.code() != grpc.StatusCode.OK or not self._holds(seat):
                return
            self._arrived.setdefault(flow.i, []).append(seat.unit)
            if not flow.on_scene_done:
                flow.on_scene_done = now
                # The job runs from the first arrival; units still travelling are released
                # when the incident closes.
                loop.at(now + self._wall(flow.job_s), functools.partial(self._end_job, flow))

        self._status(seat.unit, UnitStatus.ON_SCENE, intended, done)

    def _end_job(self, flow: Flow, intended: int) -> None:
        arrived = [
            u for u in self._arrived.pop(flow.i, []) if self._owner.get(u, (-1, 0))[0] == flow.i
        ]
        for u in flow.units:
            if self._owner.get(u, (-1, 0))[0] == flow.i:
                del self._owner[u]
        if not flow.committed or not arrived:
            self._close(flow, intended)
            return
        self._custody(flow, arrived[0], intended)
