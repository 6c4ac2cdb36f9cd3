"""The journal contract every backend keeps, and the parts they share.

A journal is the write-ahead record of acknowledged commands: `append` returns only once the
entry is durable (per the configured sync policy), so the engine may answer the client after
it. Restoring is "newest snapshot, then every entry after it". Backends differ only in
storage; the entry format, its checksum, the corruption rules and group commit live here so
that SQLite and PostgreSQL cannot drift apart (and the SQL both run lives in `sqlstore`).
"""

from __future__ import annotations

import json
import logging
import queue
import struct
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

from dispatch_core._core import JOURNAL_FORMAT, check_rows
from dispatch_core._core import entry_checksum as _core_checksum

log = logging.getLogger("dispatch_core.durability.journal")

#: Version of the stored journal layout (tables, columns, checksum recipe). A store written
#: with another version is refused rather than guessed at. The recipe and this number live
#: in the core (`rust/core/src/record.rs`), with the rules for reading entries back.
FORMAT_VERSION: int = JOURNAL_FORMAT
#: Version of the snapshot envelope the journal stores. The snapshot *bytes* are the
#: engine's; this versions how the journal keeps them.
SNAPSHOT_VERSION = 1

#: SQLite's PRAGMA synchronous levels. PostgreSQL maps OFF to synchronous_commit=off and
#: everything else to on.
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

#: Rows fetched per round trip when streaming entries: keeps memory flat for 1M entries.
READ_PAGE = 1000


# ---------------------------------------------------------------------------------- errors
class JournalError(Exception):
    """Base of every journal error."""


class JournalFatal(JournalError):  # noqa: N818 (the name the engine is written against)
    """A commit or sync failed: durability can no longer be promised.

    Never retried: after a failed fsync the kernel may have dropped the dirty pages and a
    retry could report success for data that is gone. The engine must stop taking writes and
    exit non-zero; a restart recovers from what is really on disk.
    """


class JournalLockedError(JournalError):
    """Another process (or another journal object) already writes this journal."""


class JournalMissingError(JournalError):
    """A read-only open found no journal where it looked (nothing is created then)."""


class JournalReadOnlyError(JournalError):
    """A write to a journal opened read-only (replay beside a live server)."""


class JournalVersionError(JournalError):
    """The store or a snapshot was written with a format version this build does not read."""


class JournalCorruptError(JournalError):
    """An entry (or snapshot) before the tail fails its checksum or is missing."""

    def __init__(self, sequence: int, what: str) -> None:
        self.sequence = sequence
        super().__init__(f"journal corrupt at sequence {sequence}: {what}")


class JournalCompactedError(JournalError):
    """Entries asked for were removed by `truncate_before` (maps to OUT_OF_RANGE)."""

    def __init__(self, after: int, earliest: int) -> None:
        self.after = after
        self.earliest = earliest
        super().__init__(
            f"entries after sequence {after} are no longer kept; the earliest kept is"
            f" {earliest} (restore from the snapshot instead)"
        )


class JournalClosedError(JournalError):
    """The journal was closed."""


class AppendRefusedError(JournalError):
    """One entry was refused by a constraint; the journal is fine and nothing was written."""


class AssignmentConflictError(AppendRefusedError):
    """The entry would give a unit a second active assignment (the database's second line
    of defence behind the engine's own check)."""

    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        super().__init__(f"unit {unit_id!r} already has an active assignment")


# ----------------------------------------------------------------------------------- types
@dataclass(frozen=True, slots=True)
class Assignment:
    """A unit committed to an incident by the entry's command."""

    unit_id: str
    incident_id: str


