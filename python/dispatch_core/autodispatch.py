"""Auto-dispatch: for the grades it is switched on for (`serve --auto-dispatch IMMEDIATE`),
the server assigns what the engine proposes without waiting for a dispatcher.

Off by default: a control room decides whether a machine may send units. When on, a
background thread works the pending queue of those grades in the engine's order (grade,
then age) whenever a journal entry lands (a new incident, a unit freed) and at least once a
second, and for each incident assigns the whole team RecommendUnits proposes (diversions
for the places the team leaves short of IMMEDIATE incidents, when `diversions` is on:
`proposals.py`) through the same AssignUnits
command a dispatcher would send. So every automatic decision is an ordinary journal entry,
replayed like any other, visible in WatchEvents, and its actor names the rule that made
it: `server:auto-dispatch:<grade>`. A dispatcher's own assignment that lands first simply
makes the automatic one fail its checks (nothing is applied twice).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Collection

from dispatch_core._core import Refused
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.proposals import picks
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Grade

log = logging.getLogger(__name__)

#: The actor of automatic assignments: the rule's grade follows.
ACTOR_PREFIX = "server:auto-dispatch:"
#: Pending incidents looked at per pass.
PAGE = 100
#: Seconds between passes after one that assigned nothing.
IDLE_GAP_S = 0.1


class AutoDispatcher:
    """Assigns the engine's proposals for pending incidents of `grades` (see the module)."""

    def __init__(
        self,
        pipeline: Pipeline,
        grades: Collection[Grade],
        *,
        diversions: bool = True,
        interval_s: float = 1.0,
    ) -> None:
        self.pipeline = pipeline
        self.grades = frozenset(grades)
        self.diversions = diversions
        self.interval_s = interval_s
        self.assigned = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auto-dispatch", daemon=True)

    def start(self) -> AutoDispatcher:
        if self.grades:
            self.pipeline.events.listen(lambda entry: self._wake.set())
            self._thread.start()
            log.warning(
                "auto-dispatch is on for %s: the server assigns the engine's proposals itself",
                ", ".join(sorted(g.name for g in self.grades)),
            )
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set() or self.pipeline.failed is not None:
                return
            try:
                made = self.work_queue()
            except Exception:  # one bad pass must not end automatic dispatch
                log.exception("auto-dispatch pass failed")
                made = 0
            if not made:
                # Nothing could be sent: in a surge every journal entry would start another
                # futile pass of up to PAGE rankings. Wait a little before looking again.
                self._stop.wait(IDLE_GAP_S)

    def work_queue(self) -> int:
        """One pass over the pending queue of the auto grades; returns assignments made."""
        core = self.pipeline.core
        request = pb.ListPendingRequest(
            grades=[int(g) for g in sorted(self.grades)],  # type: ignore[misc]
            page_size=PAGE,
        )
        page = pb.ListPendingResponse.FromString(
            core.list_pending(request.SerializeToString(), self.pipeline.now_ms())
        )
        made = 0
        for pending in page.incidents:
            if self._stop.is_set():
                break
            made += self._dispatch(pending.incident)
        self.assigned += made
        return made

    def _dispatch(self, incident: pb.Incident) -> int:
        grade = Grade(incident.grade)
        divert = self.diversions and grade == Grade.IMMEDIATE
        ask = pb.RecommendUnitsRequest(incident_id=incident.incident_id, include_diversions=divert)
        answer = pb.RecommendUnitsResponse.FromString(
            self.pipeline.core.recommend(ask.SerializeToString(), self.pipeline.now_ms())
        )
        chosen = picks(answer, diversions=divert)
        if not chosen:
            return 0
        assign = pb.AssignUnitsRequest(
            request_id=uuid.uuid4().hex,
            incident_id=incident.incident_id,
            unit_ids=[p.unit_id for p in chosen],
            allow_diversion=any(p.diverted_from for p in chosen),
        )
        try:
            self.pipeline.execute(
                "AssignUnits",
                assign.SerializeToString(),
                actor=ACTOR_PREFIX + grade.name,
            )
        except Refused as exc:
            # A dispatcher (or a unit's status change) got there first: the next pass sees
            # the queue as it is now.
            log.info("auto-dispatch of %s refused: %s", incident.incident_id, exc)
            return 0
        return 1


def parse_grades(text: str) -> frozenset[Grade]:
    """`IMMEDIATE,SIGNIFICANT` -> grades; empty or `none` -> none. ValueError names the bad
    one."""
    text = text.strip()
    if not text or text.lower() == "none":
        return frozenset()
    grades = set()
    for name in (part.strip().upper() for part in text.split(",")):
        if name not in Grade.__members__:
            known = ", ".join(g.name for g in Grade)
            raise ValueError(f"--auto-dispatch: unknown grade {name!r} (known: {known})")
        grades.add(Grade[name])
    return frozenset(grades)
