"""The pending queue, pre-emption and acknowledgement deadlines through the real server.

- ListPending over gRPC: queue order (grade, then age), paging with the signed token,
  grade and area filters, wait and best ETA; a bad token names `page_token`.
- A diversion over gRPC: refused without the opt-in, refused naming both incidents for an
  equal grade or a non-IMMEDIATE target (nothing changes), accepted for a lower grade in
  one journal entry that WatchEvents shows; the old incident is pending again.
- Replay after SIGKILL gives the same incidents and queue.
- Acknowledgement deadlines with a controlled clock: flagged once at the tick past the
  deadline, in the journal's event, the metric and the picture, and replayed the same.

Each API test works in an area of its own (the session's server is shared), so the area
filter isolates its queue.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from dispatch_core import DispatchCore
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.durability.records import summary, to_event
from dispatch_core.durability.recovery import open_pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.types import Grade, UnitStatus
from dispatch_core.views.metrics import Metrics
from dispatch_core.views.picture import CoverageSpec, compute_picture
from tests.apihelp import (
    WESTMINSTER,
    Clock,
    assign,
    create_incident,
    group,
    precondition_subjects,
    rid,
    set_status,
    upsert,
)
from tests.durable import (
    Backend,
    backend_fixture,  # noqa: F401 (the fixture)
    launch,
    stub,
)


def area() -> str:
    return f"Area-{uuid.uuid4().hex[:10]}"


def pending(api: pb_grpc.DispatchServiceStub, where: str, **kw: object) -> list[pb.PendingIncident]:
    """The whole queue of one area, page by page."""
    out: list[pb.PendingIncident] = []
    token = ""
    while True:
        page = api.ListPending(pb.ListPendingRequest(area=where, page_token=token, **kw))  # type: ignore[arg-type]
        out.extend(page.incidents)
        if not page.next_page_token:
            return out
        token = page.next_page_token


def ids(queue: list[pb.PendingIncident]) -> list[str]:
    return [p.incident.incident_id for p in queue]


def test_the_queue_is_ordered_by_grade_then_age_and_pages_and_filters(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    where = area()
    unit = upsert(stub, at=WESTMINSTER)
    s_old = create_incident(stub, grade=Grade.SIGNIFICANT, area=where).incident_id
    i_two = create_incident(stub, grade=Grade.IMMEDIATE, area=where, groups=[group(count=2)])
    e_new = create_incident(stub, grade=Grade.EXTENDED, area=where).incident_id
    s_new = create_incident(stub, grade=Grade.SIGNIFICANT, area=where).incident_id
    expected = [i_two.incident_id, s_old, s_new, e_new]
    assert ids(pending(stub, where)) == expected
    assert ids(pending(stub, where, page_size=1)) == expected
    significant = pending(stub, where, grades=[pb.GRADE_SIGNIFICANT], page_size=1)
    assert ids(significant) == [s_old, s_new]
    # One of two units: still pending, with one counted and the best ETA for the rest.
    assign(stub, i_two.incident_id, unit)
    head = pending(stub, where)[0]
    assert head.incident.incident_id == i_two.incident_id
    assert (head.required_units, head.attached_units, head.unfilled_group_index) == (2, 1, 0)
    assert head.wait_seconds >= 0
    # Stood down before arriving: the unit is free again, and it is the best candidate.
    set_status(stub, unit, UnitStatus.AVAILABLE)
    head = pending(stub, where)[0]
    assert head.attached_units == 0 and head.best_candidate.unit_id != ""
    assert head.best_candidate.eta_seconds > 0
    with pytest.raises(grpc.RpcError) as err:
        stub.ListPending(pb.ListPendingRequest(page_token="not-a-token"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (err.value.details() or "")


def test_a_diversion_is_refused_unless_allowed_and_lower_graded_and_moves_the_unit_once(
    stub: pb_grpc.DispatchServiceStub,
) -> None:
    where = area()
    unit = upsert(stub, at=WESTMINSTER)
    job = create_incident(stub, grade=Grade.SIGNIFICANT, area=where).incident_id
    other_s = create_incident(stub, grade=Grade.SIGNIFICANT, area=where).incident_id
    assign(stub, job, unit)
    set_status(stub, unit, UnitStatus.EN_ROUTE)
    urgent = create_incident(stub, grade=Grade.IMMEDIATE, area=where).incident_id
    # The recommendation shows the diversion and its cost.
    ranked = stub.RecommendUnits(
        pb.RecommendUnitsRequest(incident_id=urgent, k=1000, include_diversions=True)
    )
    offered = {c.unit_id: c for c in ranked.groups[0].candidates}
    assert offered[unit].diverted_from_incident_id == job
    assert offered[unit].breakdown.diversion_cost_seconds > 0
    # Without the opt-in: the old refusal.
    with pytest.raises(grpc.RpcError) as err:
        stub.AssignUnits(
            pb.AssignUnitsRequest(request_id=rid(), incident_id=urgent, unit_ids=[unit])
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # To a target that is not IMMEDIATE: refused naming both incidents, nothing changed.
    with pytest.raises(grpc.RpcError) as err:
        stub.AssignUnits(
            pb.AssignUnitsRequest(
                request_id=rid(), incident_id=other_s, unit_ids=[unit], allow_diversion=True
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert precondition_subjects(err.value) == [f"incident/{job}"]
    assert job in (err.value.details() or "") and other_s in (err.value.details() or "")
    got = stub.GetUnit(pb.GetUnitRequest(unit_id=unit)).unit
    assert (got.status, got.incident_id) == (pb.UNIT_STATUS_EN_ROUTE, job)
    # Allowed: one command moves it.
    answer = stub.AssignUnits(
        pb.AssignUnitsRequest(
            request_id=rid(), incident_id=urgent, unit_ids=[unit], allow_diversion=True
        )
    )
    assert [(d.unit_id, d.from_incident_id) for d in answer.diversions] == [(unit, job)]
    assert list(answer.incident.attached_unit_ids) == [unit]
    old = stub.GetIncident(pb.GetIncidentRequest(incident_id=job)).incident
    assert list(old.attached_unit_ids) == [] and list(old.assigned_unit_ids) == [unit]
    got = stub.GetUnit(pb.GetUnitRequest(unit_id=unit)).unit
    assert (got.status, got.incident_id) == (pb.UNIT_STATUS_DISPATCHED, urgent)
    assert ids(pending(stub, where)) == [job, other_s]
    # From an IMMEDIATE incident to another: refused.
    urgent_2 = create_incident(stub, grade=Grade.IMMEDIATE, area=where).incident_id
    with pytest.raises(grpc.RpcError) as err:
        stub.AssignUnits(
            pb.AssignUnitsRequest(
                request_id=rid(), incident_id=urgent_2, unit_ids=[unit], allow_diversion=True
            )
        )
    assert precondition_subjects(err.value) == [f"incident/{urgent}"]


def test_a_diversion_is_one_journal_entry_and_survives_a_crash(
    backend: Backend, tmp_path: Path
) -> None:
    server = launch(backend, tmp_path)
    try:
        channel, api = stub(server)
        with channel:
            unit = upsert(api, "DIV-1", at=WESTMINSTER)
            job = create_incident(api, grade=Grade.EXTENDED, incident_id="JOB").incident_id
            assign(api, job, unit)
            urgent = create_incident(api, grade=Grade.IMMEDIATE, incident_id="URGENT").incident_id
            before = api.WatchEvents(pb.WatchEventsRequest(from_now=True))
            api.AssignUnits(
                pb.AssignUnitsRequest(
                    request_id="divert-1", incident_id=urgent, unit_ids=[unit], allow_diversion=True
                )
            )
            event = next(before)
            before.cancel()
            assert event.method == "AssignUnits"
            diverted = event.units_assigned.diversions
            assert [(d.unit_id, d.from_incident_id) for d in diverted] == [(unit, job)]
            live = [
                api.GetIncident(pb.GetIncidentRequest(incident_id=i)).incident
                for i in (job, urgent)
            ]
            queue = ids(pending(api, ""))
        server.kill()
        server = launch(backend, tmp_path)
        channel, api = stub(server)
        with channel:
            again = [
                api.GetIncident(pb.GetIncidentRequest(incident_id=i)).incident
                for i in (job, urgent)
            ]
            assert again == live
            assert ids(pending(api, "")) == queue == [job]
            # The retry gets the first answer; the unit is not moved twice.
            retry = api.AssignUnits(
                pb.AssignUnitsRequest(
                    request_id="divert-1", incident_id=urgent, unit_ids=[unit], allow_diversion=True
                )
            )
            assert [d.from_incident_id for d in retry.diversions] == [job]
        assert server.stop() == 0, server.log()
    finally:
        server.kill()


def _unit(pipeline: Pipeline, unit_id: str, lat: float) -> None:
    pipeline.command(
        "UpsertUnit",
        pb.UpsertUnitRequest(
            request_id=rid(),
            unit=pb.UnitSpec(unit_id=unit_id, agency=pb.AGENCY_POLICE, unit_type="irv"),
        ),
        pb.UpsertUnitResponse,
    )
    pipeline.update_locations(
        pb.UpdateLocationsRequest(
            unit_ids=[unit_id], lat=[lat], lon=[WESTMINSTER[1]], time_unix_ms=[pipeline.now_ms()]
        ).SerializeToString()
    )


def test_an_unacknowledged_dispatch_is_flagged_once_and_replayed_the_same(
    backend: Backend,
) -> None:
    clock = Clock()
    timeouts = {"IMMEDIATE": 60_000, "SIGNIFICANT": 180_000}
    metrics = Metrics(process=False)
    pipeline, _ = open_pipeline(backend.config(), core=DispatchCore(ack_timeout_ms=timeouts))
    pipeline._clock_ms = clock
    metrics.watch(pipeline)
    try:
        _unit(pipeline, "SLOW", WESTMINSTER[0])
        _unit(pipeline, "NEXT", WESTMINSTER[0] + 0.01)
        created = pipeline.command(
            "CreateIncident",
            pb.CreateIncidentRequest(
                request_id=rid(),
                incident_id="ACK-I",
                grade=pb.GRADE_IMMEDIATE,
                incident_type="t",
                location=pb.Location(lat=WESTMINSTER[0], lon=WESTMINSTER[1]),
                requirements=[group()],
            ),
            pb.CreateIncidentResponse,
        )
        pipeline.command(
            "AssignUnits",
            pb.AssignUnitsRequest(
                request_id=rid(), incident_id=created.incident.incident_id, unit_ids=["SLOW"]
            ),
            pb.AssignUnitsResponse,
        )
        clock.advance(59.9)
        assert not pipeline.tick(), "not due before the deadline"
        clock.advance(0.6)
        assert pipeline.tick()
        tick = next(iter(pipeline.journal.entries_since(pipeline.journal.last_sequence() - 1)))
        flagged = to_event(tick).clock_ticked.overdue_acknowledgements
        assert [(o.unit_id, o.incident_id, o.grade) for o in flagged] == [
            ("SLOW", "ACK-I", pb.GRADE_IMMEDIATE)
        ]
        assert flagged[0].deadline.ToMilliseconds() == clock.ms - 500
        assert flagged[0].proposed.unit_id == "NEXT"
        assert "SLOW overdue" in summary(tick)
        clock.advance(600)
        assert not pipeline.tick(), "each dispatch is flagged once"
        counted = metrics.registry.get_sample_value(
            "dispatch_ack_overdue_total", {"grade": "IMMEDIATE"}
        )
        assert counted == 1.0
        picture = compute_picture(pipeline.core, CoverageSpec(), clock.ms)
        assert sum(a.overdue_acknowledgements for a in picture.areas) == 1
        last = pipeline.journal.last_sequence()
    finally:
        pipeline.journal.close()

    recovered, report = open_pipeline(backend.config(), core=DispatchCore(ack_timeout_ms=timeouts))
    try:
        assert report.last_sequence == last
        # Pings are not journaled, so the recovered state lacks positions; against a replay
        # from scratch it is exact, and the flag is there after both.
        scratch = DispatchCore(ack_timeout_ms=timeouts)
        scratch.replay(
            [
                (e.sequence, e.method, e.payload, e.result)
                for e in recovered.journal.entries_since(0)
            ]
        )
        assert recovered.core.digest() == scratch.digest()
        for core in (recovered.core, scratch):
            assert len(core.overdue_ack_positions()[0]) == 1
            assert not core.tick_due(clock.ms), "replayed flags are not raised again"
        again = next(iter(recovered.journal.entries_since(last - 1)))
        assert to_event(again).clock_ticked.overdue_acknowledgements[0].unit_id == "SLOW"
    finally:
        recovered.journal.close()
