"""Opening a journal and recovering a pipeline from it.

Shared by `dispatch-core serve`, `dispatch-core replay` and the benchmarks, so that every
one of them recovers exactly the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dispatch_core._core import DispatchCore
from dispatch_core.durability.journal import (
    Journal,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    JournalVersionError,
    open_journal,
)
from dispatch_core.durability.pipeline import Pipeline, ReplayError, RestoreReport
from dispatch_core.views.events import DEFAULT_BUFFER

log = logging.getLogger(__name__)

#: Exit code when the journal refuses to open or recover (locked, corrupt, wrong version).
EXIT_JOURNAL_REFUSED = 3
#: Exit code when the journal failed while serving (JournalFatal): durability was lost.
EXIT_JOURNAL_FATAL = 4


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

    def describe(self) -> str:
        where = (
            str(self.data_dir)
            if self.spec == "sqlite"
            else f"schema {self.name}"
            if "://" in self.spec
            else "process memory"
        )
        kind = "postgresql" if "://" in self.spec else self.spec
        return f"{kind} journal ({where}, synchronous={self.synchronous.upper()})"

    def open(self) -> Journal:
        return open_journal(self.spec, self.data_dir, synchronous=self.synchronous, name=self.name)


class RecoveryError(Exception):
    """The journal cannot be opened or replayed; the message says why and what to do."""


def open_pipeline(
    config: JournalConfig, *, core: DispatchCore | None = None
) -> tuple[Pipeline, RestoreReport]:
    """Opens the journal and rebuilds a pipeline from it. Raises RecoveryError with a clear
    message (the journal is closed again) when that is impossible."""
    try:
        journal = config.open()
    except JournalLockedError as exc:
        raise RecoveryError(f"refusing to start: {exc}") from exc
    except (JournalVersionError, JournalCorruptError) as exc:
        raise RecoveryError(f"refusing to start: {config.describe()}: {exc}") from exc
    except (JournalError, OSError) as exc:
        raise RecoveryError(f"cannot open the {config.describe()}: {exc}") from exc
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
            " directory (or database) from a backup rather than starting without it"
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
