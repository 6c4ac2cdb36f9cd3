"""Snapshots in a background thread, so a restart replays only what came after the last.

The core encodes a snapshot under its read lock with the GIL released; the write happens
here, off every request's path.
"""

from __future__ import annotations

import logging
import threading
import time

from dispatch_core.durability.pipeline import Pipeline

log = logging.getLogger(__name__)

#: Snapshot after this many entries...
DEFAULT_SNAPSHOT_EVERY = 10_000
#: ...or this many seconds after the last one, whichever comes first (if anything changed).
DEFAULT_SNAPSHOT_INTERVAL_S = 60.0


class Snapshotter:
    """Snapshots the pipeline every `every_entries` entries or `interval_s` seconds (whichever
    first, and only when something changed), in a background thread, and once more at a
    graceful stop, so a restart replays only what came after."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        every_entries: int = DEFAULT_SNAPSHOT_EVERY,
        interval_s: float = DEFAULT_SNAPSHOT_INTERVAL_S,
    ) -> None:
        self._pipeline = pipeline
        self._every = max(1, every_entries)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._last = pipeline.last_sequence
        self._last_pings = pipeline.pings_applied
        self._last_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="snapshotter", daemon=True)

    def start(self) -> Snapshotter:
        self._thread.start()
        return self

    def _changed(self) -> bool:
        """Commands or pings since the last snapshot. Pings count because positions are
        kept only by snapshots: a quiet command stream must not freeze them on disk."""
        pipeline = self._pipeline
        return pipeline.last_sequence != self._last or pipeline.pings_applied != self._last_pings

    def _due(self) -> bool:
        if not self._changed():
            return False
        changed = self._pipeline.last_sequence - self._last
        return changed >= self._every or time.monotonic() - self._last_at >= self._interval_s

    def _run(self) -> None:
        # Polling every 100 ms costs nothing and keeps "every N entries" close to N under load.
        while not self._stop.wait(0.1):
            if self._pipeline.failed is not None:
                return
            if self._due():
                self.snapshot_now()

    def snapshot_now(self) -> None:
        if self._pipeline.failed is not None:
            return
        try:
            started = time.perf_counter()
            pings = self._pipeline.pings_applied
            self._last = self._pipeline.snapshot()
            self._last_pings = pings
            self._last_at = time.monotonic()
            log.info(
                "snapshot at sequence %d written in %.3f s",
                self._last,
                time.perf_counter() - started,
            )
        except Exception:
            # A failed snapshot loses nothing (the journal still has every entry); a failed
            # *commit* has already made the journal fatal, which the pipeline sees.
            log.exception("snapshot failed")

    def stop(self, *, final: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if final and self._changed():
            self.snapshot_now()
