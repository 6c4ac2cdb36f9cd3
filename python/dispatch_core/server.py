"""The gRPC server: DispatchService plus health checking and reflection.

`serve()` blocks until SIGTERM or SIGINT (a SIGHUP re-reads the policy, the JWKS and the
response-plan files: `reload.py`), then shuts down in two steps: health flips to
NOT_SERVING while the server still accepts and serves for `shutdown_delay` seconds (load
balancers see NOT_SERVING and move traffic away before any connection is refused), then
it drains: in-flight RPCs get `grace` seconds, and it returns 0.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Gauge

from dispatch_core._core import (
    DEFAULT_CLOSED_RETENTION_COUNT,
    DEFAULT_CLOSED_RETENTION_MS,
    DEFAULT_MAX_FUTURE_SKEW_MS,
    DEFAULT_REQUEST_CAPACITY,
    DispatchCore,
)
from dispatch_core.durability.journal import Journal
from dispatch_core.durability.journal.audit import (
    AuditStore,
    MemoryAuditStore,
    open_audit_store,
)
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.durability.recovery import JournalConfig, open_pipeline
from dispatch_core.durability.snapshotter import Snapshotter
from dispatch_core.errors import PlanFileError
from dispatch_core.reload import Reloader
from dispatch_core.response_plans import ResponsePlans, default_path, read_plans
from dispatch_core.security.audit import AuditSettings, AuditTrail
from dispatch_core.security.audit_reconcile import reconcile
from dispatch_core.security.tls import SecurityConfig
from dispatch_core.service.admission import DEFAULT_LIMIT, Admission
from dispatch_core.service.interceptor import AccessLog, CallInterceptor
from dispatch_core.service.servicer import SERVICE_NAME, DispatchServicer
from dispatch_core.service.sizes import MAX_REQUEST_BYTES, InFlight
from dispatch_core.service.urgency import Urgency
from dispatch_core.startup import (
    EXIT_JOURNAL_FATAL,
    EXIT_OK,
    EXIT_USAGE,
    StartupError,
    check_data_dir,
    check_journal_spec,
    check_port_free,
)
from dispatch_core.views.metrics import Metrics, MetricsServer

log = logging.getLogger(__name__)

#: Largest response. A picture with every uncovered cell of London, or a page of
#: recommendations for 1,000 incidents, stays well below it.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: RPCs admitted at once (running or queued) before new ones are answered
#: RESOURCE_EXHAUSTED (`service/admission.py`; docs/architecture.md).
MAX_CONCURRENT_RPCS = DEFAULT_LIMIT

#: Seconds between SIGTERM and the drain, with health NOT_SERVING but the port still
#: accepting: long enough for a load balancer's health check (typically every 1-2 s) to
#: see NOT_SERVING and take the server out before any connection is refused.
DEFAULT_SHUTDOWN_DELAY_S = 5.0

SERVER_OPTIONS: list[tuple[str, int]] = [
    # Without this a second server on the same port would silently share it and receive
    # half the traffic; refusing to start is the only safe answer.
    ("grpc.so_reuseport", 0),
    # The largest request any RPC takes; each RPC's own, smaller limit and the bound on
    # request bytes in flight are checked by the interceptor (`service/sizes.py`).
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Find dead clients (a console that lost its network) within a minute.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Let clients keep idle channels warm with pings every 10 s without being cut off.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]


#: Seconds between the ticker's checks for a due clock command.
DEFAULT_TICK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class CoreConfig:
    """How the state machine is built: configuration, not state (not journaled)."""

    #: Answers to request_ids kept in memory; older ones inside 24 h come from the journal.
    request_capacity: int = DEFAULT_REQUEST_CAPACITY
    #: How far after its arrival a ping may be dated before it is skipped as "future".
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS
    #: Closed incidents stay in memory this long after closing, and at most this many; then
    #: GetIncident answers them from the journal's archive.
    closed_retention_ms: int = DEFAULT_CLOSED_RETENTION_MS
    closed_retention_count: int = DEFAULT_CLOSED_RETENTION_COUNT
    #: Milliseconds a DISPATCHED unit has to go EN_ROUTE, by grade name; grades left out
    #: have no deadline. Like the retention, a replay must use the same values.
    ack_timeout_ms: tuple[tuple[str, int], ...] = ()
    #: Grades whose committed units may be diverted to IMMEDIATE incidents.
    preemptible_grades: tuple[str, ...] = ("SIGNIFICANT", "EXTENDED", "REFERRED")
    #: Whether ON_SCENE units count for pre-emption too.
    preempt_on_scene: bool = False
    #: The diversion cost term, seconds.
    diversion_cost_seconds: float = 180.0

    def build(self) -> DispatchCore:
        return DispatchCore(
            request_capacity=self.request_capacity,
            max_future_skew_ms=self.max_future_skew_ms,
            closed_retention_ms=self.closed_retention_ms,
            closed_retention_count=self.closed_retention_count,
            ack_timeout_ms=dict(self.ack_timeout_ms),
            config={
                "preemptible_grades": list(self.preemptible_grades),
                "preempt_on_scene": self.preempt_on_scene,
                "diversion_cost_seconds": self.diversion_cost_seconds,
            },
        )


class Ticker:
    """Every `interval_s`, asks the core whether a clock command is due and journals one if
    so (docs/architecture.md, "Time"). A failed tick is logged and tried again next time."""

    def __init__(self, pipeline: Pipeline, interval_s: float) -> None:
        self._pipeline = pipeline
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)

    def start(self) -> Ticker:
        if self._interval_s > 0:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            if self._pipeline.failed is not None:
                return
            try:
                self._pipeline.tick()
            except Exception:
                log.exception("clock tick failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


class PortInUseError(RuntimeError):
    """The address could not be bound (usually: another process holds the port)."""


@dataclass
class Running:
    """A started server and what shutting it down needs."""

    server: grpc.Server
    health: health.HealthServicer
    port: int
    pipeline: Pipeline
    metrics: Metrics | None = None
    metrics_server: MetricsServer | None = None
    snapshotter: Snapshotter | None = None
    ticker: Ticker | None = None
    admission: Admission | None = None
    audit: AuditTrail | None = None
    #: The plan file and its installs (None: `--response-plans none`).
    response_plans: ResponsePlans | None = None
    #: What a SIGHUP re-reads (`serve` installs it); register more with `register`.
    reloader: Reloader | None = None

    def stop(
        self, grace_s: float, delay_s: float = 0.0, cut_short: threading.Event | None = None
    ) -> None:
        """Health NOT_SERVING, then `delay_s` seconds of still serving (ended early when
        `cut_short` is set: a second signal), then the drain with `grace_s` for in-flight
        calls, then the final snapshot and the journal's close."""
        # Clients watching health see NOT_SERVING before connections start closing.
        self.health.enter_graceful_shutdown()
        if delay_s > 0:
            log.info("health is NOT_SERVING; still serving for %.3g s before draining", delay_s)
            (cut_short or threading.Event()).wait(delay_s)
        # WatchEvents streams end now (telling clients where to resume) rather than
        # holding the drain for the whole grace period.
        self.pipeline.events.close()
        self.server.stop(grace_s).wait()
        if self.ticker is not None:
            self.ticker.stop()
        # Every call has ended: its record is written before the journal closes.
        if self.audit is not None:
            self.audit.close()
        # No RPC runs any more: the final snapshot holds everything acknowledged, so the
        # next start replays nothing. Not after a journal failure: nothing more is written.
        if self.snapshotter is not None:
            self.snapshotter.stop(final=self.pipeline.failed is None)
        self.pipeline.journal.close()
        # /metrics last: a final scrape during the drain still sees the in-flight RPCs.
        if self.metrics_server is not None:
            self.metrics_server.stop()


