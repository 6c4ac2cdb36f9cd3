"""A journal kept in process memory: no durability at all.

For tests and for the "no journal" baseline in benchmarks. It keeps the same rules as the
real backends (gap-free sequences, `find` returning the newest entry of a request_id,
double assignments refused, compaction) so code written against it behaves the same on
SQLite or PostgreSQL.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

from dispatch_core.durability.journal.base import (
    AssignmentConflictError,
    Entry,
    Journal,
    JournalClosedError,
    JournalCompactedError,
    JournalStats,
    NewEntry,
    Snapshot,
    check_new_entry,
    check_snapshot_sequence,
    check_truncate,
    entry_of,
    make_row,
    now_ms,
)


class MemoryJournal(Journal):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._by_request: dict[tuple[str, str], Entry] = {}
        self._archive: dict[str, bytes] = {}
        self._active: dict[str, str] = {}
        self._snapshot: Snapshot | None = None
        self._last = 0
        self._appends = 0
        self._closed = False

    def append(self, entry: NewEntry) -> Entry:
        check_new_entry(entry)
        with self._lock:
            if self._closed:
                raise JournalClosedError("journal is closed")
            key = (entry.method, entry.request_id)
            active = {u: i for u, i in self._active.items() if u not in set(entry.release)}
            for a in entry.assign:
                if a.unit_id in active:
                    raise AssignmentConflictError(a.unit_id)
                active[a.unit_id] = a.incident_id
            stored = entry_of(make_row(self._last + 1, entry, now_ms()), entry)
            self._active = active
            self._entries.append(stored)
            if entry.request_id:
                self._by_request[key] = stored
            self._archive.update(entry.archive)
            self._last += 1
            self._appends += 1
            return stored

    def entries_since(self, after: int) -> Iterator[Entry]:
        if after < 0:
            raise ValueError(f"after must be >= 0, not {after}")
        with self._lock:
            earliest = self._earliest()
            if after + 1 < earliest:
                raise JournalCompactedError(after, earliest)
            start = bisect.bisect_right([e.sequence for e in self._entries], after)
            return iter(self._entries[start:])

    def find(self, method: str, request_id: str) -> Entry | None:
        with self._lock:
            return self._by_request.get((method, request_id)) if request_id else None

    def find_archived(self, incident_id: str) -> bytes | None:
        with self._lock:
            return self._archive.get(incident_id)

    def write_snapshot(self, sequence: int, data: bytes) -> None:
        with self._lock:
            check_snapshot_sequence(sequence, self._last)
            self._snapshot = Snapshot(sequence, bytes(data))

    def latest_snapshot(self) -> Snapshot | None:
        return self._snapshot

    def last_sequence(self) -> int:
        return self._last

    def _earliest(self) -> int:
        return self._entries[0].sequence if self._entries else self._last + 1

    def earliest_sequence(self) -> int:
        with self._lock:
            return self._earliest()

    def truncate_before(self, sequence: int) -> int:
        with self._lock:
            check_truncate(sequence, self._snapshot)
            keep = [e for e in self._entries if e.sequence >= sequence]
            dropped = len(self._entries) - len(keep)
            for e in self._entries[:dropped]:
                key = (e.method, e.request_id)
                if e.request_id and self._by_request.get(key) is e:
                    del self._by_request[key]
            self._entries = keep
            return dropped

    def stats(self) -> JournalStats:
        # Every append is its own "commit": there is nothing to batch in memory.
        return JournalStats(self._appends, self._appends, 1 if self._appends else 0)

    def close(self) -> None:
        self._closed = True
