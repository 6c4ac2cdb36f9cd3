"""Response plans (run cards) from the file users edit, installed through the state machine.

The core holds the plans in force as state, changed only by the journaled command
ReplaceResponsePlans, so replay and snapshots see exactly the plans each incident was
created under. This module reads the file (`--response-plans`; the shipped
`data/response_plans.toml` by default) with the extension's reader, which names the file,
line and key of every mistake, and sends the command when the file's plans differ from
those in force: at start-up, on ReloadResponsePlans, and on SIGHUP (`ResponsePlans.reload`,
registered with `reload.Reloader`).

A file that does not validate changes nothing: the previous plans stay in force.
"""

from __future__ import annotations

import logging
import threading
import uuid
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from dispatch_core.durability.pipeline import SERVER_ACTOR_PREFIX
from dispatch_core.errors import PlanFileError, PlanProblem
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

if TYPE_CHECKING:
    from dispatch_core._core import DispatchCore
    from dispatch_core.durability.pipeline import Pipeline

log = logging.getLogger(__name__)

#: The journal's actor for an install the server made itself (start-up, a signal).
SERVER_ACTOR = SERVER_ACTOR_PREFIX + "response-plans"

#: The journaled method that installs plans.
METHOD = "ReplaceResponsePlans"


def default_path() -> Path:
    """The shipped plans: common police, fire and ambulance incidents."""
    return Path(str(resources.files("dispatch_core") / "data" / "response_plans.toml"))


def read_plans(core: DispatchCore, path: Path) -> pb.ReplaceResponsePlansRequest:
    """The plans of `path` (and its includes) as the install command, checked against the
    core's vocabulary and unit types; raises PlanFileError naming every mistake."""
    encoded, _files, problems = core.load_response_plans(path)
    if encoded is None:
        raise PlanFileError(path, [PlanProblem(*p) for p in problems])
    return pb.ReplaceResponsePlansRequest.FromString(encoded)


class ResponsePlans:
    """The server's plan file and the pipeline its plans are installed through."""

    def __init__(self, pipeline: Pipeline, path: Path) -> None:
        self._pipeline = pipeline
        self.path = path
        # Two reloads at once would both read, compare and install; one at a time keeps
        # "nothing changed" meaningful.
        self._lock = threading.Lock()

    def in_force(self) -> pb.ResponsePlanSet:
        answer = self._pipeline.core.get_response_plans(b"")
        return pb.GetResponsePlansResponse.FromString(answer).response_plans

    def install(self, *, actor: str = SERVER_ACTOR) -> tuple[bool, pb.ResponsePlanSet]:
        """Reads the file and installs its plans if they (or where they came from) differ
        from those in force. Returns whether it installed, and the plans now in force.
        Raises PlanFileError (nothing changed) or the pipeline's errors."""
        with self._lock:
            request = read_plans(self._pipeline.core, self.path)
            current = self.in_force()
            same = list(current.plans) == list(request.plans) and current.source == request.source
            if same and current.HasField("install_time"):
                return False, current
            # Unique per install: the same file installed again after another one is a new
            # command, never a retry of the first.
            request.request_id = f"plans-{uuid.uuid4()}"
            answer = self._pipeline.command(
                METHOD, request, pb.ReplaceResponsePlansResponse, actor=actor
            )
            log.info("response plans installed from %s: %d plans", self.path, len(request.plans))
            return True, answer.response_plans

    def reload(self) -> None:
        """Re-reads the file and installs it if it changed: what a SIGHUP runs (registered
        with `reload.Reloader` as "response plans"). Raises PlanFileError when the file
        does not validate, the previous plans staying in force; the Reloader logs that as
        one error line naming the first problem and how many more."""
        changed, in_force = self.install()
        if not changed:
            log.info(
                "response plans unchanged: %s has the %d in force", self.path, len(in_force.plans)
            )
