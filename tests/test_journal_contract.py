"""The journal contract, run against every backend: memory, SQLite files and the real
PostgreSQL on 127.0.0.1:5432 (each PostgreSQL test in its own schema, dropped after).

Backend-specific faults (corrupting stored bytes, unknown versions) are injected by writing
to the store directly with the backend's own client, the way a bad disk or an old binary
would leave it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dispatch_core.durability.journal import (
    Assignment,
    AssignmentConflictError,
    Entry,
    Journal,
    JournalCompactedError,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    JournalVersionError,
    NewEntry,
    Snapshot,
    open_journal,
)
from dispatch_core.durability.journal.base import SNAPSHOT_VERSION, snapshot_checksum
from dispatch_core.durability.journal.sqlite import DB_FILE, SNAPSHOT_FILE

PG_DSN = os.environ.get("DISPATCH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Backend:
    """Opens the same journal again and again, and reaches under it for fault injection."""

    kind: str
    open: Callable[[], Journal]
    # Runs one SQL statement against the store (placeholders: "?" rewritten per backend;
    # table names: {entries}, {snapshots}, {meta}, {assignments}). None for memory.
    raw: Callable[[str, tuple[Any, ...]], None] | None


def _sqlite_backend(data_dir: Path) -> Backend:
    def raw(sql: str, params: tuple[Any, ...]) -> None:
        names = {
            "entries": "journal_entries",
            "snapshots": "journal_snapshots",
            "meta": "journal_meta",
            "assignments": "journal_assignments",
        }
        # Snapshots have a database file of their own.
        db = SNAPSHOT_FILE if "{snapshots}" in sql else DB_FILE
        conn = sqlite3.connect(data_dir / db, isolation_level=None)
        try:
            conn.execute(sql.format(**names), params)
        finally:
            conn.close()

    return Backend("sqlite", lambda: open_journal("sqlite", data_dir), raw)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = f"jtest_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _pg_backend(schema: str) -> Backend:
    def raw(sql: str, params: tuple[Any, ...]) -> None:
        names = {t: f"{schema}.{t}" for t in ("entries", "snapshots", "meta", "assignments")}
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(sql.format(**names).replace("?", "%s"), params)

    return Backend("postgres", lambda: open_journal(PG_DSN, Path("."), name=schema), raw)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return Backend("memory", lambda: open_journal("memory", tmp_path), None)
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path)
    return _pg_backend(request.getfixturevalue("pg_schema"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Only the backends that persist: reopen, lock and corruption tests."""
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path)
    return _pg_backend(request.getfixturevalue("pg_schema"))


def _new(i: int, **kw: Any) -> NewEntry:
    fields: dict[str, Any] = {
        "method": "CreateIncident",
        "request_id": f"req-{i}",
        "payload": f"command {i}".encode(),
        "result": f"answer {i}".encode(),
        "actor": "dispatcher-7 (unauthenticated)",
    }
    fields.update(kw)
    return NewEntry(**fields)


# -------------------------------------------------------------------------- round trip
def test_append_read_find_snapshot_round_trip(backend: Backend) -> None:
    with backend.open() as journal:
        assert journal.last_sequence() == 0
        assert journal.latest_snapshot() is None
        written = [journal.append(_new(i)) for i in range(1, 6)]
        assert [e.sequence for e in written] == [1, 2, 3, 4, 5]
        assert written[2].payload == b"command 3"
        assert written[2].result == b"answer 3"
        assert written[2].actor == "dispatcher-7 (unauthenticated)"
        assert written[2].time_unix_ms > 0
        assert list(journal.entries_since(0)) == written
        assert list(journal.entries_since(3)) == written[3:]
        assert list(journal.entries_since(5)) == []
        assert journal.find("CreateIncident", "req-4") == written[3]
        assert journal.find("UpdateIncident", "req-4") is None  # ids are scoped per method
        journal.write_snapshot(3, b"state at 3")
        assert journal.latest_snapshot() == Snapshot(3, b"state at 3")
        seq, data = journal.latest_snapshot() or (0, b"")
        assert (seq, data) == (3, b"state at 3")
        snapshot, rest = journal.restore()
        assert snapshot == Snapshot(3, b"state at 3")
        assert list(rest) == written[3:]


def test_restore_after_reopen(durable: Backend) -> None:
    with durable.open() as journal:
        written = [journal.append(_new(i)) for i in range(1, 8)]
        journal.write_snapshot(4, b"state at 4")
    with durable.open() as journal:
        snapshot, rest = journal.restore()
        assert snapshot == Snapshot(4, b"state at 4")
        assert list(rest) == written[4:]
        assert journal.find("CreateIncident", "req-2") == written[1]
        # Sequences continue where they stopped.
        assert journal.append(_new(8)).sequence == 8


