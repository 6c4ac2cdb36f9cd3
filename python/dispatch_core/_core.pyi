"""Type stub for the Rust extension `dispatch_core._core`.

Enumerations travel as plain ints whose values equal the `dispatch.v1` proto enum numbers
(see `dispatch_core.types`), so the gRPC layer maps them without a table. Times are integer
Unix milliseconds throughout.
"""

import os
from collections.abc import Mapping, Sequence
from typing import final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "COMMANDS",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_CLOSED_RETENTION_COUNT",
    "DEFAULT_CLOSED_RETENTION_MS",
    "DEFAULT_MAX_FUTURE_SKEW_MS",
    "DEFAULT_REQUEST_CAPACITY",
    "DEFAULT_SCARCE_CAPABILITIES",
    "EARTH_RADIUS_M",
    "JOURNAL_FORMAT",
    "MAX_CAPABILITIES",
    "MAX_ID_LEN",
    "MAX_K",
    "MAX_LOCATION_BATCH",
    "MAX_PAGE_SIZE",
    "MAX_TIME_MS",
    "MIN_TIME_MS",
    "REQUEST_RETENTION_MS",
    "SNAPSHOT_FORMAT",
    "BatchRanking",
    "Candidate",
    "DispatchCore",
    "InvalidArgument",
    "InvalidTransition",
    "LocationReport",
    "NotAssignable",
    "Outcome",
    "Refused",
    "ScoreBreakdown",
    "UnitIndex",
    "UnitView",
    "UnknownUnit",
    "__version__",
    "check_rows",
    "entry_checksum",
    "identifier_refusal",
    "payload_request",
    "payload_time_ms",
]

#: Largest K a ranking call accepts.
MAX_K: int
#: Number of distinct capabilities a vocabulary may hold.
MAX_CAPABILITIES: int
#: Longest unit_id, incident_id, unit type or area name accepted, in bytes.
MAX_ID_LEN: int
#: Mean Earth radius used for great-circle distances, metres.
EARTH_RADIUS_M: float
#: The capability names shipped by default.
DEFAULT_CAPABILITIES: list[str]
#: The capabilities counted as scarce by default (the specialist cost).
DEFAULT_SCARCE_CAPABILITIES: list[str]
#: Valid client-supplied times (shift bounds, pings): MIN_TIME_MS <= t < MAX_TIME_MS.
MIN_TIME_MS: int
MAX_TIME_MS: int
#: How far after its arrival a ping may be dated by default, ms.
DEFAULT_MAX_FUTURE_SKEW_MS: int
#: How long answers to request_ids are remembered, ms of command time (24 h).
REQUEST_RETENTION_MS: int
#: Answers kept in memory by default; older ones inside the window come from the journal.
DEFAULT_REQUEST_CAPACITY: int
#: How long closed incidents stay in memory by default (ms after closing), and how many.
DEFAULT_CLOSED_RETENTION_MS: int
DEFAULT_CLOSED_RETENTION_COUNT: int
#: The snapshot format this build writes.
SNAPSHOT_FORMAT: int
#: Most pings in one location batch.
MAX_LOCATION_BATCH: int
#: Largest page of ListUnits / ListIncidents.
MAX_PAGE_SIZE: int
#: The methods `DispatchCore.execute` takes (the journaled commands and "Tick").
COMMANDS: list[str]

#: Version of the stored journal layout (tables, columns, checksum recipe).
JOURNAL_FORMAT: int

def check_rows(
    rows: Sequence[object], after: int, tail: int
) -> tuple[int, tuple[str, int, int] | None]:
    """How many stored journal rows (read in order after `after`; `tail` is the last
    sequence written) are good from the start, and what stopped the count: ("torn" |
    "missing" | "corrupt", sequence or expected, sequence found)."""

def entry_checksum(
    sequence: int,
    method: str,
    request_id: str,
    payload: bytes,
    result: bytes,
    time_ms: int,
    actor: str,
    assign: str,
    release: str,
) -> int:
    """The CRC-32 a stored journal entry carries over its fields."""

def payload_request(payload: bytes) -> bytes:
    """The request inside a journal entry's payload."""

def payload_time_ms(payload: bytes) -> int:
    """The time inside a journal entry's payload, Unix ms."""

