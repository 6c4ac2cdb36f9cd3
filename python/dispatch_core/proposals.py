"""What to send for one incident, read off a RecommendUnitsResponse: the one place where a
client of the engine (auto-dispatch, the load generator's engine dispatcher, the
simulator's engine policies) turns a recommendation into an AssignUnits.

The engine's proposal is its `team`. The team never takes a unit from another incident; a
diversion stays an explicit choice, made here when `diversions` is on (IMMEDIATE
incidents): the per-group lists rank free and diverted candidates together by score (ETA
plus every cost term, the diversion cost included), so in each group a diverted candidate
takes the place of the team's worst-scoring member when it scores better, and fills the
places the team left short. AssignUnits must then carry `allow_diversion`.
"""

from __future__ import annotations

import dataclasses

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb


@dataclasses.dataclass(frozen=True, slots=True)
class Pick:
    """One unit to send: the group whose place it fills, its ETA, and the incident it is
    diverted from ("" when it is free)."""

    unit_id: str
    group_index: int
    eta_seconds: float
    diverted_from: str = ""


def picks(answer: pb.RecommendUnitsResponse, *, diversions: bool = False) -> list[Pick]:
    """The team; with `diversions`, better-scoring diverted candidates in its places."""
    team = [(m.score, Pick(m.unit_id, m.group_index, m.eta_seconds)) for m in answer.team]
    if not diversions:
        return [p for _, p in team]
    short = {s.group_index: s.missing for s in answer.shortfalls}
    used = {p.unit_id for _, p in team}
    for group in answer.groups:
        g = group.group_index
        mine = sorted((x for x in team if x[1].group_index == g), key=lambda x: x[0])
        for cand in group.candidates:  # best score first
            if not cand.diverted_from_incident_id or cand.unit_id in used:
                continue
            pick = Pick(cand.unit_id, g, cand.eta_seconds, cand.diverted_from_incident_id)
            if short.get(g, 0) > 0:
                short[g] -= 1
            elif mine and cand.score < mine[-1][0]:
                team.remove(mine.pop())
            else:
                break  # the rest score worse still
            team.append((cand.score, pick))
            mine = sorted([*mine, (cand.score, pick)], key=lambda x: x[0])
            used.add(cand.unit_id)
    return [p for _, p in team]
