"""SIGHUP: re-read configuration files without a restart.

A control room cannot restart its dispatch engine to revoke a stolen certificate or roll a
JWT signing key, so `serve` reloads on SIGHUP (`kill -HUP <pid>`, `systemctl reload`). What
is reloaded registers a callback here (`Reloader.register`): the policy and the JWKS file
(`security/tls.py`), and later anything else read from a file at start. Each callback
builds its new configuration completely and swaps it in only if that succeeded; a callback
that raises leaves its previous configuration in force, and the failure is one error line
naming what and why (no traceback: the operator's fix is in the file, not in the code).
Callbacks run one reload at a time, on a thread of their own, never in the signal handler.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


class Reloader:
    """The callbacks a SIGHUP runs, in the order they were registered."""

    def __init__(self) -> None:
        self._callbacks: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()
        #: Reloads completed (each callback tried), for tests and logs.
        self.reloads = 0

    def register(self, name: str, callback: Callable[[], None]) -> None:
        """Runs `callback` at every reload; `name` says what it reloads in log lines."""
        with self._lock:
            self._callbacks.append((name, callback))

    def reload(self) -> list[str]:
        """Runs every callback; returns the names of those that failed (each logged)."""
        failed: list[str] = []
        with self._lock:
            for name, callback in self._callbacks:
                try:
                    callback()
                except Exception as exc:
                    failed.append(name)
                    log.error("reload of the %s failed; the previous one stays: %s", name, exc)
                else:
                    log.info("reloaded the %s", name)
            self.reloads += 1
        return failed

    def install(self) -> None:
        """Makes SIGHUP run `reload` (call from the main thread)."""

        def on_hangup(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=self.reload, name="reload", daemon=True).start()

        signal.signal(signal.SIGHUP, on_hangup)
