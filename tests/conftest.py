"""Fixtures for the API tests: a real `dispatch-core serve` subprocess and clients of it.

The server listens on port 0 (the OS picks a free port, so there is no race between
choosing a port and binding it) and the port is read back from its log. It is ready when
gRPC health says SERVING, and it is stopped with SIGTERM (then SIGKILL) at teardown.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc

_LISTENING = re.compile(r"listening on [^\s:]+:(\d+)")
_METRICS_AT = re.compile(r"metrics served at (https?://\S+/metrics)")
STARTUP_TIMEOUT_S = 60.0


@dataclass
class ServerProcess:
    """A running server subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    #: http://host:port/metrics when started with a metrics port, else None.
    metrics_url: str | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, wait, SIGKILL if it does not go; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def serve_command(port: int, data_dir: Path, *, metrics_port: int = -1) -> list[str]:
    # Metrics are off (-1) unless asked for: the shared fixtures would otherwise all try to
    # bind the default metrics port and collide.
    return [
        sys.executable,
        "-m",
        "dispatch_core.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--grace",
        "2",
        # No NOT_SERVING window at SIGTERM: no load balancer watches test servers.
        "--shutdown-delay",
        "0",
        "--metrics-port",
        str(metrics_port),
    ]


def start_server(
    workdir: Path,
    *,
    metrics_port: int = -1,
    extra_args: Sequence[str] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> ServerProcess:
    """Starts a server and returns once it answers health checks as SERVING.

    With `metrics_port` >= 0 (0: a free port) it also serves /metrics, read back from the
    log into `metrics_url`. `extra_args` go after the serve flags (TLS, policy); a TLS
    server's health is polled over a channel with `credentials`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*serve_command(0, workdir / "data", metrics_port=metrics_port), *extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    port = None
    while port is None:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"server did not report its port:\n{log_path.read_text()}")
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            port = int(match.group(1))
        else:
            time.sleep(0.05)
    metrics_url = None
    if metrics_port >= 0:
        # serve() binds /metrics right after the gRPC port, so its line follows shortly.
        while metrics_url is None:
            found = _METRICS_AT.search(log_path.read_text(errors="replace"))
            if found:
                metrics_url = found.group(1)
            elif process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"server did not report its metrics URL:\n{log_path.read_text()}"
                )
            else:
                time.sleep(0.05)
    server = ServerProcess(process, port, log_path, metrics_url)
    if not wait_serving(server.target, process, deadline, credentials):
        server.stop()
        raise RuntimeError(f"server never became SERVING:\n{server.log()}")
    return server


def wait_serving(
    target: str,
    process: subprocess.Popen[bytes],
    deadline: float,
    credentials: grpc.ChannelCredentials | None = None,
) -> bool:
    """Polls grpc.health.v1 at `target` until SERVING (True), or until the process exits or
    the monotonic `deadline` passes (False)."""
    opened = (
        grpc.secure_channel(target, credentials)
        if credentials is not None
        else grpc.insecure_channel(target)
    )
    with opened as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.02)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.log()}"
    # A traceback in the log means some RPC hit the INTERNAL catch-all.
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="session")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> pb_grpc.DispatchServiceStub:
    return pb_grpc.DispatchServiceStub(channel)