def identifier_refusal(value: str, max_bytes: int = ...) -> str | None:
    """Why `value` is not an identifier (the core's grammar, at most `max_bytes` long,
    default MAX_ID_LEN), or None when it is one."""

class Refused(Exception):
    """A command or read the core refused; nothing changed.

    `code` is the gRPC status name ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS",
    "FAILED_PRECONDITION", "UNAVAILABLE"); the details: field `violations` (field,
    description), a `precondition` (type, subject, description) or a `resource` (type,
    name).
    """

    code: str
    violations: list[tuple[str, str]]
    precondition: tuple[str, str, str] | None
    resource: tuple[str, str] | None

class InvalidArgument(ValueError):
    """A malformed argument; `field` names it (e.g. ``lat``, ``lat[3]``, ``capabilities``)."""

    field: str

class UnknownUnit(KeyError):
    """The unit_id is not registered; `field` is that id."""

    field: str

class InvalidTransition(ValueError):
    """A status change the lifecycle refuses; `field` is the unit_id."""

    field: str

class NotAssignable(ValueError):
    """A unit that cannot be assigned (taken, wrong status); `field` is the unit_id."""

    field: str

@final
class ScoreBreakdown:
    """Every term of a candidate's score, in seconds."""

    @property
    def mobilisation_seconds(self) -> float: ...
    @property
    def travel_seconds(self) -> float: ...
    @property
    def cross_area_cost(self) -> float: ...
    @property
    def shift_overrun_cost(self) -> float: ...
    @property
    def specialist_cost(self) -> float: ...
    @property
    def stale_position_cost(self) -> float: ...

@final
class Candidate:
    """One ranked unit."""

    @property
    def unit_id(self) -> str: ...
    @property
    def slot(self) -> int: ...
    @property
    def eta_seconds(self) -> float: ...
    @property
    def distance_m(self) -> float: ...
    @property
    def score(self) -> float: ...
    @property
    def breakdown(self) -> ScoreBreakdown: ...
    @property
    def position_age_seconds(self) -> float: ...

@final
class BatchRanking:
    """Top-K for many query points at once; row i answers query i.

    Every array has shape (n_queries, k); rows shorter than k are padded with slot -1
    and NaN. `counts[i]` is the number of real candidates in row i.
    """

    @property
    def slots(self) -> npt.NDArray[np.int64]: ...
    @property
    def eta_seconds(self) -> npt.NDArray[np.float64]: ...
    @property
    def distance_m(self) -> npt.NDArray[np.float64]: ...
    @property
    def score(self) -> npt.NDArray[np.float64]: ...
    @property
    def counts(self) -> npt.NDArray[np.int64]: ...

@final
class LocationReport:
    """What a batch location update did: applied pings and skipped ones by reason."""

    @property
    def applied(self) -> int: ...
    @property
    def skipped_unknown_unit(self) -> int: ...
    @property
    def skipped_bad_coordinate(self) -> int: ...
    @property
    def skipped_stale(self) -> int: ...
    @property
    def skipped_bad_time(self) -> int: ...
    @property
    def skipped_future(self) -> int: ...

@final
class UnitView:
    """A copy of one unit's state."""

    @property
    def unit_id(self) -> str: ...
    @property
    def slot(self) -> int: ...
    @property
    def agency(self) -> int: ...
    @property
    def unit_type(self) -> str: ...
    @property
    def capabilities(self) -> list[str]: ...
    @property
    def status(self) -> int: ...
    @property
    def home_area(self) -> str | None: ...
    @property
    def shift_start_ms(self) -> int | None: ...
    @property
    def shift_end_ms(self) -> int | None: ...
    @property
    def lat(self) -> float | None: ...
    @property
    def lon(self) -> float | None: ...
    @property
    def location_time_ms(self) -> int | None: ...
    @property
    def incident_id(self) -> str | None: ...

