"""The gRPC server: DispatchService plus health checking and reflection.

`serve()` blocks until SIGTERM or SIGINT, then drains: health flips to NOT_SERVING first
(so load balancers stop sending), in-flight RPCs get `grace` seconds, and it returns 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dispatch_core._core import UnitIndex
from dispatch_core.api.servicer import SERVICE_NAME, DispatchServicer
from dispatch_core.engine import Engine, JournalHook, no_journal
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

#: Largest message either way. A 100,000-ping location batch is about 3 MiB; the headroom
#: is for batch recommendations with many groups.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: RPCs served at once before grpcio answers RESOURCE_EXHAUSTED: overload is refused
#: cleanly rather than queued without bound (design.md).
MAX_CONCURRENT_RPCS = 512

SERVER_OPTIONS: list[tuple[str, int]] = [
    # Without this a second server on the same port would silently share it and receive
    # half the traffic; refusing to start is the only safe answer.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Find dead clients (a console that lost its network) within a minute.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Let clients keep idle channels warm with pings every 10 s without being cut off.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]


class PortInUseError(RuntimeError):
    """The address could not be bound (usually: another process holds the port)."""


@dataclass
class Running:
    """A started server and what shutting it down needs."""

    server: grpc.Server
    health: health.HealthServicer
    port: int
    engine: Engine

    def stop(self, grace_s: float) -> None:
        # Clients watching health see NOT_SERVING before connections start closing.
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()


def start(
    host: str,
    port: int,
    data_dir: Path,
    *,
    max_workers: int = 16,
    index: UnitIndex | None = None,
    journal: JournalHook = no_journal,
) -> Running:
    """Builds, binds and starts the server; raises PortInUseError if it cannot bind."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(index if index is not None else UnitIndex(), journal=journal)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    pb_grpc.add_DispatchServiceServicer_to_server(  # type: ignore[no-untyped-call]
        DispatchServicer(engine), server
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        # grpcio raises here in some versions and returns 0 in others.
        raise PortInUseError(f"cannot listen on {address}: {exc}") from exc
    if bound == 0:
        raise PortInUseError(f"cannot listen on {address}: the address is in use or invalid")
    server.start()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("dispatch-core listening on %s:%d (data dir %s)", host, bound, data_dir)
    return Running(server, health_servicer, bound, engine)


def serve(host: str, port: int, data_dir: Path, *, grace_s: float = 10.0) -> int:
    """Runs until SIGTERM or SIGINT; returns the process exit code."""
    running = start(host, port, data_dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A bounded wait in a loop: the signal handler runs in this thread between waits.
    while not stop.wait(0.5):
        pass
    running.stop(grace_s)
    log.info("dispatch-core stopped")
    return 0
