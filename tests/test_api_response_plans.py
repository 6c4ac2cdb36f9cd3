"""Response plans through the real server: `--response-plans`, CreateIncident without
requirements, ReloadResponsePlans, SIGHUP and GetResponsePlans, restarts, and plan files
that do not validate (at start-up and on reload), each naming file, line and key."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.response_plans import default_path
from dispatch_core.startup import EXIT_USAGE
from tests.durable import Backend, Server, launch, stub

FIREARMS = """
[[plan]]
name = "firearms"
incident_type = "firearms_threat"
[[plan.group]]
agency = "POLICE"
unit_types = ["arv"]
capabilities = ["firearms"]
count = 2
arrive_together = true
[[plan.group]]
agency = "POLICE"
unit_types = ["irv"]
count = 1
"""


def _backend(tmp_path: Path) -> Backend:
    return Backend("sqlite", tmp_path / "data")


def _create(api: object, rid: str, incident_type: str = "firearms_threat") -> pb.Incident:
    request = pb.CreateIncidentRequest(
        request_id=rid,
        grade=pb.GRADE_IMMEDIATE,
        incident_type=incident_type,
        location=pb.Location(lat=51.5, lon=-0.12),
    )
    return api.CreateIncident(request, timeout=10).incident  # type: ignore[attr-defined]


def _groups(incident: pb.Incident) -> list[tuple[int, list[str], int, bool]]:
    return [
        (g.agency, list(g.unit_types), g.count, g.arrive_together) for g in incident.requirements
    ]


def _violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out = []
    for detail in status.details:
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(failure):
            out.extend((v.subject, v.description) for v in failure.violations)
    return out


def _installs(api: object) -> list[str]:
    """The actor of every plan install in the journal, oldest first."""
    actors: list[str] = []
    events = api.WatchEvents(  # type: ignore[attr-defined]
        pb.WatchEventsRequest(from_sequence=0), timeout=2
    )
    try:
        for event in events:
            if event.WhichOneof("change") == "response_plans_replaced":
                actors.append(event.actor)
    except grpc.RpcError as exc:
        # The stream goes on waiting for live events: its deadline ends it.
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    return actors


def test_incidents_take_the_plan_and_a_reload_changes_what_new_ones_get(tmp_path: Path) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text(FIREARMS)
    backend = _backend(tmp_path)
    server = launch(backend, tmp_path, "--response-plans", str(plans))
    try:
        channel, api = stub(server)
        with channel:
            in_force = api.GetResponsePlans(pb.GetResponsePlansRequest(), timeout=10)
            assert [p.name for p in in_force.response_plans.plans] == ["firearms"]
            assert in_force.response_plans.source == str(plans)
            first = _create(api, "c1")
            assert first.response_plan == "firearms"
            assert _groups(first) == [
                (pb.AGENCY_POLICE, ["arv"], 2, True),
                (pb.AGENCY_POLICE, ["irv"], 1, False),
            ]
            # A type no plan covers is refused naming the field, as an empty list always was.
            with pytest.raises(grpc.RpcError) as err:
                _create(api, "c2", "unplanned")
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "requirements" in (err.value.details() or "")

            unchanged = api.ReloadResponsePlans(pb.ReloadResponsePlansRequest(), timeout=30)
            assert not unchanged.changed

            plans.write_text(FIREARMS.replace("count = 2", "count = 3"))
            reloaded = api.ReloadResponsePlans(pb.ReloadResponsePlansRequest(), timeout=30)
            assert reloaded.changed
            assert reloaded.response_plans.plans[0].groups[0].count == 3
            second = _create(api, "c3")
            assert _groups(second)[0] == (pb.AGENCY_POLICE, ["arv"], 3, True)
            # The earlier incident keeps what it was created with.
            again = api.GetIncident(
                pb.GetIncidentRequest(incident_id=first.incident_id), timeout=10
            ).incident
            assert _groups(again)[0][2] == 2

            # A broken file: refused naming file, line and key; the old plans stay.
            plans.write_text(FIREARMS.replace('["firearms"]', '["tazer"]'))
            with pytest.raises(grpc.RpcError) as err:
                api.ReloadResponsePlans(pb.ReloadResponsePlansRequest(), timeout=30)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert _violations(err.value) == [
                (
                    f"response_plans/{plans}:8",
                    'plan[0].group[0].capabilities[0]: "tazer" is not in the capability vocabulary',
                )
            ]
            assert _groups(_create(api, "c4"))[0][2] == 3

            # The reload was journaled with the caller as actor, shown in WatchEvents.
            assert _installs(api) == ["server:response-plans", "unauthenticated:anonymous"]
    finally:
        assert server.stop() == 0

    # The reloaded plans survive a restart, from the snapshot taken at the stop and from
    # the journal alone; the file (still broken) must be fixed first, since start-up
    # checks it.
    plans.write_text(FIREARMS.replace("count = 2", "count = 3"))
    (backend.data_dir / "snapshots.sqlite3").unlink()
    server = launch(backend, tmp_path, "--response-plans", str(plans))
    try:
        channel, api = stub(server)
        with channel:
            assert _groups(_create(api, "c5"))[0][2] == 3
            # Unchanged at start: nothing new journaled for the plans.
            assert len(_installs(api)) == 2
    finally:
        assert server.stop() == 0


RELOADED = "reloaded the response plans"
FAILED = "reload of the response plans failed; the previous one stays"


def _hangup(server: Server, marker: str) -> list[str]:
    """SIGHUP, then wait for one more `marker` line; returns the log lines it added."""
    before = server.log().splitlines()
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while server.log().count(marker) == "\n".join(before).count(marker):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)
    return server.log().splitlines()[len(before) :]


def test_sighup_reloads_the_plan_file_and_a_bad_one_keeps_the_plans_in_force(
    tmp_path: Path,
) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text(FIREARMS)
    backend = _backend(tmp_path)
    server = launch(backend, tmp_path, "--response-plans", str(plans))
    try:
        # The start-up install is the server's own command, no call: the audit trail's
        # reconciliation (run after it) finds no record missing, or it would say so.
        assert "records were missing" not in server.log()
        channel, api = stub(server)
        with channel:
            assert _groups(_create(api, "c1"))[0][2] == 2
            # Unchanged: nothing installed, nothing journaled.
            _hangup(server, RELOADED)
            assert _installs(api) == ["server:response-plans"]

            # Two mistakes: one error line naming the first, file, line and key, and how
            # many more; the plans in force stay and nothing is journaled.
            broken = FIREARMS.replace('["firearms"]', '["tazer"]').replace('["irv"]', '["pump"]')
            plans.write_text(broken)
            added = _hangup(server, FAILED)
            errors = [line for line in added if " ERROR " in line]
            assert len(errors) == 1, added
            assert f"{plans}:8" in errors[0] and "plan[0].group[0].capabilities[0]" in errors[0]
            assert "(and 1 more)" in errors[0]
            assert "Traceback" not in server.log()
            assert _groups(_create(api, "c2"))[0][2] == 2
            assert len(_installs(api)) == 1

            plans.write_text(FIREARMS.replace("count = 2", "count = 3"))
            _hangup(server, RELOADED)
            in_force = api.GetResponsePlans(pb.GetResponsePlansRequest(), timeout=10)
            assert in_force.response_plans.plans[0].groups[0].count == 3
            assert _installs(api) == ["server:response-plans", "server:response-plans"]
    finally:
        assert server.stop() == 0

    # The SIGHUP install was the last command and no call: the restart finds no audit
    # record missing after it, and its plans are in force (from the snapshot of the stop).
    server = launch(backend, tmp_path, "--response-plans", str(plans))
    try:
        assert "records were missing" not in server.log()
        channel, api = stub(server)
        with channel:
            assert _groups(_create(api, "c3"))[0][2] == 3
            assert len(_installs(api)) == 2
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (
            FIREARMS.replace('agency = "POLICE"', 'agency = "POLISE"', 1),
            6,
            "plan[0].group[0].agency",
        ),
        (FIREARMS.replace('["irv"]', '["pump"]'), 13, "plan[0].group[1].unit_types[0]"),
        (FIREARMS.replace("count = 2", "count = 0"), 9, "plan[0].group[0].count"),
        (FIREARMS.replace("count = 2", "count = 51"), 9, "plan[0].group[0].count"),
        (FIREARMS.replace("count = 1", "count = 1\ncount = 2"), 15, ""),
        (FIREARMS + FIREARMS.replace('name = "firearms"', 'name = "other"'), 16, "plan[1]"),
    ],
    ids=["agency", "unit_type", "count_0", "count_51", "duplicate_key", "tie"],
)
def test_a_bad_file_stops_start_up_naming_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text(text)
    server = launch(_backend(tmp_path), tmp_path, "--response-plans", str(plans), wait=False)
    code = server.process.wait(60)
    assert code == EXIT_USAGE, server.log()
    last = server.log().strip().splitlines()[-1]
    assert f"{plans}:{line}: {key}" in last, last
    assert "Traceback" not in server.log()
    # The offline check agrees.
    check = subprocess.run(
        [sys.executable, "-m", "dispatch_core.cli", "plans", "check", str(plans)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == EXIT_USAGE
    assert f"{plans}:{line}: {key}" in check.stderr


def test_an_include_cycle_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('include = ["b.toml"]\n' + FIREARMS)
    (tmp_path / "b.toml").write_text('\ninclude = ["a.toml"]\n')
    server = launch(
        _backend(tmp_path), tmp_path, "--response-plans", str(tmp_path / "a.toml"), wait=False
    )
    assert server.process.wait(60) == EXIT_USAGE
    last = server.log().strip().splitlines()[-1]
    assert f"{tmp_path / 'b.toml'}:2: include:" in last and "include cycle" in last, last


def test_the_shipped_plans_load_and_cover_the_documented_incidents(tmp_path: Path) -> None:
    check = subprocess.run(
        [sys.executable, "-m", "dispatch_core.cli", "plans", "check", str(default_path())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    server = launch(_backend(tmp_path), tmp_path, "--response-plans", str(default_path()))
    try:
        channel, api = stub(server)
        with channel:
            names = {
                p.incident_type
                for p in api.GetResponsePlans(
                    pb.GetResponsePlansRequest(), timeout=10
                ).response_plans.plans
            }
            assert {
                "firearms_threat",
                "rtc_injury",
                "missing_child",
                "burglary",
                "domestic",
                "building_fire",
                "cardiac_arrest",
                "public_order",
            } <= names
            rtc = _create(api, "rtc", "rtc_injury")
            assert {g.agency for g in rtc.requirements} == {
                pb.AGENCY_POLICE,
                pb.AGENCY_AMBULANCE,
                pb.AGENCY_FIRE,
            }
            child = _create(api, "child", "missing_child")
            assert ["dog"] in [list(g.unit_types) for g in child.requirements]
    finally:
        server.stop()
