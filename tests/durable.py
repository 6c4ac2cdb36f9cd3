"""Helpers of the durability tests: servers over a chosen journal, started, killed, restarted.

Both backends are real: SQLite files under the test's tmp dir and the PostgreSQL server on
127.0.0.1:5432 (database `test`, trust auth), each test in a schema of its own that is
dropped afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest

from dispatch_core.durability.recovery import JournalConfig
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from tests.conftest import wait_serving

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgres")
_LISTENING = re.compile(r"listening on [^\s:]+:(\d+)")


@dataclass
class Backend:
    """A journal for one test: how to point a server (or a direct journal) at it."""

    kind: str
    data_dir: Path
    schema: str = field(default_factory=lambda: f"t_{uuid.uuid4().hex[:12]}")

    @property
    def spec(self) -> str:
        return "sqlite" if self.kind == "sqlite" else PG_DSN

    def args(self) -> list[str]:
        return [
            "--data-dir",
            str(self.data_dir),
            "--journal",
            self.spec,
            "--journal-name",
            self.schema,
        ]

    def config(self) -> JournalConfig:
        return JournalConfig(spec=self.spec, data_dir=self.data_dir, name=self.schema)

    def drop(self) -> None:
        if self.kind == "postgres":
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def execute(self, sql_sqlite: str, sql_pg: str, params: tuple[object, ...] = ()) -> None:
        """Runs SQL against the stored journal directly (to damage it on purpose)."""
        if self.kind == "sqlite":
            import sqlite3  # noqa: PLC0415

            conn = sqlite3.connect(self.data_dir / "journal.sqlite3")
            with conn:
                conn.execute(sql_sqlite, params)
            conn.close()
        else:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(sql_pg.replace("{s}", f'"{self.schema}"'), params)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS, name="backend")
def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each test using `backend` runs once on SQLite and once on PostgreSQL."""
    b = Backend(str(request.param), tmp_path / "data")
    yield b
    b.drop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def launch(
    backend: Backend,
    workdir: Path,
    *extra: str,
    port: int = 0,
    wait: bool = True,
    timeout_s: float = 60.0,
) -> Server:
    """Starts `dispatch-core serve` on `backend`; with `wait`, returns once SERVING."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"server-{time.monotonic_ns()}.log"
    command = [
        sys.executable,
        "-m",
        "dispatch_core.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        "-1",
        "--grace",
        "2",
        # No NOT_SERVING window at SIGTERM: no load balancer watches test servers.
        "--shutdown-delay",
        "0",
        *backend.args(),
        # These tests count the journal's entries: no plan install among them unless a
        # test asks for a plan file.
        *(() if "--response-plans" in extra else ("--response-plans", "none")),
        *extra,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = Server(process, port, log_path)
    if not wait:
        return server
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        match = _LISTENING.search(server.log())
        if match:
            server.port = int(match.group(1))
            break
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"server did not start:\n{server.log()}")
        time.sleep(0.02)
    if not wait_serving(server.target, process, deadline):
        server.kill()
        raise RuntimeError(f"server never became SERVING:\n{server.log()}")
    return server


def unit_request(request_id: str, unit_id: str) -> pb.UpsertUnitRequest:
    return pb.UpsertUnitRequest(
        request_id=request_id,
        unit=pb.UnitSpec(unit_id=unit_id, agency=pb.AGENCY_POLICE, unit_type="car"),
    )


def incident_request(request_id: str, incident_id: str = "") -> pb.CreateIncidentRequest:
    return pb.CreateIncidentRequest(
        request_id=request_id,
        incident_id=incident_id,
        grade=pb.GRADE_IMMEDIATE,
        incident_type="burglary",
        location=pb.Location(lat=51.5, lon=-0.12),
        requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
    )


def stub(server: Server) -> tuple[grpc.Channel, pb_grpc.DispatchServiceStub]:
    channel = grpc.insecure_channel(server.target)
    return channel, pb_grpc.DispatchServiceStub(channel)
