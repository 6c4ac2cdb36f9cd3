"""The PostgreSQL journal (psycopg 3), for deployments that already run PostgreSQL.

All tables live in one schema named after the journal, so several journals (or test runs)
can share a database. Three rules carry over from SQLite: one writer (a session-level
advisory lock), group commit (one transaction per batch), and the same entry format and
checksum. PostgreSQL adds the second line against double assignment: a partial unique index
on the active assignments, written in the same transaction as the entry.

The advisory lock is taken on the write connection itself, not a separate session: if that
session dies, the lock goes with it and so does our ability to write, so a second writer can
never take over while we still commit (the lock fences our own writes).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg import sql

from dispatch_core.durability.journal.base import (
    ENTRY_COLUMNS,
    SYNCHRONOUS_LEVELS,
    AppendRefusedError,
    Entry,
    JournalLockedError,
    NewEntry,
    entry_of,
    log,
    make_row,
    now_ms,
)
from dispatch_core.durability.journal.sqlstore import (
    ARCHIVE_SQL,
    ENTRY_VALUES,
    TABLES,
    Cursor,
    SqlJournal,
)

#: Run at every open: the journal's schema and the table that records the format version.
_META_DDL = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    "CREATE TABLE IF NOT EXISTS {meta} (key TEXT PRIMARY KEY, value TEXT)",
)

#: Run once, when the store is new. Index names need no schema: an index lives in its
#: table's.
_SCHEMA_DDL = (
    """CREATE TABLE {entries} (
        sequence BIGINT PRIMARY KEY,
        method TEXT NOT NULL,
        request_id TEXT NOT NULL,
        payload BYTEA NOT NULL,
        result BYTEA NOT NULL,
        time_unix_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        assign TEXT NOT NULL,
        release TEXT NOT NULL,
        checksum BIGINT NOT NULL)""",
    """CREATE TABLE {snapshots} (
        sequence BIGINT PRIMARY KEY,
        version INTEGER NOT NULL,
        time_unix_ms BIGINT NOT NULL,
        data BYTEA NOT NULL,
        checksum BIGINT NOT NULL)""",
    """CREATE TABLE {assignments} (
        unit_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        assigned_seq BIGINT NOT NULL,
        released_seq BIGINT)""",
    # The database-level second line: one active assignment per unit.
    """CREATE UNIQUE INDEX assignments_one_active ON {assignments} (unit_id)
        WHERE released_seq IS NULL""",
    "CREATE INDEX assignments_released ON {assignments} (released_seq)",
)


#: Run at every open, after the version check (see sqlite.py's `_UPGRADE_DDL` for why the
#: request index is not unique).
_UPGRADE_DDL = (
    "DROP INDEX IF EXISTS {schema}.entries_request",
    """CREATE INDEX IF NOT EXISTS entries_request_id ON {entries} (method, request_id)
        WHERE request_id <> ''""",
    """CREATE TABLE IF NOT EXISTS {archive} (
        incident_id TEXT PRIMARY KEY,
        sequence BIGINT NOT NULL,
        data BYTEA NOT NULL)""",
)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock, derived from the journal name."""
    digest = hashlib.blake2b(f"dispatch-journal:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresJournal(SqlJournal[sql.Composed]):
    def __init__(
        self,
        dsn: str,
        *,
        name: str = "dispatch_journal",
        synchronous: str = "FULL",
        max_batch: int = 1024,
        read_only: bool = False,
    ) -> None:
        super().__init__(
            store=f"PostgreSQL journal {name!r}", max_batch=max_batch, read_only=read_only
        )
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {level!r}")
        self.name = name
        self._s = sql.Identifier(name)
        self._read_lock = threading.Lock()
        self._conns: list[psycopg.Connection[Any]] = []
        self._locked = False
        if read_only:
            self._open_read_only(dsn)
            return
        try:
            # autocommit: transactions are opened explicitly with conn.transaction(), so a
            # batch is exactly one transaction and nothing lingers idle-in-transaction.
            self._w = self._connect(dsn)
            (got,) = self._w.execute(
                "SELECT pg_try_advisory_lock(%s)", (advisory_key(name),)
            ).fetchone() or (False,)
            self._locked = bool(got)
            if not got:
                raise JournalLockedError(
                    f"PostgreSQL journal {name!r} is already open by another writer"
                    " (advisory lock held); only one process may write a journal"
                )
            # Whatever the server default, an acknowledged entry must be on disk (or on the
            # synchronous standbys) before COMMIT returns; OFF exists for baselines only.
            self._w.execute(
                sql.SQL("SET synchronous_commit TO {}").format(
                    sql.SQL("off" if level == "OFF" else "on")
                )
            )
            self._r = self._connect(dsn)
            # Snapshots on a connection of their own: writing one never holds up commits.
            self._snap = self._connect(dsn)
            if level == "OFF":
                self._snap.execute("SET synchronous_commit TO off")
            self._prepare(_META_DDL, _SCHEMA_DDL, _UPGRADE_DDL)
        except BaseException:
            self._close_storage()
            raise
        self._start_writer(f"journal-writer:pg:{name}")

    def _open_read_only(self, dsn: str) -> None:
        """Beside a live writer: no advisory lock, no DDL, sessions that cannot write."""
        try:
            self._r = self._connect(dsn)
            self._snap = self._connect(dsn)
            for conn in (self._r, self._snap):
                conn.execute("SET default_transaction_read_only TO on")
            (meta,) = self._r.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f'"{self.name}".meta',)
            ).fetchone() or (False,)
            self._inspect(bool(meta))
        except BaseException:
            self._close_storage()
            raise

    def _connect(self, dsn: str) -> psycopg.Connection[Any]:
        conn = psycopg.connect(dsn, autocommit=True)
        self._conns.append(conn)
        return conn

    # ------------------------------------------------------------------------- dialect
    def _render(self, template: str) -> sql.Composed:
        # The templates hold no literal "%" or "?", so the swap cannot touch anything else.
        names = {table: sql.Identifier(self.name, table) for table in TABLES}
        return sql.SQL(template.replace("?", "%s")).format(schema=self._s, **names)

    def _execute(self, query: sql.Composed, params: Sequence[object] = ()) -> Cursor:
        return self._w.execute(query, params)

    def _read(self, query: sql.Composed, params: Sequence[object] = ()) -> list[Any]:
        with self._read_lock:
            return self._r.execute(query, params).fetchall()

    def _transaction(self) -> AbstractContextManager[Any]:
        return self._w.transaction()

    def _snapshot_execute(self, query: sql.Composed, params: Sequence[object] = ()) -> Cursor:
        return self._snap.execute(query, params)

    def _snapshot_transaction(self) -> AbstractContextManager[Any]:
        return self._snap.transaction()

    def _snapshot_rows(self, query: sql.Composed, params: Sequence[object] = ()) -> list[Any]:
        return self._snap.execute(query, params).fetchall()

    def _savepoint(self) -> AbstractContextManager[Any]:
        # Nested in `_transaction`, psycopg makes it a savepoint, rolled back on any error.
        return self._w.transaction()

    # -------------------------------------------------------------------------- writes
    def _commit_batch(self, entries: Sequence[NewEntry]) -> list[Entry | AppendRefusedError]:
        try:
            return self._commit_pipelined(entries)
        except psycopg.errors.UniqueViolation:
            # Some entry is refused (a second active assignment).
            # The pipelined transaction was rolled back before COMMIT, so nothing was
            # written and this is no retry of a failed commit: redo the batch with the
            # shared statements, which refuse just the offending entries.
            return super()._commit_batch(entries)

    def _commit_pipelined(self, entries: Sequence[NewEntry]) -> list[Entry | AppendRefusedError]:
        """The common case, no refusal: every statement of the batch sent in one pipeline
        (one round trip instead of three or more per entry), then one COMMIT. A refusal
        raises UniqueViolation at the pipeline's sync, before the COMMIT."""
        w = self._w
        insert = self._q(f"INSERT INTO {{entries}} ({ENTRY_COLUMNS}) VALUES ({ENTRY_VALUES})")
        release = self._q(
            "UPDATE {assignments} SET released_seq = ? WHERE unit_id = ? AND released_seq IS NULL"
        )
        assign = self._q(
            "INSERT INTO {assignments} (unit_id, incident_id, assigned_seq) VALUES (?, ?, ?)"
        )
        archive = self._q(ARCHIVE_SQL)
        outcomes: list[Entry | AppendRefusedError] = []
        seq = self._last
        stamp = now_ms()
        with w.transaction(), w.pipeline():
            for entry in entries:
                seq += 1
                row = make_row(seq, entry, stamp)
                w.execute(insert, row)
                # Releases before assignments: one command may move a unit.
                for unit in entry.release:
                    w.execute(release, (seq, unit))
                for a in entry.assign:
                    w.execute(assign, (a.unit_id, a.incident_id, seq))
                for incident_id, data in entry.archive:
                    w.execute(archive, (incident_id, seq, data))
                outcomes.append(entry_of(row, entry))
        self._last = seq
        return outcomes

    def _close_storage(self) -> None:
        # Closing the write session would release the advisory lock too, but only once its
        # backend process has exited, after close() returns: a writer reopening at once
        # (a quick restart, a test) could find it still held. Unlocking first is synchronous.
        if self._locked:
            self._locked = False
            try:
                self._w.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(self.name),))
            except Exception as exc:  # a dead session holds nothing: closing is enough
                log.warning("journal %s: error releasing the writer lock: %r", self.name, exc)
        for conn in self._conns:
            try:
                conn.close()
            except Exception as exc:
                log.warning("journal %s: error closing a connection: %r", self.name, exc)
        self._conns.clear()
