"""dispatch-core: rank and assign the most appropriate police, fire and ambulance units.

The public face of the Rust extension `dispatch_core._core` (see `_core.pyi`): the state
machine `DispatchCore` and the unit index `UnitIndex`; plus the command pipeline
(`durability`), the gRPC service (`service`), the views (`views`) and the tools around
them. docs/architecture.md maps the whole.
"""

from dispatch_core._core import (
    DEFAULT_CAPABILITIES,
    EARTH_RADIUS_M,
    MAX_CAPABILITIES,
    MAX_ID_LEN,
    MAX_K,
    BatchRanking,
    Candidate,
    DispatchCore,
    InvalidArgument,
    InvalidTransition,
    LocationReport,
    NotAssignable,
    Outcome,
    Refused,
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
    "DispatchCore",
    "Grade",
    "IncidentStatus",
    "InvalidArgument",
    "InvalidTransition",
    "LocationReport",
    "NotAssignable",
    "Outcome",
    "Refused",
    "ScoreBreakdown",
    "UnitIndex",
    "UnitStatus",
    "UnitView",
    "UnknownUnit",
    "__version__",
]
