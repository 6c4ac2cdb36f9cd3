"""A write's audit record survives a crash: the server is SIGKILLed right after acknowledged
commands whose records were still queued (a 30 s audit interval makes sure of it), and the
next start rebuilds them from the journal, once each; on a real SQLite file and the real
PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

from dispatch_core.durability.journal.audit import AuditQuery, AuditRow, open_audit_store
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.security.audit_reconcile import FROM_JOURNAL
from tests.durable import (
    Backend,
    backend_fixture,  # noqa: F401 (the fixture)
    incident_request,
    launch,
    stub,
    unit_request,
)

SERVICE = "dispatch.v1.DispatchService/"


def _trail(backend: Backend) -> list[AuditRow]:
    store = open_audit_store(backend.spec, backend.data_dir, backend.schema, read_only=True)
    try:
        rows: list[AuditRow] = []
        while page := store.query(AuditQuery(after_id=rows[-1].id if rows else 0, limit=1000)):
            rows += page
        return rows
    finally:
        store.close()


def _commands(server_stub: object, tag: str) -> dict[str, tuple[str, str]]:
    """Sends units, incidents and assignments; returns request_id -> (method, resource)
    for every acknowledged one."""
    acked: dict[str, tuple[str, str]] = {}
    for n in range(4):
        rid, unit = f"{tag}-u{n}-{uuid.uuid4().hex[:6]}", f"{tag}-U{n}"
        server_stub.UpsertUnit(unit_request(rid, unit), timeout=10)  # type: ignore[attr-defined]
        acked[rid] = ("UpsertUnit", unit)
    for n in range(2):
        rid = f"{tag}-i{n}-{uuid.uuid4().hex[:6]}"
        answer = server_stub.CreateIncident(incident_request(rid), timeout=10)  # type: ignore[attr-defined]
        acked[rid] = ("CreateIncident", answer.incident.incident_id)
        rid = f"{tag}-a{n}-{uuid.uuid4().hex[:6]}"
        server_stub.AssignUnits(  # type: ignore[attr-defined]
            pb.AssignUnitsRequest(
                request_id=rid, incident_id=answer.incident.incident_id, unit_ids=[f"{tag}-U{n}"]
            ),
            timeout=10,
        )
        acked[rid] = ("AssignUnits", f"{tag}-U{n}")
    return acked


def _check(rows: list[AuditRow], acked: dict[str, tuple[str, str]]) -> list[AuditRow]:
    """Each acknowledged command has exactly one record of success, naming what it touched;
    returns those records."""
    mine = [r for r in rows if r.request_id in acked and r.code == "OK"]
    counts = Counter(r.request_id for r in mine)
    assert set(counts) == set(acked), f"missing: {sorted(set(acked) - set(counts))}"
    assert max(counts.values()) == 1, f"recorded twice: {counts.most_common(3)}"
    for row in mine:
        method, resource = acked[row.request_id]
        assert row.method == SERVICE + method
        assert row.principal == "local"
        assert resource in row.unit_ids + row.incident_ids, row
        assert row.sequence > 0
    sequences = [r.sequence for r in rows if r.sequence and r.code == "OK"]
    assert len(sequences) == len(set(sequences)), "a journal entry recorded twice"
    return mine


def test_acknowledged_writes_are_audited_after_a_sigkill(backend: Backend, tmp_path: Path) -> None:
    # A 30 s interval: nothing the first server records reaches the store before the kill.
    server = launch(backend, tmp_path, "--audit-interval", "30")
    channel, dispatch = stub(server)
    with channel:
        acked = _commands(dispatch, "k1")
        dispatch.GetUnit(pb.GetUnitRequest(unit_id="k1-U0"), timeout=10)
    server.kill()

    server = launch(backend, tmp_path)
    assert "rebuilt from journal entries" in server.log()
    channel, dispatch = stub(server)
    with channel:
        later = _commands(dispatch, "k2")
    assert server.stop() == 0

    rows = _trail(backend)
    rebuilt = _check(rows, acked)
    # The first server wrote none of them: every one came back from the journal.
    assert {r.peer for r in rebuilt} == {FROM_JOURNAL}
    assert all(r.roles == "" for r in rebuilt)
    # The read was not a write: its record is the accepted loss.
    assert not [r for r in rows if r.method == SERVICE + "GetUnit"]
    # The second server's records were written live, once, after a graceful stop.
    live = _check(rows, later)
    assert all(r.peer != FROM_JOURNAL and r.roles == "admin" for r in live)

    # A start after a graceful stop finds nothing to rebuild.
    server = launch(backend, tmp_path)
    assert "rebuilt from journal entries" not in server.log()
    assert server.stop() == 0
    assert len(_trail(backend)) == len(rows)
