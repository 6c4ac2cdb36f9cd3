"""The audit trail's SQLite store lives in its own file beside the journal (one writer per
SQLite file: in the journal's file every audit batch held up command commits). A data
directory written before that keeps its records in the journal's file: they are adopted
once, at the first open, and a read-only open of such a directory still finds them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dispatch_core.durability.journal.audit import (
    AUDIT_FILE,
    AuditQuery,
    AuditRow,
    SqliteAuditStore,
)
from dispatch_core.durability.journal.sqlite import DB_FILE

#: The trail's tables as the release before `audit.sqlite3` wrote them (no `sequence`).
OLD_DDL = (
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY, time_unix_ms INTEGER NOT NULL, principal TEXT NOT NULL,
        roles TEXT NOT NULL, method TEXT NOT NULL, code TEXT NOT NULL,
        incident_ids TEXT NOT NULL, unit_ids TEXT NOT NULL, location_count INTEGER NOT NULL,
        justification TEXT NOT NULL, request_id TEXT NOT NULL, peer TEXT NOT NULL)""",
    """CREATE TABLE audit_refs (
        ref TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (ref, id)) WITHOUT ROWID""",
)


def old_data_dir(tmp_path: Path) -> Path:
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    for ddl in OLD_DDL:
        conn.execute(ddl)
    conn.execute(
        "INSERT INTO audit VALUES (7, 1700000000000, 'dev-dispatcher', 'dispatcher',"
        " 'dispatch.v1.DispatchService/GetIncident', 'OK', 'INC-1', '', 0, 'welfare check',"
        " 'r-1', 'ipv4:10.0.0.9:5000')"
    )
    conn.execute("INSERT INTO audit_refs VALUES ('incident/INC-1', 7)")
    conn.close()
    return tmp_path


def test_records_of_an_older_data_directory_are_adopted_once(tmp_path: Path) -> None:
    data = old_data_dir(tmp_path)
    store = SqliteAuditStore(data)
    try:
        (row,) = store.query(AuditQuery(incident_id="INC-1"))
        assert (row.id, row.principal, row.justification) == (7, "dev-dispatcher", "welfare check")
        store.append([AuditRow(1700000001000, "dev-auditor", "auditor", "m", "OK")])
        assert [r.id for r in store.query(AuditQuery())] == [7, 8]  # ids go on from the old
    finally:
        store.close()
    assert (data / AUDIT_FILE).is_file()
    again = SqliteAuditStore(data)
    try:
        assert [r.id for r in again.query(AuditQuery())] == [7, 8]  # not copied twice
    finally:
        again.close()


def test_a_read_only_open_of_an_older_directory_reads_the_journal_file(tmp_path: Path) -> None:
    data = old_data_dir(tmp_path)
    store = SqliteAuditStore(data, read_only=True)
    try:
        assert [r.principal for r in store.query(AuditQuery(incident_id="INC-1"))] == [
            "dev-dispatcher"
        ]
    finally:
        store.close()
    assert not (data / AUDIT_FILE).exists()


def test_the_trail_never_takes_the_journal_files_write_lock(tmp_path: Path) -> None:
    # A transaction held open on the journal's file (as a slow commit would) does not stop
    # an audit batch: they are different files.
    journal = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None, timeout=0.1)
    journal.execute("PRAGMA journal_mode = WAL")
    journal.execute("CREATE TABLE t (x)")
    journal.execute("BEGIN IMMEDIATE")
    store = SqliteAuditStore(tmp_path)
    try:
        store.append([AuditRow(1700000000000, "p", "r", "m", "OK")])
        assert len(store.query(AuditQuery())) == 1
    finally:
        journal.execute("ROLLBACK")
        journal.close()
        store.close()
