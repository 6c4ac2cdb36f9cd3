"""Logs an operator can use: JSON lines or text, both in UTC with the zone; an access log
with the call's method, code, duration, request_id, actor and peer; errors logged with the
same context. A real server over real gRPC.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dispatch_core import logs
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.server import start
from tests.apihelp import WESTMINSTER, group, rid, uid
from tests.opsserver import launch

ALICE = [("x-dispatch-actor", "cad-console-17")]
SERVICE = "dispatch.v1.DispatchService"


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every line, each of which must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _utc(stamp: str) -> datetime.datetime:
    assert stamp.endswith("Z"), stamp
    parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.UTC)
    # UTC, not local time written as if it were: within a minute of the real UTC now.
    assert abs((now - parsed).total_seconds()) < 120, (stamp, now)
    return parsed


def test_json_lines_carry_the_request_id_actor_and_peer_of_each_call(tmp_path: Path) -> None:
    server = launch(tmp_path, "--log-format", "json", "--access-log", "all")
    try:
        unit_id, request_id = uid("LOG"), rid()
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.DispatchServiceStub(channel)
            stub.UpsertUnit(
                pb.UpsertUnitRequest(
                    request_id=request_id,
                    unit=pb.UnitSpec(unit_id=unit_id, agency=pb.AGENCY_POLICE, unit_type="irv"),
                ),
                metadata=ALICE,
            )
            with pytest.raises(grpc.RpcError):
                stub.GetUnit(
                    pb.GetUnitRequest(unit_id=uid("NOPE")), metadata=[("x-request-id", "corr-7")]
                )
            stub.Ping(pb.PingRequest())
    finally:
        assert server.stop() == 0
    lines = _json_lines(server.log())  # every line parses: nothing else is on stderr
    for line in lines:
        _utc(line["time"])
        assert {"level", "logger", "message"} <= line.keys()
    access = [line for line in lines if line["logger"] == "dispatch_core.access"]
    by_method = {line["method"]: line for line in access}
    upsert = by_method[f"{SERVICE}/UpsertUnit"]
    assert upsert["request_id"] == request_id
    assert upsert["actor"] == "cad-console-17"
    assert upsert["code"] == "OK"
    assert upsert["peer"].startswith("ipv4:127.0.0.1:") or upsert["peer"].startswith("ipv6:")
    assert upsert["duration_ms"] > 0
    missing = by_method[f"{SERVICE}/GetUnit"]
    assert (missing["code"], missing["request_id"]) == ("NOT_FOUND", "corr-7")
    assert by_method[f"{SERVICE}/Ping"]["code"] == "OK"
    # Health checks of the launcher are calls too, named the same way.
    assert "grpc.health.v1.Health/Check" in by_method


def test_text_logs_are_utc_with_the_zone_and_the_access_log_can_keep_to_errors(
    tmp_path: Path,
) -> None:
    server = launch(tmp_path, "--access-log", "errors")
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.DispatchServiceStub(channel)
            stub.Ping(pb.PingRequest())
            with pytest.raises(grpc.RpcError):
                stub.GetUnit(pb.GetUnitRequest(unit_id="NOPE-1"), metadata=ALICE)
    finally:
        assert server.stop() == 0
    log = server.log()
    stamps = re.findall(r"^(\S+) (?:INFO|WARNING|ERROR|CRITICAL|DEBUG) ", log, re.MULTILINE)
    assert stamps and len(stamps) == len(log.splitlines()), log
    for stamp in stamps:
        _utc(stamp)
    access = [line for line in log.splitlines() if "dispatch_core.access" in line]
    assert len(access) == 1, log  # the NOT_FOUND only: no OK Ping, no OK health check
    assert f"{SERVICE}/GetUnit NOT_FOUND" in access[0]
    assert "actor=cad-console-17" in access[0]
    assert "code=NOT_FOUND" in access[0]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The process's logging set to JSON into a buffer, as `--log-format json` sets it."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    logs.configure("INFO", "json", stream=buffer)
    yield buffer
    logs.flush()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_an_unhandled_error_is_logged_with_the_calls_context(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    running = start("127.0.0.1", 0, tmp_path / "data", max_workers=2, access_log="errors")
    working = running.pipeline._clock_ms

    def broken() -> int:
        raise OSError(5, "Input/output error")

    request_id = rid()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.DispatchServiceStub(channel)
            running.pipeline._clock_ms = broken
            with pytest.raises(grpc.RpcError) as err:
                stub.CreateIncident(
                    pb.CreateIncidentRequest(
                        request_id=request_id,
                        grade=pb.GRADE_IMMEDIATE,
                        incident_type="test",
                        location=pb.Location(lat=WESTMINSTER[0], lon=WESTMINSTER[1]),
                        requirements=[group()],
                    ),
                    metadata=ALICE,
                )
            running.pipeline._clock_ms = working
            assert err.value.code() == grpc.StatusCode.INTERNAL
    finally:
        running.stop(0)
    logs.flush()
    lines = _json_lines(json_log.getvalue())
    error = next(line for line in lines if line["message"].startswith("unhandled error"))
    assert error["level"] == "ERROR"
    assert error["method"] == f"{SERVICE}/CreateIncident"
    assert error["request_id"] == request_id
    assert error["actor"] == "cad-console-17"
    assert error["peer"]
    assert "Input/output error" in error["exception"]
    access = next(line for line in lines if line["logger"] == "dispatch_core.access")
    assert (access["code"], access["request_id"]) == ("INTERNAL", request_id)