@dataclass(frozen=True, slots=True)
class NewEntry:
    """What the engine appends: the command, its answer and who asked.

    `assign` / `release` describe the command's effect on assignments so the store can
    refuse a unit's second active assignment in the same transaction as the entry. A release
    is applied before the assignments of the same entry, so one command may move a unit.
    `time_unix_ms` defaults to the journal's clock at append.
    """

    method: str
    request_id: str
    payload: bytes
    result: bytes
    actor: str
    assign: tuple[Assignment, ...] = ()
    release: tuple[str, ...] = ()
    time_unix_ms: int | None = None
    #: (incident_id, encoded final Incident) of closed incidents the command (a clock tick)
    #: took out of memory: stored beside the entry, in its transaction, for GetIncident.
    archive: tuple[tuple[str, bytes], ...] = ()


class Entry(NamedTuple):
    """A journaled entry: its sequence is assigned by the journal (1, 2, 3, ... no gaps).

    A named tuple rather than a frozen dataclass: replay builds one per entry, and a tuple
    is built several times faster.
    """

    sequence: int
    method: str
    request_id: str
    payload: bytes
    result: bytes
    time_unix_ms: int
    actor: str
    assign: tuple[Assignment, ...]
    release: tuple[str, ...]
    checksum: int


class Snapshot(NamedTuple):
    """Engine state as of `sequence` (a tuple, so `seq, data = snapshot` works)."""

    sequence: int
    data: bytes


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters that show group commit working: `commits` < `appends` under concurrency."""

    appends: int
    commits: int
    largest_batch: int


# ------------------------------------------------------------------------ format and codec
_HEADER = struct.Struct(">Iqq")

#: Column order shared by both backends' SELECTs.
ENTRY_COLUMNS = (
    "sequence, method, request_id, payload, result, time_unix_ms, actor, assign, release, checksum"
)

EntryRow = tuple[int, str, str, bytes, bytes, int, str, str, str, int]


# Most commands assign and release nothing: "[]" (what json.dumps gives) without the encoder
# saves most of make_row's time on the append path.
def encode_assign(assign: Sequence[Assignment]) -> str:
    if not assign:
        return "[]"
    return json.dumps([[a.unit_id, a.incident_id] for a in assign], separators=(",", ":"))


def encode_release(release: Sequence[str]) -> str:
    if not release:
        return "[]"
    return json.dumps(list(release), separators=(",", ":"))


def entry_checksum(fields: Sequence[Any]) -> int:
    """CRC-32 over the nine stored fields before `checksum`, each length-prefixed so field
    boundaries are covered too (the recipe is the core's: `record::checksum`)."""
    sequence, method, request_id, payload, result, at, actor, assign_text, release_text = fields
    crc: int = _core_checksum(
        sequence, method, request_id, payload, result, at, actor, assign_text, release_text
    )
    return crc


def snapshot_checksum(sequence: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(_HEADER.pack(SNAPSHOT_VERSION, sequence, len(data))))


def make_row(sequence: int, entry: NewEntry, now_ms: int) -> EntryRow:
    """The stored row of `entry` at `sequence`, checksum included."""
    at = entry.time_unix_ms if entry.time_unix_ms is not None else now_ms
    assign_text = encode_assign(entry.assign)
    release_text = encode_release(entry.release)
    fields = (
        sequence,
        entry.method,
        entry.request_id,
        entry.payload,
        entry.result,
        at,
        entry.actor,
        assign_text,
        release_text,
    )
    return (*fields, entry_checksum(fields))


def entry_of(row: EntryRow, new: NewEntry) -> Entry:
    """The Entry for a row just made from `new` (no need to decode what we encoded)."""
    return Entry(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], new.assign, new.release, row[9]
    )


def decode_row(row: Sequence[Any]) -> tuple[Entry, bool]:
    """The entry in `row` and whether it is intact (checksum matches, fields decode)."""
    seq, method, request_id, payload, result, at, actor, assign_text, release_text, crc = row
    try:
        payload, result = bytes(payload), bytes(result)
        # Most commands assign nothing: skip the JSON parser for them (replay speed).
        assign = (
            ()
            if assign_text == "[]"
            else tuple(Assignment(str(u), str(i)) for u, i in json.loads(assign_text))
        )
        release = () if release_text == "[]" else tuple(str(u) for u in json.loads(release_text))
        ok = crc == entry_checksum(
            (seq, method, request_id, payload, result, at, actor, assign_text, release_text)
        )
    except (ValueError, TypeError, AttributeError, UnicodeError, struct.error):
        # A damaged field can fail to decode before the checksum is even compared.
        payload, result, assign, release, ok = b"", b"", (), (), False
    entry = Entry(
        int(seq),
        str(method),
        str(request_id),
        payload,
        result,
        int(at) if isinstance(at, int) else 0,
        str(actor),
        assign,
        release,
        int(crc) if isinstance(crc, int) else -1,
    )
    return entry, ok


