"""The state machine through its Python binding: replay equality as a property.

Random command sequences (hostile values included) are executed live; then the journal
they would have written is replayed from an empty state, and from a snapshot plus the
tail. Both must give the identical state: the same snapshot bytes (the canonical encoding
of the whole state) and the same digest, with every answer again byte-equal. Every refused
command must leave the state exactly as it was, and the invariants must hold after every
step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch_core import DispatchCore, Refused
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from tests.apihelp import T0

UNITS = ["U0", "U1", "U2", "U3"]
INCIDENTS = ["I0", "I1", "I2"]
HOUR_MS = 3_600_000


@dataclass
class Journal:
    """What the journal would hold: (sequence, method, payload, result) per applied command."""

    entries: list[tuple[int, str, bytes, bytes]] = field(default_factory=list)
    #: (entries journaled so far, snapshot bytes) taken at one point of the run.
    snapshot: tuple[int, bytes] | None = None


def group(agency: int, count: int, caps: list[str]) -> pb.RequirementGroup:
    return pb.RequirementGroup(agency=agency, count=count, capabilities=caps)


def unit_spec(
    unit_id: str, agency: int, unit_type: str, caps: list[str], shift: int | None
) -> pb.UnitSpec:
    spec = pb.UnitSpec(unit_id=unit_id, agency=agency, unit_type=unit_type, capabilities=caps)
    if shift is not None:
        # Set field by field: a hostile client is not bound by the library's range check.
        spec.shift_start.seconds, spec.shift_start.nanos = divmod(shift, 1000)[0], 0
        spec.shift_end.seconds = (shift + 8 * HOUR_MS) // 1000
    return spec


request_ids = st.sampled_from(["r0", "r1", "r2"]) | st.uuids().map(str)
capabilities = st.lists(st.sampled_from(["taser", "dog", "firearms", "tazer"]), max_size=2)
# Mostly valid times, sometimes far outside the accepted range.
shifts = st.none() | st.sampled_from([T0 - HOUR_MS, T0, 0, -(2**62), 2**62])
coordinates = st.sampled_from([51.5, 51.51, -0.12, math.nan, 95.0])

upserts = st.builds(
    lambda rid, u, a, t, c, s: (
        "UpsertUnit",
        pb.UpsertUnitRequest(request_id=rid, unit=unit_spec(u, a, t, c, s)),
    ),
    request_ids,
    st.sampled_from([*UNITS, "", "x" * 65]),
    st.integers(0, 4),
    st.sampled_from(["irv", "arv", ""]),
    capabilities,
    shifts,
)
statuses = st.builds(
    lambda rid, u, s: (
        "SetUnitStatus",
        pb.SetUnitStatusRequest(request_id=rid, unit_id=u, status=s),
    ),
    request_ids,
    st.sampled_from([*UNITS, "ghost"]),
    st.integers(0, 8),
)
creates = st.builds(
    lambda rid, i, g, lat, groups: (
        "CreateIncident",
        pb.CreateIncidentRequest(
            request_id=rid,
            incident_id=i,
            grade=g,
            incident_type="t",
            location=pb.Location(lat=lat, lon=-0.12),
            requirements=groups,
        ),
    ),
    request_ids,
    st.sampled_from([*INCIDENTS, ""]),
    st.integers(0, 5),
    coordinates,
    st.lists(
        st.builds(group, st.integers(0, 3), st.integers(0, 3), capabilities), min_size=0, max_size=2
    ),
)
updates = st.builds(
    lambda rid, i, g, a: (
        "UpdateIncident",
        pb.UpdateIncidentRequest(request_id=rid, incident_id=i, grade=g, area=a),
    ),
    request_ids,
    st.sampled_from([*INCIDENTS, "INC-000001"]),
    st.integers(0, 5),
    st.sampled_from(["", "Camden", "y" * 70]),
)
closes = st.builds(
    lambda rid, i: ("CloseIncident", pb.CloseIncidentRequest(request_id=rid, incident_id=i)),
    request_ids,
    st.sampled_from([*INCIDENTS, "INC-000001", "INC-000002"]),
)
assigns = st.builds(
    lambda rid, i, units: (
        "AssignUnits",
        pb.AssignUnitsRequest(request_id=rid, incident_id=i, unit_ids=units),
    ),
    request_ids,
    st.sampled_from([*INCIDENTS, "INC-000001", "INC-000002"]),
    st.lists(st.sampled_from([*UNITS, "ghost"]), min_size=0, max_size=3),
)
ticks = st.just(("Tick", None))
commands = st.lists(
    st.tuples(
        st.one_of(upserts, statuses, creates, updates, closes, assigns, ticks),
        # Time steps: most forward, some repeated or backwards, some past the 24 h window.
        st.sampled_from([0, 1_000, 60_000, -5_000, 25 * HOUR_MS]),
    ),
    max_size=60,
)


def run_live(
    core: DispatchCore, script: list[tuple[tuple[str, object], int]], snapshot_at: int
) -> Journal:
    journal = Journal()
    now = T0
    for step, (command, dt) in enumerate(script):
        method, request = command
        now += dt
        if step == snapshot_at:
            journal.snapshot = (len(journal.entries), core.snapshot()[1])
        body = b"" if request is None else request.SerializeToString()  # type: ignore[attr-defined]
        before = core.digest()
        outcome = core.execute(method, body, now)
        if outcome.kind == "applied":
            journal.entries.append((outcome.sequence, method, outcome.payload, outcome.response))
        elif outcome.kind == "refused":
            assert core.digest() == before, f"refused {method} changed the state"
            assert isinstance(outcome.error(), Refused)
        else:
            # A retry answers as before and changes nothing.
            assert outcome.kind == "repeated", outcome
            assert core.digest() == before
        core.check_invariants()
    return journal


@settings(max_examples=150, deadline=None)
@given(script=commands, snapshot_at=st.integers(0, 60))
def test_replay_from_empty_and_from_a_snapshot_gives_the_same_state(
    script: list[tuple[tuple[str, object], int]], snapshot_at: int
) -> None:
    live = DispatchCore(request_capacity=3)
    journal = run_live(live, script, snapshot_at)
    want = live.snapshot()[1]

    replayed = DispatchCore(request_capacity=3)
    assert replayed.replay(journal.entries) == 0, "some answer differs on replay"
    assert replayed.snapshot()[1] == want
    assert replayed.digest() == live.digest()
    replayed.check_invariants()

    if journal.snapshot is not None:
        done, data = journal.snapshot
        restored = DispatchCore(request_capacity=3)
        assert restored.restore(data) == done
        assert restored.replay(journal.entries[done:]) == 0
        assert restored.snapshot()[1] == want
        assert restored.digest() == live.digest()


def test_a_retry_after_the_memory_window_is_answered_from_the_journal() -> None:
    core = DispatchCore(request_capacity=1)
    spec = pb.UnitSpec(unit_id="U0", agency=pb.AGENCY_POLICE, unit_type="irv")
    first = pb.UpsertUnitRequest(request_id="a", unit=spec).SerializeToString()
    applied = core.execute("UpsertUnit", first, T0)
    spec.unit_id = "U1"
    core.execute(
        "UpsertUnit", pb.UpsertUnitRequest(request_id="b", unit=spec).SerializeToString(), T0
    )
    # "a" was pushed out of memory: the core asks for the journal rather than re-applying.
    again = core.execute("UpsertUnit", first, T0 + 1)
    assert again.kind == "check_journal" and again.request_id == "a"
    hit = (first, applied.response, applied.sequence)
    repeated = core.execute("UpsertUnit", first, T0 + 1, journal_checked=True, journal=hit)
    assert (repeated.kind, repeated.response) == ("repeated", applied.response)
    other = pb.UpsertUnitRequest(
        request_id="a", unit=pb.UnitSpec(unit_id="U9", agency=1, unit_type="irv")
    )
    refused = core.execute(
        "UpsertUnit", other.SerializeToString(), T0 + 2, journal_checked=True, journal=hit
    )
    assert refused.kind == "refused"
    error = refused.error()
    assert error is not None and error.code == "INVALID_ARGUMENT"
    assert [f for f, _ in error.violations] == ["request_id"]
    assert core.sequence == 2


def test_the_clock_command_forgets_request_ids_after_24_hours_and_only_then() -> None:
    core = DispatchCore()
    request = pb.UpsertUnitRequest(
        request_id="a", unit=pb.UnitSpec(unit_id="U0", agency=pb.AGENCY_POLICE, unit_type="irv")
    ).SerializeToString()
    assert core.execute("UpsertUnit", request, T0).kind == "applied"
    assert not core.tick_due(T0 + 24 * HOUR_MS - 1)
    assert core.tick_due(T0 + 24 * HOUR_MS)
    # Until a tick applies, the answer is still remembered, whatever the command time.
    assert core.execute("UpsertUnit", request, T0 + 30 * HOUR_MS).kind == "repeated"
    tick = core.execute("Tick", b"", T0 + 30 * HOUR_MS)
    assert tick.kind == "applied"
    assert pb.ClockTick.FromString(tick.response).expired_request_ids == 1
    assert core.clock_ms == T0 + 30 * HOUR_MS
    assert not core.tick_due(T0 + 60 * HOUR_MS)
    # Forgotten: the same request_id is now a new command (an update of U0).
    again = core.execute("UpsertUnit", request, T0 + 30 * HOUR_MS)
    assert again.kind == "applied"
    assert not pb.UpsertUnitResponse.FromString(again.response).created