def test_entries_carry_explicit_time_and_assignment_info(backend: Backend) -> None:
    with backend.open() as journal:
        entry = journal.append(
            _new(
                1,
                method="AssignUnits",
                time_unix_ms=1_700_000_000_123,
                assign=(Assignment("U1", "INC-1"), Assignment("U2", "INC-1")),
                release=("U9",),
            )
        )
        assert entry.time_unix_ms == 1_700_000_000_123
        assert list(journal.entries_since(0)) == [entry]
        assert entry.assign == (Assignment("U1", "INC-1"), Assignment("U2", "INC-1"))
        assert entry.release == ("U9",)


# ------------------------------------------------------------------ constraints per entry
def test_a_request_id_journaled_again_is_kept_and_found_newest_first(backend: Backend) -> None:
    # Idempotency is the state machine's: within its 24-hour window it never journals a
    # request_id twice; after it, the id may come back as a new command, and a retry of
    # that one must get its (newest) answer.
    with backend.open() as journal:
        first = journal.append(_new(1))
        again = journal.append(_new(1, payload=b"another"))
        assert (first.sequence, again.sequence) == (1, 2)
        assert journal.find("CreateIncident", "req-1") == again
        assert journal.append(_new(2)).sequence == 3


def test_archived_incidents_are_kept_beside_their_entry_newest_first(backend: Backend) -> None:
    with backend.open() as journal:
        journal.append(_new(1, archive=(("INC-1", b"first"), ("INC-2", b"other"))))
        journal.append(_new(2, archive=(("INC-1", b"again"),)))
        assert journal.find_archived("INC-1") == b"again"
        assert journal.find_archived("INC-2") == b"other"
        assert journal.find_archived("INC-3") is None


def test_a_store_with_the_old_unique_request_index_is_upgraded(durable: Backend) -> None:
    with durable.open() as journal:
        journal.append(_new(1))
    # As a store made by the previous build: a unique index on (method, request_id).
    old = "journal_entries_request" if durable.kind == "sqlite" else "entries_request"
    assert durable.raw is not None
    durable.raw(
        f"CREATE UNIQUE INDEX {old} ON {{entries}} (method, request_id) WHERE request_id <> ''",
        (),
    )
    with durable.open() as journal:
        again = journal.append(_new(1, payload=b"after the window"))
        assert journal.find("CreateIncident", "req-1") == again


def test_second_active_assignment_refused(backend: Backend) -> None:
    with backend.open() as journal:
        journal.append(_new(1, assign=(Assignment("U1", "INC-1"),)))
        with pytest.raises(AssignmentConflictError, match="U1"):
            # All or none: U2 must not stay assigned either.
            journal.append(_new(2, assign=(Assignment("U2", "INC-2"), Assignment("U1", "INC-2"))))
        journal.append(_new(3, assign=(Assignment("U2", "INC-3"),)))
        # Release and reassign in one command moves the unit.
        moved = journal.append(_new(4, release=("U1",), assign=(Assignment("U1", "INC-4"),)))
        assert moved.sequence == 3
        with pytest.raises(AssignmentConflictError):
            journal.append(_new(5, assign=(Assignment("U1", "INC-5"),)))
        assert [e.sequence for e in journal.entries_since(0)] == [1, 2, 3]


@pytest.mark.postgres
def test_postgres_partial_unique_index_refuses_second_active_assignment(pg_schema: str) -> None:
    with open_journal(PG_DSN, Path("."), name=pg_schema) as journal:
        journal.append(_new(1, assign=(Assignment("U1", "INC-1"),)))
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            # Straight at the table, bypassing the journal: the index itself refuses.
            with pytest.raises(psycopg.errors.UniqueViolation, match="assignments_one_active"):
                conn.execute(
                    f"INSERT INTO {pg_schema}.assignments (unit_id, incident_id, assigned_seq)"
                    " VALUES ('U1', 'INC-2', 99)"
                )
            # A released assignment is history, not a conflict.
            conn.execute(f"INSERT INTO {pg_schema}.assignments VALUES ('U1', 'INC-0', 0, 1)")
        with pytest.raises(AssignmentConflictError):
            journal.append(_new(2, assign=(Assignment("U1", "INC-2"),)))


