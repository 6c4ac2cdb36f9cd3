"""Every Prometheus metric dispatch-core exports, in one place.

The names are a contract (docs/architecture.md, "Metrics"): the Grafana dashboard in ops/grafana and
the alert rules in ops/prometheus are written against them. Conventions: base units
(seconds, not milliseconds), `_seconds` / `_total` suffixes, and only low-cardinality labels
(method, code, grade, agency, status, result): never a unit or incident id, which would make
one time series per unit or incident and grow without bound.

Three kinds of metric, by where the number comes from:

* **RED per RPC**, recorded by the gRPC interceptor (`dispatch_core.service.interceptor`):
  `dispatch_rpc_duration_seconds{method,code}` and `dispatch_rpc_in_flight{method}`, for
  every service, calls refused by admission included (RESOURCE_EXHAUSTED). `method` is the
  full gRPC method name without its leading slash: `dispatch.v1.DispatchService/Ping`,
  `grpc.health.v1.Health/Check`.
  There is no separate `dispatch_rpc_requests_total`: the histogram's `_count` series *is*
  the request counter by method and code (Prometheus exposes it as a counter), so a second
  counter would cost a second locked increment per call and could only ever say the same.
  Rate: `rate(dispatch_rpc_duration_seconds_count[5m])`; errors: the same with `code!="OK"`.
* **Events**, observed by the pipeline when they happen (`PipelineMetrics`, an `Observer`):
  recommendation time, location pings by outcome, time to first assignment and to first
  arrival by grade (events the core returns with each command), and whether the response
  target was met.
* **State**, read from the core at scrape time (`StateCollector`): units by agency and
  status, open incidents by grade, the oldest waiting incident's age. The core keeps the
  incident counts up to date as commands apply (and its simulator checks them against a
  recount), so a scrape is O(grades) whatever the number of incidents ever created.

Each `Metrics` owns a dedicated `CollectorRegistry`, not prometheus_client's global one, so
several servers (tests, benchmarks) can live in one process without name clashes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dispatch_core._core import LocationReport
from dispatch_core.durability.journal.base import GroupCommitJournal
from dispatch_core.durability.observer import Observer
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.types import Agency, Grade, UnitStatus
from dispatch_core.views.exposition import wsgi_app
from dispatch_core.views.picture import CoverageSpec, Picture, compute_picture

log = logging.getLogger(__name__)

# No `_created` series: one extra sample per counter and histogram child (doubling the
# scrape's RPC histograms' series count) that nothing here reads; Prometheus tracks resets
# on its own. prometheus_client offers the switch only process-wide.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Default HTTP port for /metrics: the port OpenTelemetry's Prometheus exporter registered,
#: so it does not collide with the usual exporters (9090-9100).
DEFAULT_METRICS_PORT = 9464

#: Attendance targets by grade, seconds (docs/domain.md: the MPS's public urban targets).
#: EXTENDED and REFERRED have none, so they get no met/not-met verdict.
RESPONSE_TARGET_S: dict[Grade, float] = {
    Grade.IMMEDIATE: 15 * 60.0,
    Grade.SIGNIFICANT: 60 * 60.0,
}

#: RPC latency: RecommendUnits takes ~100-300 µs over gRPC here and Ping less, so the
#: buckets start at 50 µs to resolve them; 10 s catches a stalled call (beyond is +Inf).
RPC_BUCKETS_S = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: One recommendation in the core (every group of one target): tens of µs, finer than RPCs.
RANK_BUCKETS_S = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
)

#: Minutes to hours. 900 and 3600 are the I and S targets *exactly*, so the share within
#: target is `bucket{le="900"} / count` with no interpolation: a compliance figure, not an
#: estimate. The others are for the shape (how far over target the misses are).
RESPONSE_BUCKETS_S = (
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    RESPONSE_TARGET_S[Grade.IMMEDIATE],
    1200.0,
    1800.0,
    2700.0,
    RESPONSE_TARGET_S[Grade.SIGNIFICANT],
    7200.0,
    14400.0,
    43200.0,
    86400.0,
)

#: A journal append is a commit (and maybe an fsync): 100 µs to a slow disk's second.
JOURNAL_APPEND_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

#: Entries per group commit: powers of two up to the largest batch worth telling apart.
JOURNAL_BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)

#: `dispatch_location_pings_total{result}`: one value per `LocationReport` field.
PING_RESULTS = ("applied", "unknown_unit", "bad_coordinate", "stale", "bad_time", "future")


class Metrics:
    """The metrics of one server, on their own registry."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            # CPU, memory, open fds, GC: the "is the process healthy" half of the dashboard.
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        # ------------------------------------------------------------------ RED per RPC
        self.rpc_duration = Histogram(
            "dispatch_rpc_duration_seconds",
            "Time from receiving an RPC to its final status, by method and status code. "
            "Its _count is the request counter.",
            ("method", "code"),
            buckets=RPC_BUCKETS_S,
            registry=r,
        )
        self.rpc_in_flight = Gauge(
            "dispatch_rpc_in_flight",
            "RPCs being handled now, by method.",
            ("method",),
            registry=r,
        )

        # ----------------------------------------------------------------------- core
        self.rank_duration = Histogram(
            "dispatch_rank_duration_seconds",
            "Time of one recommendation in the Rust core (every requirement group of one target).",
            buckets=RANK_BUCKETS_S,
            registry=r,
        )
        self.location_pings = Counter(
            "dispatch_location_pings",
            "Location pings received in valid batches, by what became of them.",
            ("result",),
            registry=r,
        )
        self.journal_append = Histogram(
            "dispatch_journal_append_seconds",
            "Time for one journal append to become durable (including group commit wait).",
            buckets=JOURNAL_APPEND_BUCKETS_S,
            registry=r,
        )
        self.journal_batch_size = Histogram(
            "dispatch_journal_batch_size",
            "Entries written by one journal commit (group commit batch size).",
            buckets=JOURNAL_BATCH_BUCKETS,
            registry=r,
        )

        # --------------------------------------------------------------------- domain
        self.time_to_assign = Histogram(
            "dispatch_time_to_assign_seconds",
            "From incident creation to its first unit assigned, by grade.",
            ("grade",),
            buckets=RESPONSE_BUCKETS_S,
            registry=r,
        )
        self.time_to_on_scene = Histogram(
            "dispatch_time_to_on_scene_seconds",
            "From incident creation to its first unit on scene, by grade. The le=900 "
            "(IMMEDIATE) and le=3600 (SIGNIFICANT) buckets are the attendance targets.",
            ("grade",),
            buckets=RESPONSE_BUCKETS_S,
            registry=r,
        )
        self.response_target = Counter(
            "dispatch_response_target",
            "Incidents first attended, by grade and whether within the grade's target.",
            ("grade", "met"),
            registry=r,
        )
        self.ack_overdue = Counter(
            "dispatch_ack_overdue",
            "Units DISPATCHED that did not go EN_ROUTE by their acknowledgement deadline, by "
            "the grade of their incident; each dispatch counts once.",
            ("grade",),
            registry=r,
        )
        self.diversions = Counter(
            "dispatch_diversions",
            "Units taken from an incident for an IMMEDIATE one (pre-emption), by the grade "
            "they were taken from.",
            ("grade",),
            registry=r,
        )
        self.crew_off = Counter(
            "dispatch_roster_crew_off",
            "Units whose booked crew went off shift with no crew following, by result:"
            " off_duty (the unit went OFF_DUTY) or overtime (it was committed to a job and"
            " stayed on it).",
            ("result",),
            registry=r,
        )
        for result in ("off_duty", "overtime"):
            self.crew_off.labels(result)
        # Every series exists from the start at 0: a rate over a series that appears only
        # at its first event would miss that event, and alerts see 0 rather than nothing.
        for result in PING_RESULTS:
            self.location_pings.labels(result)
        for grade in Grade:
            self.time_to_assign.labels(grade.name)
            self.time_to_on_scene.labels(grade.name)
            self.ack_overdue.labels(grade.name)
            self.diversions.labels(grade.name)
        for grade in RESPONSE_TARGET_S:
            for met in ("true", "false"):
                self.response_target.labels(grade.name, met)

    def journal_appended(self, seconds: float) -> None:
        """One command's journal append became durable `seconds` after it was submitted.

        Call from where the pipeline waits for the append (its journal hook), so the figure
        is what a command really waits, group-commit queueing included.
        """
        self.journal_append.observe(seconds)

    def journal_committed(self, entries: int) -> None:
        """One journal commit (one sync) wrote `entries` entries: the group commit batch."""
        self.journal_batch_size.observe(entries)

    def watch(self, pipeline: Pipeline) -> None:
        """Records `pipeline`'s events and exports its state at every scrape."""
        pipeline.observer = PipelineMetrics(self)
        if isinstance(pipeline.journal, GroupCommitJournal):
            pipeline.journal.on_commit = self.journal_committed
        self.registry.register(StateCollector(pipeline))
        self.registry.register(CoverageCollector(pipeline))

    def serve_http(
        self,
        host: str,
        port: int,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        client_cafile: str | None = None,
    ) -> MetricsServer:
        """Serves /metrics on host:port (0 picks a free port), over TLS when given a
        certificate (and requiring client certificates signed by `client_cafile` when
        given one); raises OSError if it cannot."""
        httpd, thread = start_http_server(
            port,
            addr=host,
            registry=self.registry,
            certfile=certfile,
            keyfile=keyfile,
            client_cafile=client_cafile,
            client_auth_required=client_cafile is not None,
        )
        # prometheus_client's server (sockets, threads, TLS) with our cheaper rendering.
        httpd.set_app(wsgi_app(self.registry))
        return MetricsServer(httpd, thread, host, int(httpd.server_port), tls=certfile is not None)


