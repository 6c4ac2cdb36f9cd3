"""Admission: how many RPCs the server takes at once, and who is refused beyond that.

It replaces grpcio's `maximum_concurrent_rpcs`, which refuses with RESOURCE_EXHAUSTED
before any interceptor sees the call, so the refusals appeared in no metric and no log.
Here the interceptor asks `admit` for every call, in grpcio's polling thread before the
call is queued for a worker (where grpcio counted too), and a refused call is answered
RESOURCE_EXHAUSTED by a handler that is timed, counted and logged like any other.

A call holds its slot from admission until the worker task grpcio runs for it ends,
whether or not the handler itself ran (grpcio skips it for a call cancelled while queued):
`executor()` is the server's thread pool, and it gives the slot back when that task ends.
So the count is "admitted and not finished", queued calls included, as grpcio's was.

Priorities (the security issue): `admit` is the one place that decides. It gets the
method and the call's metadata; a priority scheme would keep a reserve of slots for
privileged callers or methods here, and nothing else would change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

#: RPCs admitted at once (running or queued for a worker) before new ones are refused with
#: RESOURCE_EXHAUSTED: overload is refused cleanly rather than queued without bound.
DEFAULT_LIMIT = 512


class Admission:
    """Counts admitted calls against a limit."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"admission limit must be >= 1, not {limit}")
        self.limit = limit
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        """Calls admitted and not yet finished."""
        return self._admitted

    def admit(self, method: str, metadata: Sequence[tuple[str, Any]] | None = None) -> bool:
        """Takes a slot for a call of `method` (True), or refuses it (False).

        `metadata` is unused until calls have priorities; it is passed so that the
        decision can use it without changing the callers."""
        with self._lock:
            if self._admitted >= self.limit:
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def executor(self, max_workers: int) -> futures.ThreadPoolExecutor:
        """The server's worker pool: each task grpcio submits is one admitted call, and
        its slot is released when the task ends."""
        return _ReleasingExecutor(self, max_workers=max_workers, thread_name_prefix="rpc")


class _ReleasingExecutor(futures.ThreadPoolExecutor):
    """grpcio submits exactly one task per call it hands to a worker (the handler, or for a
    call cancelled while queued, the task that finds so): the end of that task is the end
    of the call's use of the server."""

    def __init__(self, admission: Admission, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._admission = admission

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        release = self._admission.release

        def task() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                release()

        try:
            return super().submit(task)
        except BaseException:
            release()  # never queued (the pool is shutting down): the slot is free again
            raise
