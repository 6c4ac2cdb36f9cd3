"""Durability through the real server process, on both journal backends: idempotency across
restarts, the single-writer lock, damaged journals at start-up, `dispatch-core replay`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import psycopg
import pytest

from dispatch_core.durability.journal.postgres import advisory_key
from dispatch_core.durability.recovery import EXIT_JOURNAL_FATAL, EXIT_JOURNAL_REFUSED
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.startup import EXIT_JOURNAL_CORRUPT
from tests.apihelp import T0
from tests.durable import (
    PG_DSN,
    Backend,
    backend_fixture,  # noqa: F401 (the fixture)
    incident_request,
    launch,
    stub,
    unit_request,
)

ALICE = (("x-dispatch-actor", "alice"),)


def _seed(target_stub: object, n: int) -> None:
    for i in range(n):
        target_stub.UpsertUnit(unit_request(f"r-unit-{i}", f"U{i}"), metadata=ALICE)  # type: ignore[attr-defined]


def test_a_retry_after_a_restart_gets_the_first_answer(backend: Backend, tmp_path: Path) -> None:
    server = launch(backend, tmp_path)
    try:
        channel, api = stub(server)
        with channel:
            _seed(api, 2)
            first = api.CreateIncident(incident_request("r-create"))
        server.kill()  # no final snapshot: the answer must come from the journal itself
        server = launch(backend, tmp_path)
        channel, api = stub(server)
        with channel:
            again = api.CreateIncident(incident_request("r-create"))
            assert again == first
            # Nothing happened twice: still one incident.
            assert len(api.ListIncidents(pb.ListIncidentsRequest()).incidents) == 1
            with pytest.raises(grpc.RpcError) as err:
                api.CreateIncident(incident_request("r-create", incident_id="OTHER"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "request_id" in (err.value.details() or "")
            # The server-chosen id counter carried on past the recovered incident.
            fresh = api.CreateIncident(incident_request("r-create-2"))
            assert fresh.incident.incident_id != first.incident.incident_id
        assert server.stop() == 0, server.log()
        # After a graceful stop (a final snapshot), retries are still answered the same.
        server = launch(backend, tmp_path)
        channel, api = stub(server)
        with channel:
            assert api.CreateIncident(incident_request("r-create")) == first
    finally:
        server.kill()


def test_a_second_server_on_the_same_journal_refuses_to_start(
    backend: Backend,
    tmp_path: Path,
) -> None:
    first = launch(backend, tmp_path / "a")
    try:
        second = launch(backend, tmp_path / "b", wait=False)
        code = second.process.wait(60)
        assert code == EXIT_JOURNAL_REFUSED, second.log()
        assert "already open by another writer" in second.log()
        # The first one is unaffected.
        channel, api = stub(first)
        with channel:
            _seed(api, 1)
    finally:
        first.kill()


def _corrupt(backend: Backend, sequence_sql: str) -> None:
    # The payload changes but the checksum does not: what bit rot looks like.
    backend.execute(
        f"UPDATE journal_entries SET payload = x'00' WHERE sequence = ({sequence_sql})",
        f"UPDATE {{s}}.entries SET payload = '\\x00'::bytea WHERE sequence = ({sequence_sql})",
    )


def test_a_corrupt_last_entry_is_dropped_with_a_warning(backend: Backend, tmp_path: Path) -> None:
    server = launch(backend, tmp_path)
    channel, api = stub(server)
    with channel:
        _seed(api, 4)
    server.kill()
    table = "journal_entries" if backend.kind == "sqlite" else "{s}.entries"
    _corrupt(backend, f"SELECT max(sequence) FROM {table}")
    server = launch(backend, tmp_path)
    try:
        assert "dropping" in server.log() and "last entry 4" in server.log(), server.log()
        channel, api = stub(server)
        with channel:
            api.GetUnit(pb.GetUnitRequest(unit_id="U2"))
            with pytest.raises(grpc.RpcError) as err:
                api.GetUnit(pb.GetUnitRequest(unit_id="U3"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            # The sequence is reused by the next command, so the journal stays gap-free.
            _seed(api, 5)
    finally:
        server.kill()


def test_corruption_before_the_tail_refuses_start_up(backend: Backend, tmp_path: Path) -> None:
    server = launch(backend, tmp_path)
    channel, api = stub(server)
    with channel:
        _seed(api, 5)
    server.kill()
    _corrupt(backend, "SELECT 2")
    refused = launch(backend, tmp_path, wait=False)
    code = refused.process.wait(60)
    assert code == EXIT_JOURNAL_CORRUPT, refused.log()
    assert "corrupt at sequence 2" in refused.log(), refused.log()
    assert "refusing to start" in refused.log()


def test_replay_prints_the_journal_and_the_rebuilt_state(backend: Backend, tmp_path: Path) -> None:
    server = launch(backend, tmp_path)
    try:
        channel, api = stub(server)
        with channel:
            _seed(api, 3)
            created = api.CreateIncident(incident_request("r-inc"), metadata=ALICE)
            incident_id = created.incident.incident_id
            api.AssignUnits(
                pb.AssignUnitsRequest(
                    request_id="r-assign", incident_id=incident_id, unit_ids=["U1"]
                )
            )
        command = [sys.executable, "-m", "dispatch_core.cli", "replay", *backend.args()]
        # Replay only reads: it runs beside the live server, which goes on serving.
        beside = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert beside.returncode == 0, beside.stderr
        channel, api = stub(server)
        with channel:
            assert api.GetUnit(pb.GetUnitRequest(unit_id="U1")).unit.unit_id == "U1"
    finally:
        server.kill()
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    # What replay showed beside the server is what it shows once the server is gone.
    assert beside.stdout.split("units:")[1] == done.stdout.split("units:")[1]
    lines = done.stdout.splitlines()
    entries = [line.split() for line in lines if line[:8].strip().isdigit()]
    assert [int(e[0]) for e in entries] == [1, 2, 3, 4, 5]
    assert entries[3][2:5] == ["unauthenticated:alice", "CreateIncident", "r-inc"]
    assert entries[4][2:5] == ["unauthenticated:anonymous", "AssignUnits", "r-assign"]
    assert lines[6].endswith(f"incident {incident_id} <- U1"), lines[6]
    state = done.stdout.split("# state rebuilt")[1]
    assert "AVAILABLE        2  U0 U2" in state
    assert "DISPATCHED       1  U1" in state
    assert f"{incident_id}  IMMEDIATE" in state and "units: U1" in state


def test_a_failed_commit_stops_writes_and_exits_non_zero(tmp_path: Path) -> None:
    # A real failure, no mock: the PostgreSQL session the journal commits on is terminated
    # (what a database restart or a failover does to it), so the next commit fails.
    store = Backend("postgres", tmp_path / "data")
    try:
        server = launch(store, tmp_path)
        channel, api = stub(server)
        with channel:
            _seed(api, 1)
            key = advisory_key(store.schema) & 0xFFFF_FFFF_FFFF_FFFF
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                (killed,) = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
                    (key >> 32, key & 0xFFFF_FFFF),
                ).fetchone() or (0,)
            assert killed == 1
            with pytest.raises(grpc.RpcError) as err:
                api.UpsertUnit(unit_request("r-after", "U9"), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "retry with the same request_id" in (err.value.details() or "")
        assert server.process.wait(30) == EXIT_JOURNAL_FATAL, server.log()
        assert "journal failed" in server.log()
        # What was acknowledged is there after a restart; the failed command can be retried.
        server = launch(store, tmp_path)
        channel, api = stub(server)
        with channel:
            api.GetUnit(pb.GetUnitRequest(unit_id="U0"))
            api.UpsertUnit(unit_request("r-after", "U9"), timeout=10)
        server.kill()
    finally:
        store.drop()


def test_positions_moved_after_the_last_command_survive_a_graceful_restart(
    backend: Backend, tmp_path: Path
) -> None:
    """Pings are not journaled: the final snapshot must carry them even when no command
    came after them."""
    server = launch(backend, tmp_path)
    try:
        channel, api = stub(server)
        with channel:
            _seed(api, 1)
            for lat, time_ms in ((51.50, T0 + 1_000), (51.52, T0 + 2_000)):
                api.UpdateLocations(
                    pb.UpdateLocationsRequest(
                        unit_ids=["U0"], lat=[lat], lon=[-0.12], time_unix_ms=[time_ms]
                    )
                )
        assert server.stop() == 0, server.log()
        server = launch(backend, tmp_path)
        channel, api = stub(server)
        with channel:
            unit = api.GetUnit(pb.GetUnitRequest(unit_id="U0")).unit
        assert (unit.location.lat, unit.location_time.ToMilliseconds()) == (51.52, T0 + 2_000)
    finally:
        server.kill()
