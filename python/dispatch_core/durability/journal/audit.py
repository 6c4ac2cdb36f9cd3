"""The audit trail's storage: an `audit` table beside the journal, in the same SQLite file
or PostgreSQL schema, with `audit_refs` indexing the incidents and units each record names
and `audit_mark` holding the trail's high-water mark over the journal.

The journal's own tables are untouched. Records are written in batches by the audit
trail's background thread (`security/audit.py`) on a connection of its own, with a cheap
commit (SQLite `synchronous=NORMAL` in WAL mode, PostgreSQL `synchronous_commit=off`): a
crash may lose the last batches of records. A command's record carries its journal
sequence, and each batch moves the mark (every command up to it has its record) in the
same transaction as its rows, so what a crash loses of commands' records lies after the
mark, where `reconcile` finds it again in the journal at the next start. Ids are assigned
here, in order, by the one writer a journal has.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dispatch_core.durability.journal.sqlite import DB_FILE

#: Records a query returns at most.
MAX_PAGE = 1000


@dataclass(frozen=True)
class AuditRow:
    """One RPC in the trail (`id` 0 until stored)."""

    time_unix_ms: int
    principal: str
    roles: str
    method: str
    code: str
    incident_ids: tuple[str, ...] = ()
    unit_ids: tuple[str, ...] = ()
    location_count: int = 0
    justification: str = ""
    request_id: str = ""
    peer: str = ""
    id: int = 0
    #: The journal sequence of the command this record is of (0: a read, a refusal).
    sequence: int = 0


@dataclass(frozen=True)
class AuditQuery:
    principal: str = ""
    incident_id: str = ""
    unit_id: str = ""
    since_unix_ms: int | None = None
    until_unix_ms: int | None = None
    after_id: int = 0
    limit: int = 100


class AuditStore(Protocol):
    def append(self, rows: Sequence[AuditRow], mark: int | None = None) -> None:
        """Writes `rows` and, when given, the new high-water `mark`, in one transaction."""

    def query(self, query: AuditQuery) -> list[AuditRow]: ...

    def mark(self) -> int:
        """The high-water mark: every journaled command up to it has its record."""

    def sequences_after(self, sequence: int) -> set[int]:
        """The journal sequences after `sequence` that have a record of success."""

    def prune(self, before_unix_ms: int) -> int:
        """Removes the records older than `before_unix_ms` (the retention); returns how
        many. The only deletion the trail knows."""

    def close(self) -> None: ...


#: Records removed per transaction when pruning: a long backlog never holds the write
#: lock (which SQLite shares with the journal) for long.
PRUNE_BATCH = 5000


_COLUMNS = (
    "id, time_unix_ms, principal, roles, method, code, incident_ids, unit_ids,"
    " location_count, justification, request_id, peer, sequence"
)
_VALUES = len(_COLUMNS.split(","))


def _row_values(row: AuditRow, row_id: int) -> tuple[Any, ...]:
    return (
        row_id,
        row.time_unix_ms,
        row.principal,
        row.roles,
        row.method,
        row.code,
        "\n".join(row.incident_ids),
        "\n".join(row.unit_ids),
        row.location_count,
        row.justification,
        row.request_id,
        row.peer,
        row.sequence,
    )


def _refs(row: AuditRow, row_id: int) -> list[tuple[str, int]]:
    refs = {f"incident/{i}" for i in row.incident_ids} | {f"unit/{u}" for u in row.unit_ids}
    return [(ref, row_id) for ref in sorted(refs)]


def _from_db(values: Sequence[Any]) -> AuditRow:
    (row_id, time_ms, principal, roles, method, code, incidents, units, count, why, rid, peer) = (
        values[:12]
    )
    seq = values[12] if len(values) > 12 else 0
    return AuditRow(
        int(time_ms),
        principal,
        roles,
        method,
        code,
        tuple(incidents.split("\n")) if incidents else (),
        tuple(units.split("\n")) if units else (),
        int(count),
        why,
        rid,
        peer,
        int(row_id),
        int(seq),
    )


def _where(query: AuditQuery, mark: str) -> tuple[str, list[Any]]:
    """The WHERE clause and parameters of a query (`mark`: the driver's placeholder)."""
    clauses: list[str] = [f"a.id > {mark}"]
    params: list[Any] = [query.after_id]
    if query.principal:
        clauses.append(f"a.principal = {mark}")
        params.append(query.principal)
    if query.since_unix_ms is not None:
        clauses.append(f"a.time_unix_ms >= {mark}")
        params.append(query.since_unix_ms)
    if query.until_unix_ms is not None:
        clauses.append(f"a.time_unix_ms < {mark}")
        params.append(query.until_unix_ms)
    for kind, value in (("incident", query.incident_id), ("unit", query.unit_id)):
        if value:
            clauses.append(
                f"a.id IN (SELECT r.id FROM {{refs}} r WHERE r.ref = {mark} AND r.id > {mark})"
            )
            params += [f"{kind}/{value}", query.after_id]
    return " AND ".join(clauses), params


class MemoryAuditStore:
    """The trail of a server whose journal is in memory (tests, benchmarks)."""

    def __init__(self) -> None:
        self._rows: list[AuditRow] = []
        self._mark = 0
        self._lock = threading.Lock()

    def append(self, rows: Sequence[AuditRow], mark: int | None = None) -> None:
        with self._lock:
            start = len(self._rows) + 1
            for offset, row in enumerate(rows):
                self._rows.append(_from_db(_row_values(row, start + offset)))
            if mark is not None:
                self._mark = mark

    def mark(self) -> int:
        return self._mark

    def sequences_after(self, sequence: int) -> set[int]:
        with self._lock:
            return {r.sequence for r in self._rows if r.sequence > sequence and r.code == "OK"}

    def prune(self, before_unix_ms: int) -> int:
        with self._lock:
            kept = [r for r in self._rows if r.time_unix_ms >= before_unix_ms]
            removed = len(self._rows) - len(kept)
            self._rows = kept
        return removed

    def query(self, query: AuditQuery) -> list[AuditRow]:
        with self._lock:
            rows = list(self._rows)
        out = []
        for row in rows:
            if row.id <= query.after_id or (query.principal and row.principal != query.principal):
                continue
            if query.since_unix_ms is not None and row.time_unix_ms < query.since_unix_ms:
                continue
            if query.until_unix_ms is not None and row.time_unix_ms >= query.until_unix_ms:
                continue
            if query.incident_id and query.incident_id not in row.incident_ids:
                continue
            if query.unit_id and query.unit_id not in row.unit_ids:
                continue
            out.append(row)
            if len(out) >= query.limit:
                break
        return out

    def close(self) -> None:
        return None


_SQLITE_DDL = (
    f"""CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY, time_unix_ms INTEGER NOT NULL, principal TEXT NOT NULL,
        roles TEXT NOT NULL, method TEXT NOT NULL, code TEXT NOT NULL,
        incident_ids TEXT NOT NULL, unit_ids TEXT NOT NULL, location_count INTEGER NOT NULL,
        justification TEXT NOT NULL, request_id TEXT NOT NULL, peer TEXT NOT NULL,
        sequence INTEGER NOT NULL DEFAULT 0)
    -- {_COLUMNS}""",
    "CREATE INDEX IF NOT EXISTS audit_principal ON audit (principal, id)",
    "CREATE INDEX IF NOT EXISTS audit_time ON audit (time_unix_ms)",
    """CREATE TABLE IF NOT EXISTS audit_refs (
        ref TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (ref, id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS audit_refs_id ON audit_refs (id)",
    """CREATE TABLE IF NOT EXISTS audit_mark (
        one INTEGER PRIMARY KEY CHECK (one = 1), sequence INTEGER NOT NULL)""",
)
#: After the `sequence` column exists (a trail written before it gets it here).
_SQLITE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS audit_sequence ON audit (sequence) WHERE sequence > 0",
)
_MARK_SQL = (
    "INSERT INTO {t} (one, sequence) VALUES (1, {m})"
    " ON CONFLICT (one) DO UPDATE SET sequence = excluded.sequence"
)


#: The trail's own SQLite file beside the journal's. SQLite has one writer per file: in the
#: journal's file, every audit batch held the write lock that command commits wait for
#: (measured: a tenth of the journal writer's time went to waiting at BEGIN under a busy
#: evening's load, and SQLite's busy handler sleeps in steps of up to 100 ms).
AUDIT_FILE = "audit.sqlite3"


class SqliteAuditStore:
    """`audit`, `audit_refs` and `audit_mark` in `audit.sqlite3` beside the journal, on a
    connection of their own. A data directory from before the trail had its own file keeps
    its records in the journal's file: they are copied over once, at the first open."""

    def __init__(self, data_dir: Path, *, read_only: bool = False) -> None:
        path = data_dir / AUDIT_FILE
        self._select = _COLUMNS.replace("id,", "a.id,", 1)
        if read_only:
            if not path.exists() and (data_dir / DB_FILE).exists():
                path = data_dir / DB_FILE  # an older data directory, never opened since
            self._conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(audit)")}
            if columns and "sequence" not in columns:  # a trail from before the column
                self._select = self._select.replace("sequence", "0 AS sequence")
        else:
            new = not path.exists()
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA busy_timeout = 30000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # No fsync per batch: a crash may lose the last batches of read records, and the
            # records of commands are found again in the journal (`reconcile`).
            self._conn.execute("PRAGMA synchronous = NORMAL")
            for ddl in _SQLITE_DDL:
                self._conn.execute(ddl)
            if new:
                self._adopt_journal_trail(data_dir / DB_FILE)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(audit)")}
            if "sequence" not in columns:
                self._conn.execute(
                    "ALTER TABLE audit ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0"
                )
            for ddl in _SQLITE_INDEXES:
                self._conn.execute(ddl)
        self._lock = threading.Lock()
        self._next = self._max_id() + 1

    def _adopt_journal_trail(self, journal: Path) -> None:
        """Copies the records an older release kept in the journal's file, once."""
        if not journal.exists():
            return
        self._conn.execute("ATTACH DATABASE ? AS old", (str(journal),))
        try:
            tables = {
                row[0]
                for row in self._conn.execute(
                    "SELECT name FROM old.sqlite_master WHERE type='table'"
                )
            }
            if "audit" not in tables:
                return
            old_columns = [row[1] for row in self._conn.execute("PRAGMA old.table_info(audit)")]
            shared = ", ".join(c for c in _COLUMNS.replace(" ", "").split(",") if c in old_columns)
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(f"INSERT INTO audit ({shared}) SELECT {shared} FROM old.audit")
            if "audit_refs" in tables:
                self._conn.execute(
                    "INSERT OR IGNORE INTO audit_refs SELECT ref, id FROM old.audit_refs"
                )
            if "audit_mark" in tables:
                self._conn.execute(
                    "INSERT OR REPLACE INTO audit_mark SELECT one, sequence FROM old.audit_mark"
                )
            self._conn.execute("COMMIT")
        finally:
            self._conn.execute("DETACH DATABASE old")

    def _max_id(self) -> int:
        try:
            (top,) = self._conn.execute("SELECT coalesce(max(id), 0) FROM audit").fetchone()
        except sqlite3.OperationalError:  # read-only, before any server wrote a record
            return 0
        return int(top)

    def append(self, rows: Sequence[AuditRow], mark: int | None = None) -> None:
        with self._lock:
            ids = range(self._next, self._next + len(rows))
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' * _VALUES)})",
                    [_row_values(row, i) for row, i in zip(rows, ids, strict=True)],
                )
                self._conn.executemany(
                    "INSERT OR IGNORE INTO audit_refs (ref, id) VALUES (?, ?)",
                    [ref for row, i in zip(rows, ids, strict=True) for ref in _refs(row, i)],
                )
                if mark is not None:
                    self._conn.execute(_MARK_SQL.format(t="audit_mark", m="?"), (mark,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._next += len(rows)

    def query(self, query: AuditQuery) -> list[AuditRow]:
        where, params = _where(query, "?")
        sql = (
            f"SELECT {self._select} FROM audit a WHERE "
            f"{where.format(refs='audit_refs')} ORDER BY a.id LIMIT ?"
        )
        with self._lock:
            try:
                found = self._conn.execute(sql, [*params, min(query.limit, MAX_PAGE)]).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise
        return [_from_db(values) for values in found]

    def mark(self) -> int:
        with self._lock:
            try:
                found = self._conn.execute("SELECT sequence FROM audit_mark").fetchone()
            except sqlite3.OperationalError:  # read-only, before any server wrote a record
                return 0
        return int(found[0]) if found else 0

    def sequences_after(self, sequence: int) -> set[int]:
        with self._lock:
            found = self._conn.execute(
                "SELECT sequence FROM audit WHERE sequence > ? AND code = 'OK'", (sequence,)
            ).fetchall()
        return {int(row[0]) for row in found}

    def prune(self, before_unix_ms: int) -> int:
        removed = 0
        while True:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    ids = [
                        (int(row[0]),)
                        for row in self._conn.execute(
                            "SELECT id FROM audit WHERE time_unix_ms < ? LIMIT ?",
                            (before_unix_ms, PRUNE_BATCH),
                        )
                    ]
                    self._conn.executemany("DELETE FROM audit_refs WHERE id = ?", ids)
                    self._conn.executemany("DELETE FROM audit WHERE id = ?", ids)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            removed += len(ids)
            if len(ids) < PRUNE_BATCH:
                return removed

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresAuditStore:
    """`audit` and `audit_refs` in the journal's PostgreSQL schema."""

    def __init__(self, dsn: str, schema: str, *, read_only: bool = False) -> None:
        import psycopg  # noqa: PLC0415 (psycopg only where PostgreSQL is used)
        from psycopg import sql  # noqa: PLC0415

        self._sql = sql
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._schema = sql.Identifier(schema)
        if read_only:
            self._conn.execute("SET default_transaction_read_only TO on")
        else:
            # An audit commit waits for no disk flush; a crash may lose the last of them.
            self._conn.execute("SET synchronous_commit TO off")
            for ddl in (
                "CREATE SCHEMA IF NOT EXISTS {s}",
                """CREATE TABLE IF NOT EXISTS {s}.audit (
                    id BIGINT PRIMARY KEY, time_unix_ms BIGINT NOT NULL, principal TEXT NOT NULL,
                    roles TEXT NOT NULL, method TEXT NOT NULL, code TEXT NOT NULL,
                    incident_ids TEXT NOT NULL, unit_ids TEXT NOT NULL,
                    location_count BIGINT NOT NULL, justification TEXT NOT NULL,
                    request_id TEXT NOT NULL, peer TEXT NOT NULL)""",
                "ALTER TABLE {s}.audit ADD COLUMN IF NOT EXISTS sequence BIGINT NOT NULL DEFAULT 0",
                "CREATE INDEX IF NOT EXISTS audit_principal ON {s}.audit (principal, id)",
                "CREATE INDEX IF NOT EXISTS audit_time ON {s}.audit (time_unix_ms)",
                "CREATE INDEX IF NOT EXISTS audit_sequence ON {s}.audit (sequence)"
                " WHERE sequence > 0",
                """CREATE TABLE IF NOT EXISTS {s}.audit_refs (
                    ref TEXT NOT NULL, id BIGINT NOT NULL, PRIMARY KEY (ref, id))""",
                "CREATE INDEX IF NOT EXISTS audit_refs_id ON {s}.audit_refs (id)",
                """CREATE TABLE IF NOT EXISTS {s}.audit_mark (
                    one INTEGER PRIMARY KEY CHECK (one = 1), sequence BIGINT NOT NULL)""",
            ):
                self._conn.execute(sql.SQL(ddl).format(s=self._schema))
        self._lock = threading.Lock()
        self._next = self._max_id() + 1

    def _max_id(self) -> int:
        exists = self._conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{self._schema.as_string()}.audit",)
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        found = self._conn.execute(
            self._sql.SQL("SELECT coalesce(max(id), 0) FROM {s}.audit").format(s=self._schema)
        ).fetchone()
        return int(found[0]) if found else 0

    def append(self, rows: Sequence[AuditRow], mark: int | None = None) -> None:
        sql = self._sql
        with self._lock:
            ids = range(self._next, self._next + len(rows))
            with self._conn.transaction(), self._conn.cursor() as cur:
                if rows:
                    cur.executemany(
                        sql.SQL("INSERT INTO {s}.audit ({c}) VALUES ({v})").format(
                            s=self._schema,
                            c=sql.SQL(_COLUMNS),
                            v=sql.SQL(", ".join(["%s"] * _VALUES)),
                        ),
                        [_row_values(row, i) for row, i in zip(rows, ids, strict=True)],
                    )
                refs = [ref for row, i in zip(rows, ids, strict=True) for ref in _refs(row, i)]
                if refs:
                    cur.executemany(
                        sql.SQL(
                            "INSERT INTO {s}.audit_refs (ref, id) VALUES (%s, %s)"
                            " ON CONFLICT DO NOTHING"
                        ).format(s=self._schema),
                        refs,
                    )
                if mark is not None:
                    cur.execute(
                        sql.SQL(_MARK_SQL.format(t="{s}.audit_mark", m="%s")).format(
                            s=self._schema
                        ),
                        (mark,),
                    )
            self._next += len(rows)

    def query(self, query: AuditQuery) -> list[AuditRow]:
        sql = self._sql
        where, params = _where(query, "%s")
        refs = sql.SQL("{s}.audit_refs").format(s=self._schema).as_string(self._conn)
        statement = (
            f"SELECT {_COLUMNS.replace('id,', 'a.id,', 1)} FROM "
            f"{sql.SQL('{s}.audit').format(s=self._schema).as_string(self._conn)} a WHERE "
            f"{where.format(refs=refs)} ORDER BY a.id LIMIT %s"
        )
        with self._lock:
            if not self._max_id():  # no table yet, or nothing in it
                return []
            found = self._conn.execute(statement, [*params, min(query.limit, MAX_PAGE)]).fetchall()
        return [_from_db(values) for values in found]

    def mark(self) -> int:
        sql = self._sql
        with self._lock:
            exists = self._conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{self._schema.as_string()}.audit_mark",)
            ).fetchone()
            if not exists or not exists[0]:
                return 0
            found = self._conn.execute(
                sql.SQL("SELECT sequence FROM {s}.audit_mark").format(s=self._schema)
            ).fetchone()
        return int(found[0]) if found else 0

    def sequences_after(self, sequence: int) -> set[int]:
        sql = self._sql
        with self._lock:
            found = self._conn.execute(
                sql.SQL(
                    "SELECT sequence FROM {s}.audit WHERE sequence > %s AND code = 'OK'"
                ).format(s=self._schema),
                (sequence,),
            ).fetchall()
        return {int(row[0]) for row in found}

    def prune(self, before_unix_ms: int) -> int:
        sql = self._sql
        removed = 0
        statement = sql.SQL(
            "WITH old AS (SELECT id FROM {s}.audit WHERE time_unix_ms < %s LIMIT %s),"
            " refs AS (DELETE FROM {s}.audit_refs WHERE id IN (SELECT id FROM old))"
            " DELETE FROM {s}.audit WHERE id IN (SELECT id FROM old)"
        ).format(s=self._schema)
        while True:
            with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute(statement, (before_unix_ms, PRUNE_BATCH))
                count = cur.rowcount
            removed += max(count, 0)
            if count < PRUNE_BATCH:
                return removed

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_audit_store(
    spec: str, data_dir: Path, schema: str, *, read_only: bool = False
) -> AuditStore:
    """The store beside the journal `spec` names (`JournalConfig.spec`)."""
    if spec == "sqlite":
        return SqliteAuditStore(data_dir, read_only=read_only)
    if spec == "memory":
        return MemoryAuditStore()
    return PostgresAuditStore(spec, schema, read_only=read_only)