@dataclass
class MetricsServer:
    """The running /metrics HTTP server."""

    httpd: object
    thread: threading.Thread
    host: str
    port: int
    tls: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self.httpd.shutdown()  # type: ignore[attr-defined]
        self.httpd.server_close()  # type: ignore[attr-defined]
        self.thread.join(timeout=5)


class PipelineMetrics(Observer):
    """Pipeline events into histograms and counters, with every label child resolved once.

    `labels()` looks the child up in a dict under a lock on every call; the hot paths
    (recommendations, pings) call in here per request, so children are cached up front.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._rank = metrics.rank_duration.observe
        self._applied = metrics.location_pings.labels("applied").inc
        self._unknown = metrics.location_pings.labels("unknown_unit").inc
        self._bad = metrics.location_pings.labels("bad_coordinate").inc
        self._stale = metrics.location_pings.labels("stale").inc
        self._bad_time = metrics.location_pings.labels("bad_time").inc
        self._future = metrics.location_pings.labels("future").inc
        self._to_assign = {int(g): metrics.time_to_assign.labels(g.name).observe for g in Grade}
        self._to_scene = {int(g): metrics.time_to_on_scene.labels(g.name).observe for g in Grade}
        self._target = {
            (int(g), met): metrics.response_target.labels(g.name, "true" if met else "false").inc
            for g in RESPONSE_TARGET_S
            for met in (True, False)
        }
        self._target_s = {int(g): s for g, s in RESPONSE_TARGET_S.items()}
        self._ack_overdue = {int(g): metrics.ack_overdue.labels(g.name).inc for g in Grade}
        self._diverted = {int(g): metrics.diversions.labels(g.name).inc for g in Grade}
        self._crew_off = {
            False: metrics.crew_off.labels("off_duty").inc,
            True: metrics.crew_off.labels("overtime").inc,
        }

    def ranked(self, seconds: float) -> None:
        self._rank(seconds)

    def pings(self, report: LocationReport) -> None:
        # Zero increments are skipped: each inc takes a lock, and most batches are all good.
        if report.applied:
            self._applied(report.applied)
        if report.skipped_unknown_unit:
            self._unknown(report.skipped_unknown_unit)
        if report.skipped_bad_coordinate:
            self._bad(report.skipped_bad_coordinate)
        if report.skipped_stale:
            self._stale(report.skipped_stale)
        if report.skipped_bad_time:
            self._bad_time(report.skipped_bad_time)
        if report.skipped_future:
            self._future(report.skipped_future)

    def first_assigned(self, grade: int, waited_s: float) -> None:
        self._to_assign[grade](max(0.0, waited_s))

    def first_on_scene(self, grade: int, response_s: float) -> None:
        elapsed = max(0.0, response_s)
        self._to_scene[grade](elapsed)
        target = self._target_s.get(grade)
        if target is not None:
            # "Within 15 minutes" includes 15:00 exactly, as the le="900" bucket does.
            self._target[(grade, elapsed <= target)]()

    def journal_durable(self, seconds: float) -> None:
        self._metrics.journal_appended(seconds)

    def ack_overdue(self, grade: int) -> None:
        self._ack_overdue[grade]()

    def diverted(self, from_grade: int) -> None:
        self._diverted[from_grade]()

    def crew_off(self, overtime: bool) -> None:
        self._crew_off[overtime]()


_PLANS_HELP = "Response plans in force (CreateIncident without requirements uses them)"
_PLANS_TIME_HELP = (
    "When the response plans in force were installed, Unix seconds; 0 before any"
    " (a reload that changed them moves it)"
)


class StateCollector(Collector):
    """Units and incidents as they are at scrape time, from counts the core keeps: one
    pass over the unit table (agency x status) and O(grades) for incidents, whatever the
    number of incidents ever created."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Names only, so registering does not run collect() against a half-built server.
        return [
            GaugeMetricFamily("dispatch_units", _UNITS_HELP, labels=("agency", "status")),
            GaugeMetricFamily("dispatch_incidents_open", _OPEN_HELP, labels=("grade",)),
            GaugeMetricFamily(
                "dispatch_oldest_unassigned_incident_age_seconds", _OLDEST_HELP, labels=("grade",)
            ),
            GaugeMetricFamily("dispatch_response_plans", _PLANS_HELP),
            GaugeMetricFamily("dispatch_response_plans_install_time_seconds", _PLANS_TIME_HELP),
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        core = self._pipeline.core
        units = GaugeMetricFamily("dispatch_units", _UNITS_HELP, labels=("agency", "status"))
        counts = core.units_by_agency_status()
        # Every agency x status pair, zeros included: "no units AVAILABLE" must be a 0 the
        # dashboard and alerts can see, not a series that vanished.
        for agency in Agency:
            for status in UnitStatus:
                units.add_metric((agency.name, status.name), float(counts.get((agency, status), 0)))
        yield units

        now_ms = self._pipeline.now_ms()
        open_family = GaugeMetricFamily("dispatch_incidents_open", _OPEN_HELP, labels=("grade",))
        oldest = GaugeMetricFamily(
            "dispatch_oldest_unassigned_incident_age_seconds", _OLDEST_HELP, labels=("grade",)
        )
        for grade, open_count, oldest_ms in core.incident_counts():
            name = Grade(grade).name
            open_family.add_metric((name,), float(open_count))
            age = 0.0 if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000.0)
            oldest.add_metric((name,), age)
        yield open_family
        yield oldest

        # A few dozen small plans: decoding them per scrape costs microseconds.
        in_force = pb.GetResponsePlansResponse.FromString(
            core.get_response_plans(b"")
        ).response_plans
        yield GaugeMetricFamily("dispatch_response_plans", _PLANS_HELP, value=len(in_force.plans))
        installed = (
            in_force.install_time.ToMilliseconds() / 1000.0
            if in_force.HasField("install_time")
            else 0.0
        )
        yield GaugeMetricFamily(
            "dispatch_response_plans_install_time_seconds", _PLANS_TIME_HELP, value=installed
        )


