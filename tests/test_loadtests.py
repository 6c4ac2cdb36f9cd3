"""The load-test harness: scenarios parse, smoke runs produce complete reports, and the
open-loop generator measures queueing instead of hiding it (no coordinated omission).

Smoke runs are a few seconds against a real `dispatch-core serve` with a small fleet; no
timing decides a pass, only the structure of what was measured (with generous margins).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from dispatch_core.loadtest import h2load
from dispatch_core.loadtest import main as loadtest
from dispatch_core.loadtest.generator import OpenLoop, clock, poisson_times
from dispatch_core.loadtest.plots import CAPACITY_PLOTS, PLOTS
from dispatch_core.loadtest.report import REPORT_KEYS, rpc_table
from dispatch_core.loadtest.scenario import Profile, load_scenario, scenario_names
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.types import UnitStatus
from tests.conftest import ServerProcess, start_server

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LATENCY_KEYS = ("n", "p50", "p95", "p99", "p99.9", "max")
INCIDENT_FLOW = ("CreateIncident", "RecommendUnits", "AssignUnits", "UpdateLocations")
LIFECYCLE = ("SetUnitStatus", "CloseIncident")

# Per scenario: smoke scale (a few dozen to a thousand units) and whether its jobs are short
# enough in a 4-second run for units to cycle back (national-stress compresses them only
# 60x, so a smoke run ends before any incident closes).
SMOKE: dict[str, tuple[float, bool]] = {
    "london-baseline": (0.02, True),
    "nye-surge": (0.01, True),
    "riot": (0.005, True),
    "national-stress": (0.005, False),
    # A whole day compressed 144x: jobs of 20-120 simulated minutes outlast a smoke run.
    "london-day": (0.05, False),
}


def test_every_scenario_has_a_smoke_run() -> None:
    assert set(scenario_names()) == set(SMOKE)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_scenario_declares_its_shape(name: str) -> None:
    sc = load_scenario(name)
    summary = sc.summary()
    # A full run fits in 10 minutes and says how compressed it is.
    assert 0 < sc.duration_s <= 600
    assert summary["compression"] == pytest.approx(sc.simulated_s / sc.duration_s)
    assert summary["expected_incidents"] > 0
    assert summary["ping_rate_per_s"] > 0
    assert abs(sum(m.share for m in sc.mix) - 1.0) < 0.01


def test_shorter_runs_compress_harder_but_windows_are_cut() -> None:
    base = load_scenario("london-baseline")
    short = base.with_overrides(duration_s=60, scale=0.1)
    assert short.simulated_s == base.simulated_s
    assert short.compression == pytest.approx(base.compression * base.duration_s / 60)
    assert short.units == round(base.units * 0.1)
    window = load_scenario("national-stress")
    cut = window.with_overrides(duration_s=30)
    assert cut.compression == pytest.approx(window.compression)


def test_profile_is_piecewise_linear_and_held_after_the_last_point() -> None:
    p = Profile.parse([[0, 10], [10, 30]], "p")
    assert p.at([0, 5, 10, 99]).tolist() == [10, 20, 30, 30]


def test_poisson_arrivals_follow_the_rate() -> None:
    rng = np.random.default_rng(1)
    t = poisson_times(lambda x: np.where(x < 50, 10.0, 100.0), 100.0, rng)
    # ~500 before t = 50 and ~5,000 after; margins of many standard deviations.
    assert 350 < int((t < 50).sum()) < 650
    assert 4_500 < int((t >= 50).sum()) < 5_500
    assert np.all(np.diff(t) >= 0)


# --------------------------------------------------------------------------- smoke runs


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1_000, path
    assert data.startswith(PNG_MAGIC), path


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_smoke_run_writes_a_complete_report(name: str, tmp_path: Path) -> None:
    scale, cycles = SMOKE[name]
    out = tmp_path / "report"
    argv = ["--scenario", name, "--duration", "4", "--scale", str(scale), "--out", str(out)]
    code = loadtest.main([*argv, "--quiet"])
    report = json.loads((out / "report.json").read_text())
    _check_validity(code, report)
    # The journal users deploy, unless told otherwise.
    assert report["server"]["journal"] == "sqlite"
    for key in REPORT_KEYS:
        assert key in report, key
    assert report["unexpected_errors"] == 0, report["errors_by_code"]
    assert report["generator"]["callback_errors"] == 0
    assert report["server"]["exit_code"] == 0, report["server"]["log_tail"]
    assert report["server"]["log_tracebacks"] == 0, report["server"]["log_tail"]
    assert report["scenario"]["compression"] > 0
    expected = INCIDENT_FLOW + (LIFECYCLE if cycles else ())
    for rpc in expected:
        row = report["rpcs"].get(rpc)
        assert row is not None and row["ok"] > 0, (rpc, sorted(report["rpcs"]))
        for key in LATENCY_KEYS:
            assert key in row["latency_ms"], (rpc, key)
        assert row["latency_ms"]["max"] >= row["latency_ms"]["p50"] > 0
    assert report["totals"]["pings_sent"] > 0
    assert report["resources"]["server_cpu_pct_mean"] is not None
    assert report["resources"]["server_rss_mb_max"] > 0
    assert "lag_ms" in report["generator"] and "fell_behind" in report["generator"]
    assert report["outcomes"], "no dispatch outcomes"
    assigned = sum(o["assigned"] for o in report["outcomes"].values())
    assert assigned > 0
    if cycles:
        assert sum(o["closed"] for o in report["outcomes"].values()) > 0
    for grade in ("IMMEDIATE", "SIGNIFICANT"):
        if grade in report["outcomes"]:
            assert "within_target_share" in report["outcomes"][grade]
    assert report["timeseries"]["samples"], "no resource samples"
    assert report["plots"] == list(PLOTS)
    for plot in PLOTS:
        _check_png(out / plot)
    md = (out / "report.md").read_text()
    assert "compression" in md and "p99" in md
    assert json.loads((out / "scenario.json").read_text())["name"] == name
    cost = report["cost"]
    assert cost["server_cpu_ms_per_1000_requests"] > 0
    assert cost["generator_cpu_ms_per_1000_requests"] > 0


def _check_validity(code: int, report: dict[str, Any]) -> None:
    """The exit code says whether the generator kept to its schedule, as the report does.

    Which it is depends on the machine's load at the time, so both are accepted; that the
    two agree, and that an invalid run says why, is what is checked.
    """
    assert code == (loadtest.EXIT_OK if report["valid"] else loadtest.EXIT_INVALID_RUN)
    if report["kind"] == "scenario":
        assert report["valid"] == (not report["generator"]["fell_behind"])
    else:
        assert report["valid"] == (report["invalid_because"] == "")


def test_smoke_run_split_over_two_generator_processes(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--scenario", "riot", "--duration", "4", "--scale", "0.005", "--workers", "2"]
    code = loadtest.main([*argv, "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    _check_validity(code, report)
    assert report["run"]["workers"] == 2
    assert report["unexpected_errors"] == 0, report["errors_by_code"]
    assert report["generator"]["callback_errors"] == 0
    for rpc in INCIDENT_FLOW + LIFECYCLE:
        assert report["rpcs"][rpc]["ok"] > 0, rpc
    # The two parts together drive the whole schedule: every incident exactly once.
    created = report["rpcs"]["CreateIncident"]["requests"]
    assert created == sum(o["created"] for o in report["outcomes"].values())
    assert report["run"]["incidents_scheduled"] >= created
    assert report["resources"]["generator_cpu_pct_mean"] > 0
    for plot in PLOTS:
        _check_png(out / plot)


CAPACITY_RPCS = ("Ping", "RecommendUnits", "UpdateLocations", "CreateIncident+AssignUnits")


@pytest.mark.skipif(h2load.find() is None, reason="h2load (nghttp2-client) is not installed")
def test_capacity_measures_every_rpc_with_its_cpu_cost(tmp_path: Path) -> None:
    out = tmp_path / "capacity"
    argv = ["--capacity", "--units", "400", "--step-seconds", "1", "--max-rate", "300"]
    argv += ["--rpcs", ",".join(CAPACITY_RPCS), "--p99-limit-ms", "2000"]
    code = loadtest.main([*argv, "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    _check_validity(code, report)
    assert report["server"]["journal"] == "sqlite"
    assert report["server"]["exit_code"] == 0, report["server"]["log_tail"]
    assert report["server"]["log_tracebacks"] == 0, report["server"]["log_tail"]
    assert list(report["results"]) == list(CAPACITY_RPCS)
    for rpc in ("Ping", "RecommendUnits"):
        r = report["results"][rpc]
        assert r["generator"] == "h2load"
        assert r["closed_loop"]["achieved_per_s"] > 0
    for rpc, r in report["results"].items():
        assert r["steps"], rpc
        for step in r["steps"]:
            assert step["requests"] > 0, (rpc, step)
            assert step["server_cpu_ms_per_1000"] > 0, (rpc, step)
            assert step["generator_cpu_ms_per_1000"] > 0, (rpc, step)
            # Codes counted by the server itself: every call it answered, errors included.
            codes = step["server_codes"]
            assert sum(codes.values()) >= step["requests"] - step.get("http_errors", 0), step
            # CANCELLED from h2load is its own doing (it cancels what is in flight when a
            # step's duration ends): reported apart, every other non-OK code is an error.
            cancelled = step.get("cancelled_by_generator", 0)
            if step["generator"] == "h2load":
                assert cancelled == codes.get("CANCELLED", 0), step
            assert step["errors"] == sum(
                n for c, n in codes.items() if c != "OK"
            ) - cancelled + step.get("http_errors", 0)
    dispatch = report["results"]["CreateIncident+AssignUnits"]["steps"][0]
    assert set(dispatch["per_rpc"]) == {"CreateIncident", "AssignUnits", "CloseIncident"}
    summary = report["summary"]["rpcs"]
    assert summary["Ping"]["capacity_over_ping"] in (None, 1.0)
    assert report["summary"]["goals"][0]["goal"].startswith("RecommendUnits")
    assert report["plots"] == list(CAPACITY_PLOTS)
    _check_png(out / "capacity.png")
    md = (out / "report.md").read_text()
    assert "server CPU ms per 1,000" in md and "sqlite" in md


def test_capacity_falls_back_to_python_generators(tmp_path: Path) -> None:
    out = tmp_path / "capacity"
    argv = ["--capacity", "--units", "200", "--step-seconds", "1", "--max-rate", "200"]
    argv += ["--rpcs", "Ping", "--no-h2load", "--journal", "memory", "--capacity-workers", "1"]
    code = loadtest.main([*argv, "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    _check_validity(code, report)
    assert report["server"]["journal"] == "memory"
    steps = report["results"]["Ping"]["steps"]
    assert [s["offered_per_s"] for s in steps] == [200.0]
    assert steps[0]["generator"] == "python x1"
    assert steps[0]["server_codes"].get("OK", 0) >= steps[0]["requests"] * 0.99


# ------------------------------------------------------------------------- bad input


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == loadtest.EXIT_BAD_INPUT, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("dispatch-core loadtest:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_unreachable_target_is_one_line_before_any_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but never listening: nothing answers
        code = loadtest.main(["--target", f"127.0.0.1:{port}", "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, f"127.0.0.1:{port}", "does not answer")
    assert not (tmp_path / "r" / "report.json").exists()


def test_a_server_that_is_not_dispatch_core_is_refused(
    slow_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = loadtest.main(["--target", slow_server, "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, slow_server, "not a dispatch-core server")


def test_a_remote_target_needs_allow_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = loadtest.main(["--target", "192.0.2.1:50051", "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, "192.0.2.1:50051", "--allow-remote")


def test_a_scenario_with_an_unknown_key_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (loadtest_scenario_dir() / "riot.toml").read_text()
    bad = tmp_path / "typo.toml"
    bad.write_text(text.replace("[fleet]\n", "[fleet]\nunitz = 5\n", 1))
    code = loadtest.main(["--scenario", str(bad), "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, "fleet.unitz", "unknown key")


def loadtest_scenario_dir() -> Path:
    from dispatch_core.loadtest.scenario import SCENARIO_DIR  # noqa: PLC0415

    return SCENARIO_DIR


# ------------------------------------------------------- a target that already holds data


def _all_units(stub: pb_grpc.DispatchServiceStub) -> list[Any]:
    units, token = [], ""
    while True:
        page = stub.ListUnits(pb.ListUnitsRequest(page_size=500, page_token=token))
        units.extend(page.units)
        token = page.next_page_token
        if not token:
            return units


def test_a_run_against_a_shared_server_keeps_to_its_own_units(
    server: ServerProcess, stub: pb_grpc.DispatchServiceStub, tmp_path: Path
) -> None:
    before = {u.unit_id: (u.status, u.incident_id) for u in _all_units(stub)}
    out = tmp_path / "report"
    argv = ["--scenario", "riot", "--duration", "4", "--scale", "0.005"]
    code = loadtest.main([*argv, "--target", server.target, "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    _check_validity(code, report)
    prefix = f"LT-{report['run']['id']}-"
    assert report["server"]["journal"] == "as configured on the target"
    assert report["rpcs"]["AssignUnits"]["ok"] > 0
    after = _all_units(stub)
    mine = [u for u in after if u.unit_id.startswith(prefix)]
    assert len(mine) == report["scenario"]["units"]
    # Left OFF_DUTY with nothing attached, and every one of its incidents closed.
    assert {u.status for u in mine} == {int(UnitStatus.OFF_DUTY)}, report["run"]["clean_up"]
    assert report["run"]["clean_up"]["units_left"] == 0
    for u in after:
        if u.unit_id in before:  # the units that were there before are as they were
            assert (u.status, u.incident_id) == before[u.unit_id], u.unit_id
    created = [f"LT-{report['run']['id']}-{i:07d}" for i in range(3)]
    for incident_id in created:
        try:
            got = stub.GetIncident(pb.GetIncidentRequest(incident_id=incident_id))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND  # never created (not its share)
            continue
        assert got.incident.status == pb.INCIDENT_STATUS_CLOSED, incident_id


# ----------------------------------------------------- open loop: no coordinated omission

DELAY_S = 0.020
METHOD = "/loadtest.Slow/Sleep"


@pytest.fixture
def slow_server() -> Iterator[str]:
    """A gRPC server with one worker whose only handler sleeps DELAY_S: 50 requests/s."""

    def sleep(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(DELAY_S)
        return request

    handler = grpc.method_handlers_generic_handler(
        "loadtest.Slow", {"Sleep": grpc.unary_unary_rpc_method_handler(sleep)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


def test_open_loop_charges_queueing_to_the_requests_behind_it(slow_server: str) -> None:
    rate, seconds = 100.0, 2.0  # twice what one 20 ms worker can serve
    n = int(rate * seconds)
    with grpc.insecure_channel(slow_server) as channel:
        method = channel.unary_unary(METHOD)
        method(b"warm-up", timeout=5)
        start = clock() + 50_000_000
        loop = OpenLoop(start_ns=start, end_ns=start + int(seconds * 1e9), max_requests=n + 1)
        times = start + (np.arange(n) * 1e9 / rate).astype(np.int64)
        sent_by: list[int] = []

        def fire(i: int, intended: int) -> None:
            loop.call("Sleep", method, b"x", intended)
            sent_by.append(clock())

        loop.add_source(times, fire)
        loop.run()
        sending_done = clock()
        assert loop.drain(30.0) == 0
    rows = sorted(loop.records["Sleep"], key=lambda r: r.intended)
    assert len(rows) == n and all(r.code == "OK" for r in rows)
    # Open loop: every request went out on schedule, without waiting for the slow answers
    # (2 s of sending; serving them takes 4 s).
    assert (sending_done - start) / 1e9 < seconds + 1.0
    lat = np.array([(r.done - r.intended) / 1e9 for r in rows])
    # Each latency includes the handler's delay...
    assert lat.min() >= DELAY_S * 0.9
    # ...and the queue behind the single worker, which grows through the run: the last
    # requests waited about n * delay - seconds = 2 s. A closed-loop client would have
    # reported about 20 ms throughout.
    p99 = float(np.percentile(lat, 99))
    assert p99 > 10 * DELAY_S
    q = n // 4
    assert lat[-q:].mean() > 3 * lat[:q].mean()
    assert np.corrcoef(np.arange(n), lat)[0, 1] > 0.9
    table: dict[str, Any] = rpc_table(loop, seconds)["Sleep"]
    assert table["latency_ms"]["p99"] > 10 * DELAY_S * 1e3


def test_open_loop_stops_at_its_bounds(slow_server: str) -> None:
    with grpc.insecure_channel(slow_server) as channel:
        method = channel.unary_unary(METHOD)
        start = clock() + 20_000_000
        loop = OpenLoop(start_ns=start, end_ns=start + 5_000_000_000, max_requests=10)
        times = start + np.arange(1000, dtype=np.int64) * 1_000_000
        loop.add_source(times, lambda i, t: loop.call("Sleep", method, b"x", t))
        runner = threading.Thread(target=loop.run)
        t0 = time.monotonic()
        runner.start()
        runner.join(timeout=10)
        assert not runner.is_alive()
        # Stopped by the request bound, long before the 5 s end.
        assert time.monotonic() - t0 < 4.0
        loop.drain(10.0)
    assert loop.issued == 10
    assert loop.not_sent["max_requests"] > 0


def test_a_report_without_matplotlib_skips_only_the_plots(tmp_path: Path) -> None:
    """`pip install dispatch-core` has no matplotlib: the run and its report still work."""
    out = tmp_path / "report"
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"  # import matplotlib now fails
        "from dispatch_core.loadtest.main import main\n"
        f"sys.exit(main(['--scenario', 'riot', '--duration', '2', '--scale', '0.005', "
        f"'--journal', 'memory', '--quiet', '--out', {str(out)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads((out / "report.json").read_text())
    _check_validity(done.returncode, report)
    assert report["plots"] == []
    assert "matplotlib is not installed" in (out / "report.md").read_text()
    assert not list(out.glob("*.png"))


# ------------------------------------------------------------ against a mutual-TLS server


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ServerProcess]]:
    """A server with TLS, client certificates and /metrics over TLS, from `dispatch-core
    certs`."""
    pki = tmp_path_factory.mktemp("pki")
    made = subprocess.run(
        [sys.executable, "-m", "dispatch_core.cli", "certs", "--out", str(pki)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    creds = grpc.ssl_channel_credentials(
        (pki / "ca.crt").read_bytes(),
        (pki / "admin.key").read_bytes(),
        (pki / "admin.crt").read_bytes(),
    )
    server = start_server(
        tmp_path_factory.mktemp("mtls"),
        metrics_port=0,
        extra_args=[
            *("--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key")),
            *("--client-ca", str(pki / "ca.crt")),
        ],
        credentials=creds,
    )
    yield pki, server
    assert server.stop() == 0, server.log()


def _tls_args(pki: Path, role: str = "admin") -> list[str]:
    return [
        *("--tls-ca", str(pki / "ca.crt")),
        *("--tls-cert", str(pki / f"{role}.crt"), "--tls-key", str(pki / f"{role}.key")),
    ]


def test_loadtest_runs_against_a_mutual_tls_server(
    mtls_server: tuple[Path, ServerProcess], tmp_path: Path
) -> None:
    pki, server = mtls_server
    assert server.metrics_url is not None and server.metrics_url.startswith("https://")
    out = tmp_path / "capacity"
    argv = ["--capacity", "--units", "200", "--step-seconds", "1", "--max-rate", "200"]
    argv += ["--rpcs", "Ping", "--capacity-workers", "1", "--target", server.target]
    argv += ["--metrics-url", server.metrics_url, *_tls_args(pki)]
    code = loadtest.main([*argv, "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    _check_validity(code, report)
    step = report["results"]["Ping"]["steps"][0]
    # h2load cannot present a client certificate: the Python generator did the reads.
    assert step["generator"] == "python x1"
    # The server's own counts and CPU, scraped over mutual TLS.
    assert step["server_codes"].get("OK", 0) >= step["requests"] * 0.99
    assert step["server_cpu_ms_per_1000"] > 0
    assert report["clean_up"]["units_left"] == 0


def test_loadtest_without_a_client_certificate_is_one_line(
    mtls_server: tuple[Path, ServerProcess], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki, server = mtls_server
    argv = ["--target", server.target, "--tls-ca", str(pki / "ca.crt")]
    code = loadtest.main([*argv, "--out", str(tmp_path / "r")])
    _one_line_error(capsys, code, server.target)


def test_a_scenario_name_beside_a_folder_of_that_name_is_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "riot").mkdir()  # e.g. the report folder of an earlier run
    assert load_scenario("riot").name == "riot"