def start(
    host: str,
    port: int,
    data_dir: Path,
    *,
    max_workers: int = 16,
    core: CoreConfig | None = None,
    journal: JournalConfig | Journal | None = None,
    metrics: Metrics | None = None,
    tick_interval_s: float = DEFAULT_TICK_INTERVAL_S,
    access_log: str = "off",
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS,
    metrics_server: MetricsServer | None = None,
    security: SecurityConfig | None = None,
    audit_trail: bool = True,
    response_plans: Path | None = None,
    audit_settings: AuditSettings | None = None,
) -> Running:
    """Builds, binds and starts the server; raises PortInUseError if it cannot bind.

    With `journal`, the state is recovered from it first (raising RecoveryError when that
    is refused: locked by another server, corrupt, another version) and snapshotted while
    it runs; without, commands go to an in-memory journal (in-process tests only). An
    already open `Journal` is recovered from but not snapshotted (tests inject faults so).

    With `metrics`, every RPC is timed by the interceptor and the pipeline's events and
    state are exported through it (serving them over HTTP is the caller's choice; an
    already started `metrics_server` is stopped with the server). `access_log` is off,
    errors or all; beyond `max_concurrent_rpcs` admitted calls, new ones are refused with
    RESOURCE_EXHAUSTED (counted and logged like any call).

    With `security` (checked already: `SecurityConfig.check`), the server listens with TLS
    when it says so and every call is authenticated and authorized by its policy before
    its handler runs; without, it listens in plaintext and checks nobody (in-process tests).

    With `response_plans` (a plan file), its plans are installed through the journaled
    command when they differ from the recovered state's, before the port opens (raising
    PlanFileError if the file does not validate), and ReloadResponsePlans and a SIGHUP
    (the `reloader`'s "response plans") re-read it.
    """
    if not isinstance(journal, JournalConfig) or journal.spec == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
    snapshotter: Snapshotter | None = None
    state = (core or CoreConfig()).build()
    if isinstance(journal, Journal):
        pipeline = Pipeline(state, journal=journal)
        pipeline.restore()
    elif journal is not None:
        pipeline, _ = open_pipeline(journal, core=state)
        pipeline.events.buffer = journal.watch_buffer
        snapshotter = Snapshotter(
            pipeline, every_entries=journal.snapshot_every, interval_s=journal.snapshot_interval_s
        )
    else:
        pipeline = Pipeline(state)
    plans: ResponsePlans | None = None
    if response_plans is not None:
        plans = ResponsePlans(pipeline, response_plans)
        try:
            plans.install()
        except BaseException:
            pipeline.journal.close()
            raise
    if metrics is not None:
        metrics.watch(pipeline)
    # The trail beside the journal, opened once the journal is ours (its lock taken).
    audit: AuditTrail | None = None
    if audit_trail:
        if isinstance(journal, JournalConfig):
            try:
                store: AuditStore = open_audit_store(journal.spec, data_dir, journal.name)
            except BaseException:
                pipeline.journal.close()
                raise
        else:
            store = MemoryAuditStore()
        try:
            # Records a crash lost of acknowledged commands, rebuilt from the journal before
            # any new call is recorded (security/audit_reconcile.py).
            reconcile(pipeline.journal, store)
        except BaseException:
            store.close()
            pipeline.journal.close()
            raise
        settings = audit_settings or AuditSettings()
        audit = AuditTrail(store, settings.interval_s, retention_days=settings.retention_days)
        pipeline.on_applied = audit.begin
        if metrics is not None:
            trail = audit
            Gauge(
                "dispatch_audit_records_lost",
                "Audit records dropped (queue full) or not written (store error) since start;"
                " anything above 0 deserves an alert",
                registry=metrics.registry,
            ).set_function(lambda: trail.dropped + trail.failed)
    admission = Admission(max_concurrent_rpcs)
    reloader = Reloader()
    authenticator = None
    if security is not None:
        authenticator = security.authenticator()
        checker = security
        reloader.register("policy and JWKS", functools.partial(checker.reload, authenticator))
    if plans is not None:
        reloader.register("response plans", plans.reload)
    interceptor = CallInterceptor(
        metrics,
        admission=admission,
        access=AccessLog(access_log),
        authenticator=authenticator,
        in_flight=InFlight(),
        audit=audit,
        urgency=Urgency(pipeline.core),
    )
    server = grpc.server(
        # No maximum_concurrent_rpcs: grpcio's limit refuses before any interceptor runs,
        # invisible to metrics and logs; admission does the same job where it is seen.
        admission.executor(max_workers),
        options=SERVER_OPTIONS,
        interceptors=[interceptor],
    )
    server.add_generic_rpc_handlers((DispatchServicer(pipeline, audit, plans).handler(),))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    try:
        if security is not None and security.tls:
            bound = server.add_secure_port(address, security.server_credentials())
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        # grpcio raises here in some versions and returns 0 in others.
        if audit is not None:
            audit.close()
        pipeline.journal.close()
        if metrics_server is not None:
            metrics_server.stop()
        raise PortInUseError(f"cannot listen on {address}: {exc}") from exc
    if bound == 0:
        if audit is not None:
            audit.close()
        pipeline.journal.close()
        if metrics_server is not None:
            metrics_server.stop()
        raise PortInUseError(f"cannot listen on {address}: the address is in use or invalid")
    server.start()
    if snapshotter is not None:
        snapshotter.start()
    ticker = Ticker(pipeline, tick_interval_s).start()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    transport = "TLS" if security is not None and security.tls else "plaintext"
    if security is not None and security.client_ca is not None:
        transport = "mutual TLS"
    log.info("dispatch-core listening on %s:%d (%s; data dir %s)", host, bound, transport, data_dir)
    return Running(
        server,
        health_servicer,
        bound,
        pipeline,
        metrics,
        metrics_server=metrics_server,
        snapshotter=snapshotter,
        ticker=ticker,
        admission=admission,
        audit=audit,
        response_plans=plans,
        reloader=reloader,
    )


