"""`dispatch-core simulate`: determinism, the closest-idle baseline against a case worked
by hand from its definition, the engine's policy, and call files refused by line and column.

The simulation drives the real engine in-process (no gRPC: there is no server to talk to),
so these tests exercise the real Rust state machine through `DispatchCore.execute`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dispatch_core.loadtest.generator import scenario_fleet
from dispatch_core.loadtest.scenario import SCENARIO_DIR, load_scenario
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.simulate import report
from dispatch_core.simulate.demand import DemandError, read_calls_csv, scenario_calls
from dispatch_core.simulate.main import main as simulate_main
from dispatch_core.simulate.policies import POLICIES, ClosestIdle, EngineGreedy, EnginePreempt
from dispatch_core.simulate.world import World, distance_m
from dispatch_core.synthetic.fleet import Fleet
from dispatch_core.types import Agency, Grade, UnitStatus

HEADER = "time_s,lat,lon,grade,type,job_minutes\n"


def small_scenario(tmp_path: Path, *, hours: int = 3, units: int = 120) -> Path:
    """london-day cut to a few hours and a small fleet: seconds to simulate."""
    text = (SCENARIO_DIR / "london-day.toml").read_text()
    text = text.replace("simulated_s = 86_400", f"simulated_s = {hours * 3600}")
    text = text.replace("units = 488", f"units = {units}")
    path = tmp_path / "small-day.toml"
    path.write_text(text)
    return path


def two_units() -> Fleet:
    """A response car and a foot patrol 555 m apart on the same parallel."""
    return Fleet(
        ids=["CAR", "FOOT"],
        agency=np.array([int(Agency.POLICE)] * 2, dtype=np.int64),
        unit_type=["irv", "foot"],
        caps=[(), ()],
        status=np.array([int(UnitStatus.AVAILABLE)] * 2, dtype=np.int64),
        home_area=["Westminster", "Westminster"],
        lat=np.array([51.5, 51.5]),
        lon=np.array([-0.120, -0.112]),
        shift_remaining_s=np.array([8 * 3600.0] * 2),
    )


def eta_s(
    world: World, unit: int, start: tuple[float, float], end: tuple[float, float], grade: Grade
) -> float:
    """The world's travel model without noise, from the engine's own configuration."""
    config: dict[str, Any] = world.core.config()
    metres = float(distance_m(*start, *end))
    speed = float(config["unit_type_speed_mps"][f"POLICE/{world.fleet.unit_type[unit]}"])
    blue = float(config["blue_light_factor"][grade.name])
    mobilise = float(config["mobilisation_seconds"]["AVAILABLE"])
    return mobilise + metres * float(config["circuity"]) / (speed * blue)


def test_closest_idle_matches_a_case_worked_from_its_definition(tmp_path: Path) -> None:
    # Call 1 is 139 m from the foot patrol and 555 m from the car: closest-idle sends the
    # foot patrol (distance, not time). Call 2 takes the car. Call 3 finds nobody free and
    # waits until the foot patrol clears call 1, then gets it, first-in first-out.
    calls_csv = tmp_path / "calls.csv"
    calls_csv.write_text(
        HEADER
        + "0,51.5,-0.1140,IMMEDIATE,assault,30\n"
        + "10,51.51,-0.120,SIGNIFICANT,theft,90\n"
        + "20,51.505,-0.1140,IMMEDIATE,assault,10\n"
    )
    calls = read_calls_csv(calls_csv)
    world = World(two_units(), calls, seed=1, travel_noise=0.0)
    world.run(ClosestIdle())
    car, foot = 0, 1
    first, second, third = world.incidents
    assert first.units == [foot] and second.units == [car] and third.units == [foot]

    arrive_1 = eta_s(world, foot, (51.5, -0.112), (51.5, -0.114), Grade.IMMEDIATE)
    assert first.first_arrival_s == pytest.approx(arrive_1, abs=1e-3)
    assert second.first_arrival_s == pytest.approx(
        10 + eta_s(world, car, (51.5, -0.120), (51.51, -0.120), Grade.SIGNIFICANT), abs=1e-3
    )
    freed = arrive_1 + 30 * 60  # call 1's job, then the foot patrol is free at the scene
    assert third.first_dispatch_s == pytest.approx(freed, abs=1e-3)
    assert third.first_arrival_s == pytest.approx(
        freed + eta_s(world, foot, (51.5, -0.114), (51.505, -0.114), Grade.IMMEDIATE), abs=1e-3
    )
    # Every incident was closed in the engine once its unit cleared.
    assert all(i.closed for i in world.incidents)


def test_the_engine_policy_ranks_by_time_not_distance(tmp_path: Path) -> None:
    calls_csv = tmp_path / "calls.csv"
    calls_csv.write_text(HEADER + "0,51.5,-0.1140,IMMEDIATE,assault,30\n")
    world = World(two_units(), read_calls_csv(calls_csv), seed=1, travel_noise=0.0)
    world.run(EngineGreedy())
    (incident,) = world.incidents
    car_eta = eta_s(world, 0, (51.5, -0.120), (51.5, -0.114), Grade.IMMEDIATE)
    foot_eta = eta_s(world, 1, (51.5, -0.112), (51.5, -0.114), Grade.IMMEDIATE)
    assert car_eta < foot_eta  # the case is only a test if the two policies disagree
    assert incident.units == [0]
    assert incident.first_arrival_s == pytest.approx(car_eta, abs=1e-3)


def test_waiting_calls_are_served_by_grade_under_the_engine(tmp_path: Path) -> None:
    # One unit, busy; a SIGNIFICANT call waits, then an IMMEDIATE one arrives: when the unit
    # frees, the engine's order sends it to the IMMEDIATE call, closest-idle to the older one.
    calls_csv = tmp_path / "calls.csv"
    calls_csv.write_text(
        HEADER
        + "0,51.5,-0.119,IMMEDIATE,assault,20\n"
        + "60,51.5,-0.121,SIGNIFICANT,theft,20\n"
        + "120,51.5,-0.118,IMMEDIATE,assault,20\n"
    )
    fleet = two_units()
    fleet.status[1] = int(UnitStatus.OFF_DUTY)
    served = {}
    for policy in (EngineGreedy(), ClosestIdle()):
        world = World(fleet, read_calls_csv(calls_csv), seed=1, travel_noise=0.0)
        world.run(policy)
        second, third = world.incidents[1:]
        served[policy.name] = second.first_dispatch_s < third.first_dispatch_s  # type: ignore[operator]
    assert served == {"engine": False, "closest-idle": True}


def test_an_immediate_call_diverts_a_unit_from_a_significant_one(tmp_path: Path) -> None:
    # One car. A SIGNIFICANT call 2 km away takes it; a minute later an IMMEDIATE call next
    # to the car's route arrives. engine+preempt diverts the car (one AssignUnits, the
    # engine checks the grades); the SIGNIFICANT call waits again and gets the car after.
    calls_csv = tmp_path / "calls.csv"
    calls_csv.write_text(
        HEADER
        + "0,51.518,-0.120,SIGNIFICANT,theft,20\n"
        + "60,51.505,-0.1195,IMMEDIATE,assault,20\n"
    )
    fleet = two_units()
    fleet.status[1] = int(UnitStatus.OFF_DUTY)
    outcome = {}
    for policy in (EngineGreedy(), EnginePreempt()):
        world = World(fleet, read_calls_csv(calls_csv), seed=1, travel_noise=0.0)
        world.run(policy)
        significant, immediate = world.incidents
        outcome[policy.name] = (world.diversions, immediate.first_dispatch_s, significant.units)
        assert all(i.closed for i in world.incidents)
        assert significant.first_arrival_s is not None and immediate.first_arrival_s is not None
    assert outcome["engine"][0] == 0 and outcome["engine"][1] > 60  # waits for the car
    diversions, dispatched_at, units = outcome["engine+preempt"]
    assert diversions == 1 and dispatched_at == 60.0
    assert units == [0]  # the SIGNIFICANT call got the car back once the IMMEDIATE was done


def test_same_seed_same_report_byte_for_byte(tmp_path: Path) -> None:
    scenario = small_scenario(tmp_path)
    outs = []
    for run in ("a", "b", "c"):
        seed = "2" if run == "c" else "1"
        out = tmp_path / run
        code = simulate_main(
            ["--scenario", str(scenario), "--seed", seed, "--out", str(out), "--quiet"]
        )
        assert code == 0
        outs.append(out)
    a, b, c = ((o / "report.json").read_bytes() for o in outs)
    assert a == b
    assert (outs[0] / "report.md").read_bytes() == (outs[1] / "report.md").read_bytes()
    assert a != c  # the seed matters: another seed is other demand
    data = json.loads(a)
    assert set(data["policies"]) == set(POLICIES)
    immediate = data["policies"]["closest-idle"]["grades"]["IMMEDIATE"]
    assert 0 < immediate["attended"] <= immediate["calls"]
    assert immediate["late"] == immediate["calls"] - immediate["within_target"]
    assert "engine" in data["against_closest_idle"]


def test_reported_figures_are_those_of_the_run(tmp_path: Path) -> None:
    sc = load_scenario(str(small_scenario(tmp_path, hours=2, units=80)))
    calls = scenario_calls(sc, days=1, seed=3)
    world = World(scenario_fleet(sc), calls, seed=3)
    world.run(EngineGreedy())
    grades = report.grade_outcomes(world)
    immediate = [i for i in world.incidents if i.call.grade == Grade.IMMEDIATE]
    times = [i.first_arrival_s - i.call.t_s for i in immediate if i.first_arrival_s is not None]
    assert grades["IMMEDIATE"]["calls"] == len(immediate)
    assert grades["IMMEDIATE"]["within_target"] == sum(t <= 900 for t in times)
    assert grades["IMMEDIATE"]["mean_response_s"] == pytest.approx(float(np.mean(times)), rel=1e-5)
    # Every unit the world believes busy is busy in the engine too, and the reverse.
    engine_free = set()
    for uid in world.fleet.ids:
        request = pb.GetUnitRequest(unit_id=uid).SerializeToString()
        if (
            pb.GetUnitResponse.FromString(world.core.get_unit(request)).unit.status
            == UnitStatus.AVAILABLE
        ):
            engine_free.add(uid)
    world_free = {world.fleet.ids[u] for u in np.flatnonzero(world.available)}
    assert engine_free == world_free


class RecordingWorld(World):
    """A world that keeps every ranking the engine policy was given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: list[pb.RecommendUnitsResponse] = []

    def recommend(
        self, incident: Any, k: int, *, diversions: bool = False
    ) -> pb.RecommendUnitsResponse:
        answer = super().recommend(incident, k, diversions=diversions)
        self.answers.append(answer)
        return answer