class CoverageCollector(Collector):
    """Coverage of each area for the default question (an AVAILABLE police IRV within the
    I-grade target), as `dispatch_coverage_ratio{area,kind}`.

    The picture takes tens of milliseconds at 100k units, more under load, so a scrape
    never computes it: a background thread, started by the first scrape, recomputes it
    every `refresh_s` and scrapes read the newest. Coverage moves with the fleet over
    minutes, and a scrape must stay cheap.
    """

    def __init__(
        self, pipeline: Pipeline, spec: CoverageSpec | None = None, refresh_s: float = 10.0
    ):
        self._pipeline = pipeline
        self._spec = spec or CoverageSpec()
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._latest: Picture | None = None
        self._refresher: threading.Thread | None = None
        types = "+".join(self._spec.unit_types) or "any"
        self.kind = f"{types}_{self._spec.target_seconds / 60:g}min"

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("dispatch_coverage_ratio", _COVERAGE_HELP, labels=("area", "kind")),
            GaugeMetricFamily("dispatch_picture_compute_seconds", _PICTURE_HELP),
        ]

    def _compute(self) -> Picture:
        pipeline = self._pipeline
        return compute_picture(pipeline.core, self._spec, pipeline.now_ms())

    def _refresh(self) -> None:
        while True:
            time.sleep(self._refresh_s)
            try:
                picture = self._compute()
            except Exception:
                # The server is stopping (the core closed under us), or a bug: the last
                # picture stays and the log says why it is not refreshed.
                log.exception("coverage picture for metrics not refreshed")
                return
            self._latest = picture  # one reference swap: scrapes never see a half picture

    def _picture(self) -> Picture:
        latest = self._latest
        if latest is not None:
            return latest
        with self._lock:  # the first scrape computes once and starts the refresher
            if self._latest is None:
                self._latest = self._compute()
                self._refresher = threading.Thread(
                    target=self._refresh, name="coverage-metrics", daemon=True
                )
                self._refresher.start()
            return self._latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        picture = self._picture()
        ratio = GaugeMetricFamily(
            "dispatch_coverage_ratio", _COVERAGE_HELP, labels=("area", "kind")
        )
        for area in picture.areas:
            ratio.add_metric((area.area.name, self.kind), area.coverage_ratio)
        yield ratio
        yield GaugeMetricFamily(
            "dispatch_picture_compute_seconds", _PICTURE_HELP, value=picture.compute_seconds
        )


_COVERAGE_HELP = (
    "Share of the area's cells an eligible unit can reach within the target (kind names the "
    "unit types and target), recomputed at most every 10 s."
)
_PICTURE_HELP = "Seconds the last operating picture took to compute."


_UNITS_HELP = "Units by agency and status, now."
_OPEN_HELP = "Incidents not yet closed, by grade, now."
_OLDEST_HELP = (
    "Age of the oldest open incident with no unit attached and none arrived, by grade; "
    "0 when none is waiting."
)
