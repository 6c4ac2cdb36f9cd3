"""The embedded journal: one SQLite file in WAL mode under the data directory.

Two connections: the writer thread's (every write transaction) and a reader's (find,
entries_since, snapshots), so a lookup never waits behind a sync; WAL lets the reader see
every committed transaction without blocking the writer.

The connection factory is injectable so a test can run the same code over APSW with a VFS
that simulates power loss; production uses the standard library's sqlite3. Only the subset
both share is used: `execute(sql, params)` returning a cursor with fetchone/fetchall,
explicit BEGIN/COMMIT (autocommit mode), `RETURNING` to learn whether a row went in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from dispatch_core.journal.base import (
    ENTRY_COLUMNS,
    FORMAT_VERSION,
    READ_PAGE,
    SNAPSHOT_VERSION,
    SYNCHRONOUS_LEVELS,
    AppendRefusedError,
    AssignmentConflictError,
    DuplicateRequestError,
    Entry,
    EntryRow,
    GroupCommitJournal,
    JournalCompactedError,
    JournalCorruptError,
    JournalLockedError,
    JournalVersionError,
    NewEntry,
    Snapshot,
    check_snapshot_sequence,
    check_truncate,
    decode_row,
    entry_of,
    log,
    make_row,
    now_ms,
    snapshot_checksum,
    verified,
)

DB_FILE = "journal.sqlite3"
LOCK_FILE = "journal.lock"


class SqlCursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class SqlConnection(Protocol):
    """The part of a DB-API-ish SQLite connection the journal uses (sqlite3 and APSW)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...
    def close(self) -> None: ...


Connect = Callable[[Path], SqlConnection]


def connect_stdlib(path: Path) -> SqlConnection:
    """The production connection: stdlib sqlite3 in autocommit mode (we issue BEGIN/COMMIT
    ourselves so a batch is exactly one transaction), usable from the writer thread and
    readers alike."""
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)


_SCHEMA = (
    # sequence is the rowid: range scans by sequence walk the table's own B-tree.
    """CREATE TABLE journal_entries (
        sequence INTEGER PRIMARY KEY,
        method TEXT NOT NULL,
        request_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        result BLOB NOT NULL,
        time_unix_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        assign TEXT NOT NULL,
        release TEXT NOT NULL,
        checksum INTEGER NOT NULL)""",
    # Idempotency lookups after a restart; empty request_id = an internal command.
    """CREATE UNIQUE INDEX journal_entries_request
        ON journal_entries (method, request_id) WHERE request_id <> ''""",
    """CREATE TABLE journal_snapshots (
        sequence INTEGER PRIMARY KEY,
        version INTEGER NOT NULL,
        time_unix_ms INTEGER NOT NULL,
        data BLOB NOT NULL,
        checksum INTEGER NOT NULL)""",
    # Second line of defence behind the engine: at most one active row per unit.
    """CREATE TABLE journal_assignments (
        unit_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        assigned_seq INTEGER NOT NULL,
        released_seq INTEGER)""",
    """CREATE UNIQUE INDEX journal_assignments_one_active
        ON journal_assignments (unit_id) WHERE released_seq IS NULL""",
    "CREATE INDEX journal_assignments_released ON journal_assignments (released_seq)",
)


