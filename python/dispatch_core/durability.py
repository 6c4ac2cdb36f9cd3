"""Opening a journal, recovering an engine from it, and snapshotting it while it runs.

Shared by `dispatch-core serve`, `dispatch-core replay` and the benchmarks, so that every
one of them recovers exactly the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dispatch_core._core import UnitIndex
from dispatch_core.engine import Engine, ReplayError, RestoreReport
from dispatch_core.events import DEFAULT_BUFFER
from dispatch_core.journal import (
    Journal,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    JournalVersionError,
    open_journal,
)
from dispatch_core.snapshot import SnapshotFormatError

log = logging.getLogger(__name__)

#: Exit code when the journal refuses to open or recover (locked, corrupt, wrong version).
EXIT_JOURNAL_REFUSED = 3
#: Exit code when the journal failed while serving (JournalFatal): durability was lost.
EXIT_JOURNAL_FATAL = 4

#: Snapshot after this many entries...
DEFAULT_SNAPSHOT_EVERY = 10_000
#: ...or this many seconds after the last one, whichever comes first (if anything changed).
DEFAULT_SNAPSHOT_INTERVAL_S = 60.0


@dataclass(frozen=True)
class JournalConfig:
    """Which journal, where, and how hard it syncs."""

    spec: str = "sqlite"
    data_dir: Path = Path("./data")
    synchronous: str = "FULL"
    #: PostgreSQL schema holding the journal's tables (one per deployment or test).
    name: str = "dispatch_journal"
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    snapshot_interval_s: float = DEFAULT_SNAPSHOT_INTERVAL_S
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


def open_engine(
    config: JournalConfig, *, index: UnitIndex | None = None
) -> tuple[Engine, RestoreReport]:
    """Opens the journal and rebuilds an engine from it. Raises RecoveryError with a clear
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
    engine = Engine(index if index is not None else UnitIndex(), journal=journal)
    try:
        report = engine.restore()
    except (JournalCorruptError, JournalVersionError, ReplayError, SnapshotFormatError) as exc:
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
    return engine, report


class Snapshotter:
    """Snapshots the engine every `every_entries` entries or `interval_s` seconds (whichever
    first, and only when something changed), in a background thread, and once more at a
    graceful stop, so a restart replays only what came after."""

    def __init__(
        self,
        engine: Engine,
        *,
        every_entries: int = DEFAULT_SNAPSHOT_EVERY,
        interval_s: float = DEFAULT_SNAPSHOT_INTERVAL_S,
    ) -> None:
        self._engine = engine
        self._every = max(1, every_entries)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._last = engine.last_sequence
        self._last_pings = engine.pings_applied
        self._last_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="snapshotter", daemon=True)

    def start(self) -> Snapshotter:
        self._thread.start()
        return self

    def _changed(self) -> bool:
        """Commands or pings since the last snapshot. Pings count because positions are
        kept only by snapshots: a quiet command stream must not freeze them on disk."""
        engine = self._engine
        return engine.last_sequence != self._last or engine.pings_applied != self._last_pings

    def _due(self) -> bool:
        if not self._changed():
            return False
        changed = self._engine.last_sequence - self._last
        return changed >= self._every or time.monotonic() - self._last_at >= self._interval_s

    def _run(self) -> None:
        # Polling every 100 ms costs nothing and keeps "every N entries" close to N under load.
        while not self._stop.wait(0.1):
            if self._engine.failed is not None:
                return
            if self._due():
                self.snapshot_now()

    def snapshot_now(self) -> None:
        if self._engine.failed is not None:
            return
        try:
            started = time.perf_counter()
            pings = self._engine.pings_applied
            self._last = self._engine.snapshot()
            self._last_pings = pings
            self._last_at = time.monotonic()
            log.info(
                "snapshot at sequence %d written in %.3f s",
                self._last,
                time.perf_counter() - started,
            )
        except Exception:
            # A failed snapshot loses nothing (the journal still has every entry); a failed
            # *commit* has already made the journal fatal, which the engine sees.
            log.exception("snapshot failed")

    def stop(self, *, final: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if final and self._changed():
            self.snapshot_now()
