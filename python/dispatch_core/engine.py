"""The engine: the one place where a command becomes state and an answer.

Every mutating command runs the same steps:

    idempotency check → [writer lock: validate → apply → submit the journal entry]
        → wait until the entry is durable → respond

`validate` reads state and raises a `DispatchError` without changing anything; it returns a
*plan*: everything `apply` needs, including the clock reading and any id it chose. Both are
recorded in the entry (see `records.py`), so recovery replays validate → apply with the
recorded clock and id and gets the same state. `apply` must not fail for a reason
`validate` could have seen.

The entry is handed to the journal under the writer lock, so journal order is apply order,
but the wait for the sync happens *outside* the lock: while one batch is being synced, the
next commands apply and queue, and the journal's group commit syncs them together. No
client is answered before its entry is durable, and since the journal commits in order, no
command is durable before one it depended on. (Readers may see a change a few hundred
microseconds before it is durable; a crash in that window loses the change, but nobody was
told it succeeded.) A journal failure is fatal: the engine refuses every later write with
UNAVAILABLE and tells the server, which exits non-zero; a restart recovers from what is on
disk.

Reads (GetUnit, ListUnits, GetIncident, ListIncidents, RecommendUnits) do not take the lock:
the Rust core is safe to read concurrently and incidents are immutable values swapped in
whole (see `incidents.py`), so a reader never sees a half-applied change to one object.

Location pings do not take the lock either: they touch only positions, which the core
updates atomically per unit, and no command reads a position to decide anything. Putting a
high-rate AVL feed behind the writer lock would make every command wait for it.

Messages are dispatch.v1 protobufs on both sides: the request's serialized bytes are the
idempotency fingerprint (and, later, the journal record), and answering with the message the
servicer returns avoids building every response twice.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
from google.protobuf.message import Message

from dispatch_core import _core
from dispatch_core import snapshot as snapshots
from dispatch_core._core import MAX_K, LocationReport, UnitIndex, UnitView
from dispatch_core.convert import (
    candidates_to_proto,
    group_to_proto,
    groups_from_proto,
    incident_to_proto,
    timestamp_ms,
    unit_to_proto,
)
from dispatch_core.errors import (
    AlreadyExistsError,
    DispatchError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from dispatch_core.events import EventBus
from dispatch_core.incidents import Incident, IncidentStore, RequirementGroup
from dispatch_core.journal import (
    Assignment,
    Entry,
    Journal,
    JournalFatal,
    MemoryJournal,
    NewEntry,
)
from dispatch_core.observe import NO_OBSERVER, EngineObserver
from dispatch_core.picture import AreaMap, CoverageSpec, Picture, compute_picture
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.records import Envelope, decode_payload, encode_payload, request_bytes
from dispatch_core.types import Grade, IncidentStatus, UnitStatus

log = logging.getLogger(__name__)

#: How long a request_id is remembered (design.md: at least 24 hours).
IDEMPOTENCY_TTL_S = 24 * 3600.0

#: Candidates per group when the request leaves k at 0, unless the group needs more units.
DEFAULT_K = 5

_AVAILABLE_ONLY = (int(UnitStatus.AVAILABLE),)


class MutatingRequest(Protocol):
    """What every mutating dispatch.v1 request has."""

    request_id: str

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # noqa: N802


#: The actor journaled when a request names none.
ANONYMOUS = "anonymous"


class ReplayError(Exception):
    """A journaled command could not be replayed: the journal and this build disagree."""

    def __init__(self, sequence: int, what: str) -> None:
        self.sequence = sequence
        super().__init__(f"cannot replay journal entry {sequence}: {what}")


class RestoreReport(NamedTuple):
    """What recovery found: the snapshot used (0 = none) and the entries replayed after it."""

    snapshot_sequence: int
    replayed: int
    last_sequence: int
    seconds: float


Req = TypeVar("Req", bound=MutatingRequest)
Plan = TypeVar("Plan")
Resp = TypeVar("Resp", bound=Message)


@dataclasses.dataclass(frozen=True, slots=True)
class _Remembered:
    payload: bytes
    response: bytes
    at_s: float
    #: Completes once the command's entry is durable: a retry arriving before then waits
    #: for it too, so it is never answered with something a crash could still undo.
    durable: Future[Entry] | None = None


class RequestLog:
    """request_id → (request bytes, response bytes), per method, for IDEMPOTENCY_TTL_S.

    Only what this process applied; a request_id from before a restart is looked up in
    the journal (`Journal.find`) instead.
    """

    def __init__(self, ttl_s: float = IDEMPOTENCY_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str], _Remembered] = OrderedDict()

    def get(self, method: str, request_id: str) -> _Remembered | None:
        return self._entries.get((method, request_id))

    def put(
        self,
        method: str,
        request_id: str,
        payload: bytes,
        response: bytes,
        durable: Future[Entry] | None = None,
    ) -> None:
        now = time.monotonic()
        self._entries[(method, request_id)] = _Remembered(payload, response, now, durable)
        # Entries are in insertion order, which is time order: expire from the front.
        horizon = now - self._ttl_s
        while self._entries:
            key, first = next(iter(self._entries.items()))
            if first.at_s >= horizon:
                break
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


@dataclasses.dataclass(frozen=True, slots=True)
class UpsertPlan:
    unit_id: str
    agency: int
    unit_type: str
    capabilities: tuple[str, ...]
    home_area: str | None
    shift_start_ms: int | None
    shift_end_ms: int | None
    created: bool


@dataclasses.dataclass(frozen=True, slots=True)
class StatusPlan:
    unit_id: str
    status: int
    now_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class AssignPlan:
    incident: Incident
    unit_ids: tuple[str, ...]
    now_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class ClosePlan:
    incident: Incident
    now_ms: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Engine:
    """Units (in the Rust core), incidents (in Python) and the commands that change them."""

    def __init__(
        self,
        index: UnitIndex,
        *,
        journal: Journal | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        idempotency_ttl_s: float = IDEMPOTENCY_TTL_S,
        observer: EngineObserver = NO_OBSERVER,
        areas: AreaMap | None = None,
    ) -> None:
        self.index = index
        #: Pings applied since start (not journaled: the snapshotter's cue for positions).
        self.pings_applied = 0
        #: Areas of the operating picture (the package's London boroughs by default).
        self.areas = areas or AreaMap.london()
        #: Told of events as they happen (metrics). Public so that a journal replay can run
        #: with NO_OBSERVER and history is not counted again as new events.
        self.observer = observer
        self.incidents = IncidentStore()
        #: Where every command is made durable. Without one, an in-memory journal: the same
        #: code path (sequences, events, idempotency) with no durability (tests, baselines).
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        #: Durable entries, live, for WatchEvents.
        self.events = EventBus()
        #: Called once, from whichever thread saw it, when the journal fails; the server
        #: sets it to stop and exit non-zero. Must be quick and must not raise.
        self.on_fatal: Callable[[BaseException], None] = lambda exc: None
        self._fatal: BaseException | None = None
        self._clock_ms = clock_ms
        self._write_lock = threading.Lock()
        self._requests = RequestLog(idempotency_ttl_s)
        #: Sequence of the last entry submitted (under the writer lock). The journal numbers
        #: entries in submission order, so each entry's sequence is known when submitted.
        self._sequence = self.journal.last_sequence()
        self._last_durable: Future[Entry] | None = None
        #: Set while replaying an entry: the clock and id its plan must take.
        self._replaying: Envelope | None = None
        self._plan_now_ms = 0
        self._plan_id = ""
        handlers: dict[str, tuple[type[Message], Callable[[Any], Any], Callable[[Any], Any]]]
        handlers = {
            "UpsertUnit": (pb.UpsertUnitRequest, self._validate_upsert, self._apply_upsert),
            "SetUnitStatus": (pb.SetUnitStatusRequest, self._validate_status, self._apply_status),
            "CreateIncident": (
                pb.CreateIncidentRequest,
                self._validate_create,
                self._apply_incident,
            ),
            "UpdateIncident": (
                pb.UpdateIncidentRequest,
                self._validate_update,
                self._apply_update,
            ),
            "CloseIncident": (pb.CloseIncidentRequest, self._validate_close, self._apply_close),
            "AssignUnits": (pb.AssignUnitsRequest, self._validate_assign, self._apply_assign),
        }
        self._handlers = handlers

    # ---------------------------------------------------------------- the command pipeline

    def _command(
        self,
        method: str,
        request: Req,
        validate: Callable[[Req], Plan],
        apply: Callable[[Plan], Resp],
        response_type: type[Resp],
        *,
        actor: str,
    ) -> Resp:
        # The whole request, request_id included, is the fingerprint: a retry has the same
        # id, so any difference in the bytes is a difference in the payload.
        payload = request.SerializeToString(deterministic=True)
        request_id = request.request_id
        self._refuse_if_fatal()
        if self._requests.get(method, request_id) is None:
            # Not seen by this process, perhaps before a restart. Looked up outside the
            # writer lock so a journal read never holds up other commands; a duplicate
            # racing with this one is caught by the in-memory check under the lock.
            entry = self.journal.find(method, request_id)
            if entry is not None:
                self._check_same(method, request_id, request_bytes(entry.payload), payload)
                return response_type.FromString(entry.result)
        response: Resp | None = None
        durable: Future[Entry] | None = None
        with self._write_lock:
            self._refuse_if_fatal()
            seen = self._requests.get(method, request_id)
            if seen is None:
                self._plan_now_ms, self._plan_id = 0, ""
                plan = validate(request)
                response = apply(plan)
                result = response.SerializeToString()
                durable = self._submit(
                    method, request, payload, result=result, response=response, actor=actor
                )
                submitted = time.perf_counter()
                # Failures are not remembered: they changed nothing, so a retry may run
                # again and succeed once the state allows it.
                self._requests.put(method, request_id, payload, result, durable)
        if seen is not None:
            self._check_same(method, request_id, seen.payload, payload)
            durable, result = seen.durable, seen.response
        # The sync happens here, outside the lock, shared with every command queued with it.
        self._wait_durable(durable)
        if seen is None and durable is not None:
            self.observer.journal_durable(time.perf_counter() - submitted)
        return response if response is not None else response_type.FromString(result)

    @staticmethod
    def _check_same(method: str, request_id: str, first: bytes, again: bytes) -> None:
        if first != again:
            raise InvalidArgumentError.one(
                "request_id",
                f"{request_id!r} was already used for a different {method}"
                " request; use a new request_id for a new command",
            )

    # ------------------------------------------------------------------- the journal side

    def _plan_now(self) -> int:
        """The clock reading a plan takes: recorded in the entry, and reused on replay."""
        now = self._replaying.now_ms if self._replaying is not None else self._clock_ms()
        self._plan_now_ms = now
        return now

    def _plan_new_id(self) -> str:
        """A server-chosen incident id: recorded in the entry, and reused on replay."""
        if self._replaying is not None and self._replaying.chosen_id:
            chosen = self._replaying.chosen_id
        else:
            chosen = self.incidents.new_id()
        self._plan_id = chosen
        return chosen

    def _submit(
        self,
        method: str,
        request: MutatingRequest,
        payload: bytes,
        *,
        result: bytes,
        response: Message,
        actor: str,
    ) -> Future[Entry]:
        """Queue the entry of a command just applied; its future completes once durable."""
        assign: tuple[Assignment, ...] = ()
        release: tuple[str, ...] = ()
        # What the command did to assignments, for the journal's own one-active-assignment
        # check (the second line of defence behind the core's).
        if isinstance(request, pb.AssignUnitsRequest):
            assign = tuple(Assignment(u, request.incident_id) for u in request.unit_ids)
        elif isinstance(response, pb.SetUnitStatusResponse) and response.released_incident_id:
            release = (response.unit.unit_id,)
        elif isinstance(response, pb.CloseIncidentResponse):
            release = tuple(response.released_unit_ids)
        entry = NewEntry(
            method=method,
            request_id=request.request_id,
            payload=encode_payload(self._plan_now_ms, self._plan_id, payload),
            result=result,
            actor=actor,
            assign=assign,
            release=release,
        )
        self._sequence += 1
        expected = self._sequence
        try:
            queued = self.journal.submit(entry)
        except Exception as exc:
            # Applied in memory but not journaled: memory is ahead of the journal, and only
            # a restart (which rebuilds from the journal) makes them agree again.
            self._turn_fatal(exc)
            failed: Future[Entry] = Future()
            failed.set_exception(exc)
            return failed
        self._last_durable = queued
        queued.add_done_callback(functools.partial(self._on_durable, expected))
        return queued

    def _on_durable(self, expected: int, queued: Future[Entry]) -> None:
        # Runs in the journal's writer thread, in commit (= sequence) order: publishing here
        # gives WatchEvents subscribers a gap-free, ordered stream.
        exc = queued.exception()
        if exc is not None:
            # A refused entry (AppendRefusedError) is as fatal as a failed sync: its command
            # is already applied in memory, so memory and journal disagree.
            self._turn_fatal(exc)
            return
        entry = queued.result()
        if entry.sequence != expected:
            self._turn_fatal(
                JournalFatal(
                    f"journal numbered an entry {entry.sequence} that the engine applied as"
                    f" {expected}; memory and journal disagree"
                )
            )
            return
        try:
            self.events.publish(entry)
        except Exception:  # a subscriber's problem must not fail the command
            log.exception("publishing journal entry %d to watchers failed", entry.sequence)

    def _wait_durable(self, durable: Future[Entry] | None) -> None:
        if durable is None:
            return
        try:
            durable.result()
        except Exception as exc:
            raise UnavailableError(
                "the journal failed, so this command may not be durable; the server is"
                " stopping: retry with the same request_id once it is back"
            ) from exc
        if self._fatal is not None:
            # Durable, but the engine has stopped trusting its state (e.g. a sequence
            # mismatch): the client learns the outcome by retrying after the restart.
            raise UnavailableError(
                "the journal failed and this server is stopping: retry with the same"
                " request_id once it is back"
            )

    def _turn_fatal(self, exc: BaseException) -> None:
        if self._fatal is not None:
            return
        self._fatal = exc
        log.critical("journal failed; refusing all further writes: %r", exc)
        try:
            self.on_fatal(exc)
        except Exception:
            log.exception("on_fatal hook failed")

    @property
    def failed(self) -> BaseException | None:
        """Why the engine stopped taking writes, or None."""
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
        return self._sequence

    # -------------------------------------------------------------- recovery and snapshots

    def restore(self) -> RestoreReport:
        """Rebuilds state from the journal: the newest snapshot, then every entry after it
        replayed through validate → apply with the clock and ids the entry recorded.

        Call once, on a fresh engine, before serving. Raises ReplayError (or the journal's
        JournalCorruptError / JournalVersionError) when the journal cannot be recovered.
        """
        started = time.perf_counter()
        snapshot, entries = self.journal.restore()
        base = 0
        if snapshot is not None:
            try:
                base = snapshots.restore(snapshot.data, self.index, self.incidents)
            except (ValueError, KeyError, TypeError, _core.InvalidArgument) as exc:
                raise ReplayError(snapshot.sequence, f"snapshot unreadable: {exc}") from exc
            if base != snapshot.sequence:
                raise ReplayError(snapshot.sequence, f"snapshot says it holds sequence {base}")
        replayed = 0
        # History is not news: metrics must not count replayed events again.
        observer, self.observer = self.observer, NO_OBSERVER
        try:
            with self._write_lock:
                for entry in entries:
                    self.replay(entry)
                    replayed += 1
                self._sequence = self.journal.last_sequence()
        finally:
            self.observer = observer
        return RestoreReport(base, replayed, self._sequence, time.perf_counter() - started)

    def replay(self, entry: Entry) -> Message:
        """Applies one journaled command again; returns the response it gives now (equal to
        `entry.result` when replay is deterministic, which the durability tests check)."""
        handler = self._handlers.get(entry.method)
        if handler is None:
            raise ReplayError(entry.sequence, f"unknown method {entry.method!r}")
        request_type, validate, apply = handler
        try:
            envelope = decode_payload(entry.payload)
            request = request_type.FromString(envelope.request)
        except Exception as exc:
            raise ReplayError(entry.sequence, f"payload unreadable: {exc}") from exc
        self._replaying = envelope
        try:
            response: Message = apply(validate(request))
        except DispatchError as exc:
            raise ReplayError(
                entry.sequence, f"{entry.method} {entry.request_id!r} fails now: {exc}"
            ) from exc
        finally:
            self._replaying = None
        return response

    def snapshot(self) -> int:
        """Stores a snapshot of the state as of the last command applied; returns its
        sequence. The state is copied under the writer lock; encoding and writing happen
        outside it, once that last command is durable (a snapshot may not run ahead of the
        journal)."""
        with self._write_lock:
            sequence = self._sequence
            captured = snapshots.capture(self.index, self.incidents)
            pending = self._last_durable
        if pending is not None:
            pending.result()
        try:
            self.journal.write_snapshot(sequence, snapshots.encode(captured, sequence))
        except JournalFatal as exc:
            self._turn_fatal(exc)
            raise
        return sequence

    def now_ms(self) -> int:
        """The engine's clock (Unix ms): what ages, e.g. for metrics, are measured against."""
        return self._clock_ms()

    def operating_picture(self, spec: CoverageSpec) -> Picture:
        """Demand against resources per area, and coverage, now. A read: no writer lock."""
        return compute_picture(
            self.index, self.incidents.values(), self.areas, spec, self._clock_ms()
        )

    # ---------------------------------------------------------------------------- units

    def _view(self, unit_id: str) -> UnitView:
        try:
            return self.index.get_unit(unit_id)
        except _core.UnknownUnit:
            raise NotFoundError("unit", unit_id) from None

    def upsert_unit(
        self, request: pb.UpsertUnitRequest, *, actor: str = ANONYMOUS
    ) -> pb.UpsertUnitResponse:
        return self._command(
            "UpsertUnit",
            request,
            self._validate_upsert,
            self._apply_upsert,
            pb.UpsertUnitResponse,
            actor=actor,
        )

    def _validate_upsert(self, request: pb.UpsertUnitRequest) -> UpsertPlan:
        spec = request.unit
        try:
            self.index.get_unit(spec.unit_id)
            created = False
        except _core.UnknownUnit:
            created = True
        return UpsertPlan(
            unit_id=spec.unit_id,
            agency=int(spec.agency),
            unit_type=spec.unit_type,
            capabilities=tuple(spec.capabilities),
            home_area=spec.home_area or None,
            shift_start_ms=timestamp_ms(spec.shift_start) if spec.HasField("shift_start") else None,
            shift_end_ms=timestamp_ms(spec.shift_end) if spec.HasField("shift_end") else None,
            created=created,
        )

    def _apply_upsert(self, plan: UpsertPlan) -> pb.UpsertUnitResponse:
        try:
            # status=None: an existing unit keeps its status; a new one starts AVAILABLE.
            self.index.upsert_unit(
                plan.unit_id,
                agency=plan.agency,
                unit_type=plan.unit_type,
                capabilities=plan.capabilities,
                home_area=plan.home_area,
                shift_start_ms=plan.shift_start_ms,
                shift_end_ms=plan.shift_end_ms,
            )
        except _core.InvalidArgument as exc:
            # The API layer checks every field the core checks; reaching here means the two
            # disagree, and the core still names the field.
            raise InvalidArgumentError.one(f"unit.{exc.field}", str(exc)) from None
        response = pb.UpsertUnitResponse(created=plan.created)
        unit_to_proto(self.index.get_unit(plan.unit_id), response.unit)
        return response

    def get_unit(self, unit_id: str) -> pb.GetUnitResponse:
        response = pb.GetUnitResponse()
        unit_to_proto(self._view(unit_id), response.unit)
        return response

    def list_units(
        self,
        *,
        statuses: Sequence[int],
        agencies: Sequence[int],
        home_area: str,
        page_size: int,
        after_id: str,
    ) -> tuple[pb.ListUnitsResponse, str | None]:
        """One page of units with ids after `after_id`; also the last id when more follow."""
        # One more than the page tells whether another page follows.
        page = self.index.list_units(
            statuses=list(statuses) or None,
            agencies=list(agencies) or None,
            home_area=home_area or None,
            after_id=after_id,
            limit=page_size + 1,
        )
        response = pb.ListUnitsResponse()
        for view in page[:page_size]:
            unit_to_proto(view, response.units.add())
        more = len(page) > page_size
        return response, (page[page_size - 1].unit_id if more else None)

    def set_unit_status(
        self, request: pb.SetUnitStatusRequest, *, actor: str = ANONYMOUS
    ) -> pb.SetUnitStatusResponse:
        return self._command(
            "SetUnitStatus",
            request,
            self._validate_status,
            self._apply_status,
            pb.SetUnitStatusResponse,
            actor=actor,
        )

    def _validate_status(self, request: pb.SetUnitStatusRequest) -> StatusPlan:
        self._view(request.unit_id)
        if int(request.status) == UnitStatus.DISPATCHED:
            raise FailedPreconditionError(
                "INVALID_TRANSITION",
                f"unit/{request.unit_id}",
                f"unit {request.unit_id!r} cannot be set DISPATCHED directly:"
                " only AssignUnits dispatches a unit",
            )
        # The core owns the lifecycle table; checking here refuses before the journal.
        try:
            self.index.check_transition(request.unit_id, int(request.status))
        except _core.InvalidTransition as exc:
            raise FailedPreconditionError(
                "INVALID_TRANSITION", f"unit/{exc.field}", str(exc)
            ) from None
        return StatusPlan(request.unit_id, int(request.status), self._plan_now())

    def _apply_status(self, plan: StatusPlan) -> pb.SetUnitStatusResponse:
        try:
            released = self.index.set_status(plan.unit_id, plan.status)
        except _core.InvalidTransition as exc:
            raise FailedPreconditionError(
                "INVALID_TRANSITION", f"unit/{exc.field}", str(exc)
            ) from None
        view = self.index.get_unit(plan.unit_id)
        if plan.status == UnitStatus.ON_SCENE and view.incident_id:
            incident = self.incidents.get(view.incident_id)
            if incident is not None:
                if incident.first_on_scene_ms is None:
                    self.observer.first_on_scene(incident, plan.now_ms)
                self.incidents.put(incident.with_on_scene(plan.now_ms))
        if released:
            incident = self.incidents.get(released)
            if incident is not None:
                self.incidents.put(incident.without_attached((plan.unit_id,)))
        response = pb.SetUnitStatusResponse(released_incident_id=released or "")
        unit_to_proto(view, response.unit)
        return response

    def update_locations(
        self,
        unit_ids: Sequence[str],
        lat: Sequence[float],
        lon: Sequence[float],
        time_unix_ms: Sequence[int],
    ) -> LocationReport:
        """Applies what it can of a batch; bad pings are counted, not raised (design.md)."""
        report = self.index.update_locations(
            list(unit_ids),
            # np.array copies a protobuf repeated field through the buffer path in a few
            # microseconds per 10k; np.fromiter walks it element by element (~0.6 ms).
            np.array(lat, dtype=np.float64),
            np.array(lon, dtype=np.float64),
            np.array(time_unix_ms, dtype=np.int64),
            strict=False,
        )
        # Pings are not journaled, so the snapshotter watches this to know positions moved
        # since its last snapshot. A racy += can only undercount by a batch, never hide all.
        self.pings_applied += report.applied
        self.observer.pings(report)
        return report

    # ------------------------------------------------------------------------ incidents

    def _incident(self, incident_id: str) -> Incident:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise NotFoundError("incident", incident_id)
        return incident

    def _open_incident(self, incident_id: str) -> Incident:
        incident = self._incident(incident_id)
        if incident.status is IncidentStatus.CLOSED:
            raise FailedPreconditionError(
                "INCIDENT_CLOSED",
                f"incident/{incident_id}",
                f"incident {incident_id!r} is closed",
            )
        return incident

    def create_incident(
        self, request: pb.CreateIncidentRequest, *, actor: str = ANONYMOUS
    ) -> pb.CreateIncidentResponse:
        return self._command(
            "CreateIncident",
            request,
            self._validate_create,
            self._apply_incident,
            pb.CreateIncidentResponse,
            actor=actor,
        )

    def _validate_create(self, request: pb.CreateIncidentRequest) -> Incident:
        incident_id = request.incident_id
        if incident_id:
            if incident_id in self.incidents:
                raise AlreadyExistsError("incident", incident_id)
        else:
            incident_id = self._plan_new_id()
        return Incident(
            incident_id=incident_id,
            grade=Grade(request.grade),
            incident_type=request.incident_type,
            lat=request.location.lat,
            lon=request.location.lon,
            area=request.area,
            requirements=groups_from_proto(request.requirements),
            status=IncidentStatus.OPEN,
            assigned_unit_ids=(),
            attached_unit_ids=(),
            created_ms=self._plan_now(),
        )

    def _apply_incident(self, incident: Incident) -> pb.CreateIncidentResponse:
        self.incidents.put(incident)
        response = pb.CreateIncidentResponse()
        incident_to_proto(incident, response.incident)
        return response

    def get_incident(self, incident_id: str) -> pb.GetIncidentResponse:
        response = pb.GetIncidentResponse()
        incident_to_proto(self._incident(incident_id), response.incident)
        return response

    def list_incidents(
        self,
        *,
        statuses: Sequence[int],
        grades: Sequence[int],
        page_size: int,
        after_id: str,
    ) -> tuple[pb.ListIncidentsResponse, str | None]:
        """One page of incidents with ids after `after_id`; also the last id when more follow."""
        wanted_status = set(statuses)
        wanted_grade = set(grades)
        response = pb.ListIncidentsResponse()
        last: str | None = None
        for incident in self.incidents.iter_after(after_id):
            if wanted_status and incident.status not in wanted_status:
                continue
            if wanted_grade and incident.grade not in wanted_grade:
                continue
            if len(response.incidents) == page_size:
                return response, last
            incident_to_proto(incident, response.incidents.add())
            last = incident.incident_id
        return response, None

    def update_incident(
        self, request: pb.UpdateIncidentRequest, *, actor: str = ANONYMOUS
    ) -> pb.UpdateIncidentResponse:
        return self._command(
            "UpdateIncident",
            request,
            self._validate_update,
            self._apply_update,
            pb.UpdateIncidentResponse,
            actor=actor,
        )

    def _validate_update(self, request: pb.UpdateIncidentRequest) -> Incident:
        incident = self._open_incident(request.incident_id)
        changes: dict[str, object] = {}
        if request.HasField("grade"):
            changes["grade"] = Grade(request.grade)
        if request.HasField("incident_type"):
            changes["incident_type"] = request.incident_type
        if request.HasField("location"):
            changes["lat"] = request.location.lat
            changes["lon"] = request.location.lon
        if request.HasField("area"):
            changes["area"] = request.area
        if request.HasField("requirements"):
            changes["requirements"] = groups_from_proto(request.requirements.groups)
        return dataclasses.replace(incident, **changes)  # type: ignore[arg-type]

    def _apply_update(self, incident: Incident) -> pb.UpdateIncidentResponse:
        self.incidents.put(incident)
        response = pb.UpdateIncidentResponse()
        incident_to_proto(incident, response.incident)
        return response

    def close_incident(
        self, request: pb.CloseIncidentRequest, *, actor: str = ANONYMOUS
    ) -> pb.CloseIncidentResponse:
        return self._command(
            "CloseIncident",
            request,
            self._validate_close,
            self._apply_close,
            pb.CloseIncidentResponse,
            actor=actor,
        )

    def _validate_close(self, request: pb.CloseIncidentRequest) -> ClosePlan:
        return ClosePlan(self._open_incident(request.incident_id), self._plan_now())

    def _apply_close(self, plan: ClosePlan) -> pb.CloseIncidentResponse:
        incident = plan.incident
        released = self.index.release_incident(
            incident.incident_id, list(incident.attached_unit_ids)
        )
        closed = dataclasses.replace(
            incident,
            status=IncidentStatus.CLOSED,
            closed_ms=plan.now_ms,
            attached_unit_ids=(),
        )
        self.incidents.put(closed)
        response = pb.CloseIncidentResponse(released_unit_ids=released)
        incident_to_proto(closed, response.incident)
        return response

    # ------------------------------------------------------------------------ assignment

    def assign_units(
        self, request: pb.AssignUnitsRequest, *, actor: str = ANONYMOUS
    ) -> pb.AssignUnitsResponse:
        return self._command(
            "AssignUnits",
            request,
            self._validate_assign,
            self._apply_assign,
            pb.AssignUnitsResponse,
            actor=actor,
        )

    def _validate_assign(self, request: pb.AssignUnitsRequest) -> AssignPlan:
        incident = self._open_incident(request.incident_id)
        unit_ids = tuple(request.unit_ids)
        try:
            self.index.check_assignable(unit_ids)
        except _core.UnknownUnit as exc:
            raise NotFoundError("unit", exc.field) from None
        except _core.NotAssignable as exc:
            raise FailedPreconditionError(
                "UNIT_NOT_ASSIGNABLE", f"unit/{exc.field}", str(exc)
            ) from None
        return AssignPlan(incident, unit_ids, self._plan_now())

    def _apply_assign(self, plan: AssignPlan) -> pb.AssignUnitsResponse:
        self.index.assign(plan.incident.incident_id, plan.unit_ids)
        if plan.incident.first_assigned_ms is None:
            self.observer.first_assigned(plan.incident, plan.now_ms)
        incident = plan.incident.with_assigned(plan.unit_ids, plan.now_ms)
        self.incidents.put(incident)
        response = pb.AssignUnitsResponse()
        incident_to_proto(incident, response.incident)
        return response

    # --------------------------------------------------------------------- recommendation

    def recommend(self, request: pb.RecommendUnitsRequest, out: pb.RecommendUnitsResponse) -> None:
        """Fills `out` with the ranking for each requirement group of the request's target."""
        if request.WhichOneof("target") == "incident_id":
            incident = self._incident(request.incident_id)
            lat, lon, grade, area = incident.lat, incident.lon, incident.grade, incident.area
            out.incident_id = incident.incident_id
            groups: Sequence[RequirementGroup] = incident.requirements
        else:
            target = request.ad_hoc
            lat, lon, area = target.location.lat, target.location.lon, target.area
            grade = Grade(target.grade)
            groups = groups_from_proto(target.requirements)
        statuses = list(request.eligible_statuses) or _AVAILABLE_ONLY
        now_ms = self._clock_ms()
        rank = self.index.rank
        ranked = self.observer.ranked
        for i, group in enumerate(groups):
            entry = out.groups.add(group_index=i)
            group_to_proto(group, entry.group)
            try:
                started = time.perf_counter()
                candidates = rank(
                    lat,
                    lon,
                    now_ms=now_ms,
                    k=request.k or min(MAX_K, max(DEFAULT_K, group.count)),
                    grade=int(grade),
                    required=group.capabilities,
                    agencies=(int(group.agency),),
                    statuses=statuses,
                    unit_types=group.unit_types or None,
                    area=area or None,
                )
                ranked(time.perf_counter() - started)
            except _core.InvalidArgument as exc:
                # Validated requirements never get here; the core still names the field.
                raise InvalidArgumentError.one(f"requirements[{i}].{exc.field}", str(exc)) from None
            candidates_to_proto(candidates, entry)