# -------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_appenders_get_gap_free_sequences_and_share_commits(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    be = (
        _sqlite_backend(tmp_path)
        if kind == "sqlite"
        else _pg_backend(request.getfixturevalue("pg_schema"))
    )
    threads_n, per_thread = 8, 60
    got: dict[int, list[Entry]] = {w: [] for w in range(threads_n)}
    start = threading.Barrier(threads_n)
    with be.open() as journal:

        def appender(w: int) -> None:
            start.wait()
            for i in range(per_thread):
                got[w].append(journal.append(_new(w * 1000 + i)))

        threads = [threading.Thread(target=appender, args=(w,)) for w in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = journal.stats()
        stored = list(journal.entries_since(0))

    total = threads_n * per_thread
    for entries in got.values():
        # Each appender's own entries are in its order (it waits for each).
        assert [e.sequence for e in entries] == sorted(e.sequence for e in entries)
    assert sorted(e.sequence for es in got.values() for e in es) == list(range(1, total + 1))
    assert [e.sequence for e in stored] == list(range(1, total + 1))
    assert stats.appends == total
    # Group commit: appenders queued behind a sync share the next one.
    assert stats.commits < total, stats
    assert stats.largest_batch > 1, stats


# --------------------------------------------------------------------------- compaction
def test_truncate_before_and_earliest_sequence(backend: Backend) -> None:
    with backend.open() as journal:
        written = [journal.append(_new(i)) for i in range(1, 11)]
        assert journal.earliest_sequence() == 1
        with pytest.raises(JournalError, match="snapshot"):
            journal.truncate_before(5)  # nothing covers 1..4 yet
        journal.write_snapshot(6, b"state at 6")
        assert journal.truncate_before(7) == 6
        assert journal.earliest_sequence() == 7
        with pytest.raises(JournalCompactedError) as err:
            journal.entries_since(3)
        assert err.value.earliest == 7
        assert list(journal.entries_since(6)) == written[6:]
        snapshot, rest = journal.restore()
        assert snapshot == Snapshot(6, b"state at 6")
        assert list(rest) == written[6:]


def test_truncate_everything_keeps_sequence_numbering(durable: Backend) -> None:
    with durable.open() as journal:
        for i in range(1, 4):
            journal.append(_new(i))
        journal.write_snapshot(3, b"s3")
        journal.truncate_before(4)
        assert journal.earliest_sequence() == 4
    with durable.open() as journal:
        assert journal.last_sequence() == 3
        assert journal.append(_new(4)).sequence == 4


# -------------------------------------------------------------------- single writer
def test_second_opener_refused(durable: Backend) -> None:
    with durable.open() as journal:
        journal.append(_new(1))
        with pytest.raises(JournalLockedError, match="already open"):
            durable.open()
    # Released on close.
    with durable.open() as journal:
        assert journal.last_sequence() == 1


def test_second_process_refused_on_sqlite(tmp_path: Path) -> None:
    with open_journal("sqlite", tmp_path):
        code = (
            "import sys; from pathlib import Path\n"
            "from dispatch_core.durability.journal import open_journal, JournalLockedError\n"
            "try:\n"
            "    open_journal('sqlite', Path(sys.argv[1]))\n"
            "except JournalLockedError as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
        )
    assert out.returncode == 3, out.stderr
    assert f"pid {os.getpid()}" in out.stdout


# ---------------------------------------------------------------------------- versions
def test_unknown_journal_version_refused(durable: Backend) -> None:
    assert durable.raw is not None
    with durable.open() as journal:
        journal.append(_new(1))
    durable.raw("UPDATE {meta} SET value = '999' WHERE key = 'format_version'", ())
    with pytest.raises(JournalVersionError, match="version 999"):
        durable.open()
    # The refusal must not leave the single-writer lock behind.
    durable.raw("UPDATE {meta} SET value = '1' WHERE key = 'format_version'", ())
    with durable.open() as journal:
        assert journal.last_sequence() == 1


def test_a_snapshot_an_older_store_kept_in_the_journal_file_is_still_read(
    tmp_path: Path,
) -> None:
    be = _sqlite_backend(tmp_path)
    with be.open() as journal:
        journal.append(_new(1))
        journal.append(_new(2))
    # Where the previous build wrote snapshots: the journal's own file.
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO journal_snapshots VALUES (?, ?, ?, ?, ?)",
            (2, SNAPSHOT_VERSION, 0, b"old", snapshot_checksum(2, b"old")),
        )
    finally:
        conn.close()
    with be.open() as journal:
        assert journal.latest_snapshot() == Snapshot(2, b"old")
        journal.append(_new(3))
        journal.write_snapshot(3, b"new")
        assert journal.latest_snapshot() == Snapshot(3, b"new")


