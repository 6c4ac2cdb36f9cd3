"""/metrics of a real server: after a scripted sequence of RPCs, every number is exact.

One server of its own (module scope, metrics on a free port) so that nothing else sends it
traffic: the test keeps its own tally of every call and the status the client saw, and the
server's `dispatch_rpc_duration_seconds_count{method,code}` must equal it, aborts and the
client-streaming StreamLocations included. Pings, units by status, incidents by grade,
time to assign / on scene and the response-target verdicts are checked the same way.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.types import Agency, Grade, UnitStatus
from dispatch_core.views.picture import AreaMap
from tests.apihelp import T0, WESTMINSTER, group, rid, uid
from tests.conftest import ServerProcess, start_server
from tests.promtool import promtool

Labels = tuple[tuple[str, str], ...]


def scrape(url: str) -> dict[tuple[str, Labels], float]:
    """Every sample of a scrape, by (sample name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def raw_scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def samples(url: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(raw_scrape(url)) for s in f.samples]


class Tally:
    """Calls one stub method and counts (method, code) as the client saw it."""

    def __init__(self, stub: pb_grpc.DispatchServiceStub) -> None:
        self.stub = stub
        self.seen: collections.Counter[tuple[str, str]] = collections.Counter()

    def call(self, method: str, request: object, expect: grpc.StatusCode) -> object:
        try:
            reply = getattr(self.stub, method)(request, timeout=10)
            code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            reply = None
            code = err.code()
        self.seen[(method, code.name)] += 1
        assert code == expect, (method, code, expect)
        return reply


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(tmp_path_factory.mktemp("metered"), metrics_port=0)
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.log()}"
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="module")
def scripted(metered: ServerProcess) -> dict[str, object]:
    """Runs the script once; returns what the tests compare /metrics against."""
    ok, invalid = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT
    not_found, precondition = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION
    with grpc.insecure_channel(metered.target) as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        t = Tally(stub)
        u1, u2, u3 = uid("P"), uid("P"), uid("A")
        for unit_id, agency in ((u1, Agency.POLICE), (u2, Agency.POLICE), (u3, Agency.AMBULANCE)):
            spec = pb.UnitSpec(unit_id=unit_id, agency=int(agency), unit_type="irv")
            t.call("UpsertUnit", pb.UpsertUnitRequest(request_id=rid(), unit=spec), ok)
        # Invalid: no unit_id.
        t.call("UpsertUnit", pb.UpsertUnitRequest(request_id=rid(), unit=pb.UnitSpec()), invalid)

        # Pings: 3 applied, 1 unknown unit, 1 bad coordinate (u2 again, latitude 95).
        ghost = uid("GHOST")
        lat, lon = WESTMINSTER
        report = t.call(
            "UpdateLocations",
            pb.UpdateLocationsRequest(
                unit_ids=[u1, u2, u3, ghost, u2],
                lat=[lat, lat, lat, lat, 95.0],
                lon=[lon] * 5,
                time_unix_ms=[T0 + 2_000] * 5,
            ),
            ok,
        )
        assert isinstance(report, pb.UpdateLocationsResponse)
        assert (report.applied, report.skipped_unknown_unit) == (3, 1)
        assert report.skipped_bad_coordinate == 1
        # Invalid batch (columns of different lengths): refused whole, no ping counted.
        t.call(
            "UpdateLocations",
            pb.UpdateLocationsRequest(unit_ids=[u1], lat=[], lon=[lon], time_unix_ms=[T0 + 3_000]),
            invalid,
        )
        # Client stream: an older ping (stale), then a newer one (applied).
        stream = iter(
            [
                pb.StreamLocationsRequest(
                    unit_ids=[u1], lat=[lat], lon=[lon], time_unix_ms=[T0 + 1]
                ),
                pb.StreamLocationsRequest(
                    unit_ids=[u1], lat=[lat], lon=[lon], time_unix_ms=[T0 + 3_000]
                ),
            ]
        )
        totals = t.call("StreamLocations", stream, ok)
        assert isinstance(totals, pb.StreamLocationsResponse)
        assert (totals.applied, totals.skipped_stale) == (1, 1)
        # A stream whose second batch is malformed: aborted with INVALID_ARGUMENT after the
        # first batch (1 ping applied) went in.
        bad_stream = iter(
            [
                pb.StreamLocationsRequest(
                    unit_ids=[u3], lat=[lat], lon=[lon], time_unix_ms=[T0 + 5_000]
                ),
                pb.StreamLocationsRequest(unit_ids=[u3], lat=[lat], lon=[], time_unix_ms=[T0 + 1]),
            ]
        )
        t.call("StreamLocations", bad_stream, invalid)

        # Incidents: one IMMEDIATE (will be assigned and attended), one SIGNIFICANT (waits).
        def incident(grade: Grade) -> pb.CreateIncidentRequest:
            return pb.CreateIncidentRequest(
                request_id=rid(),
                incident_id=uid("INC"),
                grade=int(grade),
                incident_type="test",
                location=pb.Location(lat=lat, lon=lon),
                requirements=[group()],
            )

        immediate, significant = incident(Grade.IMMEDIATE), incident(Grade.SIGNIFICANT)
        t.call("CreateIncident", immediate, ok)
        t.call("CreateIncident", significant, ok)
        no_grade = incident(Grade.IMMEDIATE)
        no_grade.grade = 0  # type: ignore[assignment]
        t.call("CreateIncident", no_grade, invalid)

        # Two rankings (one group each) reach the core; the NOT_FOUND one does not.
        for _ in range(2):
            t.call(
                "RecommendUnits",
                pb.RecommendUnitsRequest(incident_id=immediate.incident_id, k=3),
                ok,
            )
        t.call("RecommendUnits", pb.RecommendUnitsRequest(incident_id=uid("INC"), k=3), not_found)

        t.call(
            "AssignUnits",
            pb.AssignUnitsRequest(
                request_id=rid(), incident_id=immediate.incident_id, unit_ids=[u1]
            ),
            ok,
        )
        # u1 is taken: refused, and the SIGNIFICANT incident stays unassigned.
        t.call(
            "AssignUnits",
            pb.AssignUnitsRequest(
                request_id=rid(), incident_id=significant.incident_id, unit_ids=[u1]
            ),
            precondition,
        )
        for status in (UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE):
            t.call(
                "SetUnitStatus",
                pb.SetUnitStatusRequest(request_id=rid(), unit_id=u1, status=int(status)),
                ok,
            )
        t.call(
            "SetUnitStatus",
            pb.SetUnitStatusRequest(
                request_id=rid(), unit_id=u2, status=int(UnitStatus.DISPATCHED)
            ),
            precondition,
        )
        t.call("GetUnit", pb.GetUnitRequest(unit_id=uid("NOPE")), not_found)
        t.call("Ping", pb.PingRequest(), ok)
    return {
        "seen": t.seen,
        "ids": {u1, u2, u3, ghost, immediate.incident_id, significant.incident_id},
    }


