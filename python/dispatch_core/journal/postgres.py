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
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

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
)
from dispatch_core.journal.base import verified as _verified

_SCHEMA = (
    """CREATE TABLE {s}.entries (
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
    """CREATE UNIQUE INDEX entries_request ON {s}.entries (method, request_id)
        WHERE request_id <> ''""",
    """CREATE TABLE {s}.snapshots (
        sequence BIGINT PRIMARY KEY,
        version INTEGER NOT NULL,
        time_unix_ms BIGINT NOT NULL,
        data BYTEA NOT NULL,
        checksum BIGINT NOT NULL)""",
    """CREATE TABLE {s}.assignments (
        unit_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        assigned_seq BIGINT NOT NULL,
        released_seq BIGINT)""",
    # The database-level second line: one active assignment per unit.
    """CREATE UNIQUE INDEX assignments_one_active ON {s}.assignments (unit_id)
        WHERE released_seq IS NULL""",
    "CREATE INDEX assignments_released ON {s}.assignments (released_seq)",
)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock, derived from the journal name."""
    digest = hashlib.blake2b(f"dispatch-journal:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _RefusedError(Exception):
    """Raised inside an entry's savepoint to roll just that entry back."""

    def __init__(self, error: AppendRefusedError) -> None:
        self.error = error


class PostgresJournal(GroupCommitJournal):
    def __init__(
        self,
        dsn: str,
        *,
        name: str = "dispatch_journal",
        synchronous: str = "FULL",
        max_batch: int = 1024,
    ) -> None:
        super().__init__(max_batch=max_batch)
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {level!r}")
        self.name = name
        self._s = sql.Identifier(name)
        self._read_lock = threading.Lock()
        self._conns: list[psycopg.Connection[Any]] = []
        try:
            # autocommit: transactions are opened explicitly with conn.transaction(), so a
            # batch is exactly one transaction and nothing lingers idle-in-transaction.
            self._w = self._connect(dsn)
            (got,) = self._w.execute(
                "SELECT pg_try_advisory_lock(%s)", (advisory_key(name),)
            ).fetchone() or (False,)
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
            self._prepare()
        except BaseException:
            self._close_storage()
            raise
        self._start_writer(f"journal-writer:pg:{name}")

    def _connect(self, dsn: str) -> psycopg.Connection[Any]:
        conn = psycopg.connect(dsn, autocommit=True)
        self._conns.append(conn)
        return conn

    def _q(self, text: str) -> sql.Composed:
        """`text` with {s} bound to the journal's schema, quoted."""
        return sql.SQL(text).format(s=self._s)

    def _prepare(self) -> None:
        w = self._w
        with w.transaction():
            w.execute(self._q("CREATE SCHEMA IF NOT EXISTS {s}"))
            w.execute(
                self._q("CREATE TABLE IF NOT EXISTS {s}.meta (key TEXT PRIMARY KEY, value TEXT)")
            )
            found = w.execute(
                self._q("SELECT value FROM {s}.meta WHERE key = 'format_version'")
            ).fetchone()
            if found is None:
                for statement in _SCHEMA:
                    w.execute(self._q(statement))
                w.execute(
                    self._q("INSERT INTO {s}.meta VALUES ('format_version', %s)"),
                    (str(FORMAT_VERSION),),
                )
            elif found[0] != str(FORMAT_VERSION):
                raise JournalVersionError(
                    f"PostgreSQL journal {self.name!r} has format version {found[0]}; this"
                    f" build reads version {FORMAT_VERSION}"
                )
            self._drop_torn_tail()
            (last,) = w.execute(
                self._q(
                    "SELECT greatest(coalesce((SELECT max(sequence) FROM {s}.entries), 0),"
                    " coalesce((SELECT max(sequence) FROM {s}.snapshots), 0))"
                )
            ).fetchone() or (0,)
            self._last = int(last)

    def _drop_torn_tail(self) -> None:
        # PostgreSQL commits are atomic, so a bad last row means damage rather than a torn
        # write; the rule is still the same as SQLite's so both backends recover alike.
        row = self._w.execute(
            self._q(f"SELECT {ENTRY_COLUMNS} FROM {{s}}.entries ORDER BY sequence DESC LIMIT 1")
        ).fetchone()
        if row is None or decode_row(row)[1]:
            return
        seq = row[0]
        log.warning("journal %s: dropping corrupt last entry %d", self.name, seq)
        self._w.execute(self._q("DELETE FROM {s}.entries WHERE sequence = %s"), (seq,))
        self._w.execute(self._q("DELETE FROM {s}.assignments WHERE assigned_seq = %s"), (seq,))
        self._w.execute(
            self._q("UPDATE {s}.assignments SET released_seq = NULL WHERE released_seq = %s"),
            (seq,),
        )

    # -------------------------------------------------------------------------- writes
    def _commit_batch(self, entries: Sequence[NewEntry]) -> list[Entry | AppendRefusedError]:
        try:
            return self._commit_pipelined(entries)
        except psycopg.errors.UniqueViolation:
            # Some entry is refused (a duplicate request or a second active assignment).
            # The pipelined transaction was rolled back before COMMIT, so nothing was
            # written and this is no retry of a failed commit: redo the batch entry by
            # entry, each in a savepoint, to refuse just the offending ones.
            return self._commit_one_by_one(entries)

    def _commit_pipelined(self, entries: Sequence[NewEntry]) -> list[Entry | AppendRefusedError]:
        """The common case, no refusal: every statement of the batch sent in one pipeline
        (one round trip instead of three or more per entry), then one COMMIT. A refusal
        raises UniqueViolation at the pipeline's sync, before the COMMIT."""
        w = self._w
        insert = self._q(
            f"INSERT INTO {{s}}.entries ({ENTRY_COLUMNS}) VALUES ({', '.join(['%s'] * 10)})"
        )
        release = self._q(
            "UPDATE {s}.assignments SET released_seq = %s"
            " WHERE unit_id = %s AND released_seq IS NULL"
        )
        assign = self._q(
            "INSERT INTO {s}.assignments (unit_id, incident_id, assigned_seq) VALUES (%s, %s, %s)"
        )
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
                outcomes.append(entry_of(row, entry))
        self._last = seq
        return outcomes

    def _commit_one_by_one(self, entries: Sequence[NewEntry]) -> list[Entry | AppendRefusedError]:
        outcomes: list[Entry | AppendRefusedError] = []
        seq = self._last
        stamp = now_ms()
        # The outer block commits (synchronously) once for the whole batch; a failing
        # COMMIT raises out of it and the journal turns fatal.
        with self._w.transaction():
            for entry in entries:
                row = make_row(seq + 1, entry, stamp)
                try:
                    with self._w.transaction():  # a savepoint: undo only this entry
                        self._write_entry(row, entry)
                except _RefusedError as refused:
                    outcomes.append(refused.error)
                    continue
                seq += 1
                outcomes.append(entry_of(row, entry))
        self._last = seq
        return outcomes

    def _write_entry(self, row: EntryRow, entry: NewEntry) -> None:
        w = self._w
        seq = row[0]
        inserted = w.execute(
            self._q(
                f"INSERT INTO {{s}}.entries ({ENTRY_COLUMNS}) VALUES"
                f" ({', '.join(['%s'] * len(row))}) ON CONFLICT DO NOTHING RETURNING sequence"
            ),
            row,
        ).fetchone()
        if inserted is None:
            raise _RefusedError(DuplicateRequestError(entry.method, entry.request_id))
        for unit in entry.release:
            w.execute(
                self._q(
                    "UPDATE {s}.assignments SET released_seq = %s"
                    " WHERE unit_id = %s AND released_seq IS NULL"
                ),
                (seq, unit),
            )
        for a in entry.assign:
            # ON CONFLICT without a target covers the partial unique index: the index, not
            # a prior SELECT, decides, so it holds even against a buggy caller.
            ok = w.execute(
                self._q(
                    "INSERT INTO {s}.assignments (unit_id, incident_id, assigned_seq)"
                    " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
                ),
                (a.unit_id, a.incident_id, seq),
            ).fetchone()
            if ok is None:
                raise _RefusedError(AssignmentConflictError(a.unit_id))

    def write_snapshot(self, sequence: int, data: bytes) -> None:
        def op() -> None:
            check_snapshot_sequence(sequence, self._last)
            with self._w.transaction():
                self._w.execute(
                    self._q(
                        "INSERT INTO {s}.snapshots VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT (sequence) DO UPDATE SET version = excluded.version,"
                        " time_unix_ms = excluded.time_unix_ms, data = excluded.data,"
                        " checksum = excluded.checksum"
                    ),
                    (sequence, SNAPSHOT_VERSION, now_ms(), data, snapshot_checksum(sequence, data)),
                )
                # Keep the previous snapshot as a manual fallback.
                self._w.execute(
                    self._q(
                        "DELETE FROM {s}.snapshots WHERE sequence < (SELECT sequence FROM"
                        " {s}.snapshots ORDER BY sequence DESC LIMIT 1 OFFSET 1)"
                    )
                )

        self._write_op(op)

    def truncate_before(self, sequence: int) -> int:
        def op() -> int:
            check_truncate(sequence, self.latest_snapshot())
            with self._w.transaction():
                cur = self._w.execute(
                    self._q("DELETE FROM {s}.entries WHERE sequence < %s"), (sequence,)
                )
                count = cur.rowcount
                self._w.execute(
                    self._q("DELETE FROM {s}.assignments WHERE released_seq < %s"), (sequence,)
                )
            return count

        return self._write_op(op)

    # --------------------------------------------------------------------------- reads
    def _read(self, query: sql.Composed, params: Sequence[object] = ()) -> list[Any]:
        with self._read_lock:
            return self._r.execute(query, params).fetchall()

    def last_sequence(self) -> int:
        return self._last

    def earliest_sequence(self) -> int:
        (first,) = self._read(self._q("SELECT min(sequence) FROM {s}.entries"))[0]
        return int(first) if first is not None else self._last + 1

    def entries_since(self, after: int) -> Iterator[Entry]:
        if after < 0:
            raise ValueError(f"after must be >= 0, not {after}")
        tail = self._last
        earliest = self.earliest_sequence()
        if after + 1 < earliest:
            raise JournalCompactedError(after, earliest)
        return _verified(self._pages(after, tail), after=after, tail=tail)

    def _pages(self, after: int, tail: int) -> Iterator[Any]:
        query = self._q(
            f"SELECT {ENTRY_COLUMNS} FROM {{s}}.entries"
            " WHERE sequence > %s AND sequence <= %s ORDER BY sequence LIMIT %s"
        )
        cursor = after
        while cursor < tail:
            rows = self._read(query, (cursor, tail, READ_PAGE))
            if not rows:
                return
            yield from rows
            cursor = rows[-1][0]

    def find(self, method: str, request_id: str) -> Entry | None:
        rows = self._read(
            self._q(
                f"SELECT {ENTRY_COLUMNS} FROM {{s}}.entries"
                " WHERE method = %s AND request_id = %s AND request_id <> ''"
            ),
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
            self._q(
                "SELECT sequence, version, data, checksum FROM {s}.snapshots"
                " ORDER BY sequence DESC LIMIT 1"
            )
        )
        if not rows:
            return None
        seq, version, data, crc = rows[0]
        if version != SNAPSHOT_VERSION:
            raise JournalVersionError(
                f"snapshot {seq} of PostgreSQL journal {self.name!r} has version {version};"
                f" this build reads version {SNAPSHOT_VERSION}"
            )
        data = bytes(data)
        if crc != snapshot_checksum(seq, data):
            raise JournalCorruptError(seq, "snapshot checksum mismatch")
        return Snapshot(int(seq), data)

    def _close_storage(self) -> None:
        # Closing the write session releases the advisory lock.
        for conn in self._conns:
            try:
                conn.close()
            except Exception as exc:
                log.warning("journal %s: error closing a connection: %r", self.name, exc)
        self._conns.clear()
