"""Opening a journal and recovering a pipeline from it.

Shared by `dispatch-core serve`, `dispatch-core replay` and the benchmarks, so that every
one of them recovers exactly the same way.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from dispatch_core._core import DispatchCore
from dispatch_core.durability.journal import (
    Journal,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    JournalMissingError,
    JournalVersionError,
    open_journal,
)
from dispatch_core.durability.pipeline import Pipeline, ReplayError, RestoreReport
from dispatch_core.startup import (
    EXIT_DATA_DIR,
    EXIT_JOURNAL_CORRUPT,
    EXIT_JOURNAL_FATAL,
    EXIT_JOURNAL_LOCKED,
    EXIT_JOURNAL_UNREACHABLE,
    EXIT_USAGE,
    POSTGRES_SCHEMES,
    redact_dsn,
)
from dispatch_core.views.events import DEFAULT_BUFFER

log = logging.getLogger(__name__)

#: Exit code when another writer holds the journal (the codes live in `startup`).
EXIT_JOURNAL_REFUSED = EXIT_JOURNAL_LOCKED
__all__ = ["EXIT_JOURNAL_FATAL", "EXIT_JOURNAL_REFUSED", "JournalConfig", "RecoveryError"]


@dataclass(frozen=True)
class JournalConfig:
    """Which journal, where, and how hard it syncs."""

    spec: str = "sqlite"
    data_dir: Path = Path("./data")
    synchronous: str = "FULL"
    #: PostgreSQL schema holding the journal's tables (one per deployment or test).
    name: str = "dispatch_journal"
    snapshot_every: int = 10_000  # see snapshotter.DEFAULT_SNAPSHOT_EVERY
    snapshot_interval_s: float = 60.0
    #: Events a WatchEvents subscriber may fall behind by before its stream is ended.
    watch_buffer: int = DEFAULT_BUFFER

    @property
    def is_postgres(self) -> bool:
        return self.spec.startswith(POSTGRES_SCHEMES)

    def describe(self) -> str:
        """Which journal, where: the DSN with its password redacted and the schema, so a
        log shows which server and database were really used."""
        if self.is_postgres:
            where = f"{redact_dsn(self.spec)}, schema {self.name}"
        elif self.spec == "sqlite":
            where = str(self.data_dir)
        else:
            where = "process memory"
        kind = "postgresql" if self.is_postgres else self.spec
        return f"{kind} journal ({where}, synchronous={self.synchronous.upper()})"

    def open(self, *, read_only: bool = False) -> Journal:
        return open_journal(
            self.spec,
            self.data_dir,
            synchronous=self.synchronous,
            name=self.name,
            read_only=read_only,
        )


class RecoveryError(Exception):
    """The journal cannot be opened or replayed; the message says why and what to do, and
    `exit_code` is the process's (3 locked, 5 data directory, 6 unreachable, 7 corrupt)."""

    def __init__(self, message: str, exit_code: int = EXIT_JOURNAL_LOCKED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def open_journal_checked(config: JournalConfig, *, read_only: bool = False) -> Journal:
    """Opens the journal, turning every way that can fail into a RecoveryError with one
    line and its exit code (`serve` and `replay` share the wording)."""
    what = config.describe()
    try:
        return config.open(read_only=read_only)
    except JournalLockedError as exc:
        raise RecoveryError(
            f"refusing to start: {exc}; stop the other process first",
            EXIT_JOURNAL_LOCKED,
        ) from exc
    except (JournalVersionError, JournalCorruptError) as exc:
        raise RecoveryError(
            f"refusing to start: {what}: {exc}; restore it from a backup or run a build"
            " that reads it",
            EXIT_JOURNAL_CORRUPT,
        ) from exc
    except JournalMissingError as exc:
        raise RecoveryError(
            f"{exc}; check --data-dir and --journal", EXIT_JOURNAL_UNREACHABLE
        ) from exc
    except (OSError, sqlite3.Error) as exc:
        if config.is_postgres:
            raise RecoveryError(f"cannot open the {what}: {exc}", EXIT_JOURNAL_UNREACHABLE) from exc
        raise RecoveryError(
            f"cannot open the {what}: {exc}; check that the data directory is writable",
            EXIT_DATA_DIR,
        ) from exc
    except ValueError as exc:
        raise RecoveryError(f"cannot open the {what}: {exc}", EXIT_USAGE) from exc
    except JournalError as exc:
        raise RecoveryError(f"refusing to start: {what}: {exc}", EXIT_JOURNAL_CORRUPT) from exc
    except Exception as exc:
        if not config.is_postgres:
            raise
        # psycopg's OperationalError and friends: refused connection, unknown host, role
        # or database, failed authentication. Their text is libpq's, which never quotes
        # the password; only the first line is kept (the rest repeats the address).
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RecoveryError(
            f"cannot reach the {what}: {reason}; check that PostgreSQL runs there and"
            " that the DSN's host, port, user and database are right",
            EXIT_JOURNAL_UNREACHABLE,
        ) from exc


def open_pipeline(
    config: JournalConfig, *, core: DispatchCore | None = None
) -> tuple[Pipeline, RestoreReport]:
    """Opens the journal and rebuilds a pipeline from it. Raises RecoveryError with a clear
    message (the journal is closed again) when that is impossible."""
    journal = open_journal_checked(config)
    if config.spec == "memory":
        log.warning("journal 'memory' keeps nothing across restarts: tests and benchmarks only")
    pipeline = Pipeline(core if core is not None else DispatchCore(), journal=journal)
    try:
        report = pipeline.restore()
    except (JournalCorruptError, JournalVersionError, ReplayError) as exc:
        journal.close()
        raise RecoveryError(
            f"refusing to start: the {config.describe()} cannot be recovered: {exc}."
            " Acknowledged data before the journal's tail is damaged; restore the data"
            " directory (or database) from a backup rather than starting without it",
            EXIT_JOURNAL_CORRUPT,
        ) from exc
    except BaseException:
        journal.close()
        raise
    log.info(
        "recovered from %s: snapshot at %d, %d entries replayed, last sequence %d (%.2f s)",
        config.describe(),
        report.snapshot_sequence,
        report.replayed,
        report.last_sequence,
        report.seconds,
    )
    return pipeline, report