def _rpc_counts(metrics: dict[tuple[str, Labels], float]) -> dict[tuple[str, str], float]:
    out = {}
    for (name, labels), value in metrics.items():
        if name == "dispatch_rpc_duration_seconds_count":
            d = dict(labels)
            out[(d["method"], d["code"])] = value
    return out


def test_rpc_counts_by_method_and_code_match_what_the_client_saw(
    metered: ServerProcess, scripted: dict[str, object]
) -> None:
    assert metered.metrics_url is not None
    metrics = scrape(metered.metrics_url)
    counts = _rpc_counts(metrics)
    # Every method under its full name without the leading slash, whatever its service.
    prefix = "dispatch.v1.DispatchService/"
    assert all(method.count("/") == 1 for method, _ in counts), counts
    dispatch_counts = {
        (k[0].removeprefix(prefix), k[1]): v
        for k, v in counts.items()
        if k[0].startswith(prefix) and v > 0
    }
    assert dispatch_counts == dict(scripted["seen"])  # type: ignore[call-overload]
    # The aborted codes are really there (not folded into OK or UNKNOWN).
    for code in ("INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"):
        assert any(c == code for (_, c) in dispatch_counts), code
    assert ("StreamLocations", "INVALID_ARGUMENT") in dispatch_counts
    # The fixture's health checks are RPCs too, named the same way.
    assert counts[("grpc.health.v1.Health/Check", "OK")] >= 1
    # Nothing is in flight once every call has returned.
    for (name, labels), value in metrics.items():
        if name == "dispatch_rpc_in_flight":
            assert value == 0, labels


def test_rpc_histograms_are_consistent(metered: ServerProcess, scripted: dict[str, object]) -> None:
    assert metered.metrics_url is not None
    metrics = scrape(metered.metrics_url)
    for (name, labels), count in metrics.items():
        if name != "dispatch_rpc_duration_seconds_count":
            continue
        inf = metrics[
            ("dispatch_rpc_duration_seconds_bucket", tuple(sorted((*labels, ("le", "+Inf")))))
        ]
        assert inf == count
        # Sub-millisecond resolution: the smallest bucket is 50 µs.
        assert (
            "dispatch_rpc_duration_seconds_bucket",
            tuple(sorted((*labels, ("le", "5e-05")))),
        ) in metrics
        if count:
            assert metrics[("dispatch_rpc_duration_seconds_sum", labels)] > 0


