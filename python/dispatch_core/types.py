"""Enumerations shared by the engine, the Rust core and the gRPC API.

The integer values are the `dispatch.v1` proto enum numbers, so a proto enum value is passed
to the Rust core unchanged; zero is the proto's `_UNSPECIFIED` and is never a valid value.
"""

from __future__ import annotations

import enum


class Agency(enum.IntEnum):
    """Which service a unit belongs to."""

    POLICE = 1
    FIRE = 2
    AMBULANCE = 3


class UnitStatus(enum.IntEnum):
    """A unit's place in the lifecycle of docs/domain.md."""

    AVAILABLE = 1
    DISPATCHED = 2
    EN_ROUTE = 3
    ON_SCENE = 4
    COMMITTED = 5
    UNAVAILABLE = 6
    OFF_DUTY = 7


class Grade(enum.IntEnum):
    """UK police incident grade."""

    IMMEDIATE = 1
    SIGNIFICANT = 2
    EXTENDED = 3
    REFERRED = 4


class IncidentStatus(enum.IntEnum):
    """Where an incident stands."""

    OPEN = 1
    DISPATCHED = 2
    ATTENDED = 3
    CLOSED = 4
