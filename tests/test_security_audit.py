"""The audit trail over real mutual TLS, on a real SQLite file and the real PostgreSQL: a
scripted session in which every call, refused ones included, appears exactly once with the
right principal, roles, outcome, resources, location count and justification; paging;
QueryAudit for auditors only; and `dispatch-core audit` reading it beside the live server."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.certs import Issued, issue, write_dev_certs
from dispatch_core.security.policy import ROLES
from tests.conftest import ServerProcess, start_server
from tests.durable import PG_DSN

SERVICE = "dispatch.v1.DispatchService/"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    write_dev_certs(out, ROLES)
    return out


def _server(pki: Path, workdir: Path, journal: list[str]) -> ServerProcess:
    admin = grpc.ssl_channel_credentials(
        (pki / "ca.crt").read_bytes(),
        (pki / "admin.key").read_bytes(),
        (pki / "admin.crt").read_bytes(),
    )
    return start_server(
        workdir,
        extra_args=[
            "--tls-cert",
            str(pki / "server.crt"),
            "--tls-key",
            str(pki / "server.key"),
            "--client-ca",
            str(pki / "ca.crt"),
            *journal,
        ],
        credentials=admin,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def secured(
    request: pytest.FixtureRequest, pki: Path, tmp_path: Path
) -> Iterator[tuple[ServerProcess, list[str]]]:
    journal: list[str] = []
    if request.param == "postgres":
        journal = [
            "--journal",
            PG_DSN,
            "--journal-name",
            f"audit_test_{uuid.uuid4().hex[:12]}",
        ]
    server = _server(pki, tmp_path, journal)
    yield server, journal
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log(), server.log()


def _stub(pki: Path, server: ServerProcess, role: str) -> pb_grpc.DispatchServiceStub:
    creds = grpc.ssl_channel_credentials(
        (pki / "ca.crt").read_bytes(),
        (pki / f"{role}.key").read_bytes(),
        (pki / f"{role}.crt").read_bytes(),
    )
    return pb_grpc.DispatchServiceStub(grpc.secure_channel(server.target, creds))


def _code(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as err:
        return str(err.code().name)
    return "OK"


def _all(auditor: pb_grpc.DispatchServiceStub, **filters: object) -> list[pb.AuditRecord]:
    """Every record matching, page by page (3 a page, so paging is exercised)."""
    out: list[pb.AuditRecord] = []
    token = ""
    while True:
        page = auditor.QueryAudit(
            pb.QueryAuditRequest(page_size=3, page_token=token, **filters), timeout=30
        )
        out.extend(page.records)
        token = page.next_page_token
        if not token:
            return out


def test_a_scripted_session_is_audited_completely(
    pki: Path, secured: tuple[ServerProcess, list[str]]
) -> None:
    server, journal = secured
    started = time.time()
    supervisor = _stub(pki, server, "supervisor")
    avl = _stub(pki, server, "avl_feed")
    call_taker = _stub(pki, server, "call_taker")
    monitor = _stub(pki, server, "monitor")
    dispatcher = _stub(pki, server, "dispatcher")
    admin = _stub(pki, server, "admin")
    auditor = _stub(pki, server, "auditor")
    stranger_cert = issue(
        Issued((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes()), "stranger"
    )
    stranger = pb_grpc.DispatchServiceStub(
        grpc.secure_channel(
            server.target,
            grpc.ssl_channel_credentials(
                (pki / "ca.crt").read_bytes(), stranger_cert.key_pem, stranger_cert.cert_pem
            ),
        )
    )
    now_ms = int(started * 1000)
    upsert_id, create_id, assign_id = (str(uuid.uuid4()) for _ in range(3))
    supervisor.UpsertUnit(
        pb.UpsertUnitRequest(
            request_id=upsert_id,
            unit=pb.UnitSpec(unit_id="AU-1", agency=pb.AGENCY_POLICE, unit_type="irv"),
        ),
        timeout=10,
    )
    avl.UpdateLocations(
        pb.UpdateLocationsRequest(
            unit_ids=["AU-1", "AU-X", "AU-Y"],
            lat=[51.5, 51.5, 51.5],
            lon=[-0.12, -0.12, -0.12],
            time_unix_ms=[now_ms] * 3,
        ),
        timeout=10,
    )
    incident_id = call_taker.CreateIncident(
        pb.CreateIncidentRequest(
            request_id=create_id,
            grade=pb.GRADE_IMMEDIATE,
            incident_type="violence",
            location=pb.Location(lat=51.501, lon=-0.121),
            requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
        ),
        timeout=10,
    ).incident.incident_id
    why = "caller rang back asking for an update"
    call_taker.GetIncident(
        pb.GetIncidentRequest(incident_id=incident_id),
        metadata=[("x-dispatch-justification", why)],
        timeout=10,
    )
    denied_read = _code(
        lambda: monitor.GetIncident(pb.GetIncidentRequest(incident_id=incident_id), timeout=10)
    )
    dispatcher.RecommendUnits(pb.RecommendUnitsRequest(incident_id=incident_id), timeout=10)
    dispatcher.AssignUnits(
        pb.AssignUnitsRequest(request_id=assign_id, incident_id=incident_id, unit_ids=["AU-1"]),
        timeout=10,
    )
    denied_audit = _code(lambda: admin.QueryAudit(pb.QueryAuditRequest(), timeout=10))
    denied_ping = _code(lambda: stranger.Ping(pb.PingRequest(), timeout=10))
    assert (denied_read, denied_audit, denied_ping) == ("PERMISSION_DENIED",) * 3

    records = [r for r in _all(auditor) if r.principal != "dev-auditor"]
    seen = [
        (
            r.principal,
            ",".join(r.roles),
            r.method.removeprefix(SERVICE),
            r.code,
            list(r.incident_ids),
            list(r.unit_ids),
            r.location_count,
            r.justification,
        )
        for r in records
        # The admin channel's health checks at start are not recorded; its session is.
    ]
    expected = [
        ("dev-supervisor", "supervisor", "UpsertUnit", "OK", [], ["AU-1"], 0, ""),
        ("dev-avl_feed", "avl_feed", "UpdateLocations", "OK", [], [], 3, ""),
        ("dev-call_taker", "call_taker", "CreateIncident", "OK", [incident_id], [], 0, ""),
        ("dev-call_taker", "call_taker", "GetIncident", "OK", [incident_id], [], 0, why),
        ("dev-monitor", "monitor", "GetIncident", "PERMISSION_DENIED", [incident_id], [], 0, ""),
        ("dev-dispatcher", "dispatcher", "RecommendUnits", "OK", [incident_id], ["AU-1"], 0, ""),
        ("dev-dispatcher", "dispatcher", "AssignUnits", "OK", [incident_id], ["AU-1"], 0, ""),
        ("dev-admin", "admin", "QueryAudit", "PERMISSION_DENIED", [], [], 0, ""),
        ("stranger", "", "Ping", "PERMISSION_DENIED", [], [], 0, ""),
    ]
    assert seen == expected
    ids = [r.id for r in records]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(started - 5 <= r.time.ToSeconds() <= time.time() + 5 for r in records)
    commands = {r.method.removeprefix(SERVICE): r.request_id for r in records}
    assert commands["UpsertUnit"] == upsert_id and commands["AssignUnits"] == assign_id
    assert all(r.peer.startswith("ipv4:127.0.0.1:") for r in records)
    # The auditor's own queries are in the trail too.
    assert any(r.method == SERVICE + "QueryAudit" for r in _all(auditor, principal="dev-auditor"))

    # Filters: by incident, by unit, by principal, by time.
    # (An auditor's query naming the incident or unit is itself a record naming it.)
    by_incident = _all(auditor, incident_id=incident_id)
    assert any(r.principal == "dev-auditor" for r in by_incident)
    assert [
        r.method.removeprefix(SERVICE) for r in by_incident if r.principal != "dev-auditor"
    ] == [
        "CreateIncident",
        "GetIncident",
        "GetIncident",
        "RecommendUnits",
        "AssignUnits",
    ]
    assert len([r for r in _all(auditor, unit_id="AU-1") if r.principal != "dev-auditor"]) == 3
    assert [r.method for r in _all(auditor, principal="dev-monitor")] == [SERVICE + "GetIncident"]
    future = pb.QueryAuditRequest().since
    future.FromSeconds(int(time.time()) + 3600)
    assert _all(auditor, since=future) == []

    # The command line reads the same trail beside the live server.
    where = journal or ["--data-dir", str(server.log_path.parent / "data")]
    done = subprocess.run(
        [sys.executable, "-m", "dispatch_core.cli", "audit", *where, "--incident", incident_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    lines = [line for line in lines if "principal=dev-auditor" not in line]
    assert len(lines) == 5, done.stdout
    assert "principal=dev-monitor" in lines[2] and "PERMISSION_DENIED" in lines[2]
    assert f"justification={why!r}" in lines[1]
