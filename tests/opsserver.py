"""Running `dispatch-core` the way an operator does, for the ops tests: a server with any
flags (stderr, where the logs go, kept apart from stdout), and one-shot commands whose
exit code and stderr are checked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import STARTUP_TIMEOUT_S, ServerProcess, wait_serving

_LISTENING = re.compile(r"listening on [^\s:]+:(\d+)")
_METRICS_AT = re.compile(r"metrics served at (http://\S+/metrics)")

CLI = [sys.executable, "-m", "dispatch_core"]


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 60.0,
    **kwargs: object,
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m dispatch_core ARGS` to its end."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
        **kwargs,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The last line a refused start-up prints on stderr, which must be its only problem
    report: no traceback, no second error line (the log lines of a normal start before it,
    like "recovered from", are allowed)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result
    problems = [line for line in lines if "CRITICAL" in line or line.startswith("dispatch-core")]
    assert problems == [lines[-1]], result.stderr
    assert not any(" ERROR " in line or line.startswith("E") for line in lines), result.stderr
    return lines[-1]


def launch(workdir: Path, *flags: str, metrics: bool = False) -> ServerProcess:
    """`dispatch-core serve` on a free port with `flags`, returned once SERVING. Its stderr
    (the log) is `workdir/server.log`; stdout goes to `workdir/stdout.log`."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    command = [
        *CLI,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(workdir / "data"),
        "--metrics-port",
        "0" if metrics else "-1",
        "--grace",
        "2",
        *flags,
    ]
    with log_path.open("wb") as err, (workdir / "stdout.log").open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    port = metrics_url = None
    while port is None or (metrics and metrics_url is None):
        text = log_path.read_text(errors="replace")
        found = _LISTENING.search(text)
        port = int(found.group(1)) if found else None
        at = _METRICS_AT.search(text)
        metrics_url = at.group(1) if at else None
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"server did not start:\n{text}")
        time.sleep(0.05)
    server = ServerProcess(process, port, log_path, metrics_url)
    if not wait_serving(server.target, process, deadline):
        server.stop()
        raise RuntimeError(f"server never became SERVING:\n{server.log()}")
    return server
