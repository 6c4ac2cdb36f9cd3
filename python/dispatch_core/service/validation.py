"""Validation of the requests Python still answers itself: the operating picture's
coverage question, WatchOperatingPicture's interval and QueryAudit's filters; names are
held to the core's identifier grammar. Every command and read that the
core answers is validated there (`rust/core/src/wire/validate.rs`), with the limits of
`rust/core/src/wire/limits.rs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from dispatch_core._core import MAX_ID_LEN, identifier_refusal
from dispatch_core.errors import InvalidArgumentError
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Agency, Grade
from dispatch_core.views.picture import CoverageSpec

Violations: TypeAlias = list[tuple[str, str]]

_AGENCIES = frozenset(int(a) for a in Agency)
_GRADES = frozenset(int(g) for g in Grade)


def _raise_if(violations: Violations) -> None:
    if violations:
        raise InvalidArgumentError(violations)


def _id(v: Violations, field: str, value: str) -> None:
    """An identifier, by the core's grammar (`rust/core/src/wire/ident.rs`)."""
    refusal = identifier_refusal(value)
    if refusal is not None:
        v.append((field, refusal))


def optional_ids(fields: Sequence[tuple[str, str]], max_bytes: int = MAX_ID_LEN) -> None:
    """Filters that may be empty ("any") but otherwise name something by the grammar:
    INVALID_ARGUMENT naming each bad one."""
    v: Violations = []
    for field, value in fields:
        if value:
            refusal = identifier_refusal(value, max_bytes)
            if refusal is not None:
                v.append((field, refusal))
    _raise_if(v)


def _enum(v: Violations, field: str, value: int, valid: frozenset[int], name: str) -> None:
    if value not in valid:
        what = "must be set" if value == 0 else f"{value} is not a known {name}"
        v.append((field, what))


def _enums(
    v: Violations, field: str, values: Sequence[int], valid: frozenset[int], name: str
) -> None:
    for i, value in enumerate(values):
        _enum(v, f"{field}[{i}]", value, valid, name)


#: Longest coverage target accepted, seconds: a day is already beyond any response target.
MAX_TARGET_SECONDS = 86_400.0
#: Bounds of a coverage cell's side, metres: finer is noise, coarser hides the gaps.
MIN_CELL_M, MAX_CELL_M = 50.0, 10_000.0
#: Bounds of WatchOperatingPicture's interval, seconds.
MIN_INTERVAL_S, MAX_INTERVAL_S = 1.0, 3_600.0


def coverage_spec(
    query: pb.CoverageQuery, capabilities: frozenset[str], at: str = "coverage"
) -> CoverageSpec:
    """The coverage question of a picture request, with its documented defaults filled in."""
    v: Violations = []
    _enums(v, f"{at}.agencies", query.agencies, _AGENCIES, "Agency")
    if query.grade != 0:
        _enum(v, f"{at}.grade", query.grade, _GRADES, "Grade")
    for i, name in enumerate(query.unit_types):
        _id(v, f"{at}.unit_types[{i}]", name)
    for i, name in enumerate(query.capabilities):
        if name not in capabilities:
            v.append((f"{at}.capabilities[{i}]", f"unknown capability {name!r}"))
    target = query.target_seconds or 900.0
    if not (0.0 < target <= MAX_TARGET_SECONDS):
        v.append((f"{at}.target_seconds", f"{target} is outside (0, {MAX_TARGET_SECONDS:.0f}]"))
    cell = query.cell_m or 500.0
    if not (MIN_CELL_M <= cell <= MAX_CELL_M):
        v.append((f"{at}.cell_m", f"{cell} is outside [{MIN_CELL_M:.0f}, {MAX_CELL_M:.0f}]"))
    _raise_if(v)
    types = tuple(query.unit_types) or ("irv",)
    return CoverageSpec(
        agencies=tuple(Agency(a) for a in query.agencies) or (Agency.POLICE,),
        unit_types=() if types == ("*",) else types,
        required=tuple(query.capabilities),
        grade=Grade(query.grade or Grade.IMMEDIATE),
        target_seconds=target,
        cell_m=cell,
    )


def watch_interval(request: pb.WatchOperatingPictureRequest) -> float:
    interval = request.interval_seconds or 5.0
    if not (MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S):
        raise InvalidArgumentError.one(
            "interval_seconds",
            f"{interval} is outside [{MIN_INTERVAL_S:.0f}, {MAX_INTERVAL_S:.0f}]",
        )
    return interval