def test_pings_by_result(metered: ServerProcess, scripted: dict[str, object]) -> None:
    assert metered.metrics_url is not None
    metrics = scrape(metered.metrics_url)
    got = {
        dict(labels)["result"]: value
        for (name, labels), value in metrics.items()
        if name == "dispatch_location_pings_total"
    }
    # 3 + 1 (stream) + 1 (first batch of the aborted stream); the refused batch counts 0.
    assert got == {
        "applied": 5,
        "unknown_unit": 1,
        "bad_coordinate": 1,
        "stale": 1,
        "bad_time": 0,
        "future": 0,
    }


def test_units_incidents_and_ages_are_the_state_now(
    metered: ServerProcess, scripted: dict[str, object]
) -> None:
    assert metered.metrics_url is not None
    metrics = scrape(metered.metrics_url)
    units = {
        (dict(labels)["agency"], dict(labels)["status"]): value
        for (name, labels), value in metrics.items()
        if name == "dispatch_units"
    }
    # Every agency x status pair is exported, zeros included.
    assert len(units) == len(Agency) * len(UnitStatus)
    assert {k: v for k, v in units.items() if v} == {
        ("POLICE", "ON_SCENE"): 1,
        ("POLICE", "AVAILABLE"): 1,
        ("AMBULANCE", "AVAILABLE"): 1,
    }
    open_ = {
        dict(labels)["grade"]: value
        for (name, labels), value in metrics.items()
        if name == "dispatch_incidents_open"
    }
    assert open_ == {"IMMEDIATE": 1, "SIGNIFICANT": 1, "EXTENDED": 0, "REFERRED": 0}
    oldest = {
        dict(labels)["grade"]: value
        for (name, labels), value in metrics.items()
        if name == "dispatch_oldest_unassigned_incident_age_seconds"
    }
    # The IMMEDIATE one is attended, so nothing of that grade waits; the SIGNIFICANT one
    # has waited since the script created it (well under a minute).
    assert oldest["IMMEDIATE"] == 0
    assert 0 < oldest["SIGNIFICANT"] < 120


def test_time_to_assign_on_scene_and_response_target(
    metered: ServerProcess, scripted: dict[str, object]
) -> None:
    assert metered.metrics_url is not None
    metrics = scrape(metered.metrics_url)

    def count(name: str, grade: str) -> float:
        return metrics[(f"{name}_count", (("grade", grade),))]

    for name in ("dispatch_time_to_assign_seconds", "dispatch_time_to_on_scene_seconds"):
        assert count(name, "IMMEDIATE") == 1
        assert count(name, "SIGNIFICANT") == 0
        # The target is a bucket boundary, so compliance needs no interpolation.
        le900 = (f"{name}_bucket", (("grade", "IMMEDIATE"), ("le", "900.0")))
        assert metrics[le900] == 1
        assert (f"{name}_bucket", (("grade", "SIGNIFICANT"), ("le", "3600.0"))) in metrics
    targets = {
        (dict(labels)["grade"], dict(labels)["met"]): value
        for (name, labels), value in metrics.items()
        if name == "dispatch_response_target_total"
    }
    assert targets == {
        ("IMMEDIATE", "true"): 1,
        ("IMMEDIATE", "false"): 0,
        ("SIGNIFICANT", "true"): 0,
        ("SIGNIFICANT", "false"): 0,
    }
    assert metrics[("dispatch_rank_duration_seconds_count", ())] == 2


def test_no_label_value_is_an_id(metered: ServerProcess, scripted: dict[str, object]) -> None:
    assert metered.metrics_url is not None
    ids = scripted["ids"]
    assert isinstance(ids, set)
    values = {v for s in samples(metered.metrics_url) for v in s.labels.values()}
    assert not values & ids
    assert not any(v.startswith(("P-", "A-", "INC-", "GHOST-", "NOPE-")) for v in values)
    # Every dispatch_ label is one of the few low-cardinality ones.
    keys = {
        k for s in samples(metered.metrics_url) if s.name.startswith("dispatch_") for k in s.labels
    }
    # `area` is bounded by the configured areas (33 for London) and `kind` by the
    # configured coverage questions; both are checked against those sets below.
    assert keys <= {
        "method",
        "code",
        "result",
        "agency",
        "status",
        "grade",
        "met",
        "le",
        "area",
        "kind",
    }
    areas = {s.labels["area"] for s in samples(metered.metrics_url) if "area" in s.labels}
    assert areas <= {a.name for a in AreaMap.london().areas}