#: `--response-plans none`: no plan file; the plans in the state (if any) stay as they are.
NO_RESPONSE_PLANS = "none"


def check_response_plans(path: Path, core: CoreConfig) -> None:
    """The plan file validates against the vocabulary and unit types this server will
    run with; checked before the journal is opened, so a typo costs no recovery. Every
    problem is logged; the StartupError names the first and how many more."""
    try:
        read_plans(core.build(), path)
    except PlanFileError as exc:
        for problem in exc.problems[1:]:
            log.error("response plans: %s", problem)
        raise StartupError(
            EXIT_USAGE,
            str(exc),
            f"fix the file (check it with `dispatch-core plans check {path}`)",
        ) from exc


def _serve_metrics(
    metrics: Metrics, host: str, port: int, security: SecurityConfig
) -> MetricsServer:
    """/metrics under the same rule as gRPC: with its certificate (and client CA) when the
    server has TLS, else plaintext (loopback, or --insecure, checked already)."""
    if not security.tls:
        return metrics.serve_http(host, port)
    return metrics.serve_http(
        host,
        port,
        certfile=str(security.tls_cert),
        keyfile=str(security.tls_key),
        client_cafile=str(security.client_ca) if security.client_ca is not None else None,
    )


def serve(
    host: str,
    port: int,
    data_dir: Path,
    *,
    grace_s: float = 10.0,
    metrics_port: int = -1,
    journal: JournalConfig | None = None,
    core: CoreConfig | None = None,
    tick_interval_s: float = DEFAULT_TICK_INTERVAL_S,
    access_log: str = "off",
    shutdown_delay_s: float = DEFAULT_SHUTDOWN_DELAY_S,
    security: SecurityConfig | None = None,
    audit_trail: bool = True,
    response_plans: Path | None = None,
    audit_settings: AuditSettings | None = None,
) -> int:
    """Runs until SIGTERM or SIGINT; returns the process exit code.

    Start-up checks come first, each failing with a StartupError (one line, its exit code):
    the journal spec, the data directory (SQLite), the gRPC and metrics ports. Then
    /metrics is bound (`metrics_port` < 0: no metrics at all), the journal recovered, and
    gRPC bound: "listening" is logged only once everything an operator relies on is up.
    `journal` defaults to SQLite (FULL) under `data_dir`. If the journal fails while
    serving, the server stops taking writes, drains and returns EXIT_JOURNAL_FATAL.

    At the first SIGTERM/SIGINT health goes NOT_SERVING and the server goes on serving
    for `shutdown_delay_s` (a second signal cuts that short), then drains for `grace_s`.

    `response_plans` is the plan file (the shipped one when None; `none` for no file:
    clients always send requirements), checked with the other start-up checks and
    installed once the state is recovered.
    """
    if journal is None:
        journal = JournalConfig(data_dir=data_dir)
    security = security if security is not None else SecurityConfig()
    security.check(host)
    check_journal_spec(journal.spec)
    if journal.spec == "sqlite":
        check_data_dir(data_dir)
    check_port_free(host, port, "listen on", "--port")
    chosen = response_plans if response_plans is not None else default_path()
    # `none`: every client sends its requirements; nothing is installed or journaled.
    plans_path = None if str(chosen) == NO_RESPONSE_PLANS else chosen
    if plans_path is not None:
        check_response_plans(plans_path, core or CoreConfig())
    if metrics_port > 0:
        check_port_free(host, metrics_port, "serve metrics on", "--metrics-port")
    metrics: Metrics | None = None
    metrics_server: MetricsServer | None = None
    if not audit_trail:
        log.warning("no audit trail (--audit-trail off): for benchmarks only")
    insecure = security.insecure_transport(host)
    if insecure:
        log.warning(
            "INSECURE: serving plaintext on %s, which is not loopback (--insecure): calls are"
            " neither encrypted nor authenticated; every caller is %r with role %r",
            host,
            "local" if security.jwks is None else "its bearer token's subject",
            security.local_role,
        )
    if metrics_port >= 0:
        metrics = Metrics()
        Gauge(
            "dispatch_insecure_transport",
            "1 when gRPC and /metrics are served in plaintext on a non-loopback address"
            " (--insecure), else 0",
            registry=metrics.registry,
        ).set(1 if insecure else 0)
        try:
            metrics_server = _serve_metrics(metrics, host, metrics_port, security)
        except OSError as exc:
            # A server that silently runs without the metrics its alerts depend on is worse
            # than one that refuses to start.
            raise PortInUseError(f"cannot serve metrics on {host}:{metrics_port}: {exc}") from exc
        # Worded unlike the gRPC line ("listening on host:port"), which tools parse.
        log.info("metrics served at %s", metrics_server.url)
    try:
        running = start(
            host,
            port,
            data_dir,
            metrics=metrics,
            journal=journal,
            core=core,
            tick_interval_s=tick_interval_s,
            access_log=access_log,
            metrics_server=metrics_server,
            security=security,
            audit_trail=audit_trail,
            response_plans=plans_path,
            audit_settings=audit_settings,
        )
    except BaseException:
        if metrics_server is not None:
            metrics_server.stop()
        raise
    stop = threading.Event()
    cut_short = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.info("received %s again; draining now", signal.Signals(signum).name)
            cut_short.set()
            return
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if running.reloader is not None:
        running.reloader.install()
    # A journal failure ends the serve loop like a signal, from the thread that saw it.
    running.pipeline.on_fatal = lambda exc: stop.set()
    # A bounded wait in a loop: the signal handler runs in this thread between waits.
    while not stop.wait(0.5):
        pass
    if running.pipeline.failed is not None:
        log.critical(
            "stopping: the journal failed (%r); acknowledged commands are safe on disk, and"
            " a restart recovers from there",
            running.pipeline.failed,
        )
        # In-flight commands already answer UNAVAILABLE; a short drain is enough, and no
        # delay: nothing more can be written, so there is nothing to keep serving for.
        running.stop(min(grace_s, 2.0))
        return EXIT_JOURNAL_FATAL
    running.stop(grace_s, shutdown_delay_s, cut_short)
    log.info("dispatch-core stopped")
    return EXIT_OK
