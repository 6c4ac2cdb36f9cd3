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

from dispatch_core.durability.journal.base import (
    SYNCHRONOUS_LEVELS,
    AppendRefusedError,
    JournalLockedError,
    JournalMissingError,
    log,
)
from dispatch_core.durability.journal.sqlstore import TABLES, Cursor, SqlJournal

DB_FILE = "journal.sqlite3"
#: Snapshots live in a database file of their own: SQLite has one writer per file, and a
#: snapshot of megabytes must not hold up the commit of commands.
SNAPSHOT_FILE = "snapshots.sqlite3"
LOCK_FILE = "journal.lock"


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


#: Run at every open: the table that records the format version.
_META_DDL = ("CREATE TABLE IF NOT EXISTS {meta} (key TEXT PRIMARY KEY, value TEXT)",)

#: Run once, when the store is new.
_SCHEMA_DDL = (
    # sequence is the rowid: range scans by sequence walk the table's own B-tree.
    """CREATE TABLE {entries} (
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
    """CREATE TABLE {snapshots} (
        sequence INTEGER PRIMARY KEY,
        version INTEGER NOT NULL,
        time_unix_ms INTEGER NOT NULL,
        data BLOB NOT NULL,
        checksum INTEGER NOT NULL)""",
    # Second line of defence behind the engine: at most one active row per unit.
    """CREATE TABLE {assignments} (
        unit_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        assigned_seq INTEGER NOT NULL,
        released_seq INTEGER)""",
    """CREATE UNIQUE INDEX journal_assignments_one_active
        ON {assignments} (unit_id) WHERE released_seq IS NULL""",
    "CREATE INDEX journal_assignments_released ON {assignments} (released_seq)",
)


#: Run at every open, after the version check: brings an existing store's indexes up to
#: date. Idempotency lookups by (method, request_id) (an empty request_id is the server's
#: own clock command). Not unique: the state machine decides idempotency, and a request_id
#: may come back as a new command once the 24-hour window has passed; `find` returns the
#: newest. Stores made before this rule had a unique index, dropped here.
_UPGRADE_DDL = (
    "DROP INDEX IF EXISTS journal_entries_request",
    """CREATE INDEX IF NOT EXISTS journal_entries_request_id
        ON {entries} (method, request_id) WHERE request_id <> ''""",
    # Closed incidents past the retention, as they were when they left memory.
    """CREATE TABLE IF NOT EXISTS {archive} (
        incident_id TEXT PRIMARY KEY,
        sequence INTEGER NOT NULL,
        data BLOB NOT NULL)""",
)


#: The table of the snapshot file, the same as the journal's own (older stores kept their
#: snapshots there, and are still read).
_SNAPSHOT_DDL = """CREATE TABLE IF NOT EXISTS {snapshots} (
    sequence INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    time_unix_ms INTEGER NOT NULL,
    data BLOB NOT NULL,
    checksum INTEGER NOT NULL)"""


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


class SqliteJournal(SqlJournal[str]):
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
        read_only: bool = False,
    ) -> None:
        self.path = Path(data_dir) / DB_FILE
        super().__init__(store=f"journal {self.path}", max_batch=max_batch, read_only=read_only)
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {level!r}")
        self._read_lock = threading.Lock()
        self._conns: list[SqlConnection] = []
        self._lock_fd: int | None = None
        if read_only:
            self._open_read_only(Path(data_dir))
            return
        self._lock_fd = _lock_data_dir(Path(data_dir))
        try:
            self._w = self._open(connect, level)
            self._r = self._open(connect, level)
            self._snap = self._open(connect, level, Path(data_dir) / SNAPSHOT_FILE)
            self._snap.execute(self._q(_SNAPSHOT_DDL))
            self._prepare(_META_DDL, _SCHEMA_DDL, _UPGRADE_DDL)
        except BaseException:
            self._close_storage()
            raise
        self._start_writer(f"journal-writer:{self.path}")

    def _open_read_only(self, data_dir: Path) -> None:
        """Beside a live writer: no lock file, no DDL; WAL lets these connections read
        every committed transaction while the writer goes on. The snapshot file may be
        missing (a journal made before it existed): its reads then find nothing."""
        if not self.path.is_file():
            raise JournalMissingError(f"no journal found at {self.path}")
        try:
            self._r = self._open_ro(self.path)
            snapshots = data_dir / SNAPSHOT_FILE
            self._snap = self._open_ro(snapshots if snapshots.is_file() else self.path)
            tables = {
                row[0]
                for row in self._r.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                ).fetchall()
            }
            self._inspect("journal_meta" in tables)
        except BaseException:
            self._close_storage()
            raise

    def _open_ro(self, path: Path) -> SqlConnection:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=30.0
        )
        self._conns.append(conn)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _open(self, connect: Connect, level: str, path: Path | None = None) -> SqlConnection:
        path = path or self.path
        conn = connect(path)
        self._conns.append(conn)
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OSError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {level}")
        return conn

    # ------------------------------------------------------------------------- dialect
    def _render(self, template: str) -> str:
        return template.format(**{table: f"journal_{table}" for table in TABLES})

    def _execute(self, query: str, params: Sequence[object] = ()) -> Cursor:
        cursor: Cursor = self._w.execute(query, params)
        return cursor

    def _read(self, query: str, params: Sequence[object] = ()) -> list[Any]:
        with self._read_lock:
            return list(self._r.execute(query, params).fetchall())

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE: take the write lock at BEGIN, not at the first write.
        w = self._w
        w.execute("BEGIN IMMEDIATE")
        try:
            yield
            w.execute("COMMIT")
        except BaseException:
            # Keep the original error: a failing ROLLBACK must not mask it.
            with contextlib.suppress(Exception):
                w.execute("ROLLBACK")
            raise

    def _snapshot_execute(self, query: str, params: Sequence[object] = ()) -> Cursor:
        cursor: Cursor = self._snap.execute(query, params)
        return cursor

    @contextlib.contextmanager
    def _snapshot_transaction(self) -> Iterator[None]:
        self._snap.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._snap.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self._snap.execute("ROLLBACK")
            raise

    def _snapshot_rows(self, query: str, params: Sequence[object] = ()) -> list[Any]:
        return list(self._snap.execute(query, params).fetchall())

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[None]:
        w = self._w
        w.execute("SAVEPOINT entry")
        try:
            yield
        except AppendRefusedError:
            # Undo this entry's partial writes only; the rest of the batch commits. (Any
            # other error fails the whole transaction anyway.)
            w.execute("ROLLBACK TO entry")
            w.execute("RELEASE entry")
            raise
        w.execute("RELEASE entry")

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