def test_contract_names_are_exported(metered: ServerProcess) -> None:
    assert metered.metrics_url is not None
    names = {s.name for s in samples(metered.metrics_url)}
    for name in (
        "dispatch_rpc_duration_seconds_bucket",
        "dispatch_rpc_in_flight",
        "dispatch_rank_duration_seconds_bucket",
        "dispatch_units",
        "dispatch_incidents_open",
        "dispatch_oldest_unassigned_incident_age_seconds",
        "dispatch_time_to_assign_seconds_bucket",
        "dispatch_time_to_on_scene_seconds_bucket",
        "dispatch_response_target_total",
        "dispatch_location_pings_total",
        "dispatch_journal_append_seconds_bucket",
        "dispatch_journal_batch_size_bucket",
        "dispatch_response_plans",
        "dispatch_response_plans_install_time_seconds",
        "process_cpu_seconds_total",
    ):
        assert name in names, name
    # The server installed the shipped plans at start.
    plans = [s.value for s in samples(metered.metrics_url) if s.name == "dispatch_response_plans"]
    assert plans and plans[0] >= 10


def test_promtool_accepts_a_real_scrape(
    metered: ServerProcess, scripted: dict[str, object], tmp_path: Path
) -> None:
    assert metered.metrics_url is not None
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=raw_scrape(metered.metrics_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_port_is_documented_and_disabled_by_minus_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert "--metrics-port" in result.stdout
    assert "DISPATCH_METRICS_PORT" in result.stdout
    # The shared fixtures run with -1: no metrics line in their log.
    plain = start_server(tmp_path / "plain")
    try:
        assert plain.metrics_url is None
        assert "metrics served at" not in plain.log()
    finally:
        assert plain.stop() == 0


def test_taken_metrics_port_fails_loudly(metered: ServerProcess, tmp_path: Path) -> None:
    assert metered.metrics_url is not None
    taken = metered.metrics_url.rsplit(":", 1)[1].split("/")[0]
    # From the environment, so the DISPATCH_METRICS_PORT fallback is exercised too.
    result = subprocess.run(
        [*CLI, "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DISPATCH_METRICS_PORT": taken},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot serve metrics" in result.stderr
    assert taken in result.stderr
    assert metered.process.poll() is None


CLI = [sys.executable, "-m", "dispatch_core.cli"]


def test_coverage_ratio_per_area(metered: ServerProcess, scripted: dict[str, object]) -> None:
    metrics = scrape(metered.metrics_url or "")
    ratios = {
        dict(labels)["area"]: value
        for (name, labels), value in metrics.items()
        if name == "dispatch_coverage_ratio"
    }
    kinds = {
        dict(labels)["kind"]
        for (name, labels), _ in metrics.items()
        if name == "dispatch_coverage_ratio"
    }
    assert kinds == {"irv_15min"}
    assert len(ratios) == 33 and all(0.0 <= r <= 1.0 for r in ratios.values())
    # The scripted fleet is a handful of units in central London: the outer boroughs are
    # out of reach, so coverage cannot be full everywhere.
    assert min(ratios.values()) < 1.0


def test_our_rendering_is_prometheus_clients_byte_for_byte() -> None:
    """views/exposition.render against generate_latest, the oracle, on a registry holding
    every kind of sample the server exports (process collectors left out: their values
    move between two calls)."""
    from prometheus_client import generate_latest  # noqa: PLC0415

    from dispatch_core.views.exposition import render  # noqa: PLC0415
    from dispatch_core.views.metrics import Metrics  # noqa: PLC0415

    m = Metrics(process=False)
    for method in ("dispatch.v1.DispatchService/Ping", 'odd "method"\\\nname'):
        for code, seconds in (("OK", 0.0003), ("INVALID_ARGUMENT", 12.5), ("OK", 2e7)):
            m.rpc_duration.labels(method, code).observe(seconds)
        m.rpc_in_flight.labels(method).inc()
    m.journal_appended(0.004)
    m.journal_committed(17)
    assert render(m.registry) == generate_latest(m.registry)


def test_a_gzip_and_an_openmetrics_scrape(metered: ServerProcess) -> None:
    import gzip  # noqa: PLC0415

    assert metered.metrics_url is not None
    plain = urllib.request.Request(metered.metrics_url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(plain, timeout=10) as reply:
        assert reply.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(reply.read()).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "dispatch_rpc_duration_seconds" in names
    om = urllib.request.Request(
        metered.metrics_url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(om, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
        assert reply.read().decode().rstrip().endswith("# EOF")
