"""The journal over SQL tables: every rule SQLite and PostgreSQL share, written once.

Both keep the same four tables (`meta`, `entries`, `snapshots`, `assignments`), one write
connection used only by the writer thread (under the write lock) and one read connection
(under a read lock), so a lookup never waits behind a sync. A backend supplies what truly
differs: how a statement is spelled for its database (`_render`), how it runs on each
connection (`_execute`, `_read`), how a write transaction and a savepoint are opened, and
its schema DDL. Statements here are templates: table names as `{entries}`, `{snapshots}`,
`{assignments}`, `{meta}`, parameters as `?`.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from dispatch_core.durability.journal.base import (
    ENTRY_COLUMNS,
    FORMAT_VERSION,
    READ_PAGE,
    SNAPSHOT_VERSION,
    AppendRefusedError,
    AssignmentConflictError,
    Entry,
    EntryRow,
    GroupCommitJournal,
    JournalCompactedError,
    JournalCorruptError,
    JournalError,
    JournalMissingError,
    JournalReadOnlyError,
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

#: The table names a statement template may use.
TABLES = ("meta", "entries", "snapshots", "assignments", "archive")

#: The final state of an incident a clock command took out of memory, which GetIncident
#: answers from then on. An id a client reuses later is archived again: newest wins.
ARCHIVE_SQL = (
    "INSERT INTO {archive} (incident_id, sequence, data) VALUES (?, ?, ?)"
    " ON CONFLICT (incident_id) DO UPDATE SET sequence = excluded.sequence, data = excluded.data"
)

#: One `?` per column of ENTRY_COLUMNS.
ENTRY_VALUES = ", ".join("?" * len(ENTRY_COLUMNS.split(",")))

#: A statement as the backend's driver takes it (str for sqlite3/APSW, sql.Composed for
#: psycopg).
Q = TypeVar("Q")
T = TypeVar("T")


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class SqlJournal(GroupCommitJournal, Generic[Q]):
    """Group commit over SQL tables. Subclasses connect, lock, call `_prepare` at open and
    `_start_writer`, and implement the hooks below."""

    def __init__(self, *, store: str, max_batch: int, read_only: bool = False) -> None:
        super().__init__(max_batch=max_batch)
        #: Opened by `_inspect` rather than `_prepare`: nothing is written, not even the
        #: repair of a torn tail, and there is no writer thread.
        self._read_only = read_only
        #: What errors and logs call this journal ("journal <file>", "PostgreSQL journal
        #: '<name>'").
        self._store = store
        self._last = 0
        self._rendered: dict[str, Q] = {}
        #: Serialises snapshot writes and reads on the snapshot connection; appends never
        #: take it.
        self._snapshot_lock = threading.Lock()

    # ------------------------------------------------------------------ backend hooks
    @abstractmethod
    def _render(self, template: str) -> Q:
        """`template` in this database's spelling: table names filled in, `?` placeholders
        in the driver's style."""

    @abstractmethod
    def _execute(self, query: Q, params: Sequence[object] = ()) -> Cursor:
        """Run `query` on the write connection (writer thread, write lock held)."""

    @abstractmethod
    def _read(self, query: Q, params: Sequence[object] = ()) -> list[Any]:
        """All rows of `query` on the read connection (callable from any thread)."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A write transaction on the write connection: committed (synced) when the block
        ends, rolled back if it raises; a failing COMMIT raises."""

    @abstractmethod
    def _savepoint(self) -> AbstractContextManager[Any]:
        """A savepoint inside `_transaction`, rolled back if the block raises
        AppendRefusedError, released otherwise."""

    def _q(self, template: str) -> Q:
        """`template` rendered once and reused (the hot path runs the same few)."""
        query = self._rendered.get(template)
        if query is None:
            query = self._rendered[template] = self._render(template)
        return query

    # -------------------------------------------------------------------------- opening
    def _prepare(
        self, meta_ddl: Sequence[str], schema_ddl: Sequence[str], upgrade_ddl: Sequence[str]
    ) -> None:
        """At open, in one write transaction: make sure the meta table exists
        (`meta_ddl`), create the tables of a new store (`schema_ddl`) or refuse a store of
        another format version, bring its indexes up to date (`upgrade_ddl`, idempotent),
        drop a torn tail and find the last sequence."""
        with self._transaction():
            for statement in meta_ddl:
                self._execute(self._q(statement))
            found = self._execute(
                self._q("SELECT value FROM {meta} WHERE key = 'format_version'")
            ).fetchone()
            if found is None:
                for statement in schema_ddl:
                    self._execute(self._q(statement))
                self._execute(
                    self._q("INSERT INTO {meta} VALUES ('format_version', ?)"),
                    (str(FORMAT_VERSION),),
                )
            elif found[0] != str(FORMAT_VERSION):
                raise JournalVersionError(
                    f"{self._store} has format version {found[0]}; this build reads"
                    f" version {FORMAT_VERSION}"
                )
            for statement in upgrade_ddl:
                self._execute(self._q(statement))
            self._drop_torn_tail()
            self._last = self._scan_last()
        # Outside the transaction: the snapshot connection sees only what is committed.
        newest = self._snapshot_rows(self._q("SELECT coalesce(max(sequence), 0) FROM {snapshots}"))
        self._last = max(self._last, int(newest[0][0]))

    def _inspect(self, meta_exists: bool) -> None:
        """At a read-only open: check the format version and find the last intact
        sequence, without a write. `meta_exists` says whether the store exists at all."""
        if not meta_exists:
            raise JournalMissingError(f"no journal found: {self._store} does not exist")
        found = self._read(self._q("SELECT value FROM {meta} WHERE key = 'format_version'"))
        if not found:
            raise JournalMissingError(f"{self._store} holds no journal (no format version)")
        if found[0][0] != str(FORMAT_VERSION):
            raise JournalVersionError(
                f"{self._store} has format version {found[0][0]}; this build reads"
                f" version {FORMAT_VERSION}"
            )
        rows = self._read(
            self._q(f"SELECT {ENTRY_COLUMNS} FROM {{entries}} ORDER BY sequence DESC LIMIT 1")
        )
        last = 0
        if rows:
            last = int(rows[0][0])
            if not decode_row(rows[0])[1]:
                # The writer drops a torn tail at its next start; a reader just stops short.
                log.warning(
                    "%s: last entry %d is torn or corrupt; reading up to it", self._store, last
                )
                last -= 1
        snapshots = self._snapshot_rows(
            self._q("SELECT coalesce(max(sequence), 0) FROM {snapshots}")
        )
        older = self._read(self._q("SELECT coalesce(max(sequence), 0) FROM {snapshots}"))
        # Entries may have been truncated below the newest snapshot.
        self._last = max(last, int(snapshots[0][0]) if snapshots else 0, int(older[0][0]))

    def submit(self, entry: NewEntry) -> Future[Entry]:
        if self._read_only:
            raise JournalReadOnlyError(f"{self._store} is open read-only")
        return super().submit(entry)

    def _write_op(self, op: Callable[[], T], lock: threading.Lock | None = None) -> T:
        if self._read_only:
            raise JournalReadOnlyError(f"{self._store} is open read-only")
        return super()._write_op(op, lock)

    def _drop_torn_tail(self) -> None:
        """A bad last entry is a write that never completed (or, on PostgreSQL whose commits
        are atomic, damage): remove it and its effect on assignments, so its sequence is
        reused and it cannot turn into middle corruption once later entries follow it."""
        row = self._execute(
            self._q(f"SELECT {ENTRY_COLUMNS} FROM {{entries}} ORDER BY sequence DESC LIMIT 1")
        ).fetchone()
        if row is None or decode_row(row)[1]:
            return
        seq = row[0]
        log.warning("%s: dropping torn or corrupt last entry %d", self._store, seq)
        self._execute(self._q("DELETE FROM {entries} WHERE sequence = ?"), (seq,))
        self._execute(self._q("DELETE FROM {assignments} WHERE assigned_seq = ?"), (seq,))
        self._execute(
            self._q("UPDATE {assignments} SET released_seq = NULL WHERE released_seq = ?"),
            (seq,),
        )

    def _scan_last(self) -> int:
        # After truncation the newest snapshot may be ahead of every kept entry.
        entries, snapshots = self._execute(
            self._q(
                "SELECT (SELECT coalesce(max(sequence), 0) FROM {entries}),"
                " (SELECT coalesce(max(sequence), 0) FROM {snapshots})"
            )
        ).fetchone()
        return max(int(entries), int(snapshots))

    # ------------------------------------------------------------------------ snapshots
    # Snapshots have a connection (and, on SQLite, a database file) of their own, so that
    # writing one, megabytes at a time, never holds up the group commit of commands.
    # Backends implement these three; the store of snapshots has the same `{snapshots}`
    # table as the journal, where stores made before this rule may still hold some.
    @abstractmethod
    def _snapshot_execute(self, query: Q, params: Sequence[object] = ()) -> Cursor:
        """Run a statement on the snapshot connection, inside `_snapshot_transaction`."""

    @abstractmethod
    def _snapshot_transaction(self) -> AbstractContextManager[Any]:
        """One write transaction on the snapshot connection."""

    @abstractmethod
    def _snapshot_rows(self, query: Q, params: Sequence[object] = ()) -> list[Any]:
        """The rows of a read on the snapshot connection."""

    # --------------------------------------------------------------------------- writes
    def _commit_batch(self, entries: Sequence[NewEntry]) -> list[Entry | AppendRefusedError]:
        # One transaction, one sync; a failing COMMIT raises out and the journal turns fatal.
        with self._transaction():
            outcomes, last = self._write_entries(entries)
        self._last = last
        return outcomes

    def _write_entries(
        self, entries: Sequence[NewEntry]
    ) -> tuple[list[Entry | AppendRefusedError], int]:
        """Write `entries` inside the batch's transaction, refusing just the offending ones
        (a refused entry leaves no write behind and takes no sequence). Returns the outcomes
        and the new last sequence."""
        outcomes: list[Entry | AppendRefusedError] = []
        seq = self._last
        stamp = now_ms()
        for entry in entries:
            row = make_row(seq + 1, entry, stamp)
            try:
                if entry.assign:
                    # An assignment can be refused after the entry's row and releases went
                    # in: the savepoint undoes just this entry.
                    with self._savepoint():
                        self._write_entry(row, entry)
                else:
                    # Only the entry's own insert can be refused, and that is its first
                    # write: nothing to undo, so no savepoint (two statements fewer).
                    self._write_entry(row, entry)
            except AppendRefusedError as refused:
                # Handed to the appender's future: the writer thread's frames are no use there.
                outcomes.append(refused.with_traceback(None))
                continue
            seq += 1
            outcomes.append(entry_of(row, entry))
        return outcomes, seq

    def _write_entry(self, row: EntryRow, entry: NewEntry) -> None:
        """Insert the entry, apply its releases, then its assignments. Raises
        AssignmentConflictError (the entry's other writes are undone by its savepoint)."""
        seq = row[0]
        inserted = self._execute(
            self._q(
                f"INSERT INTO {{entries}} ({ENTRY_COLUMNS}) VALUES ({ENTRY_VALUES})"
                " ON CONFLICT DO NOTHING RETURNING sequence"
            ),
            row,
        ).fetchone()
        if inserted is None:
            # Only the sequence can conflict: the journal's own numbering is broken, which
            # no refusal of one entry can mend.
            raise JournalError(f"{self._store}: sequence {seq} is already taken")
        # Releases before assignments: one command may move a unit. A release only takes a
        # row out of the unique index, so it cannot be refused.
        for unit in entry.release:
            self._execute(
                self._q(
                    "UPDATE {assignments} SET released_seq = ?"
                    " WHERE unit_id = ? AND released_seq IS NULL"
                ),
                (seq, unit),
            )
        for incident_id, data in entry.archive:
            self._execute(self._q(ARCHIVE_SQL), (incident_id, seq, data))
        for a in entry.assign:
            # ON CONFLICT without a target covers the partial unique index: the index, not
            # a prior SELECT, decides, so it holds even against a buggy caller.
            ok = self._execute(
                self._q(
                    "INSERT INTO {assignments} (unit_id, incident_id, assigned_seq)"
                    " VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1"
                ),
                (a.unit_id, a.incident_id, seq),
            ).fetchone()
            if ok is None:
                raise AssignmentConflictError(a.unit_id)

    def write_snapshot(self, sequence: int, data: bytes) -> None:
        def op() -> None:
            check_snapshot_sequence(sequence, self._last)
            with self._snapshot_transaction():
                self._snapshot_execute(
                    self._q(
                        "INSERT INTO {snapshots} VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (sequence) DO UPDATE SET version = excluded.version,"
                        " time_unix_ms = excluded.time_unix_ms, data = excluded.data,"
                        " checksum = excluded.checksum"
                    ),
                    (sequence, SNAPSHOT_VERSION, now_ms(), data, snapshot_checksum(sequence, data)),
                )
                # Keep the previous snapshot too: if the newest turns out unreadable, an
                # operator can still fall back by hand.
                self._snapshot_execute(
                    self._q(
                        "DELETE FROM {snapshots} WHERE sequence < (SELECT sequence FROM"
                        " {snapshots} ORDER BY sequence DESC LIMIT 1 OFFSET 1)"
                    )
                )

        self._write_op(op, self._snapshot_lock)

    def truncate_before(self, sequence: int) -> int:
        def op() -> int:
            check_truncate(sequence, self.latest_snapshot())
            with self._transaction():
                (count,) = self._execute(
                    self._q("SELECT count(*) FROM {entries} WHERE sequence < ?"), (sequence,)
                ).fetchone()
                self._execute(self._q("DELETE FROM {entries} WHERE sequence < ?"), (sequence,))
                self._execute(
                    self._q("DELETE FROM {assignments} WHERE released_seq < ?"), (sequence,)
                )
            return int(count)

        return self._write_op(op)

    # ---------------------------------------------------------------------------- reads
    def last_sequence(self) -> int:
        return self._last

    def earliest_sequence(self) -> int:
        (first,) = self._read(self._q("SELECT min(sequence) FROM {entries}"))[0]
        return int(first) if first is not None else self._last + 1

    def entries_since(self, after: int) -> Iterator[Entry]:
        tail, pages = self.stored_pages(after)
        return verified(pages, after=after, tail=tail)

    def stored_pages(self, after: int) -> tuple[int, Iterator[list[Any]]]:
        if after < 0:
            raise ValueError(f"after must be >= 0, not {after}")
        tail = self._last
        earliest = self.earliest_sequence()
        if after + 1 < earliest:
            raise JournalCompactedError(after, earliest)
        return tail, self._pages(after, tail)

    def _pages(self, after: int, tail: int) -> Iterator[list[Any]]:
        # Keyset pagination: each page is an index range scan, and the read lock is not
        # held while the caller consumes rows.
        query = self._q(
            f"SELECT {ENTRY_COLUMNS} FROM {{entries}}"
            " WHERE sequence > ? AND sequence <= ? ORDER BY sequence LIMIT ?"
        )
        cursor = after
        while cursor < tail:
            rows = self._read(query, (cursor, tail, READ_PAGE))
            if not rows:
                return
            yield rows
            cursor = rows[-1][0]

    def find(self, method: str, request_id: str) -> Entry | None:
        rows = self._read(
            self._q(
                f"SELECT {ENTRY_COLUMNS} FROM {{entries}}"
                " WHERE method = ? AND request_id = ? AND request_id <> ''"
                " ORDER BY sequence DESC LIMIT 1"
            ),
            (method, request_id),
        )
        if not rows:
            return None
        entry, ok = decode_row(rows[0])
        if not ok:
            raise JournalCorruptError(entry.sequence, "checksum mismatch")
        return entry

    def find_archived(self, incident_id: str) -> bytes | None:
        rows = self._read(
            self._q("SELECT data FROM {archive} WHERE incident_id = ?"), (incident_id,)
        )
        return bytes(rows[0][0]) if rows else None

    def latest_snapshot(self) -> Snapshot | None:
        # Never past the last sequence: a read-only journal fixed its view at open, while
        # its writer goes on snapshotting (a writer's snapshots are never past it anyway).
        query = self._q(
            "SELECT sequence, version, data, checksum FROM {snapshots}"
            " WHERE sequence <= ? ORDER BY sequence DESC LIMIT 1"
        )
        with self._snapshot_lock:
            rows = self._snapshot_rows(query, (self._last,))
        # A store made before snapshots had their own connection keeps them in the journal.
        older = self._read(query, (self._last,))
        if older and (not rows or older[0][0] > rows[0][0]):
            rows = older
        if not rows:
            return None
        seq, version, data, crc = rows[0]
        if version != SNAPSHOT_VERSION:
            raise JournalVersionError(
                f"snapshot {seq} of {self._store} has version {version}; this build reads"
                f" version {SNAPSHOT_VERSION}"
            )
        data = bytes(data)
        if crc != snapshot_checksum(seq, data):
            raise JournalCorruptError(seq, "snapshot checksum mismatch")
        return Snapshot(int(seq), data)
