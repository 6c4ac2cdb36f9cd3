"""Duty management through the real server and a real journal.

- Over gRPC (the session's server, wall clock): a crew of two authorised firearms officers
  makes its unit a firearms unit (GetUnit, RecommendUnits), UpsertUnit says the roster
  overrides it; bad rosters are refused naming the record and change nothing; GetPerson.
- With a controlled clock on a real SQLite / PostgreSQL journal: a skill expiring and a
  shift ending take effect at the tick at the boundary instant, not before; an AVAILABLE
  unit goes OFF_DUTY, a committed one is flagged as overtime (event and metric); the
  journal replays to the same state.
"""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from dispatch_core import DispatchCore
from dispatch_core.durability.records import summary, to_event
from dispatch_core.durability.recovery import open_pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.views.metrics import Metrics
from tests.apihelp import (
    WESTMINSTER,
    Clock,
    bad_fields,
    group,
    not_found,
    precondition_subjects,
    rid,
    uid,
    upsert,
)
from tests.durable import (
    Backend,
    backend_fixture,  # noqa: F401 (the fixture)
)

HOUR_MS = 3_600_000


def _ts(ms: int) -> Timestamp:
    t = Timestamp()
    t.FromMilliseconds(ms)
    return t


def person(person_id: str, *skills: tuple[str, int | None, int | None]) -> pb.UpsertPersonRequest:
    return pb.UpsertPersonRequest(
        request_id=rid(),
        person=pb.Person(
            person_id=person_id,
            name=f"PC {person_id}",
            skills=[
                pb.Skill(
                    capability=cap,
                    valid_from=_ts(start) if start is not None else None,
                    expiry=_ts(end) if end is not None else None,
                )
                for cap, start, end in skills
            ],
        ),
    )


def shift(shift_id: str, person_id: str, start: int, end: int) -> pb.UpsertShiftRequest:
    return pb.UpsertShiftRequest(
        request_id=rid(),
        shift=pb.Shift(
            shift_id=shift_id,
            person_id=person_id,
            start=_ts(start),
            end=_ts(end),
            role="operator",
            area="Westminster",
        ),
    )


def crew(
    crew_id: str, unit_id: str, people: list[str], window: tuple[int, int], firearms: int = 1
) -> pb.BookCrewRequest:
    start, end = window
    minimums = (
        [pb.CapabilityMinimum(capability="firearms", holders=firearms)] if firearms > 1 else []
    )
    return pb.BookCrewRequest(
        request_id=rid(),
        crew=pb.Crew(
            crew_id=crew_id,
            unit_id=unit_id,
            person_ids=people,
            start=_ts(start),
            end=_ts(end),
            minimums=minimums,
        ),
    )


def _armed_unit(stub: pb_grpc.DispatchServiceStub, now: int) -> tuple[str, str, str]:
    unit = upsert(stub, unit_type="arv", capabilities=["taser"])
    a, b = uid("P"), uid("P")
    stub.UpsertPerson(person(a, ("firearms", None, None), ("advanced_driver", None, None)))
    stub.UpsertPerson(person(b, ("firearms", None, None)))
    for p in (a, b):
        stub.UpsertShift(shift(uid("S"), p, now - HOUR_MS, now + 8 * HOUR_MS))
    booked = stub.BookCrew(crew(uid("C"), unit, [a, b], (now - HOUR_MS, now + 8 * HOUR_MS), 2))
    assert booked.created
    return unit, a, b


