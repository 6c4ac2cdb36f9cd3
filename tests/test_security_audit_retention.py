"""Audit retention: records older than `--audit-retention-days` are removed in the
background, with their resource index, on a real SQLite file and the real PostgreSQL;
younger ones stay; the flag is refused out of range."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg

from dispatch_core.durability.journal.audit import (
    PRUNE_BATCH,
    AuditQuery,
    AuditRow,
    AuditStore,
    open_audit_store,
)
from dispatch_core.security.audit import AuditTrail
from tests.durable import PG_DSN, Backend, backend_fixture  # noqa: F401 (the fixture)

DAY_MS = 86_400_000
NOW_MS = 1_790_000_000_000


def _store(backend: Backend) -> AuditStore:
    backend.data_dir.mkdir(parents=True, exist_ok=True)
    return open_audit_store(backend.spec, backend.data_dir, backend.schema)


def _row(age_days: float, n: int) -> AuditRow:
    return AuditRow(
        NOW_MS - round(age_days * DAY_MS),
        "dev-dispatcher",
        "dispatcher",
        "dispatch.v1.DispatchService/GetIncident",
        "OK",
        incident_ids=(f"INC-{n:06d}",),
        unit_ids=(f"U{n}",),
    )


def _refs(backend: Backend) -> int:
    if backend.kind == "sqlite":
        import sqlite3  # noqa: PLC0415

        from dispatch_core.durability.journal.audit import AUDIT_FILE  # noqa: PLC0415

        conn = sqlite3.connect(backend.data_dir / AUDIT_FILE)
        (count,) = conn.execute("SELECT count(*) FROM audit_refs").fetchone()
        conn.close()
        return int(count)
    with psycopg.connect(PG_DSN) as conn:
        found = conn.execute(f'SELECT count(*) FROM "{backend.schema}".audit_refs').fetchone()
        return int(found[0]) if found else -1


def test_prune_removes_old_records_and_their_index(backend: Backend) -> None:
    store = _store(backend)
    try:
        # More old records than one pruning transaction takes, and a few young ones.
        old = [_row(500, n) for n in range(PRUNE_BATCH + 7)]
        young = [_row(10, n) for n in range(3)]
        store.append(old + young)
        assert _refs(backend) == 2 * len(old + young)
        assert store.prune(NOW_MS - 400 * DAY_MS) == len(old)
        left = store.query(AuditQuery(limit=1000))
        assert [r.time_unix_ms for r in left] == [r.time_unix_ms for r in young]
        assert _refs(backend) == 2 * len(young)
        # An old record's incident is no longer found; a young one's still is.
        assert store.query(AuditQuery(incident_id=f"INC-{PRUNE_BATCH + 5:06d}")) == []
        assert len(store.query(AuditQuery(incident_id="INC-000001"))) == 1
        assert store.prune(NOW_MS - 400 * DAY_MS) == 0
    finally:
        store.close()


def test_the_trail_prunes_in_the_background(backend: Backend) -> None:
    store = _store(backend)
    store.append([_row(401, 1), _row(399, 2)])
    trail = AuditTrail(
        store, 0.02, retention_days=400, prune_interval_s=0.05, clock_ms=lambda: NOW_MS
    )
    try:
        deadline = time.monotonic() + 10
        while trail.pruned == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert trail.pruned == 1
        assert [r.incident_ids for r in store.query(AuditQuery())] == [("INC-000002",)]
    finally:
        trail.close()


def test_retention_flag_out_of_range_is_one_line(tmp_path: Path) -> None:
    for value in ("0", "-3", "nan", "40000"):
        done = subprocess.run(
            [sys.executable, "-m", "dispatch_core.cli", "serve", "--audit-retention-days", value],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "--audit-retention-days" in done.stderr
        assert "Traceback" not in done.stderr