@pytest.mark.parametrize("policy", [EngineGreedy, EnginePreempt])
def test_the_engine_never_ranks_on_a_stale_position(
    tmp_path: Path, policy: type[EngineGreedy]
) -> None:
    # Units stand for hours between jobs and on scene; AVL still reports them, so no
    # candidate carries a stale-position cost and none is left out for want of a report
    # (a unit freed after a long job is offered at once: the waiting-call test above).
    sc = load_scenario(str(small_scenario(tmp_path, hours=2, units=80)))
    world = RecordingWorld(scenario_fleet(sc), scenario_calls(sc, days=1, seed=3), seed=3)
    world.run(policy())
    config: dict[str, Any] = world.core.config()
    trusted = float(config["stale_after_seconds"])
    candidates = [c for a in world.answers for g in a.groups for c in g.candidates]
    assert len(candidates) > 100
    assert max(c.position_age_seconds for c in candidates) <= trusted
    assert all(c.breakdown.stale_position_cost_seconds == 0.0 for c in candidates)
    # Standing units are among them: the check covers more than the units on the move.
    assert any(c.position_age_seconds > world.ping_s for c in candidates)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "time_s,lat,lon,grade,type\n0,51.5,-0.1,IMMEDIATE,x\n",
            ":1: missing column(s) job_minutes",
        ),
        (HEADER + "0,51.5,-0.1,URGENT,x,10\n", ":2: column grade: unknown grade 'URGENT'"),
        (
            HEADER + "0,51.5,-0.1,IMMEDIATE,x,10\n5,95,-0.1,IMMEDIATE,x,10\n",
            ":3: column lat: 95 is out of range",
        ),
        (
            HEADER + "60,51.5,-0.1,IMMEDIATE,x,10\n30,51.5,-0.1,IMMEDIATE,x,10\n",
            ":3: column time_s: 30 is earlier",
        ),
        (HEADER + "0,51.5,,IMMEDIATE,x,10\n", ":2: column lon: missing value"),
        (HEADER + "0,51.5,abc,IMMEDIATE,x,10\n", ":2: column lon: 'abc' is not a number"),
    ],
)
def test_a_bad_call_file_is_refused_by_line_and_column(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "calls.csv"
    path.write_text(text)
    with pytest.raises(DemandError) as err:
        read_calls_csv(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)


def dispatch_core(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatch_core", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_line_refuses_bad_input_before_simulating(tmp_path: Path) -> None:
    bad = tmp_path / "calls.csv"
    bad.write_text(HEADER + "0,51.5,-0.1,URGENT,x,10\n")
    out = tmp_path / "out"
    done = dispatch_core("simulate", "--calls", str(bad), "--out", str(out))
    assert done.returncode == 2 and f"{bad}:2: column grade" in done.stderr
    done = dispatch_core("simulate", "--policies", "closest-idle,psychic", "--out", str(out))
    assert done.returncode == 2 and "psychic" in done.stderr
    done = dispatch_core("simulate", "--scenario", "no-such-place", "--out", str(out))
    assert done.returncode == 2 and "no-such-place" in done.stderr
    assert not out.exists()


def test_a_csv_replay_runs_end_to_end_from_the_command_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rows = [
        f"{t:.0f},{51.45 + 0.1 * rng.random():.5f},{-0.2 + 0.15 * rng.random():.5f},"
        f"{rng.choice(['IMMEDIATE', 'SIGNIFICANT'])},theft_report,{20 + 40 * rng.random():.1f}"
        for t in np.sort(rng.uniform(0, 7200, 150))
    ]
    calls = tmp_path / "day.csv"
    calls.write_text(HEADER + "\n".join(rows) + "\n")
    scenario = small_scenario(tmp_path, units=100)
    out = tmp_path / "out"
    args = ["--scenario", str(scenario), "--calls", str(calls), "--out", str(out), "--quiet"]
    assert simulate_main(args) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["calls"] == 150
    total = sum(g["calls"] for g in data["policies"]["engine"]["grades"].values())
    assert total == 150
    md = (out / "report.md").read_text()
    assert "| IMMEDIATE | within target |" in md
    png = out / "response.png"
    if png.exists():  # matplotlib is the optional `plots` extra
        assert png.read_bytes().startswith(b"\x89PNG")
    assert math.isfinite(data["policies"]["engine"]["utilisation"])