def intact_entry(row: Sequence[Any]) -> Entry:
    """The entry of a row already verified (`check_rows`): decoded, not checked again."""
    seq, method, request_id, payload, result, at, actor, assign_text, release_text, crc = row
    # Most commands assign nothing: skip the JSON parser for them (replay speed).
    assign = (
        ()
        if assign_text == "[]"
        else tuple(Assignment(str(u), str(i)) for u, i in json.loads(assign_text))
    )
    release = () if release_text == "[]" else tuple(str(u) for u in json.loads(release_text))
    return Entry(seq, method, request_id, payload, result, at, actor, assign, release, crc)


def handle_problem(problem: tuple[str, int, int] | None) -> bool:
    """Acts on what `check_rows` (or the core's replay) found wrong: a torn last entry was
    never acknowledged, so reading stops there with a warning (returns True); a missing or
    bad entry before the tail means acknowledged data is damaged, which is refused, naming
    the sequence. Returns False when there was no problem."""
    if problem is None:
        return False
    kind, sequence, found = problem
    if kind == "torn":
        log.warning("journal: dropping torn or corrupt last entry %d", sequence)
        return True
    if kind == "missing":
        raise JournalCorruptError(sequence, f"entry is missing (next stored is {found})")
    raise JournalCorruptError(sequence, "checksum mismatch before the tail")


def verified(pages: Iterable[list[Sequence[Any]]], *, after: int, tail: int) -> Iterator[Entry]:
    """Entries after `after` from stored row pages (in sequence order), checked by the
    core's rules (`check_rows`; see `handle_problem` for what a problem means)."""
    last = after
    for page in pages:
        good, problem = check_rows(page, last, tail)
        for row in page[:good]:
            yield intact_entry(row)
        last += good
        if handle_problem(problem):
            return


def check_new_entry(entry: NewEntry) -> None:
    """Refuse malformed entries at the caller, before they can reach a shared batch."""
    if not isinstance(entry, NewEntry):
        raise TypeError(f"append takes a NewEntry, not {type(entry).__name__}")
    if not entry.method:
        raise ValueError("entry.method must not be empty")
    if not isinstance(entry.payload, bytes) or not isinstance(entry.result, bytes):
        raise TypeError("entry.payload and entry.result must be bytes")
    units = [a.unit_id for a in entry.assign]
    if len(set(units)) != len(units):
        raise ValueError("entry.assign names a unit twice")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -------------------------------------------------------------------------------- contract
