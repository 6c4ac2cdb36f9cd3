"""Time and idempotency across restarts, on both journal backends.

- The clock command is journaled when a time-driven change is due, and recovery makes that
  change at the same instant: a recovered state equals the live one, digest for digest.
- An answer pushed out of memory is still given again, from the journal, after a restart.
- A command refused for hostile input is in no journal and in no state, after a SIGTERM
  restart (final snapshot) and after a SIGKILL one (replay) alike.
- A snapshot of the old JSON format is skipped when the journal still holds every entry,
  and refused, naming the format, when it does not.
- A closed incident past the retention leaves memory at a clock tick and is answered from
  the journal's archive, before and after a restart.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from dispatch_core import DispatchCore
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.durability.records import summary, to_event
from dispatch_core.durability.recovery import RecoveryError, open_pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.server import start
from tests.apihelp import Clock, rid
from tests.durable import (
    Backend,
    backend_fixture,  # noqa: F401 (the fixture)
    incident_request,
    launch,
    stub,
    unit_request,
)

HOUR_MS = 3_600_000


def _commands(pipeline: Pipeline, prefix: str) -> None:
    pipeline.command("UpsertUnit", unit_request(f"{prefix}-u", f"{prefix}U"), pb.UpsertUnitResponse)
    created = pipeline.command(
        "CreateIncident", incident_request(f"{prefix}-c"), pb.CreateIncidentResponse
    )
    pipeline.command(
        "AssignUnits",
        pb.AssignUnitsRequest(
            request_id=f"{prefix}-a",
            incident_id=created.incident.incident_id,
            unit_ids=[f"{prefix}U"],
        ),
        pb.AssignUnitsResponse,
    )


def test_the_clock_command_is_journaled_and_replayed_at_the_same_instant(
    backend: Backend,
) -> None:
    clock = Clock()
    pipeline, _ = open_pipeline(backend.config(), core=DispatchCore())
    pipeline._clock_ms = clock
    try:
        _commands(pipeline, "a")
        clock.ms += 20 * HOUR_MS
        _commands(pipeline, "b")
        assert not pipeline.tick(), "nothing is due before 24 h"
        clock.ms += 5 * HOUR_MS
        assert pipeline.tick(), "the first three answers are past the window"
        assert not pipeline.tick(), "and nothing more is due"
        last = pipeline.journal.last_sequence()
        tick = next(iter(pipeline.journal.entries_since(last - 1)))
        assert tick.method == "Tick" and tick.actor == "server:clock"
        event = to_event(tick)
        assert event.WhichOneof("change") == "clock_ticked"
        assert event.clock_ticked.expired_request_ids == 3
        assert event.clock_ticked.time.ToMilliseconds() == clock.ms
        assert "3 request_ids" in summary(tick)
        live = pipeline.core.digest()
        # Forgotten: the first command's request_id is now a new command.
        again = pipeline.command("UpsertUnit", unit_request("a-u", "aU"), pb.UpsertUnitResponse)
        assert not again.created
    finally:
        pipeline.journal.close()

    recovered, report = open_pipeline(backend.config(), core=DispatchCore())
    try:
        assert report.replayed == last + 1 and report.answers_differ == 0
        expected = Pipeline(DispatchCore())
        expected.core.replay(
            [
                (e.sequence, e.method, e.payload, e.result)
                for e in recovered.journal.entries_since(0)
            ]
        )
        assert recovered.core.digest() == expected.core.digest()
        # And the state before the last command equals the live one at the tick.
        before = DispatchCore()
        before.replay(
            [
                (e.sequence, e.method, e.payload, e.result)
                for e in recovered.journal.entries_since(0)
                if e.sequence <= last
            ]
        )
        assert before.digest() == live
    finally:
        recovered.journal.close()


def test_an_answer_beyond_the_memory_window_is_given_again_after_a_restart(
    backend: Backend, tmp_path: Path
) -> None:
    server = launch(backend, tmp_path, "--request-memory", "2")
    try:
        channel, api = stub(server)
        with channel:
            first = api.CreateIncident(incident_request("r-first"))
            for i in range(4):
                api.CreateIncident(incident_request(f"r-more-{i}"))
            # Pushed out of memory already: answered from the journal.
            assert api.CreateIncident(incident_request("r-first")) == first
        server.kill()
        server = launch(backend, tmp_path, "--request-memory", "2")
        channel, api = stub(server)
        with channel:
            assert api.CreateIncident(incident_request("r-first")) == first
            assert len(api.ListIncidents(pb.ListIncidentsRequest()).incidents) == 5
            with pytest.raises(grpc.RpcError) as err:
                api.CreateIncident(incident_request("r-first", incident_id="ELSE"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert server.stop() == 0, server.log()
    finally:
        server.kill()


def _hostile(api: object) -> None:
    spec = pb.UnitSpec(unit_id="H1", agency=pb.AGENCY_POLICE, unit_type="irv")
    spec.shift_end.seconds = 2**62
    with pytest.raises(grpc.RpcError) as err:
        api.UpsertUnit(pb.UpsertUnitRequest(request_id=rid(), unit=spec))  # type: ignore[attr-defined]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    report = api.UpdateLocations(  # type: ignore[attr-defined]
        pb.UpdateLocationsRequest(unit_ids=["U1"], lat=[51.5], lon=[-0.12], time_unix_ms=[2**62])
    )
    assert report.skipped_bad_time == 1


@pytest.mark.parametrize("restart", ["sigterm", "sigkill"])
def test_hostile_input_leaves_nothing_behind_across_restarts(
    backend: Backend, tmp_path: Path, restart: str
) -> None:
    server = launch(backend, tmp_path)
    try:
        channel, api = stub(server)
        with channel:
            api.UpsertUnit(unit_request(rid(), "U1"))
            _hostile(api)
            before = api.ListUnits(pb.ListUnitsRequest()).units
        if restart == "sigterm":
            assert server.stop() == 0, server.log()
        else:
            server.kill()
        server = launch(backend, tmp_path)
        channel, api = stub(server)
        with channel:
            units = api.ListUnits(pb.ListUnitsRequest()).units
            assert units == before
            assert [u.unit_id for u in units] == ["U1"]
            assert api.GetUnit(pb.GetUnitRequest(unit_id="U1")).unit.unit_id == "U1"
        assert server.stop() == 0, server.log()
    finally:
        server.kill()


def test_an_old_json_snapshot_is_skipped_or_refused_naming_its_format(backend: Backend) -> None:
    pipeline, _ = open_pipeline(backend.config(), core=DispatchCore())
    try:
        _commands(pipeline, "a")
        live = pipeline.core.digest()
        last = pipeline.journal.last_sequence()
        pipeline.journal.write_snapshot(last, b'{"format": 1, "sequence": %d}' % last)
    finally:
        pipeline.journal.close()
    recovered, report = open_pipeline(backend.config(), core=DispatchCore())
    try:
        # Every entry is still kept: the state is rebuilt from them alone.
        assert (report.snapshot_sequence, report.replayed) == (0, last)
        assert recovered.core.digest() == live
        recovered.journal.truncate_before(last + 1)
    finally:
        recovered.journal.close()
    with pytest.raises(RecoveryError, match="format 1"):
        open_pipeline(backend.config(), core=DispatchCore())


def test_a_closed_incident_past_the_retention_is_answered_from_the_archive(
    backend: Backend, tmp_path: Path
) -> None:
    clock = Clock()
    running = start("127.0.0.1", 0, tmp_path / "data", journal=backend.config(), tick_interval_s=0)
    running.pipeline._clock_ms = clock
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            api = pb_grpc.DispatchServiceStub(channel)
            old = api.CreateIncident(incident_request("r-old")).incident
            closed = api.CloseIncident(
                pb.CloseIncidentRequest(request_id="r-close", incident_id=old.incident_id)
            ).incident
            clock.ms += 23 * HOUR_MS
            kept = api.CreateIncident(incident_request("r-kept")).incident
            assert not running.pipeline.tick()
            clock.ms += 2 * HOUR_MS
            assert running.pipeline.tick()
            listed = api.ListIncidents(pb.ListIncidentsRequest()).incidents
            assert [i.incident_id for i in listed] == [kept.incident_id]
            # Out of memory, not out of reach: the incident as it was when it left.
            got = api.GetIncident(pb.GetIncidentRequest(incident_id=old.incident_id)).incident
            assert got == closed
            with pytest.raises(grpc.RpcError) as err:
                api.GetIncident(pb.GetIncidentRequest(incident_id="NEVER"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        live = running.pipeline.core.digest()
    finally:
        running.stop(0)
    recovered, _ = open_pipeline(backend.config(), core=DispatchCore())
    try:
        assert recovered.core.digest() == live
        request = pb.GetIncidentRequest(incident_id=old.incident_id).SerializeToString()
        assert pb.GetIncidentResponse.FromString(recovered.get_incident(request)).incident == closed
    finally:
        recovered.journal.close()