def test_a_crew_decides_what_its_unit_can_do_over_grpc(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    now = int(time.time() * 1000)
    unit, a, _ = _armed_unit(stub, now)
    got = stub.GetUnit(pb.GetUnitRequest(unit_id=unit)).unit
    assert list(got.capabilities) == ["firearms", "advanced_driver"], "the crew's, not the upsert's"
    assert got.shift_end.ToMilliseconds() == now + 8 * HOUR_MS
    answer = stub.RecommendUnits(
        pb.RecommendUnitsRequest(
            ad_hoc=pb.AdHocTarget(
                location=pb.Location(lat=WESTMINSTER[0], lon=WESTMINSTER[1]),
                grade=pb.GRADE_IMMEDIATE,
                requirements=[group(capabilities=["firearms"], count=1)],
            ),
            k=1000,
        )
    )
    assert unit in [c.unit_id for c in answer.groups[0].candidates]
    again = stub.UpsertUnit(
        pb.UpsertUnitRequest(
            request_id=rid(),
            unit=pb.UnitSpec(
                unit_id=unit, agency=pb.AGENCY_POLICE, unit_type="arv", capabilities=["dog"]
            ),
        )
    )
    assert list(again.roster_overridden_fields) == ["capabilities", "shift_start", "shift_end"]
    assert "dog" not in again.unit.capabilities
    read = stub.GetPerson(pb.GetPersonRequest(person_id=a))
    assert [s.capability for s in read.person.skills] == ["firearms", "advanced_driver"]
    assert len(read.shifts) == 1 and read.crews[0].unit_id == unit


def test_bad_rosters_are_refused_naming_the_record(stub: pb_grpc.DispatchServiceStub) -> None:
    now = int(time.time() * 1000)
    _, a, _ = _armed_unit(stub, now)
    before = stub.GetPerson(pb.GetPersonRequest(person_id=a))
    # Overlapping shifts of one person: the other shift is named.
    with pytest.raises(grpc.RpcError) as err:
        stub.UpsertShift(shift(uid("S"), a, now + 7 * HOUR_MS, now + 10 * HOUR_MS))
    assert precondition_subjects(err.value) == [f"shift/{before.shifts[0].shift_id}"]
    # A skill that expires before it is valid.
    with pytest.raises(grpc.RpcError) as err:
        stub.UpsertPerson(person(a, ("taser", now, now - 1)))
    assert bad_fields(err.value) == ["person.skills[0].expiry"]
    # A crew member not on shift.
    d = uid("P")
    stub.UpsertPerson(person(d))
    other = upsert(stub)
    with pytest.raises(grpc.RpcError) as err:
        stub.BookCrew(crew(uid("C"), other, [d], (now, now + HOUR_MS)))
    assert precondition_subjects(err.value) == [f"person/{d}"]
    # A person on two units at once.
    with pytest.raises(grpc.RpcError) as err:
        stub.BookCrew(crew(uid("C"), other, [a], (now, now + HOUR_MS)))
    assert precondition_subjects(err.value) == [f"crew/{before.crews[0].crew_id}"]
    # Unknown people; and nothing above changed the person.
    with pytest.raises(grpc.RpcError) as err:
        stub.GetPerson(pb.GetPersonRequest(person_id=uid("P")))
    assert not_found(err.value)[0] == "person"
    assert stub.GetPerson(pb.GetPersonRequest(person_id=a)) == before


T0 = 1_750_000_000_000


def test_expiry_and_shift_end_take_effect_at_the_boundary_tick_and_replay(
    backend: Backend,
) -> None:
    clock = Clock(T0)
    metrics = Metrics(process=False)
    pipeline, _ = open_pipeline(backend.config(), core=DispatchCore())
    pipeline._clock_ms = clock
    metrics.watch(pipeline)

    def run(method: str, request: object, response: type) -> object:
        return pipeline.command(method, request, response)

    try:
        for unit in ("ARV", "IRV"):
            run(
                "UpsertUnit",
                pb.UpsertUnitRequest(
                    request_id=rid(),
                    unit=pb.UnitSpec(unit_id=unit, agency=pb.AGENCY_POLICE, unit_type="arv"),
                ),
                pb.UpsertUnitResponse,
            )
        run("UpsertPerson", person("A", ("firearms", None, T0 + HOUR_MS)), pb.UpsertPersonResponse)
        run("UpsertPerson", person("B"), pb.UpsertPersonResponse)
        run("UpsertShift", shift("SA", "A", T0, T0 + 2 * HOUR_MS), pb.UpsertShiftResponse)
        run("UpsertShift", shift("SB", "B", T0, T0 + 2 * HOUR_MS), pb.UpsertShiftResponse)
        run("BookCrew", crew("CA", "ARV", ["A"], (T0, T0 + 2 * HOUR_MS)), pb.BookCrewResponse)
        run("BookCrew", crew("CB", "IRV", ["B"], (T0, T0 + 2 * HOUR_MS)), pb.BookCrewResponse)
        caps = lambda: list(  # noqa: E731
            pb.GetUnitResponse.FromString(
                pipeline.core.get_unit(pb.GetUnitRequest(unit_id="ARV").SerializeToString())
            ).unit.capabilities
        )
        assert caps() == ["firearms"]
        clock.ms = T0 + HOUR_MS - 1
        assert not pipeline.tick(), "not due a millisecond early"
        clock.ms = T0 + HOUR_MS
        assert pipeline.tick()
        assert caps() == [], "the authorisation lapsed at its expiry instant"
        # IRV is committed when its crew goes off; ARV is AVAILABLE.
        run(
            "CreateIncident",
            pb.CreateIncidentRequest(
                request_id=rid(),
                incident_id="I1",
                grade=pb.GRADE_SIGNIFICANT,
                incident_type="t",
                location=pb.Location(lat=WESTMINSTER[0], lon=WESTMINSTER[1]),
                requirements=[group()],
            ),
            pb.CreateIncidentResponse,
        )
        run(
            "AssignUnits",
            pb.AssignUnitsRequest(request_id=rid(), incident_id="I1", unit_ids=["IRV"]),
            pb.AssignUnitsResponse,
        )
        clock.ms = T0 + 2 * HOUR_MS
        assert pipeline.tick()
        tick = next(iter(pipeline.journal.entries_since(pipeline.journal.last_sequence() - 1)))
        changes = {c.unit.unit_id: c for c in to_event(tick).clock_ticked.roster_changes}
        assert changes["ARV"].unit.status == pb.UNIT_STATUS_OFF_DUTY and not changes["ARV"].overtime
        assert changes["IRV"].unit.status == pb.UNIT_STATUS_DISPATCHED and changes["IRV"].overtime
        assert "IRV on overtime" in summary(tick)
        sample = metrics.registry.get_sample_value
        assert sample("dispatch_roster_crew_off_total", {"result": "overtime"}) == 1.0
        assert sample("dispatch_roster_crew_off_total", {"result": "off_duty"}) == 1.0
        digest = pipeline.core.digest()
    finally:
        pipeline.journal.close()
    recovered, _ = open_pipeline(backend.config(), core=DispatchCore())
    try:
        assert recovered.core.digest() == digest
    finally:
        recovered.journal.close()
