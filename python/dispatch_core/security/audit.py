"""The audit trail: every RPC, read or write, refused ones included, recorded append-only
with its principal, roles, time, method, the incidents and units it named, its outcome,
and for reads of incident details the justification the client sent
(`x-dispatch-justification` metadata).

The serving thread only appends a small tuple to a queue (`record`, a few microseconds:
the request and answer bytes are referenced, not copied or decoded). A background thread
wakes every `interval_s` (0.2 s), decodes what each call named from those bytes and
writes the batch in one transaction beside the journal (`durability/journal/audit.py`).
So a crash may lose the last few hundred milliseconds of read records, never a write's:
the pipeline tells the trail each command's journal sequence as it applies it (`begin`),
the command's record carries it, and each batch stores the high-water mark below which
every command has its record. At the next start `audit_reconcile.reconcile` writes the
records of the journal's entries after the mark that have none, from the entries
themselves (principal, time, method, request, answer). A location batch is one record
with its ping count; health checks are not recorded (load balancers probe them every
second and they touch nothing).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dispatch_core.durability.journal.audit import AuditQuery, AuditRow, AuditStore
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.service.calls import Call, current_call

log = logging.getLogger(__name__)

JUSTIFICATION_METADATA = "x-dispatch-justification"
#: Longest justification kept.
MAX_JUSTIFICATION = 512
#: Seconds between group commits of the trail.
DEFAULT_INTERVAL_S = 0.2
#: Days a record is kept before the background pruning removes it. UK policing keeps
#: access logs for years rather than months (the retention schedules of the College of
#: Policing's information management practice run to six years for many records, and an
#: access complaint or a disclosure dispute can surface a year after the event), so the
#: default keeps well over a year: 400 days covers a full year plus the time for a
#: complaint about it to arrive. A force with its own schedule sets `--audit-retention-days`.
DEFAULT_RETENTION_DAYS = 400.0
#: Seconds between prunings (the first runs at start).
PRUNE_INTERVAL_S = 3600.0
_DAY_MS = 86_400_000
#: Records waiting at most; beyond, new ones are dropped, counted and logged (a store that
#: cannot keep up must not take the server's memory with it).
MAX_PENDING = 200_000
#: Request bytes referenced for later decoding at most; larger requests (location batches,
#: batch recommendations) are described by their answer.
MAX_KEPT_REQUEST = 128 * 1024

SERVICE = "dispatch.v1.DispatchService/"
#: Methods whose reads are of incident details: their records carry the justification.
INCIDENT_READS = frozenset(
    {SERVICE + "GetIncident", SERVICE + "ListIncidents", SERVICE + "ListPending"}
)
_NOT_RECORDED = ("grpc.health.v1.Health/",)
LOCATION_BATCHES = frozenset({"UpdateLocations", "StreamLocations"})


def record_ids(
    method: str, request: bytes | None, response: Any
) -> tuple[list[str], list[str], int]:
    """(incident ids, unit ids, location count) a call named: from its request and, where
    the server chose or reported them, its answer."""
    # GetResponsePlans and ReloadResponsePlans name no incident or unit: their record is
    # the method, principal and outcome (a reload's new plans are in the journal's entry).
    name = method.removeprefix(SERVICE)
    incidents: list[str] = []
    units: list[str] = []
    count = 0
    # A location batch is one record with its count: naming each of up to 100,000 units
    # would make the trail of positions bigger than the positions.
    if request is not None and name not in LOCATION_BATCHES:
        request_type = getattr(pb, f"{name}Request", None)
        if request_type is not None:
            try:
                message = request_type.FromString(request)
            except Exception:
                message = None
            if message is not None:
                fields = message.DESCRIPTOR.fields_by_name
                if "incident_id" in fields and message.incident_id:
                    incidents.append(message.incident_id)
                if "unit_id" in fields and message.unit_id:
                    units.append(message.unit_id)
                if "unit_ids" in fields:
                    units.extend(message.unit_ids)
                if name == "UpsertUnit" and message.unit.unit_id:
                    units.append(message.unit.unit_id)
                # A crew booking changes what its unit can do: the unit is what it names.
                if name == "BookCrew" and message.crew.unit_id:
                    units.append(message.crew.unit_id)
    if response is not None:
        response_type = getattr(pb, f"{name}Response", None)
        answer = response
        if isinstance(response, bytes) and response_type is not None:
            try:
                answer = response_type.FromString(response)
            except Exception:
                answer = None
        if name in ("CreateIncident", "AssignUnits", "UpdateIncident") and answer is not None:
            incidents.append(answer.incident.incident_id)
            if name == "AssignUnits":
                # A diversion changes the incident the unit was taken from, too.
                incidents.extend(d.from_incident_id for d in answer.diversions)
        elif name == "ListPending" and answer is not None:
            incidents.extend(p.incident.incident_id for p in answer.incidents)
        elif name == "CloseIncident" and answer is not None:
            units.extend(answer.released_unit_ids)
        elif name in LOCATION_BATCHES and answer is not None:
            count = (
                answer.applied
                + answer.skipped_unknown_unit
                + answer.skipped_bad_coordinate
                + answer.skipped_stale
                + answer.skipped_bad_time
                + answer.skipped_future
            )
        elif name == "RecommendUnits" and answer is not None:
            units.extend(c.unit_id for g in answer.groups for c in g.candidates)
    return list(dict.fromkeys(i for i in incidents if i)), list(dict.fromkeys(units)), count


@dataclass(frozen=True)
class AuditSettings:
    """The serve flags of the trail: `--audit-interval`, `--audit-retention-days`."""

    interval_s: float = DEFAULT_INTERVAL_S
    retention_days: float = DEFAULT_RETENTION_DAYS


class AuditTrail:
    """Records calls now, writes them a moment later, answers queries."""

    def __init__(
        self,
        store: AuditStore,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        prune_interval_s: float = PRUNE_INTERVAL_S,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.store = store
        self._interval_s = interval_s
        self._retention_ms = round(retention_days * _DAY_MS)
        self._prune_interval_s = prune_interval_s
        self._clock_ms = clock_ms
        self._next_prune = 0.0  # monotonic time of the next pruning: at once
        #: Records removed for their age since start.
        self.pruned = 0
        self._pending: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._written = threading.Condition()
        self._numbers = itertools.count(1)  # atomic under the GIL, unlike `+= 1`
        self._taken = 0  # records handed to the writer so far
        self._stored = 0  # ...and written
        #: Commands applied whose success is not yet written, by journal sequence; the
        #: highest sequence begun. Both change under the GIL only (set.add, an int store).
        self._outstanding: set[int] = set()
        self._begun = store.mark()
        self._written_mark = self._begun
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def begin(self, sequence: int) -> None:
        """The RPC running on this thread applied its command as journal entry `sequence`
        (the pipeline's `on_applied`, under its writer lock, so in sequence order): until
        the call's record is written with code OK, the high-water mark stays below it.
        Commands of no RPC (clock ticks, in-process callers) have no record to wait for."""
        call = current_call.get()
        if call is None:
            return
        call.sequence = sequence
        self._outstanding.add(sequence)
        self._begun = sequence

    def record(self, call: Call, code: str) -> None:
        """Queues one call's record (the hot path: no decoding, no I/O)."""
        method = call.method
        if method.startswith(_NOT_RECORDED):
            return
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped in (1, 1000, 100_000):
                log.error("audit trail: %d records dropped: the store cannot keep up", self.dropped)
            return
        request = call.request
        kept = request if isinstance(request, bytes) and len(request) <= MAX_KEPT_REQUEST else None
        why = call.metadata(JUSTIFICATION_METADATA) if method in INCIDENT_READS else ""
        self._pending.append(
            (
                time.time_ns() // 1_000_000,
                method,
                code,
                call.principal,
                call.role,
                call.request_id,
                call.peer,
                kept,
                call.response,
                why[:MAX_JUSTIFICATION],
                call.sequence,
            )
        )
        self._taken = next(self._numbers)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Waits until every record queued before the call is written (queries see them)."""
        target = self._taken
        self._wake.set()
        with self._written:
            return self._written.wait_for(lambda: self._stored >= target, timeout_s)

    def query(self, query: AuditQuery) -> list[AuditRow]:
        self.flush()
        return self.store.query(query)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.store.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self._write()
            if time.monotonic() >= self._next_prune and not self._stop.is_set():
                self._prune()
            if self._stop.is_set():
                while self._pending:  # every call has ended: write all that is left
                    self._write()
                return

    def _prune(self) -> None:
        """Removes the records older than the retention, on the writer's thread (so on
        its connection, between batches); a failure is logged and tried again later."""
        self._next_prune = time.monotonic() + self._prune_interval_s
        before = self._clock_ms() - self._retention_ms
        try:
            removed = self.store.prune(before)
        except Exception:
            log.exception("audit trail: pruning records older than the retention failed")
            return
        self.pruned += removed
        if removed:
            log.info("audit trail: removed %d records older than the retention", removed)

    def _write(self) -> None:
        batch: list[AuditRow] = []
        pending = self._pending
        # Read before the outstanding set: a sequence begun after this read is above it.
        begun = self._begun
        done: set[int] = set()
        while pending and len(batch) < 10_000:
            (t, method, code, principal, roles, rid, peer, request, response, why, seq) = (
                pending.popleft()
            )
            if seq and code == "OK":
                done.add(seq)
            incidents, units, count = record_ids(method, request, response)
            batch.append(
                AuditRow(
                    t,
                    principal,
                    roles,
                    method,
                    code,
                    tuple(incidents),
                    tuple(units),
                    count,
                    why,
                    rid,
                    peer,
                    sequence=seq,
                )
            )
        # Every command up to the mark has its record of success written (in this batch or
        # before). A failed command's stays outstanding: whether it reached the journal is
        # for the next start to find out.
        waiting = self._outstanding.copy() - done
        mark = min(waiting) - 1 if waiting else begun
        if batch or mark != self._written_mark:
            try:
                self.store.append(batch, mark)
            except Exception:
                self.failed += len(batch)
                log.exception("audit trail: %d records could not be written", len(batch))
            else:
                self._outstanding -= done
                self._written_mark = mark
        with self._written:
            self._stored += len(batch)
            self._written.notify_all()
        if pending:
            self._wake.set()  # more than one batch waiting: go again at once
