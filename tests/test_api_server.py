"""The server process: health, reflection, Ping, the CLI, graceful shutdown and a taken
port."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.server import start
from tests.apihelp import create_incident, upsert
from tests.conftest import ServerProcess, serve_command, start_server

SERVICE = "dispatch.v1.DispatchService"


def test_ping(stub: pb_grpc.DispatchServiceStub) -> None:
    assert stub.Ping(pb.PingRequest()) == pb.PingResponse()


def test_health_reports_serving_for_the_server_and_the_service(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    try:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
    else:
        raise AssertionError("an unknown service must not be reported healthy")


def test_reflection_lists_and_describes_the_service(channel: grpc.Channel) -> None:
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, described = list(reflect.ServerReflectionInfo(iter(requests)))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    files = described.file_descriptor_response.file_descriptor_proto
    assert any(b"dispatch/v1/dispatch.proto" in f for f in files)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatch_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_help_documents_the_environment_fallbacks() -> None:
    result = _cli("serve", "--help")
    assert result.returncode == 0
    for name in ("DISPATCH_HOST", "DISPATCH_PORT", "DISPATCH_DATA_DIR"):
        assert name in result.stdout


def test_taken_port_fails_loudly(server: ServerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        serve_command(server.port, tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "cannot listen" in result.stderr
    assert str(server.port) in result.stderr
    # The running server is untouched.
    assert server.process.poll() is None


def test_port_comes_from_the_environment_when_not_given(
    server: ServerProcess, tmp_path: Path
) -> None:
    # The environment names the taken port: failing on it proves the fallback is read.
    result = _cli("serve", "--data-dir", str(tmp_path), env={"DISPATCH_PORT": str(server.port)})
    assert result.returncode != 0
    assert f"127.0.0.1:{server.port}" in result.stderr


def test_sigterm_drains_in_flight_calls_and_exits_zero(tmp_path: Path) -> None:
    running = start_server(tmp_path)
    try:
        with grpc.insecure_channel(running.target) as channel:
            stub = pb_grpc.DispatchServiceStub(channel)
            unit_id = upsert(stub, at=None)
            first_sent = threading.Event()
            release = threading.Event()

            def batches() -> Iterator[pb.StreamLocationsRequest]:
                yield pb.StreamLocationsRequest(
                    unit_ids=[unit_id], lat=[51.5], lon=[-0.1], time_unix_ms=[1]
                )
                first_sent.set()
                release.wait(10)
                yield pb.StreamLocationsRequest(
                    unit_ids=[unit_id], lat=[51.6], lon=[-0.1], time_unix_ms=[2]
                )

            call = stub.StreamLocations.future(batches())
            assert first_sent.wait(10)
            running.process.send_signal(signal.SIGTERM)
            # Hold the stream open until the server is visibly shutting down, so that the
            # rest of it really is sent during the drain.
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                except grpc.RpcError:
                    break
                if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("health never left SERVING after SIGTERM")
            release.set()
            # The stream was open when the signal came; the grace period lets it finish.
            assert call.result(timeout=20).batches == 2
        assert running.process.wait(20) == 0
    finally:
        running.stop()
    log = running.log()
    assert "received SIGTERM" in log
    assert "dispatch-core stopped" in log
    assert "Traceback" not in log


def test_demo_walks_incidents_through_to_closure(server: ServerProcess) -> None:
    result = _cli("demo", "--target", server.target, "--units", "300")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "seeded 300 units" in out
    assert out.count("-> INCIDENT_STATUS_DISPATCHED") == 4
    assert out.count("-> INCIDENT_STATUS_ATTENDED") == 4
    assert out.count("closed -> INCIDENT_STATUS_CLOSED") == 4


def test_an_unexpected_failure_is_internal_logged_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A clock that fails the way a broken system call would: with an exception nobody
    # mapped, before the command reached the core.
    running = start("127.0.0.1", 0, tmp_path / "data", max_workers=2)
    working = running.pipeline._clock_ms

    def broken() -> int:
        raise OSError(5, "Input/output error")

    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.DispatchServiceStub(channel)
            running.pipeline._clock_ms = broken
            with (
                caplog.at_level(logging.ERROR, logger="dispatch_core.service.servicer"),
                pytest.raises(grpc.RpcError) as err,
            ):
                create_incident(stub)
            running.pipeline._clock_ms = working
            assert err.value.code() == grpc.StatusCode.INTERNAL
            # The client learns nothing of the internals; the log has the traceback.
            assert "Input/output" not in (err.value.details() or "")
            assert any(r.exc_info and "CreateIncident" in r.getMessage() for r in caplog.records)
            assert running.pipeline.core.sizes()[0] == 0
            assert running.pipeline.last_sequence == 0
            # And the server carries on.
            assert upsert(stub, at=None)
    finally:
        running.stop(0)
