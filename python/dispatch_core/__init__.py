"""dispatch-core: rank and assign the most appropriate police, fire and ambulance units.

The public face of the Rust extension `dispatch_core._core` (see `_core.pyi`) plus the
engine, the gRPC service and the tools around them.
"""

from dispatch_core._core import (
    DEFAULT_CAPABILITIES,
    EARTH_RADIUS_M,
    MAX_CAPABILITIES,
    MAX_ID_LEN,
    MAX_K,
    BatchRanking,
    Candidate,
    InvalidArgument,
    InvalidTransition,
    LocationReport,
    NotAssignable,
    ScoreBreakdown,
    UnitIndex,
    UnitView,
    UnknownUnit,
    __version__,
)
from dispatch_core.types import Agency, Grade, IncidentStatus, UnitStatus

__all__ = [
    "DEFAULT_CAPABILITIES",
    "EARTH_RADIUS_M",
    "MAX_CAPABILITIES",
    "MAX_ID_LEN",
    "MAX_K",
    "Agency",
    "BatchRanking",
    "Candidate",
    "Grade",
    "IncidentStatus",
    "InvalidArgument",
    "InvalidTransition",
    "LocationReport",
    "NotAssignable",
    "ScoreBreakdown",
    "UnitIndex",
    "UnitStatus",
    "UnitView",
    "UnknownUnit",
    "__version__",
]