def test_unknown_snapshot_version_refused(durable: Backend) -> None:
    assert durable.raw is not None
    with durable.open() as journal:
        journal.append(_new(1))
        journal.write_snapshot(1, b"s1")
        durable.raw("UPDATE {snapshots} SET version = 42", ())
        with pytest.raises(JournalVersionError, match="version 42"):
            journal.latest_snapshot()


# -------------------------------------------------------------------------- corruption
def test_corrupt_last_entry_dropped_on_open(
    durable: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    assert durable.raw is not None
    with durable.open() as journal:
        written = [journal.append(_new(i, assign=(Assignment(f"U{i}", "I"),))) for i in range(1, 6)]
    durable.raw("UPDATE {entries} SET checksum = checksum + 1 WHERE sequence = 5", ())
    with (
        caplog.at_level(logging.WARNING, logger="dispatch_core.durability.journal"),
        durable.open() as j,
    ):
        assert "last entry 5" in caplog.text
        assert list(j.entries_since(0)) == written[:4]
        # The dropped entry's sequence and its assignment are free again.
        assert j.append(_new(6, assign=(Assignment("U5", "I"),))).sequence == 5


def test_torn_last_entry_dropped_on_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    be = _sqlite_backend(tmp_path)
    assert be.raw is not None
    with be.open() as journal:
        written = [journal.append(_new(i, payload=b"x" * 100)) for i in range(1, 4)]
    # A write cut short: the payload lost its second half.
    be.raw("UPDATE {entries} SET payload = substr(payload, 1, 50) WHERE sequence = 3", ())
    with (
        caplog.at_level(logging.WARNING, logger="dispatch_core.durability.journal"),
        be.open() as j,
    ):
        assert "last entry 3" in caplog.text
        assert list(j.entries_since(0)) == written[:2]


def test_corrupt_tail_seen_while_reading_is_dropped(
    durable: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    assert durable.raw is not None
    with durable.open() as journal:
        written = [journal.append(_new(i)) for i in range(1, 4)]
        durable.raw("UPDATE {entries} SET result = ? WHERE sequence = 3", (b"garbage",))
        with caplog.at_level(logging.WARNING, logger="dispatch_core.durability.journal"):
            assert list(journal.entries_since(0)) == written[:2]
        assert "last entry 3" in caplog.text


@pytest.mark.parametrize("damage", ["checksum", "payload", "assign", "missing"])
def test_corruption_before_the_tail_refused_naming_the_sequence(
    durable: Backend, damage: str
) -> None:
    assert durable.raw is not None
    with durable.open() as journal:
        for i in range(1, 6):
            journal.append(_new(i))
    statement = {
        "checksum": "UPDATE {entries} SET checksum = checksum + 1 WHERE sequence = 3",
        "payload": "UPDATE {entries} SET payload = ? WHERE sequence = 3",
        "assign": "UPDATE {entries} SET assign = '[[' WHERE sequence = 3",
        "missing": "DELETE FROM {entries} WHERE sequence = 3",
    }[damage]
    durable.raw(statement, (b"flipped",) if damage == "payload" else ())
    with durable.open() as journal:
        with pytest.raises(JournalCorruptError, match="sequence 3") as err:
            list(journal.entries_since(0))
        assert err.value.sequence == 3
        # Reading past the damage is fine: it does not concern those entries.
        assert [e.sequence for e in journal.entries_since(3)] == [4, 5]


def test_corrupt_find_refused(durable: Backend) -> None:
    assert durable.raw is not None
    with durable.open() as journal:
        journal.append(_new(1))
        journal.append(_new(2))
        durable.raw("UPDATE {entries} SET result = ? WHERE sequence = 1", (b"tampered",))
        with pytest.raises(JournalCorruptError, match="sequence 1"):
            journal.find("CreateIncident", "req-1")


# ------------------------------------------------------------------------------ factory
def test_open_journal_rejects_unknown_spec(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown journal"):
        open_journal("mysql://x", tmp_path)


def test_sqlite_uses_wal_and_full_sync(tmp_path: Path) -> None:
    with open_journal("sqlite", tmp_path):
        conn = sqlite3.connect(tmp_path / DB_FILE)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()
    with pytest.raises(ValueError, match="synchronous"):
        open_journal("sqlite", tmp_path / "other", synchronous="SOMETIMES")
