"""Metrics with the clock under the test's control, and status codes that need timing.

The pipeline takes its clock as an argument, so these tests drive a real one over a real
UnitIndex through minutes and hours of "time" and check what the response-time metrics
make of it: target met or missed, the boundary itself, the oldest waiting incident's age.
The last tests run real gRPC servers in this process (each with its own registry, which
is also what lets two of them coexist) to see cancelled and timed-out streams recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dispatch_core._core import DispatchCore
from dispatch_core.durability.pipeline import Pipeline
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.server import Running, start
from dispatch_core.types import Agency, Grade, UnitStatus
from dispatch_core.views.metrics import CoverageCollector, Metrics
from tests.apihelp import WESTMINSTER, Clock, group, rid

T0_MS = 1_700_000_000_000


@pytest.fixture
def clock() -> Clock:
    return Clock(T0_MS)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process=False)


@pytest.fixture
def engine(clock: Clock, metrics: Metrics) -> Pipeline:
    engine = Pipeline(DispatchCore(), clock_ms=clock)
    metrics.watch(engine)
    for n in range(4):
        engine.command(
            "UpsertUnit",
            pb.UpsertUnitRequest(
                request_id=rid(),
                unit=pb.UnitSpec(unit_id=f"U{n}", agency=int(Agency.POLICE), unit_type="irv"),
            ),
            pb.UpsertUnitResponse,
        )
    return engine


def create(engine: Pipeline, incident_id: str, grade: Grade) -> None:
    engine.command(
        "CreateIncident",
        pb.CreateIncidentRequest(
            request_id=rid(),
            incident_id=incident_id,
            grade=int(grade),
            incident_type="test",
            location=pb.Location(lat=WESTMINSTER[0], lon=WESTMINSTER[1]),
            requirements=[group()],
        ),
        pb.CreateIncidentResponse,
    )


def assign(engine: Pipeline, incident_id: str, unit_id: str) -> None:
    engine.command(
        "AssignUnits",
        pb.AssignUnitsRequest(request_id=rid(), incident_id=incident_id, unit_ids=[unit_id]),
        pb.AssignUnitsResponse,
    )


def status(engine: Pipeline, unit_id: str, to: UnitStatus) -> None:
    engine.command(
        "SetUnitStatus",
        pb.SetUnitStatusRequest(request_id=rid(), unit_id=unit_id, status=int(to)),
        pb.SetUnitStatusResponse,
    )


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    assert got is not None, (name, labels)
    return got


def test_target_met_missed_and_the_boundary(
    engine: Pipeline, metrics: Metrics, clock: Clock
) -> None:
    # I1 attended at exactly 15:00 (met: the target is inclusive), I2 at 15:01 (missed),
    # S1 at 59:00 (met).
    create(engine, "I1", Grade.IMMEDIATE)
    create(engine, "I2", Grade.IMMEDIATE)
    create(engine, "S1", Grade.SIGNIFICANT)
    clock.advance(120)
    assign(engine, "I1", "U0")
    assign(engine, "I2", "U1")
    assign(engine, "S1", "U2")
    clock.advance(900 - 120)
    status(engine, "U0", UnitStatus.ON_SCENE)
    clock.advance(60)
    status(engine, "U1", UnitStatus.ON_SCENE)
    clock.advance(3540 - 960)
    status(engine, "U2", UnitStatus.ON_SCENE)

    assert value(metrics, "dispatch_response_target_total", grade="IMMEDIATE", met="true") == 1
    assert value(metrics, "dispatch_response_target_total", grade="IMMEDIATE", met="false") == 1
    assert value(metrics, "dispatch_response_target_total", grade="SIGNIFICANT", met="true") == 1
    assert value(metrics, "dispatch_response_target_total", grade="SIGNIFICANT", met="false") == 0

    scene = "dispatch_time_to_on_scene_seconds"
    # Compliance straight from the histogram: bucket at the target / count.
    assert value(metrics, f"{scene}_bucket", grade="IMMEDIATE", le="900.0") == 1
    assert value(metrics, f"{scene}_count", grade="IMMEDIATE") == 2
    assert value(metrics, f"{scene}_sum", grade="IMMEDIATE") == 900 + 960
    assert value(metrics, f"{scene}_bucket", grade="SIGNIFICANT", le="3600.0") == 1
    assign_ = "dispatch_time_to_assign_seconds"
    assert value(metrics, f"{assign_}_count", grade="IMMEDIATE") == 2
    assert value(metrics, f"{assign_}_sum", grade="IMMEDIATE") == 240
    assert value(metrics, f"{assign_}_bucket", grade="IMMEDIATE", le="120.0") == 2


def test_only_the_first_assignment_and_arrival_count(
    engine: Pipeline, metrics: Metrics, clock: Clock
) -> None:
    create(engine, "I1", Grade.IMMEDIATE)
    clock.advance(10)
    assign(engine, "I1", "U0")
    clock.advance(10)
    assign(engine, "I1", "U1")
    status(engine, "U0", UnitStatus.ON_SCENE)
    clock.advance(10)
    status(engine, "U1", UnitStatus.ON_SCENE)
    assert value(metrics, "dispatch_time_to_assign_seconds_count", grade="IMMEDIATE") == 1
    assert value(metrics, "dispatch_time_to_on_scene_seconds_count", grade="IMMEDIATE") == 1
    assert value(metrics, "dispatch_time_to_on_scene_seconds_sum", grade="IMMEDIATE") == 20
    assert value(metrics, "dispatch_response_target_total", grade="IMMEDIATE", met="true") == 1


def test_grades_without_a_target_get_no_verdict(
    engine: Pipeline, metrics: Metrics, clock: Clock
) -> None:
    create(engine, "E1", Grade.EXTENDED)
    clock.advance(7200)
    assign(engine, "E1", "U0")
    status(engine, "U0", UnitStatus.ON_SCENE)
    assert value(metrics, "dispatch_time_to_on_scene_seconds_count", grade="EXTENDED") == 1
    verdicts = [
        s
        for family in metrics.registry.collect()
        if family.name == "dispatch_response_target"
        for s in family.samples
        if s.name.endswith("_total") and s.value
    ]
    assert verdicts == []


def test_oldest_unassigned_age_follows_the_state(
    engine: Pipeline, metrics: Metrics, clock: Clock
) -> None:
    oldest = "dispatch_oldest_unassigned_incident_age_seconds"
    assert value(metrics, oldest, grade="IMMEDIATE") == 0
    create(engine, "I1", Grade.IMMEDIATE)
    clock.advance(30)
    create(engine, "I2", Grade.IMMEDIATE)
    clock.advance(100)
    # Read at scrape time: the age grows with the clock, no command needed.
    assert value(metrics, oldest, grade="IMMEDIATE") == 130
    assert value(metrics, "dispatch_incidents_open", grade="IMMEDIATE") == 2
    assign(engine, "I1", "U0")
    assert value(metrics, oldest, grade="IMMEDIATE") == 100  # now I2 is the oldest waiting
    # U0 stood down (back to AVAILABLE) before arriving: I1 is waiting again, aged from
    # its creation, since the target runs from the call.
    status(engine, "U0", UnitStatus.AVAILABLE)
    assert value(metrics, oldest, grade="IMMEDIATE") == 130
    assign(engine, "I1", "U1")
    assign(engine, "I2", "U2")
    assert value(metrics, oldest, grade="IMMEDIATE") == 0
    engine.command(
        "CloseIncident",
        pb.CloseIncidentRequest(request_id=rid(), incident_id="I1"),
        pb.CloseIncidentResponse,
    )
    assert value(metrics, "dispatch_incidents_open", grade="IMMEDIATE") == 1
    units = value(metrics, "dispatch_units", agency="POLICE", status="DISPATCHED")
    assert units == 1  # U2 (U1 was released by the close)


def test_journal_hooks_feed_the_journal_histograms(metrics: Metrics) -> None:
    for seconds in (0.0004, 0.002, 0.2):
        metrics.journal_appended(seconds)
    metrics.journal_committed(1)
    metrics.journal_committed(37)
    assert value(metrics, "dispatch_journal_append_seconds_count") == 3
    assert value(metrics, "dispatch_journal_append_seconds_bucket", le="0.0005") == 1
    assert value(metrics, "dispatch_journal_append_seconds_bucket", le="0.0025") == 2
    assert value(metrics, "dispatch_journal_batch_size_count") == 2
    assert value(metrics, "dispatch_journal_batch_size_sum") == 38
    assert value(metrics, "dispatch_journal_batch_size_bucket", le="32.0") == 1


def test_two_servers_in_one_process_keep_separate_metrics(tmp_path: Path) -> None:
    first, second = Metrics(process=False), Metrics(process=False)
    a = start("127.0.0.1", 0, tmp_path / "a", metrics=first)
    b = start("127.0.0.1", 0, tmp_path / "b", metrics=second)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{a.port}") as channel:
            pb_grpc.DispatchServiceStub(channel).Ping(pb.PingRequest(), timeout=5)
        ping = {"method": "dispatch.v1.DispatchService/Ping", "code": "OK"}
        assert first.registry.get_sample_value("dispatch_rpc_duration_seconds_count", ping) == 1
        assert second.registry.get_sample_value("dispatch_rpc_duration_seconds_count", ping) == 0
    finally:
        a.stop(0)
        b.stop(0)


@pytest.fixture
def inproc(tmp_path: Path) -> Iterator[tuple[Running, Metrics]]:
    metrics = Metrics(process=False)
    running = start("127.0.0.1", 0, tmp_path, metrics=metrics)
    yield running, metrics
    running.stop(0)


#: The `method` label: the full gRPC method name without its leading slash.
STREAM = "dispatch.v1.DispatchService/StreamLocations"


def _stream_count(metrics: Metrics, code: str) -> float:
    got = metrics.registry.get_sample_value(
        "dispatch_rpc_duration_seconds_count", {"method": STREAM, "code": code}
    )
    return got or 0.0


def _wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    # The server records after the client has already seen the error (the client ends a
    # cancelled or timed-out call itself), so wait for it.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("metric never recorded")


def test_a_stream_past_its_deadline_is_deadline_exceeded(
    inproc: tuple[Running, Metrics],
) -> None:
    running, metrics = inproc
    release = threading.Event()

    def slow() -> Iterator[pb.StreamLocationsRequest]:
        yield pb.StreamLocationsRequest()
        release.wait(5)

    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.StreamLocations(slow(), timeout=0.3)
        release.set()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait_for(lambda: _stream_count(metrics, "DEADLINE_EXCEEDED") == 1)
    assert _stream_count(metrics, "OK") == 0
    gauge = metrics.registry.get_sample_value("dispatch_rpc_in_flight", {"method": STREAM})
    assert gauge == 0


def test_a_cancelled_stream_is_cancelled(inproc: tuple[Running, Metrics]) -> None:
    running, metrics = inproc
    release = threading.Event()

    def slow() -> Iterator[pb.StreamLocationsRequest]:
        yield pb.StreamLocationsRequest()
        release.wait(5)

    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        call = stub.StreamLocations.future(slow())
        _wait_for(
            lambda: (
                metrics.registry.get_sample_value("dispatch_rpc_in_flight", {"method": STREAM}) == 1
            )
        )
        call.cancel()
        release.set()
    _wait_for(lambda: _stream_count(metrics, "CANCELLED") == 1)
    assert _stream_count(metrics, "OK") == 0


class _CountingCoverage(CoverageCollector):
    """The real collector, counting the pictures it computes and on which thread."""

    def __init__(self, pipeline: Pipeline, refresh_s: float) -> None:
        super().__init__(pipeline, refresh_s=refresh_s)
        self.computed_on: list[str] = []

    def _compute(self) -> Any:
        self.computed_on.append(threading.current_thread().name)
        return super()._compute()


def _westminster_ratio(collector: CoverageCollector) -> float:
    for family in collector.collect():
        if family.name == "dispatch_coverage_ratio":
            for sample in family.samples:
                if sample.labels["area"] == "Westminster":
                    return float(sample.value)
    raise AssertionError("no Westminster coverage sample")


def test_a_scrape_reads_coverage_computed_in_the_background(engine: Pipeline, clock: Clock) -> None:
    collector = _CountingCoverage(engine, refresh_s=0.2)
    before = _westminster_ratio(collector)  # the first scrape computes, once
    assert before == 0.0  # no unit has a position yet
    assert collector.computed_on == [threading.current_thread().name]
    ids = [f"U{n}" for n in range(4)]
    engine.update_locations(
        pb.UpdateLocationsRequest(
            unit_ids=ids,
            lat=[WESTMINSTER[0]] * 4,
            lon=[WESTMINSTER[1]] * 4,
            time_unix_ms=[clock()] * 4,
        ).SerializeToString()
    )
    _wait_for(lambda: _westminster_ratio(collector) > 0.0)
    # Every later picture came from the refresher: no scrape computed one.
    assert len(collector.computed_on) >= 2
    assert set(collector.computed_on[1:]) == {"coverage-metrics"}