class Journal(ABC):
    """Append commands, read them back from a sequence, snapshot, restore. Thread-safe."""

    @abstractmethod
    def append(self, entry: NewEntry) -> Entry:
        """Journal `entry` and return it once durable.

        Raises AppendRefusedError subclasses for a refused entry (nothing written, journal fine)
        and JournalFatal when durability failed (stop writing; exit non-zero).
        """

    def submit(self, entry: NewEntry) -> Future[Entry]:
        """Queue `entry` and return at once; the future completes when it is durable.

        What lets a caller hand over entries in order under its own lock and wait for the
        sync outside it, so concurrent commands share syncs. Entries submitted from one
        thread (or under one lock) get sequences in submission order. Validation errors
        raise here; refusals and JournalFatal arrive through the future. This default (for
        backends without a queue, e.g. memory) appends synchronously.
        """
        future: Future[Entry] = Future()
        try:
            future.set_result(self.append(entry))
        except (TypeError, ValueError):
            raise
        except Exception as exc:
            future.set_exception(exc)
        return future

    @abstractmethod
    def entries_since(self, after: int) -> Iterator[Entry]:
        """Entries with sequence > `after`, in order, up to the last committed at the call.

        Raises JournalCompactedError (eagerly) if some of them were truncated away.
        """

    def stored_pages(self, after: int) -> tuple[int, Iterator[list[Any]]]:
        """The last sequence written and the stored rows after `after`, in pages, unchecked:
        for replay, which checks and applies them in the core in one step. This default
        (memory) turns entries back into the rows they were stored as."""
        tail = self.last_sequence()
        entries = self.entries_since(after)

        def pages() -> Iterator[list[Any]]:
            page: list[Any] = []
            for e in entries:
                row = (e.sequence, e.method, e.request_id, e.payload, e.result, e.time_unix_ms)
                page.append(
                    (*row, e.actor, encode_assign(e.assign), encode_release(e.release), e.checksum)
                )
                if len(page) == READ_PAGE:
                    yield page
                    page = []
            if page:
                yield page

        return tail, pages()

    @abstractmethod
    def find(self, method: str, request_id: str) -> Entry | None:
        """The newest entry journaled for (method, request_id), for answering retries. A
        request_id may be journaled again once the state machine's 24-hour window for it
        has passed: idempotency is the state machine's decision, not the journal's."""

    @abstractmethod
    def find_archived(self, incident_id: str) -> bytes | None:
        """The encoded final state of an incident taken out of memory (newest), or None."""

    @abstractmethod
    def write_snapshot(self, sequence: int, data: bytes) -> None:
        """Store engine state as of `sequence` (which must already be journaled)."""

    @abstractmethod
    def latest_snapshot(self) -> Snapshot | None:
        """The newest snapshot, or None."""

    @abstractmethod
    def last_sequence(self) -> int:
        """The last committed sequence (0 when nothing was ever appended)."""

    @abstractmethod
    def earliest_sequence(self) -> int:
        """The lowest sequence still kept (last_sequence() + 1 when none is)."""

    @abstractmethod
    def truncate_before(self, sequence: int) -> int:
        """Drop entries below `sequence`; a snapshot must cover them. Returns how many."""

    @abstractmethod
    def stats(self) -> JournalStats: ...

    @abstractmethod
    def close(self) -> None:
        """Finish pending appends, release the single-writer lock. Idempotent."""

    def restore(self) -> tuple[Snapshot | None, Iterator[Entry]]:
        """The newest snapshot and the entries after it: replaying both rebuilds state."""
        snapshot = self.latest_snapshot()
        return snapshot, self.entries_since(snapshot.sequence if snapshot else 0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_truncate(sequence: int, snapshot: Snapshot | None) -> None:
    """Truncating entries no snapshot covers would lose acknowledged commands."""
    covered = snapshot.sequence + 1 if snapshot else 1
    if sequence > covered:
        raise JournalError(
            f"cannot truncate before {sequence}: the newest snapshot covers only up to"
            f" {covered - 1}"
        )


def check_snapshot_sequence(sequence: int, last: int) -> None:
    if not 0 <= sequence <= last:
        raise ValueError(f"snapshot sequence {sequence} is not journaled (last is {last})")


# ---------------------------------------------------------------------------- group commit
T = TypeVar("T")


class _Request(NamedTuple):
    entry: NewEntry
    future: Future[Entry]


@dataclass
class _Counters:
    appends: int = 0
    commits: int = 0
    largest_batch: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class GroupCommitJournal(Journal):
    """Appends queue up; one writer thread commits whatever is queued in one transaction.

    While the writer waits for a sync, more appends queue, so the next commit carries them
    all: one sync per batch instead of one per entry. Each appender waits on its own future,
    which is completed only after its batch's commit returned, so nobody is answered before
    the sync that makes their entry durable. Backends implement `_commit_batch`.
    """

    def __init__(self, *, max_batch: int = 1024) -> None:
        self._max_batch = max_batch
        #: Told the size of every committed batch (one sync), e.g. by metrics. Runs on the
        #: writer thread: it must be quick and must not raise.
        self.on_commit: Callable[[int], None] | None = None
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        #: Serialises every write transaction (batches, snapshots, truncation) on the one
        #: write connection.
        self._write_lock = threading.Lock()
        #: Guards `_closed` against an append slipping in behind the writer's stop marker
        #: (it would wait forever).
        self._state_lock = threading.Lock()
        self._closed = False
        self._fatal: BaseException | None = None
        self._counters = _Counters()
        self._writer: threading.Thread | None = None

    # -- backend hooks
    @abstractmethod
    def _commit_batch(self, entries: Sequence[NewEntry]) -> list[Entry | AppendRefusedError]:
        """Write `entries` in ONE transaction and commit (sync) it.

        Refused entries get their AppendRefusedError in the list and take no sequence. Raising
        means the commit failed: the journal turns fatal.
        """

    @abstractmethod
    def _close_storage(self) -> None:
        """Close connections and release the single-writer lock."""

    # -- shared machinery
    def _start_writer(self, name: str) -> None:
        # Daemon: a process exiting without close() must not hang on this thread; appenders
        # blocked at that point were never acknowledged, so nothing acknowledged is lost.
        self._writer = threading.Thread(target=self._run, name=name, daemon=True)
        self._writer.start()

    @property
    def failed(self) -> BaseException | None:
        """The error that made the journal fatal, or None."""
        return self._fatal

    def _raise_if_unusable(self) -> None:
        if self._fatal is not None:
            raise JournalFatal(f"journal stopped after a failed commit: {self._fatal}")
        if self._closed:
            raise JournalClosedError("journal is closed")

    def append(self, entry: NewEntry) -> Entry:
        return self.submit(entry).result()

    def submit(self, entry: NewEntry) -> Future[Entry]:
        check_new_entry(entry)
        future: Future[Entry] = Future()
        with self._state_lock:
            self._raise_if_unusable()
            self._queue.put(_Request(entry, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._process(batch)
            if stop:
                return

    def _process(self, batch: list[_Request]) -> None:
        with self._write_lock:
            if self._fatal is not None:
                outcomes: list[Entry | BaseException] = [self._fatal_error() for _ in batch]
            else:
                try:
                    outcomes = list(self._commit_batch([r.entry for r in batch]))
                except Exception as exc:
                    self._turn_fatal(exc)
                    outcomes = [self._fatal_error() for _ in batch]
                else:
                    with self._counters.lock:
                        self._counters.commits += 1
                        self._counters.appends += sum(isinstance(o, Entry) for o in outcomes)
                        self._counters.largest_batch = max(self._counters.largest_batch, len(batch))
                    if self.on_commit is not None:
                        self.on_commit(len(batch))
        for request, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Entry):
                request.future.set_result(outcome)
            else:
                request.future.set_exception(outcome)

    def _turn_fatal(self, exc: BaseException) -> None:
        self._fatal = exc
        log.critical("journal: commit failed, refusing all further writes: %r", exc)

    def _fatal_error(self) -> JournalFatal:
        err = JournalFatal(f"journal commit failed; nothing more can be written: {self._fatal}")
        err.__cause__ = self._fatal
        return err

    def _write_op(self, op: Callable[[], T], lock: threading.Lock | None = None) -> T:
        """Run a non-append write transaction (snapshot, truncation) under the write lock
        (or `lock`, for a store the appends do not use); a failure of its commit is as
        fatal as a failed append."""
        with lock or self._write_lock:
            self._raise_if_unusable()
            try:
                return op()
            except (JournalError, ValueError):
                raise
            except Exception as exc:
                self._turn_fatal(exc)
                raise self._fatal_error() from exc

    def stats(self) -> JournalStats:
        with self._counters.lock:
            c = self._counters
            return JournalStats(c.appends, c.commits, c.largest_batch)

    def close(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if self._writer is not None:
            self._writer.join()
        self._close_storage()
