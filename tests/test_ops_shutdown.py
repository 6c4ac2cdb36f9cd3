"""SIGTERM: health goes NOT_SERVING while the server still accepts new connections and
serves them for --shutdown-delay, so a load balancer moves away before anything is
refused; then the drain. A real server process, real signals, real new connections.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess
from tests.opsserver import launch

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _wait_for_log(server: ServerProcess, text: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.01)


def test_a_new_connection_during_the_delay_gets_not_serving_and_is_served(
    tmp_path: Path,
) -> None:
    delay = 3.0
    server = launch(tmp_path, "--shutdown-delay", str(delay))
    try:
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        _wait_for_log(server, "health is NOT_SERVING")
        # A connection opened only now, after the signal: accepted, told NOT_SERVING,
        # and still served (a load balancer's last requests are not dropped).
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "dispatch.v1.DispatchService"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                assert reply.status == NOT_SERVING
            pb_grpc.DispatchServiceStub(channel).Ping(pb.PingRequest(), timeout=2)
        assert time.monotonic() - signalled < delay, "the checks took the whole delay"
        assert server.process.wait(delay + 20) == 0
        # The drain waited for the delay, not less.
        assert time.monotonic() - signalled >= delay * 0.9
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_a_second_signal_cuts_the_delay_short(tmp_path: Path) -> None:
    server = launch(tmp_path, "--shutdown-delay", "60")
    try:
        server.process.send_signal(signal.SIGTERM)
        _wait_for_log(server, "health is NOT_SERVING")
        cut = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(20) == 0
        assert time.monotonic() - cut < 15
    finally:
        server.stop()
    log = server.log()
    assert "received SIGTERM again; draining now" in log
    assert "dispatch-core stopped" in log
