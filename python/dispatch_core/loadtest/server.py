"""`dispatch-core serve` as a subprocess on a free loopback port, for load tests and benchmarks."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dispatch_core.service.servicer import SERVICE_NAME

#: The line the server logs for each snapshot it writes.
SNAPSHOT_LINE = re.compile(r"snapshot at sequence (\d+) written in ([0-9.]+) s")
#: The line the server logs once its metrics endpoint is up.
METRICS_AT = re.compile(r"metrics served at (http://127\.0\.0\.1:\d+/metrics)")
#: Benchmarks' snapshot interval: the one after seeding happens before anything is measured.
SNAPSHOT_INTERVAL_S = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`dispatch-core serve` as a subprocess on a free port with a temporary data dir.

    Subclasses choose the flags (`flags`); the base class asks for a free metrics port and a
    short snapshot interval, given what this version of the CLI offers.
    """

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("dispatch-core", path=str(Path(sys.executable).parent))
        if exe is None:
            exe = shutil.which("dispatch-core")
        if exe is None:
            raise SystemExit("dispatch-core is not installed next to this python")
        helped = subprocess.run(
            [exe, "serve", "--help"], capture_output=True, text=True, check=False
        )
        if helped.returncode != 0:
            raise SystemExit(f"dispatch-core serve --help failed:\n{helped.stderr[-2000:]}")
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        extra = self.flags(helped.stdout)
        if "--shutdown-delay" in helped.stdout:
            # Nobody balances load onto a test server: stop at once when told.
            extra += ["--shutdown-delay", "0"]
        self.command_flags = extra
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                exe,
                "--log-level",
                "INFO",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(workdir / "data"),
                "--grace",
                "2",
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    def flags(self, help_text: str) -> list[str]:
        """`serve` flags for this benchmark, given what this CLI version offers."""
        # A fixed default metrics port would collide with any other server on the machine:
        # ask for a free one when this version of the CLI has metrics.
        extra = ["--metrics-port", "0"] if "--metrics-port" in help_text else []
        # Snapshots (journalled servers) write the whole state from a background thread.
        # A short interval makes the one after seeding happen right away, before anything
        # is measured; nothing measured is journalled by the gRPC benchmark, so no other
        # snapshot follows until it provokes one on purpose.
        self.journalled = "--snapshot-interval" in help_text
        if self.journalled:
            extra += ["--snapshot-interval", str(SNAPSHOT_INTERVAL_S)]
        return extra

    def wait_serving(self, channel: grpc.Channel, timeout_s: float = 30.0) -> float:
        """Blocks until the health service says SERVING; returns the seconds it took."""
        health = health_pb2_grpc.HealthStub(channel)
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.perf_counter() - start
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"server not SERVING after {timeout_s} s:\n{self.log_tail()}")

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def metrics_url(self, timeout_s: float = 30.0) -> str:
        """The loopback /metrics URL the server logged at start."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            found = METRICS_AT.search(self.log_text())
            if found:
                return found.group(1)
            time.sleep(0.05)
        raise SystemExit(f"no loopback metrics URL in the log:\n{self.log_tail()}")

    def snapshots(self) -> list[tuple[int, float]]:
        """(sequence, seconds) of every snapshot the server has logged so far."""
        return [(int(a), float(b)) for a, b in SNAPSHOT_LINE.findall(self.log_text())]

    def wait_snapshot(self, sequence: int, timeout_s: float = 300.0) -> float:
        """Blocks until a snapshot at `sequence` or later is logged; returns the wait."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if any(seq >= sequence for seq, _ in self.snapshots()):
                return time.perf_counter() - start
            time.sleep(0.2)
        raise SystemExit(f"no snapshot at sequence {sequence} after {timeout_s} s")

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class LoadtestServer(Server):
    """The server a load test starts when given no `--target`.

    It uses the journal users deploy (SQLite, synchronous FULL, as `serve` starts) unless
    told otherwise, and the server's own snapshot settings: their cost under load is part
    of what a load test should see.
    """

    def __init__(self, workdir: Path, *, journal: str = "sqlite") -> None:
        self._journal = journal
        super().__init__(workdir)

    def flags(self, help_text: str) -> list[str]:
        extra: list[str] = []
        if "--metrics-port" in help_text:
            extra += ["--metrics-port", "0"]
        if "--journal" in help_text:
            extra += ["--journal", self._journal]
        elif self._journal != "sqlite":
            raise SystemExit("this dispatch-core has no --journal option")
        self.journalled = False  # no snapshot bookkeeping: the gRPC benchmark's waits only
        return extra
