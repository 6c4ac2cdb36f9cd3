"""Write-ahead journal and snapshots: how acknowledged commands survive restarts.

`open_journal("sqlite" | "memory" | "postgresql://...", data_dir)` gives a `Journal`; see
`base.Journal` for the contract and `docs` in the issue for the design.
"""

from __future__ import annotations

from pathlib import Path

from dispatch_core.durability.journal.base import (
    FORMAT_VERSION,
    SNAPSHOT_VERSION,
    AppendRefusedError,
    Assignment,
    AssignmentConflictError,
    Entry,
    Journal,
    JournalClosedError,
    JournalCompactedError,
    JournalCorruptError,
    JournalError,
    JournalFatal,
    JournalLockedError,
    JournalMissingError,
    JournalReadOnlyError,
    JournalStats,
    JournalVersionError,
    NewEntry,
    Snapshot,
)
from dispatch_core.durability.journal.memory import MemoryJournal
from dispatch_core.durability.journal.sqlite import SqliteJournal

__all__ = [
    "FORMAT_VERSION",
    "SNAPSHOT_VERSION",
    "AppendRefusedError",
    "Assignment",
    "AssignmentConflictError",
    "Entry",
    "Journal",
    "JournalClosedError",
    "JournalCompactedError",
    "JournalCorruptError",
    "JournalError",
    "JournalFatal",
    "JournalLockedError",
    "JournalMissingError",
    "JournalReadOnlyError",
    "JournalStats",
    "JournalVersionError",
    "MemoryJournal",
    "NewEntry",
    "Snapshot",
    "SqliteJournal",
    "open_journal",
]


def open_journal(
    spec: str,
    data_dir: Path,
    *,
    synchronous: str = "FULL",
    name: str = "dispatch_journal",
    read_only: bool = False,
) -> Journal:
    """Open the journal `spec` names: "sqlite" (a file under `data_dir`), "memory" (no
    durability: tests and baselines) or a postgresql:// DSN (tables in schema `name`).

    `read_only` opens an existing journal for reading only, beside its writer if one runs
    (no single-writer lock, nothing created or repaired); JournalMissingError if none is
    there."""
    if spec == "sqlite":
        return SqliteJournal(data_dir, synchronous=synchronous, read_only=read_only)
    if spec == "memory":
        if read_only:
            raise JournalMissingError("a 'memory' journal keeps nothing to read")
        return MemoryJournal()
    if spec.startswith(("postgresql://", "postgres://")):
        # Imported here so psycopg is only needed by deployments that use PostgreSQL.
        from dispatch_core.durability.journal.postgres import PostgresJournal  # noqa: PLC0415

        return PostgresJournal(spec, name=name, synchronous=synchronous, read_only=read_only)
    raise ValueError(
        f"unknown journal {spec!r}: expected 'sqlite', 'memory' or a postgresql:// DSN"
    )
