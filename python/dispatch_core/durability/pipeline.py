"""The command pipeline: how a command becomes durable state and an answer.

    [writer lock: DispatchCore.execute (Rust) → journal submit] → wait until durable → reply

Every rule lives in the Rust state machine (`DispatchCore`): it decodes and validates the
request bytes, answers a retry from its idempotency table, applies a new command whole or
not at all, and hands back the answer bytes, the events to count and the journal payload,
in one call with the GIL released. This module only orders and persists: the entry is
submitted under the writer lock, so journal order is apply order, and the wait for the
sync happens outside it, so while one batch syncs the next commands apply and queue, and
the journal's group commit syncs them together.

No client is answered before its entry is durable, and since the journal commits in order,
no command is durable before one it depended on. A retry of a command still syncing waits
for that sync too. (Readers may see a change a few hundred microseconds before it is
durable; a crash in that window loses it, but nobody was told it succeeded.) A journal
failure is fatal: every later write answers UNAVAILABLE and the server exits non-zero; a
restart recovers from what is on disk.

Time is an input of every command (the wall clock here, journaled in the payload), and the
clock command (`tick`) is journaled whenever the core has a time-driven change due, so
recovery replays every change at the instant it first happened (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

from google.protobuf.message import Message

from dispatch_core._core import (
    DispatchCore,
    LocationReport,
    Outcome,
    Refused,
    payload_request,
)
from dispatch_core.durability.journal import (
    Assignment,
    Entry,
    Journal,
    JournalFatal,
    MemoryJournal,
    NewEntry,
)
from dispatch_core.durability.journal.base import handle_problem
from dispatch_core.durability.observer import NO_OBSERVER, Observer
from dispatch_core.errors import UnavailableError
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.views.events import EventBus

log = logging.getLogger(__name__)

#: The actor journaled when a request names none.
ANONYMOUS = "anonymous"
#: How the actor of every command the server sends itself begins (no caller's actor can:
#: theirs are `mtls:`, `jwt:` or `unauthenticated:`).
SERVER_ACTOR_PREFIX = "server:"
#: The actor of the server's own clock commands.
CLOCK_ACTOR = SERVER_ACTOR_PREFIX + "clock"


class ReplayError(Exception):
    """A journaled command could not be replayed: the journal and this build disagree."""


class RestoreReport(NamedTuple):
    """What recovery found: the snapshot used (0 = none) and the entries replayed after it."""

    snapshot_sequence: int
    replayed: int
    last_sequence: int
    seconds: float
    #: Entries whose answer now differs from the journaled one (0 when replay is exact).
    answers_differ: int = 0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


M = TypeVar("M", bound=Message)


class Pipeline:
    """One state machine, its journal and the events of what became durable."""

    def __init__(
        self,
        core: DispatchCore,
        *,
        journal: Journal | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self.core = core
        #: Where every command is made durable. Without one, an in-memory journal: the same
        #: code path (sequences, events, idempotency) with no durability (tests, baselines).
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        #: Told of events as they happen (metrics).
        self.observer = observer
        #: Durable entries, live, for WatchEvents.
        self.events = EventBus()
        #: Pings applied since start (not journaled: the snapshotter's cue for positions).
        self.pings_applied = 0
        #: Called once, from whichever thread saw it, when the journal fails; the server
        #: sets it to stop and exit non-zero. Must be quick and must not raise.
        self.on_fatal: Callable[[BaseException], None] = lambda exc: None
        #: Told the sequence of each command applied, under the writer lock (so in sequence
        #: order), on the thread of the call that sent it: the audit trail's `begin`. Must
        #: be quick and must not raise.
        self.on_applied: Callable[[int], None] | None = None
        self._fatal: BaseException | None = None
        self._clock_ms = clock_ms
        self._write_lock = threading.Lock()
        #: The last sequence known durable, and a condition to wait for it to grow.
        self._durable = threading.Condition(threading.Lock())
        self._durable_sequence = self.journal.last_sequence()

    # ----------------------------------------------------------------------- commands

    def execute(self, method: str, request: bytes, *, actor: str = ANONYMOUS) -> bytes:
        """Applies one command (its request bytes) and returns the encoded answer once
        durable. Raises `Refused` (nothing changed) or UnavailableError (journal failed)."""
        self._refuse_if_fatal()
        checked, found = False, None
        while True:
            with self._write_lock:
                self._refuse_if_fatal()
                now = self._clock_ms()
                outcome = self.core.execute(
                    method, request, now, journal_checked=checked, journal=found
                )
                if outcome.kind == "applied":
                    durable = self._submit(method, outcome.request_id, outcome, actor, now)
                    submitted = time.perf_counter()
                    if self.on_applied is not None:
                        self.on_applied(outcome.sequence)
            if outcome.kind != "check_journal" or checked:
                break
            # The request_id was answered before the in-memory window: its entry is in the
            # journal. Looked up outside the lock so a read never holds up other commands.
            entry = self.journal.find(method, outcome.request_id)
            checked = True
            if entry is not None:
                found = (payload_request(entry.payload), entry.result, entry.sequence)
        if outcome.kind == "refused":
            error = outcome.error()
            assert error is not None
            raise error
        if outcome.kind == "check_journal":
            # The core decides with the journal's answer in hand; asking again is a bug.
            raise RuntimeError(f"{method}: the core asked for the journal twice")
        if outcome.kind == "repeated":
            self._wait_sequence(outcome.sequence)
            return outcome.response
        self._wait_durable(durable)
        self.observer.journal_durable(time.perf_counter() - submitted)
        self._observe(outcome.events)
        return outcome.response

    def command(self, method: str, request: Message, response_type: type[M], **kw: str) -> M:
        """`execute` for in-process callers holding messages (tests, benchmarks, tools)."""
        answer = self.execute(method, request.SerializeToString(deterministic=True), **kw)
        return response_type.FromString(answer)

    def tick(self) -> bool:
        """Journals a clock command if the core has a time-driven change due now; returns
        whether it did. Called by the server's ticker (every second by default)."""
        if self._fatal is not None or not self.core.tick_due(self._clock_ms()):
            return False
        self.execute("Tick", b"", actor=CLOCK_ACTOR)
        return True

    def _observe(self, events: list[tuple[str, int, int]]) -> None:
        for kind, grade, value in events:
            if kind == "first_assigned":
                self.observer.first_assigned(grade, value / 1000.0)
            elif kind == "first_on_scene":
                self.observer.first_on_scene(grade, value / 1000.0)
            elif kind == "ack_overdue":
                self.observer.ack_overdue(grade)
            elif kind == "diverted":
                self.observer.diverted(grade)
            elif kind == "crew_off":
                self.observer.crew_off(bool(value))

    # -------------------------------------------------------------------------- pings

    def update_locations(self, request: bytes, batch: int = 0) -> LocationReport:
        """Applies what it can of an encoded UpdateLocationsRequest; bad pings are counted,
        not refused. Not journaled, and not behind the writer lock: pings change only
        positions, and a high-rate AVL feed must not make commands wait."""
        report = self.core.update_locations(request, self._clock_ms(), batch)
        # Pings are not journaled, so the snapshotter watches this to know positions moved.
        # A racy += can only undercount by a batch, never hide all of them.
        self.pings_applied += report.applied
        self.observer.pings(report)
        return report

    # ------------------------------------------------------------------- the journal side

    def _submit(
        self, method: str, request_id: str, outcome: Outcome, actor: str, now_ms: int
    ) -> Future[Entry]:
        """Queues the entry of a command just applied; its future completes once durable."""
        entry = NewEntry(
            method=method,
            request_id=request_id,
            payload=outcome.payload,
            result=outcome.response,
            actor=actor,
            assign=tuple(Assignment(u, i) for u, i in outcome.assign),
            release=tuple(outcome.release),
            time_unix_ms=now_ms,
            archive=tuple(outcome.archived),
        )
        expected = outcome.sequence
        try:
            queued = self.journal.submit(entry)
        except Exception as exc:
            # Applied in memory but not journaled: memory is ahead of the journal, and only
            # a restart (which rebuilds from the journal) makes them agree again.
            self._turn_fatal(exc)
            failed: Future[Entry] = Future()
            failed.set_exception(exc)
            return failed
        queued.add_done_callback(functools.partial(self._on_durable, expected))
        return queued

    def _on_durable(self, expected: int, queued: Future[Entry]) -> None:
        # Runs in the journal's writer thread, in commit (= sequence) order: publishing here
        # gives WatchEvents subscribers a gap-free, ordered stream.
        exc = queued.exception()
        if exc is not None:
            # A refused entry is as fatal as a failed sync: its command is already applied
            # in memory, so memory and journal disagree.
            self._turn_fatal(exc)
            return
        entry = queued.result()
        if entry.sequence != expected:
            self._turn_fatal(
                JournalFatal(
                    f"journal numbered an entry {entry.sequence} that the core applied as"
                    f" {expected}; memory and journal disagree"
                )
            )
            return
        with self._durable:
            self._durable_sequence = entry.sequence
            self._durable.notify_all()
        try:
            self.events.publish(entry)
        except Exception:  # a subscriber's problem must not fail the command
            log.exception("publishing journal entry %d to watchers failed", entry.sequence)

    def _wait_durable(self, durable: Future[Entry]) -> None:
        try:
            durable.result()
        except Exception as exc:
            raise UnavailableError(
                "the journal failed, so this command may not be durable; the server is"
                " stopping: retry with the same request_id once it is back"
            ) from exc
        if self._fatal is not None:
            # Durable, but the pipeline has stopped trusting its state (e.g. a sequence
            # mismatch): the client learns the outcome by retrying after the restart.
            raise UnavailableError(
                "the journal failed and this server is stopping: retry with the same"
                " request_id once it is back"
            )

    def _wait_sequence(self, sequence: int) -> None:
        """Waits until `sequence` is durable: a retry is never answered with something a
        crash could still undo."""
        with self._durable:
            while self._durable_sequence < sequence and self._fatal is None:
                self._durable.wait(0.5)
        self._refuse_if_fatal()

    def _turn_fatal(self, exc: BaseException) -> None:
        if self._fatal is not None:
            return
        self._fatal = exc
        log.critical("journal failed; refusing all further writes: %r", exc)
        with self._durable:
            self._durable.notify_all()
        try:
            self.on_fatal(exc)
        except Exception:
            log.exception("on_fatal hook failed")

    @property
    def failed(self) -> BaseException | None:
        """Why the pipeline stopped taking writes, or None."""
        return self._fatal

    def _refuse_if_fatal(self) -> None:
        if self._fatal is not None:
            raise UnavailableError(
                "the journal failed and this server no longer takes writes; retry against"
                " the restarted server"
            )

    @property
    def last_sequence(self) -> int:
        """The sequence of the last command applied (it may still be syncing)."""
        return int(self.core.sequence)

    # -------------------------------------------------------------- recovery and snapshots

    def restore(self) -> RestoreReport:
        """Rebuilds the state from the journal: the newest snapshot, then every entry after
        it executed again by the core. Call once, on a fresh pipeline, before serving.

        Raises ReplayError (or the journal's JournalCorruptError / JournalVersionError)
        when the journal cannot be recovered.
        """
        started = time.perf_counter()
        snapshot = self.journal.latest_snapshot()
        base = 0
        if snapshot is not None:
            base = self._restore_snapshot(snapshot.sequence, snapshot.data)
        replayed, differ = self._replay_after(base)
        last = self.journal.last_sequence()
        if self.core.sequence != last:
            raise ReplayError(
                f"the journal ends at sequence {last} but replay reached {self.core.sequence}"
            )
        with self._durable:
            self._durable_sequence = last
        if differ:
            # Expected where an answer showed a position: pings are not journaled, so
            # replay recomputes such answers without it. Retries still get the journaled
            # answer (the core keeps it); the state itself is the same.
            log.info(
                "replay: %d answers recomputed differently from the journaled ones (answers"
                " showing positions from pings, which are not journaled); retries get the"
                " journaled answers",
                differ,
            )
        return RestoreReport(base, replayed, last, time.perf_counter() - started, differ)

    def _restore_snapshot(self, sequence: int, data: bytes) -> int:
        """Loads the snapshot; returns the sequence replay continues from. A snapshot of
        the old JSON format is skipped when the journal still holds every entry from 1
        (replaying them all rebuilds the same state), and refused otherwise."""
        found = DispatchCore.snapshot_format(data)
        if found == 1 and self.journal.earliest_sequence() <= 1:
            log.warning(
                "snapshot %d has format 1 (JSON, before the state machine); the journal"
                " still holds every entry, so the state is rebuilt from the entries alone",
                sequence,
            )
            return 0
        try:
            restored = int(self.core.restore(data))
        except Refused as exc:
            raise ReplayError(f"snapshot at sequence {sequence} cannot be restored: {exc}") from exc
        if restored != sequence:
            raise ReplayError(f"snapshot stored as {sequence} says it holds sequence {restored}")
        return restored

    def _replay_after(self, base: int) -> tuple[int, int]:
        """Replays every entry after `base`. A reader thread fetches the next page of stored
        rows while the core checks and applies the current one (with the GIL released), so
        reading the journal and applying it overlap; the core checks each row's checksum and
        order with the same rules as every journal read (`handle_problem`)."""
        tail, pages = self.journal.stored_pages(base)
        ready: queue.Queue[list[Any] | BaseException | None] = queue.Queue(maxsize=4)

        def read() -> None:
            try:
                for page in pages:
                    ready.put(page)
                ready.put(None)
            except BaseException as exc:  # handed to the replaying thread, which raises it
                ready.put(exc)

        reader = threading.Thread(target=read, name="replay-reader", daemon=True)
        reader.start()
        last, differ = base, 0
        try:
            while (page := ready.get()) is not None:
                if isinstance(page, BaseException):
                    raise page
                try:
                    good, page_differ, problem = self.core.replay_rows(page, last, tail)
                except Refused as exc:
                    raise ReplayError(f"cannot replay the journal: {exc}") from exc
                last += good
                differ += page_differ
                if handle_problem(problem):
                    break
        finally:
            # Drain, so the reader is never left blocked on a full queue.
            while reader.is_alive():
                with contextlib.suppress(queue.Empty):
                    ready.get(timeout=0.1)
        return last - base, differ

    def snapshot(self) -> int:
        """Stores a snapshot of the state as of the last command applied; returns its
        sequence. The core encodes it under its read lock without the GIL; it is written
        once that last command is durable (a snapshot may not run ahead of the journal)."""
        sequence, data = self.core.snapshot()
        self._wait_sequence(sequence)
        try:
            self.journal.write_snapshot(sequence, data)
        except JournalFatal as exc:
            self._turn_fatal(exc)
            raise
        return int(sequence)

    def get_incident(self, request: bytes) -> bytes:
        """GetIncident: from the core, or, for a closed incident past the retention, from
        the journal's archive (the incident as it was when it left memory)."""
        try:
            return self.core.get_incident(request)
        except Refused as exc:
            if exc.code != "NOT_FOUND" or exc.resource is None:
                raise
            archived = self.journal.find_archived(exc.resource[1])
            if archived is None:
                raise
            return pb.GetIncidentResponse(
                incident=pb.Incident.FromString(archived)
            ).SerializeToString()

    def now_ms(self) -> int:
        """The pipeline's clock (Unix ms): what reads and ages are measured against."""
        return self._clock_ms()
