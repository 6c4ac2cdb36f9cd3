"""`proposals.picks`: how a client of the engine turns a RecommendUnitsResponse into the
units to assign. The team is the proposal; with diversions (IMMEDIATE), a diverted
candidate that scores better takes a team member's place, and places the team left short
take the best diverted candidates; no unit twice."""

from __future__ import annotations

from dispatch_core.proposals import Pick, picks
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb


def candidate(unit: str, score: float, diverted_from: str = "") -> pb.Candidate:
    return pb.Candidate(
        unit_id=unit, eta_seconds=score, score=score, diverted_from_incident_id=diverted_from
    )


def answer(
    groups: list[list[pb.Candidate]],
    team: list[tuple[str, int, float]],
    short: dict[int, int] | None = None,
) -> pb.RecommendUnitsResponse:
    return pb.RecommendUnitsResponse(
        groups=[pb.GroupRecommendation(group_index=i, candidates=c) for i, c in enumerate(groups)],
        team=[pb.TeamMember(unit_id=u, group_index=g, eta_seconds=s, score=s) for u, g, s in team],
        shortfalls=[pb.Shortfall(group_index=g, missing=n) for g, n in (short or {}).items()],
    )


def test_without_diversions_the_team_is_sent_as_it_is() -> None:
    a = answer([[candidate("D", 60, "S1"), candidate("A", 300)]], [("A", 0, 300)])
    assert picks(a) == [Pick("A", 0, 300)]


def test_a_better_scoring_diverted_unit_takes_the_worst_place() -> None:
    a = answer(
        [[candidate("D", 60, "S1"), candidate("A", 200), candidate("B", 400)]],
        [("A", 0, 200), ("B", 0, 400)],
    )
    assert sorted(p.unit_id for p in picks(a, diversions=True)) == ["A", "D"]
    (diverted,) = [p for p in picks(a, diversions=True) if p.diverted_from]
    assert diverted == Pick("D", 0, 60, "S1")


def test_a_worse_scoring_diverted_unit_leaves_the_team_alone() -> None:
    a = answer([[candidate("A", 200), candidate("D", 500, "S1")]], [("A", 0, 200)])
    assert picks(a, diversions=True) == [Pick("A", 0, 200)]


def test_short_places_take_diverted_units_once_each() -> None:
    # Two groups short of one place each; D heads both lists but is sent once.
    a = answer(
        [[candidate("D", 60, "S1"), candidate("E", 90, "S2")], [candidate("D", 60, "S1")]],
        [],
        short={0: 1, 1: 1},
    )
    chosen = picks(a, diversions=True)
    assert [(p.unit_id, p.group_index) for p in chosen] == [("D", 0)]
    assert len({p.unit_id for p in chosen}) == len(chosen)