@final
class UnitIndex:
    """The unit table, its moving-point spatial index and the ranking engine.

    Safe to share between threads: reads run concurrently, writes are serialised, and
    every call that does real work releases the GIL.
    """

    def __new__(
        cls,
        *,
        capabilities: Sequence[str] | None = None,
        scarce_capabilities: Sequence[str] | None = None,
        config: Mapping[str, object] | None = None,
        cell_deg: float = 0.01,
    ) -> UnitIndex: ...
    def __len__(self) -> int: ...
    def capability_names(self) -> list[str]: ...
    def config(self) -> dict[str, object]: ...
    def set_config(self, overrides: Mapping[str, object]) -> None: ...
    def upsert_unit(
        self,
        unit_id: str,
        *,
        agency: int,
        unit_type: str,
        capabilities: Sequence[str] | None = None,
        home_area: str | None = None,
        shift_start_ms: int | None = None,
        shift_end_ms: int | None = None,
        status: int | None = None,
    ) -> int: ...
    def remove_unit(self, unit_id: str) -> None: ...
    def get_unit(self, unit_id: str) -> UnitView: ...
    def slot_of(self, unit_id: str) -> int: ...
    def slots_of(self, unit_ids: Sequence[str]) -> npt.NDArray[np.int64]: ...
    def unit_ids(self) -> list[str]: ...
    def list_units(
        self,
        *,
        statuses: Sequence[int] | None = None,
        agencies: Sequence[int] | None = None,
        home_area: str | None = None,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> list[UnitView]: ...
    def set_status(self, unit_id: str, status: int) -> str | None: ...
    def check_transition(self, unit_id: str, status: int) -> None: ...
    def check_assignable(self, unit_ids: Sequence[str]) -> None: ...
    def assign(self, incident_id: str, unit_ids: Sequence[str]) -> None: ...
    def release_incident(self, incident_id: str, unit_ids: Sequence[str]) -> list[str]: ...
    def update_location(self, unit_id: str, lat: float, lon: float, time_ms: int) -> bool: ...
    def update_locations(
        self,
        unit_ids: Sequence[str],
        lat: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        time_ms: npt.NDArray[np.int64],
        *,
        strict: bool = True,
    ) -> LocationReport: ...
    def update_locations_by_slot(
        self,
        slots: npt.NDArray[np.int64],
        lat: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        time_ms: npt.NDArray[np.int64],
        *,
        strict: bool = True,
    ) -> LocationReport: ...
    def rank(
        self,
        lat: float,
        lon: float,
        *,
        now_ms: int,
        k: int = 5,
        grade: int = 1,
        required: Sequence[str] | None = None,
        agencies: Sequence[int] | None = None,
        statuses: Sequence[int] | None = None,
        unit_types: Sequence[str] | None = None,
        area: str | None = None,
    ) -> list[Candidate]: ...
    def rank_batch(
        self,
        lat: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        *,
        now_ms: int,
        k: int = 5,
        grade: int = 1,
        required: Sequence[str] | None = None,
        agencies: Sequence[int] | None = None,
        statuses: Sequence[int] | None = None,
        unit_types: Sequence[str] | None = None,
        area: str | None = None,
    ) -> BatchRanking: ...
    def coverage(
        self,
        lat: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        *,
        target_seconds: float,
        now_ms: int,
        grade: int = 1,
        required: Sequence[str] | None = None,
        agencies: Sequence[int] | None = None,
        statuses: Sequence[int] | None = None,
        unit_types: Sequence[str] | None = None,
    ) -> npt.NDArray[np.bool_]: ...
    def unit_columns(
        self,
    ) -> tuple[
        npt.NDArray[np.int8],
        npt.NDArray[np.int8],
        npt.NDArray[np.int32],
        list[str],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.int64],
    ]: ...
    def positions(
        self,
    ) -> tuple[
        list[str],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.int64],
    ]: ...
    def memory_bytes(self) -> int: ...

@final
class Outcome:
    """What `DispatchCore.execute` decided."""

    @property
    def kind(self) -> str:
        """ "applied", "repeated", "check_journal" or "refused"."""
    @property
    def sequence(self) -> int: ...
    @property
    def request_id(self) -> str: ...
    @property
    def payload(self) -> bytes:
        """The journal payload (time + canonical request) of an applied command."""
    @property
    def response(self) -> bytes:
        """The encoded answer (applied or repeated)."""
    @property
    def events(self) -> list[tuple[str, int, int]]:
        """(kind, grade, value): "first_assigned" / "first_on_scene" with milliseconds,
        "requests_expired" with a count."""
    @property
    def assign(self) -> list[tuple[str, str]]: ...
    @property
    def release(self) -> list[str]: ...
    @property
    def archived(self) -> list[tuple[str, bytes]]:
        """(incident_id, encoded final Incident) of closed incidents a clock command took
        out of memory."""
    def error(self) -> Refused | None: ...

