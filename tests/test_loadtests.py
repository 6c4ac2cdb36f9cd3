"""The load-test harness: scenarios parse, smoke runs produce complete reports, and the
open-loop generator measures queueing instead of hiding it (no coordinated omission).

Smoke runs are a few seconds against a real `dispatch-core serve` with a small fleet; no
timing decides a pass, only the structure of what was measured (with generous margins).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from loadtests import loadtest
from loadtests.generator import OpenLoop, clock, poisson_times
from loadtests.report import PLOTS, REPORT_KEYS, rpc_table
from loadtests.scenario import Profile, load_scenario, scenario_names

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
    assert loadtest.main([*argv, "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
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
    assert (out / "scenario.toml").stat().st_size > 0


def test_smoke_run_split_over_two_generator_processes(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--scenario", "riot", "--duration", "4", "--scale", "0.005", "--workers", "2"]
    assert loadtest.main([*argv, "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
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


def test_step_search_reports_a_highest_rate(tmp_path: Path) -> None:
    out = tmp_path / "steps"
    argv = ["--step-search", "--units", "300", "--step-seconds", "1", "--step-start", "20"]
    argv += ["--step-factor", "2", "--step-max", "40", "--p99-limit-ms", "1000"]
    assert loadtest.main([*argv, "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [s["offered_per_s"] for s in report["steps"]] == [20, 40]
    assert all(s["errors"] == 0 for s in report["steps"])
    # A 1 s limit at 40 requests/s: only a badly broken server (or machine) misses it.
    verdicts = [(s["offered_per_s"], s["verdict"], s["lag_p99_ms"]) for s in report["steps"]]
    assert report["highest_sustained_per_s"] == 40, verdicts
    for plot in PLOTS:
        _check_png(out / plot)


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
