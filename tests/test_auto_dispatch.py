"""Auto-dispatch (`serve --auto-dispatch IMMEDIATE`): the server assigns the engine's
proposal for pending incidents of the chosen grades itself, as an ordinary journaled
AssignUnits whose actor names the rule; other grades wait for a dispatcher; a restart
replays the automatic assignment like any other; a bad grade is refused at start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.types import Grade, IncidentStatus
from tests.apihelp import create_incident, upsert
from tests.conftest import ServerProcess, start_server

ARGS = ("--auto-dispatch", "IMMEDIATE", "--response-plans", "none")


def _stub(server: ServerProcess) -> tuple[grpc.Channel, pb_grpc.DispatchServiceStub]:
    channel = grpc.insecure_channel(server.target)
    return channel, pb_grpc.DispatchServiceStub(channel)  # type: ignore[no-untyped-call]


def _assigned(stub: pb_grpc.DispatchServiceStub, incident_id: str, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        incident = stub.GetIncident(pb.GetIncidentRequest(incident_id=incident_id)).incident
        if incident.assigned_unit_ids or time.monotonic() > deadline:
            return list(incident.assigned_unit_ids)
        time.sleep(0.05)


def test_immediate_incidents_are_assigned_by_the_server_and_journaled(tmp_path: Path) -> None:
    server = start_server(tmp_path, extra_args=ARGS)
    try:
        channel, stub = _stub(server)
        with channel:
            unit = upsert(stub)
            significant = create_incident(stub, grade=Grade.SIGNIFICANT)
            # SIGNIFICANT is not an auto grade: it waits (give the dispatcher a full pass).
            assert _assigned(stub, significant.incident_id, 1.5) == []
            immediate = create_incident(stub, grade=Grade.IMMEDIATE)
            assert _assigned(stub, immediate.incident_id, 10.0) == [unit]
            assert (
                stub.GetIncident(
                    pb.GetIncidentRequest(incident_id=significant.incident_id)
                ).incident.status
                == IncidentStatus.OPEN
            )
            events = stub.WatchEvents(pb.WatchEventsRequest(from_sequence=0), timeout=5)
            assignments = []
            for event in events:
                if event.WhichOneof("change") == "units_assigned":
                    assignments.append(event)
                    break
            (event,) = assignments
            assert event.actor == "server:auto-dispatch:IMMEDIATE"
            assert event.units_assigned.incident.incident_id == immediate.incident_id
    finally:
        assert server.stop() == 0
    # The automatic decision is a journal entry: replayed at restart like any other.
    again = start_server(tmp_path, extra_args=("--response-plans", "none"))
    try:
        channel, stub = _stub(again)
        with channel:
            got = stub.GetIncident(pb.GetIncidentRequest(incident_id=immediate.incident_id))
            assert list(got.incident.assigned_unit_ids) == [unit]
    finally:
        assert again.stop() == 0


def test_an_unknown_grade_is_refused_at_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dispatch_core",
            "serve",
            "--auto-dispatch",
            "URGENT",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "unknown grade 'URGENT'" in done.stderr