@final
class DispatchCore:
    """The dispatch state machine: units, incidents, assignments and the idempotency table.

    Commands go through `execute` only; reads run concurrently with each other; every call
    that does real work releases the GIL. Requests and answers are encoded dispatch.v1
    messages.
    """

    def __new__(
        cls,
        *,
        capabilities: Sequence[str] | None = None,
        scarce_capabilities: Sequence[str] | None = None,
        config: Mapping[str, object] | None = None,
        cell_deg: float = 0.01,
        request_capacity: int = ...,
        max_future_skew_ms: int = ...,
        closed_retention_ms: int = ...,
        closed_retention_count: int = ...,
        ack_timeout_ms: dict[str, int] | None = None,
    ) -> DispatchCore: ...
    def execute(
        self,
        method: str,
        request: bytes,
        time_ms: int,
        *,
        journal_checked: bool = False,
        journal: tuple[bytes, bytes, int] | None = None,
    ) -> Outcome: ...
    def replay(self, entries: Sequence[tuple[int, str, bytes, bytes]]) -> int: ...
    def replay_rows(
        self, rows: Sequence[object], after: int, tail: int
    ) -> tuple[int, int, tuple[str, int, int] | None]: ...
    def tick_due(self, now_ms: int) -> bool: ...
    @property
    def sequence(self) -> int: ...
    @property
    def clock_ms(self) -> int: ...
    def __len__(self) -> int: ...
    def capability_names(self) -> list[str]: ...
    def config(self) -> dict[str, object]: ...
    def set_config(self, overrides: Mapping[str, object]) -> None: ...
    def get_unit(self, request: bytes) -> bytes: ...
    def list_units(self, request: bytes) -> bytes: ...
    def get_incident(self, request: bytes) -> bytes: ...
    def get_response_plans(self, request: bytes) -> bytes: ...
    def load_response_plans(
        self, path: str | os.PathLike[str]
    ) -> tuple[bytes | None, list[str], list[tuple[str, int, str, str]]]:
        """Reads and checks a response-plan file: (the encoded ReplaceResponsePlansRequest
        without request_id, or None; the files read; the problems as (file, line, key,
        message))."""
    def list_incidents(self, request: bytes) -> bytes: ...
    def recommend(self, request: bytes, now_ms: int) -> bytes: ...
    def batch_recommend(self, request: bytes, now_ms: int) -> bytes: ...
    def list_pending(self, request: bytes, now_ms: int) -> bytes: ...
    def get_person(self, request: bytes) -> bytes: ...
    def ack_timeouts(self) -> dict[str, int]: ...
    def overdue_ack_positions(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
    def update_locations(self, request: bytes, now_ms: int, batch: int = 0) -> LocationReport: ...
    def coverage(
        self,
        lat: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        *,
        target_seconds: float,
        now_ms: int,
        grade: int = 1,
        required: Sequence[str] | None = None,
        agencies: Sequence[int] | None = None,
        statuses: Sequence[int] | None = None,
        unit_types: Sequence[str] | None = None,
    ) -> npt.NDArray[np.bool_]: ...
    def unit_columns(
        self,
    ) -> tuple[
        npt.NDArray[np.int8],
        npt.NDArray[np.int8],
        npt.NDArray[np.int32],
        list[str],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
    ]: ...
    def open_incident_columns(
        self,
    ) -> tuple[
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.int8],
        npt.NDArray[np.int64],
        npt.NDArray[np.bool_],
    ]: ...
    def units_by_agency_status(self) -> dict[tuple[int, int], int]: ...
    def incident_counts(self) -> list[tuple[int, int, int | None]]: ...
    def sizes(self) -> tuple[int, int, int]: ...
    def snapshot(self) -> tuple[int, bytes]: ...
    def snapshot_timing(self) -> tuple[float, float]: ...
    def restore(self, data: bytes) -> int: ...
    @staticmethod
    def snapshot_format(data: bytes) -> int | None: ...
    def digest(self) -> int: ...
    def check_invariants(self) -> None: ...
    def memory_bytes(self) -> int: ...