def _lock_data_dir(data_dir: Path) -> int:
    """Hold an exclusive flock on the data directory's lock file for the journal's life.

    flock (not fcntl/POSIX locks) because POSIX locks are per process: a second journal in
    the same process would silently share the lock. The kernel drops the lock when the
    process dies, so a crash never leaves a stale lock behind.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JournalLockedError(
            f"journal in {data_dir} is already open by another writer (pid {holder});"
            " only one process may write a journal"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class SqliteJournal(GroupCommitJournal):
    """The embedded default. `synchronous` is SQLite's PRAGMA synchronous: FULL syncs the
    WAL at every commit (every acknowledged entry survives power loss); NORMAL survives a
    process crash but not power loss; OFF survives neither and exists for baselines."""

    def __init__(
        self,
        data_dir: Path,
        *,
        synchronous: str = "FULL",
        connect: Connect = connect_stdlib,
        max_batch: int = 1024,
    ) -> None:
        super().__init__(max_batch=max_batch)
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {level!r}")
        self.path = Path(data_dir) / DB_FILE
        self._lock_fd: int | None = _lock_data_dir(Path(data_dir))
        self._read_lock = threading.Lock()
        self._conns: list[SqlConnection] = []
        try:
            self._w = self._open(connect, level)
            self._r = self._open(connect, level)
            self._prepare()
        except BaseException:
            self._close_storage()
            raise
        self._start_writer(f"journal-writer:{self.path}")

    # ------------------------------------------------------------------------- opening
    def _open(self, connect: Connect, level: str) -> SqlConnection:
        conn = connect(self.path)
        self._conns.append(conn)
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OSError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {level}")
        return conn

    def _prepare(self) -> None:
        w = self._w
        w.execute("BEGIN IMMEDIATE")
        try:
            w.execute("CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value TEXT)")
            row = w.execute("SELECT value FROM journal_meta WHERE key = 'format_version'")
            found = row.fetchone()
            if found is None:
                for statement in _SCHEMA:
                    w.execute(statement)
                w.execute(
                    "INSERT INTO journal_meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),)
                )
            elif found[0] != str(FORMAT_VERSION):
                raise JournalVersionError(
                    f"{self.path} has journal format version {found[0]}; this build reads"
                    f" version {FORMAT_VERSION}"
                )
            self._drop_torn_tail()
            self._last = self._scan_last()
            w.execute("COMMIT")
        except BaseException:
            # Keep the original error: a failing ROLLBACK must not mask why opening failed.
            with contextlib.suppress(Exception):
                w.execute("ROLLBACK")
            raise

    def _drop_torn_tail(self) -> None:
        """A bad last entry is a write that never completed: remove it (and its effect on
        assignments) so its sequence is reused and it cannot turn into middle corruption
        once later entries follow it."""
        row = self._w.execute(
            f"SELECT {ENTRY_COLUMNS} FROM journal_entries ORDER BY sequence DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return
        if decode_row(row)[1]:
            return
        log.warning("journal %s: dropping torn or corrupt last entry %d", self.path, row[0])
        self._w.execute("DELETE FROM journal_entries WHERE sequence = ?", (row[0],))
        self._w.execute("DELETE FROM journal_assignments WHERE assigned_seq = ?", (row[0],))
        self._w.execute(
            "UPDATE journal_assignments SET released_seq = NULL WHERE released_seq = ?",
            (row[0],),
        )

    def _scan_last(self) -> int:
        # After truncation the newest snapshot may be ahead of every kept entry.
        (last,) = self._w.execute(
            "SELECT max(coalesce((SELECT max(sequence) FROM journal_entries), 0),"
            " coalesce((SELECT max(sequence) FROM journal_snapshots), 0))"
        ).fetchone()
        return int(last)

    # -------------------------------------------------------------------------- writes
    def _commit_batch(self, entries: Sequence[NewEntry]) -> list[Entry | AppendRefusedError]:
        w = self._w
        outcomes: list[Entry | AppendRefusedError] = []
        seq = self._last
        stamp = now_ms()
        w.execute("BEGIN IMMEDIATE")
        try:
            for entry in entries:
                w.execute("SAVEPOINT entry")
                row = make_row(seq + 1, entry, stamp)
                refused = self._write_entry(row, entry)
                if refused is not None:
                    # Undo this entry's partial writes only; the rest of the batch commits.
                    w.execute("ROLLBACK TO entry")
                    w.execute("RELEASE entry")
                    outcomes.append(refused)
                    continue
                w.execute("RELEASE entry")
                seq += 1
                outcomes.append(entry_of(row, entry))
            w.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                w.execute("ROLLBACK")
            raise
        self._last = seq
        return outcomes

    def _write_entry(self, row: EntryRow, entry: NewEntry) -> AppendRefusedError | None:
        w = self._w
        seq = row[0]
        placeholders = ", ".join("?" * len(row))
        inserted = w.execute(
            f"INSERT INTO journal_entries ({ENTRY_COLUMNS}) VALUES ({placeholders})"
            " ON CONFLICT DO NOTHING RETURNING sequence",
            row,
        ).fetchone()
        if inserted is None:
            return DuplicateRequestError(entry.method, entry.request_id)
        for unit in entry.release:
            w.execute(
                "UPDATE journal_assignments SET released_seq = ?"
                " WHERE unit_id = ? AND released_seq IS NULL",
                (seq, unit),
            )
        for a in entry.assign:
            ok = w.execute(
                "INSERT INTO journal_assignments (unit_id, incident_id, assigned_seq)"
                " VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                (a.unit_id, a.incident_id, seq),
            ).fetchone()
            if ok is None:
                return AssignmentConflictError(a.unit_id)
        return None

    def write_snapshot(self, sequence: int, data: bytes) -> None:
        def op() -> None:
            check_snapshot_sequence(sequence, self._last)
            w = self._w
            w.execute("BEGIN IMMEDIATE")
            try:
                w.execute(
                    "INSERT OR REPLACE INTO journal_snapshots VALUES (?, ?, ?, ?, ?)",
                    (sequence, SNAPSHOT_VERSION, now_ms(), data, snapshot_checksum(sequence, data)),
                )
                # Keep the previous snapshot too: if the newest turns out unreadable, an
                # operator can still fall back by hand.
                w.execute(
                    "DELETE FROM journal_snapshots WHERE sequence < (SELECT sequence FROM"
                    " journal_snapshots ORDER BY sequence DESC LIMIT 1 OFFSET 1)"
                )
                w.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    w.execute("ROLLBACK")
                raise

        self._write_op(op)

    def truncate_before(self, sequence: int) -> int:
        def op() -> int:
            check_truncate(sequence, self.latest_snapshot())
            w = self._w
            w.execute("BEGIN IMMEDIATE")
            try:
                (count,) = w.execute(
                    "SELECT count(*) FROM journal_entries WHERE sequence < ?", (sequence,)
                ).fetchone()
                w.execute("DELETE FROM journal_entries WHERE sequence < ?", (sequence,))
                w.execute("DELETE FROM journal_assignments WHERE released_seq < ?", (sequence,))
                w.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    w.execute("ROLLBACK")
                raise
            return int(count)

        return self._write_op(op)

    # --------------------------------------------------------------------------- reads
    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with self._read_lock:
            return list(self._r.execute(sql, params).fetchall())

    def last_sequence(self) -> int:
        return self._last

    def earliest_sequence(self) -> int:
        (first,) = self._read("SELECT min(sequence) FROM journal_entries")[0]
        return int(first) if first is not None else self._last + 1

    def entries_since(self, after: int) -> Iterator[Entry]:
        if after < 0:
            raise ValueError(f"after must be >= 0, not {after}")
        tail = self._last
        earliest = self.earliest_sequence()
        if after + 1 < earliest:
            raise JournalCompactedError(after, earliest)
        return verified(self._pages(after, tail), after=after, tail=tail)

    def _pages(self, after: int, tail: int) -> Iterator[Any]:
        # Keyset pagination: each page is an index range scan, and the read lock is not
        # held while the caller consumes rows.
        cursor = after
        while cursor < tail:
            rows = self._read(
                f"SELECT {ENTRY_COLUMNS} FROM journal_entries"
                " WHERE sequence > ? AND sequence <= ? ORDER BY sequence LIMIT ?",
                (cursor, tail, READ_PAGE),
            )
            if not rows:
                return
            yield from rows
            cursor = rows[-1][0]

    def find(self, method: str, request_id: str) -> Entry | None:
        rows = self._read(
            f"SELECT {ENTRY_COLUMNS} FROM journal_entries"
            " WHERE method = ? AND request_id = ? AND request_id <> ''",
            (method, request_id),
        )
        if not rows:
            return None
        entry, ok = decode_row(rows[0])
        if not ok:
            raise JournalCorruptError(entry.sequence, "checksum mismatch")
        return entry

    def latest_snapshot(self) -> Snapshot | None:
        rows = self._read(
            "SELECT sequence, version, data, checksum FROM journal_snapshots"
            " ORDER BY sequence DESC LIMIT 1"
        )
        if not rows:
            return None
        seq, version, data, crc = rows[0]
        if version != SNAPSHOT_VERSION:
            raise JournalVersionError(
                f"snapshot {seq} in {self.path} has version {version}; this build reads"
                f" version {SNAPSHOT_VERSION}"
            )
        data = bytes(data)
        if crc != snapshot_checksum(seq, data):
            raise JournalCorruptError(seq, "snapshot checksum mismatch")
        return Snapshot(int(seq), data)

    # -------------------------------------------------------------------------- close
    def _close_storage(self) -> None:
        # Reader first: the last connection to close checkpoints the WAL, and the writer's
        # is the one configured for the journal's sync level.
        for conn in reversed(self._conns):
            try:
                conn.close()
            except Exception as exc:  # after a fatal error the storage may be gone
                log.warning("journal %s: error closing a connection: %r", self.path, exc)
        self._conns.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
