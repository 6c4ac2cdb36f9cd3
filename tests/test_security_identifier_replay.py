"""The identifier grammar governs live requests, not history: a journal written before it,
holding ids it now refuses, still recovers on both real backends, while the same ids sent
live are refused naming the field."""

from __future__ import annotations

import struct
from pathlib import Path

import grpc
import pytest

from dispatch_core.durability.journal import NewEntry
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from tests.durable import (
    Backend,
    backend_fixture,  # noqa: F401 (the fixture)
    incident_request,
    launch,
    stub,
    unit_request,
)

#: Ids an older build accepted (non-empty, at most 64 bytes) that the grammar refuses.
OLD_IDS = ("MD\t21", " padded", "RTL\u202e1", "zero\u200bwidth")
T0_MS = 1_790_000_000_000


def _payload(time_ms: int, request: bytes) -> bytes:
    """A journal payload as record.rs lays it out: b"D2", the time (i64 BE), the request."""
    return b"D2" + struct.pack(">q", time_ms) + request


def test_an_old_journal_with_now_refused_ids_recovers(backend: Backend, tmp_path: Path) -> None:
    backend.data_dir.mkdir(parents=True, exist_ok=True)
    journal = backend.config().open()
    try:
        for n, unit_id in enumerate(OLD_IDS):
            request = unit_request(f"old-{n}", unit_id).SerializeToString()
            journal.append(
                NewEntry("UpsertUnit", f"old-{n}", _payload(T0_MS + n, request), b"", "old")
            )
        request = incident_request("old-inc", "INC\u202e9").SerializeToString()
        journal.append(
            NewEntry("CreateIncident", "old-inc", _payload(T0_MS + 9, request), b"", "old")
        )
    finally:
        journal.close()

    server = launch(backend, tmp_path)
    channel, dispatch = stub(server)
    with channel:
        listed = dispatch.ListUnits(pb.ListUnitsRequest(page_size=100), timeout=10)
        assert sorted(u.unit_id for u in listed.units) == sorted(OLD_IDS)
        incidents = dispatch.ListIncidents(pb.ListIncidentsRequest(), timeout=10)
        assert [i.incident_id for i in incidents.incidents] == ["INC\u202e9"]
        # The same ids sent now are refused, naming the field.
        for unit_id in OLD_IDS:
            with pytest.raises(grpc.RpcError) as err:
                dispatch.UpsertUnit(unit_request("new-" + unit_id.strip(), unit_id), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "unit.unit_id" in (err.value.details() or "")
    assert server.stop() == 0, server.log()
