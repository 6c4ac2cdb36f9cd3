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
from dispatch_core.durability import (
    EXIT_JOURNAL_FATAL,
    JournalConfig,
    Snapshotter,
    open_engine,
)
from dispatch_core.engine import Engine
from dispatch_core.journal import Journal
from dispatch_core.metrics import Metrics, MetricsServer
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
    metrics: Metrics | None = None
    metrics_server: MetricsServer | None = None
    snapshotter: Snapshotter | None = None

    def stop(self, grace_s: float) -> None:
        # Clients watching health see NOT_SERVING before connections start closing.
        self.health.enter_graceful_shutdown()
        # WatchEvents streams end now (telling clients where to resume) rather than
        # holding the drain for the whole grace period.
        self.engine.events.close()
        self.server.stop(grace_s).wait()
        # No RPC runs any more: the final snapshot holds everything acknowledged, so the
        # next start replays nothing. Not after a journal failure: nothing more is written.
        if self.snapshotter is not None:
            self.snapshotter.stop(final=self.engine.failed is None)
        self.engine.journal.close()
        # /metrics last: a final scrape during the drain still sees the in-flight RPCs.
        if self.metrics_server is not None:
            self.metrics_server.stop()


def start(
    host: str,
    port: int,
    data_dir: Path,
    *,
    max_workers: int = 16,
    index: UnitIndex | None = None,
    journal: JournalConfig | Journal | None = None,
    metrics: Metrics | None = None,
) -> Running:
    """Builds, binds and starts the server; raises PortInUseError if it cannot bind.

    With `journal`, the engine is recovered from it first (raising RecoveryError when that
    is refused: locked by another server, corrupt, another version) and snapshotted while
    it runs; without, commands go to an in-memory journal (in-process tests only). An
    already open `Journal` is recovered from but not snapshotted (tests inject faults so).

    With `metrics`, every RPC is timed by the metrics interceptor and the engine's events
    and state are exported through it (serving them over HTTP is the caller's choice).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    snapshotter: Snapshotter | None = None
    if isinstance(journal, Journal):
        engine = Engine(index if index is not None else UnitIndex(), journal=journal)
        engine.restore()
    elif journal is not None:
        engine, _ = open_engine(journal, index=index)
        engine.events.buffer = journal.watch_buffer
        snapshotter = Snapshotter(
            engine, every_entries=journal.snapshot_every, interval_s=journal.snapshot_interval_s
        )
    else:
        engine = Engine(index if index is not None else UnitIndex())
    interceptors = []
    if metrics is not None:
        from dispatch_core.api.interceptor import MetricsInterceptor  # noqa: PLC0415

        metrics.watch(engine)
        interceptors.append(MetricsInterceptor(metrics))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
        interceptors=interceptors,
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
        engine.journal.close()
        raise PortInUseError(f"cannot listen on {address}: the address is in use or invalid")
    server.start()
    if snapshotter is not None:
        snapshotter.start()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("dispatch-core listening on %s:%d (data dir %s)", host, bound, data_dir)
    return Running(server, health_servicer, bound, engine, metrics, snapshotter=snapshotter)


def start_metrics_http(running: Running, host: str, port: int) -> None:
    """Serves `running`'s metrics at http://host:port/metrics (0: a free port, logged).

    Raises PortInUseError, after stopping the gRPC server, if the port cannot be bound: a
    server that silently runs without the metrics its alerts depend on is worse than one
    that refuses to start.
    """
    if running.metrics is None:
        raise ValueError("the server was started without metrics")
    try:
        running.metrics_server = running.metrics.serve_http(host, port)
    except OSError as exc:
        running.stop(0)
        raise PortInUseError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    # Worded unlike the gRPC line ("listening on host:port"), which tools parse for the port.
    log.info("metrics served at %s", running.metrics_server.url)


def serve(
    host: str,
    port: int,
    data_dir: Path,
    *,
    grace_s: float = 10.0,
    metrics_port: int = -1,
    journal: JournalConfig | None = None,
) -> int:
    """Runs until SIGTERM or SIGINT; returns the process exit code.

    `metrics_port` < 0 runs without metrics at all (no interceptor, no HTTP server).
    `journal` defaults to SQLite (FULL) under `data_dir`. If the journal fails while
    serving, the server stops taking writes, drains and returns EXIT_JOURNAL_FATAL.
    """
    metrics = Metrics() if metrics_port >= 0 else None
    if journal is None:
        journal = JournalConfig(data_dir=data_dir)
    running = start(host, port, data_dir, metrics=metrics, journal=journal)
    if metrics_port >= 0:
        start_metrics_http(running, host, metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A journal failure ends the serve loop like a signal, from the thread that saw it.
    running.engine.on_fatal = lambda exc: stop.set()
    # A bounded wait in a loop: the signal handler runs in this thread between waits.
    while not stop.wait(0.5):
        pass
    if running.engine.failed is not None:
        log.critical(
            "stopping: the journal failed (%r); acknowledged commands are safe on disk, and"
            " a restart recovers from there",
            running.engine.failed,
        )
        # In-flight commands already answer UNAVAILABLE; a short drain is enough.
        running.stop(min(grace_s, 2.0))
        return EXIT_JOURNAL_FATAL
    running.stop(grace_s)
    log.info("dispatch-core stopped")
    return 0
