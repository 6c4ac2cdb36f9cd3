"""Mutual TLS end to end: a real server with certificates made by `dispatch-core certs`,
every role against every RPC over real mTLS connections, refusals that change and journal
nothing, handshakes that TLS itself refuses, and the journal's actor."""

from __future__ import annotations

import datetime as dt
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.certs import Issued, issue, make_ca
from tests.conftest import ServerProcess, start_server

ROLES = (
    "call_taker",
    "dispatcher",
    "supervisor",
    "avl_feed",
    "duty_planner",
    "monitor",
    "partner",
    "auditor",
    "admin",
)
RPCS = (
    "Ping",
    "UpsertUnit",
    "GetUnit",
    "ListUnits",
    "SetUnitStatus",
    "UpdateLocations",
    "StreamLocations",
    "CreateIncident",
    "GetIncident",
    "ListIncidents",
    "ListPending",
    "UpdateIncident",
    "CloseIncident",
    "RecommendUnits",
    "BatchRecommendUnits",
    "AssignUnits",
    "WatchEvents",
    "GetOperatingPicture",
    "WatchOperatingPicture",
    "QueryAudit",
    "UpsertPerson",
    "GetPerson",
    "UpsertShift",
    "BookCrew",
    "GetResponsePlans",
    "ReloadResponsePlans",
)
_DUTY = {"UpsertPerson", "GetPerson", "UpsertShift", "BookCrew"}
_READS = {"Ping", "GetUnit", "ListUnits", "GetIncident", "ListIncidents", "GetOperatingPicture"}
_CALL_TAKER = {
    "Ping",
    "CreateIncident",
    "UpdateIncident",
    "GetIncident",
    "ListIncidents",
    "GetUnit",
    "ListUnits",
    "RecommendUnits",
    "GetResponsePlans",
}
_DISPATCHER = _CALL_TAKER | {
    "ListPending",
    "CloseIncident",
    "SetUnitStatus",
    "BatchRecommendUnits",
    "AssignUnits",
    "GetOperatingPicture",
    "WatchOperatingPicture",
    "WatchEvents",
}
#: The README's policy table, written out independently of the shipped TOML: a change to
#: either must be a deliberate change to both.
ALLOWED: dict[str, set[str]] = {
    "call_taker": _CALL_TAKER,
    "dispatcher": _DISPATCHER,
    "supervisor": _DISPATCHER | {"UpsertUnit", "ReloadResponsePlans"} | _DUTY,
    "avl_feed": {"Ping", "UpdateLocations", "StreamLocations"},
    "duty_planner": _DUTY | {"Ping", "GetUnit", "ListUnits"},
    "monitor": {"Ping", "GetOperatingPicture", "WatchOperatingPicture", "GetUnit", "ListUnits"},
    "partner": set(_READS),
    "auditor": _READS
    | {"ListPending", "WatchEvents", "QueryAudit", "GetPerson", "GetResponsePlans"},
    # "*" is every RPC but the audit trail's: separation of duties.
    "admin": set(RPCS) - {"QueryAudit"},
}
AVL_URI = "spiffe://met.example/avl-gateway"
#: Longer than the access log's flush interval (0.2 s).
ACCESS_LOG_SETTLE_S = 0.5


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The development PKI, made by the real command."""
    out = tmp_path_factory.mktemp("pki")
    done = subprocess.run(
        [sys.executable, "-m", "dispatch_core.cli", "certs", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for stem in ("ca", "server", *ROLES):
        assert (out / f"{stem}.crt").is_file() and (out / f"{stem}.key").is_file()
    return out


def _ca(pki: Path) -> Issued:
    return Issued((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())


def _creds(
    pki: Path, cert: bytes | None = None, key: bytes | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials((pki / "ca.crt").read_bytes(), key, cert)


def _role_creds(pki: Path, role: str) -> grpc.ChannelCredentials:
    return _creds(pki, (pki / f"{role}.crt").read_bytes(), (pki / f"{role}.key").read_bytes())


@pytest.fixture(scope="module")
def secured(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("mtls")
    # The shipped policy plus one principal named by a URI SAN.
    from importlib import resources  # noqa: PLC0415

    shipped = (resources.files("dispatch_core.security") / "default_policy.toml").read_text()
    policy = workdir / "policy.toml"
    policy.write_text(f'{shipped}"{AVL_URI}" = ["avl_feed"]\n')
    server = start_server(
        workdir,
        metrics_port=0,
        extra_args=[
            "--tls-cert",
            str(pki / "server.crt"),
            "--tls-key",
            str(pki / "server.key"),
            "--client-ca",
            str(pki / "ca.crt"),
            "--policy",
            str(policy),
            "--access-log",
            "all",
        ],
        credentials=_role_creds(pki, "admin"),
    )
    yield server
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log(), server.log()


def _stub(pki: Path, server: ServerProcess, role: str) -> pb_grpc.DispatchServiceStub:
    channel = grpc.secure_channel(server.target, _role_creds(pki, role))
    return pb_grpc.DispatchServiceStub(channel)


def _journal(server: ServerProcess) -> list[tuple[str, str, str]]:
    path = server.log_path.parent / "data" / "journal.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT actor, method, request_id FROM journal_entries ORDER BY 1")
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _first(stream: Iterator[object]) -> None:
    for _ in stream:
        return


def _calls(stub: pb_grpc.DispatchServiceStub) -> dict[str, Callable[[], object]]:
    """One harmless call per RPC: an empty command is refused as INVALID_ARGUMENT by a
    role allowed to make it, so the matrix changes no state."""
    return {
        "Ping": lambda: stub.Ping(pb.PingRequest(), timeout=10),
        "UpsertUnit": lambda: stub.UpsertUnit(pb.UpsertUnitRequest(), timeout=10),
        "GetUnit": lambda: stub.GetUnit(pb.GetUnitRequest(unit_id="NOPE"), timeout=10),
        "ListUnits": lambda: stub.ListUnits(pb.ListUnitsRequest(), timeout=10),
        "SetUnitStatus": lambda: stub.SetUnitStatus(pb.SetUnitStatusRequest(), timeout=10),
        "UpdateLocations": lambda: stub.UpdateLocations(pb.UpdateLocationsRequest(), timeout=10),
        "StreamLocations": lambda: stub.StreamLocations(iter([]), timeout=10),
        "CreateIncident": lambda: stub.CreateIncident(pb.CreateIncidentRequest(), timeout=10),
        "GetIncident": lambda: stub.GetIncident(pb.GetIncidentRequest(incident_id="X"), timeout=10),
        "ListIncidents": lambda: stub.ListIncidents(pb.ListIncidentsRequest(), timeout=10),
        "ListPending": lambda: stub.ListPending(pb.ListPendingRequest(), timeout=10),
        "UpdateIncident": lambda: stub.UpdateIncident(pb.UpdateIncidentRequest(), timeout=10),
        "CloseIncident": lambda: stub.CloseIncident(pb.CloseIncidentRequest(), timeout=10),
        "RecommendUnits": lambda: stub.RecommendUnits(pb.RecommendUnitsRequest(), timeout=10),
        "BatchRecommendUnits": lambda: stub.BatchRecommendUnits(
            pb.BatchRecommendUnitsRequest(), timeout=10
        ),
        "AssignUnits": lambda: stub.AssignUnits(pb.AssignUnitsRequest(), timeout=10),
        "UpsertPerson": lambda: stub.UpsertPerson(pb.UpsertPersonRequest(), timeout=10),
        "GetPerson": lambda: stub.GetPerson(pb.GetPersonRequest(person_id="NOPE"), timeout=10),
        "UpsertShift": lambda: stub.UpsertShift(pb.UpsertShiftRequest(), timeout=10),
        "BookCrew": lambda: stub.BookCrew(pb.BookCrewRequest(), timeout=10),
        # Allowed, it waits for an event that never comes: DEADLINE_EXCEEDED.
        "WatchEvents": lambda: _first(
            stub.WatchEvents(pb.WatchEventsRequest(from_now=True), timeout=0.5)
        ),
        "GetOperatingPicture": lambda: stub.GetOperatingPicture(
            pb.GetOperatingPictureRequest(), timeout=30
        ),
        "WatchOperatingPicture": lambda: _first(
            stub.WatchOperatingPicture(pb.WatchOperatingPictureRequest(), timeout=30)
        ),
        "QueryAudit": lambda: stub.QueryAudit(pb.QueryAuditRequest(page_size=1), timeout=30),
        "GetResponsePlans": lambda: stub.GetResponsePlans(pb.GetResponsePlansRequest(), timeout=10),
        # Allowed, it re-reads the unchanged file: nothing is journaled.
        "ReloadResponsePlans": lambda: stub.ReloadResponsePlans(
            pb.ReloadResponsePlansRequest(), timeout=30
        ),
    }


def test_the_matrix_covers_every_rpc_of_the_service() -> None:
    """The matrix below is 100 % of the RPCs: an RPC added to dispatch.proto without its
    row (and its policy entry) fails here."""
    service = pb.DESCRIPTOR.services_by_name["DispatchService"]
    assert set(RPCS) == {method.name for method in service.methods}
    assert all(allowed <= set(RPCS) for allowed in ALLOWED.values())
    assert set(ALLOWED) == set(ROLES)


def test_every_role_against_every_rpc(pki: Path, secured: ServerProcess) -> None:
    before = _journal(secured)
    wrong: list[str] = []
    for role in ROLES:
        calls = _calls(_stub(pki, secured, role))
        assert set(calls) == set(RPCS)
        for rpc in RPCS:
            code = _code(calls[rpc])
            denied = code == grpc.StatusCode.PERMISSION_DENIED
            if denied == (rpc in ALLOWED[role]) or code == grpc.StatusCode.UNAUTHENTICATED:
                wrong.append(f"{role} {rpc}: {code.name}")
    assert not wrong, wrong
    # Every call of the matrix was refused somewhere before state: nothing journaled.
    assert _journal(secured) == before
    # The access log names the certificate's principal and role for each call.
    assert "principal=dev-monitor role=monitor" in secured.log()


def test_denied_commands_change_and_journal_nothing(pki: Path, secured: ServerProcess) -> None:
    before = _journal(secured)
    unit = pb.UnitSpec(unit_id=f"DENY-{uuid.uuid4().hex[:8]}", agency=pb.AGENCY_POLICE)
    for role in ("monitor", "avl_feed", "call_taker", "dispatcher", "auditor", "partner"):
        code = _code(
            lambda r=role: _stub(pki, secured, r).UpsertUnit(
                pb.UpsertUnitRequest(request_id=str(uuid.uuid4()), unit=unit), timeout=10
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED, role
    admin = _stub(pki, secured, "admin")
    assert _code(lambda: admin.GetUnit(pb.GetUnitRequest(unit_id=unit.unit_id))) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _journal(secured) == before


def test_a_principal_outside_the_policy_may_call_nothing(pki: Path, secured: ServerProcess) -> None:
    stranger = issue(_ca(pki), "stranger")
    channel = grpc.secure_channel(secured.target, _creds(pki, stranger.cert_pem, stranger.key_pem))
    stub = pb_grpc.DispatchServiceStub(channel)
    assert _code(lambda: stub.Ping(pb.PingRequest(), timeout=10)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )


def test_uri_san_is_the_principal(pki: Path, secured: ServerProcess) -> None:
    # CN says admin; the URI SAN, which wins, is the AVL gateway's.
    gateway = issue(_ca(pki), "dev-admin", uris=(AVL_URI,))
    channel = grpc.secure_channel(secured.target, _creds(pki, gateway.cert_pem, gateway.key_pem))
    stub = pb_grpc.DispatchServiceStub(channel)
    assert _code(lambda: stub.UpdateLocations(pb.UpdateLocationsRequest(), timeout=10)) == (
        grpc.StatusCode.OK
    )
    assert _code(lambda: stub.ListUnits(pb.ListUnitsRequest(), timeout=10)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )


def test_journal_actor_is_the_certificate_not_the_claim(pki: Path, secured: ServerProcess) -> None:
    stub = _stub(pki, secured, "dispatcher")
    request_id = str(uuid.uuid4())
    stub.CreateIncident(
        pb.CreateIncidentRequest(
            request_id=request_id,
            grade=pb.GRADE_IMMEDIATE,
            incident_type="test",
            location=pb.Location(lat=51.5, lon=-0.12),
            requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
        ),
        metadata=[("x-dispatch-actor", "chief-constable")],
        timeout=10,
    )
    assert ("mtls:dev-dispatcher", "CreateIncident", request_id) in _journal(secured)


def _handshake_refused(server: ServerProcess, creds: grpc.ChannelCredentials) -> None:
    # The access log is written within 0.2 s: let earlier tests' lines land first.
    time.sleep(ACCESS_LOG_SETTLE_S)
    pings = server.log().count("DispatchService/Ping ")
    with grpc.secure_channel(server.target, creds) as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        code = _code(lambda: stub.Ping(pb.PingRequest(), timeout=5))
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), code
    # Refused in the handshake: no RPC ever reached the server's access log.
    time.sleep(ACCESS_LOG_SETTLE_S)
    assert server.log().count("DispatchService/Ping ") == pings


def test_client_without_certificate_is_refused(pki: Path, secured: ServerProcess) -> None:
    _handshake_refused(secured, _creds(pki))


def test_client_certificate_of_another_ca_is_refused(pki: Path, secured: ServerProcess) -> None:
    impostor = issue(make_ca("another CA"), "dev-admin")
    _handshake_refused(secured, _creds(pki, impostor.cert_pem, impostor.key_pem))


@pytest.mark.parametrize("when", ["expired", "not_yet_valid"])
def test_client_certificate_out_of_its_validity_is_refused(
    pki: Path, secured: ServerProcess, when: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    if when == "expired":
        bounds = (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    else:
        bounds = (now + dt.timedelta(days=1), now + dt.timedelta(days=30))
    cert = issue(_ca(pki), "dev-admin", not_before=bounds[0], not_after=bounds[1])
    _handshake_refused(secured, _creds(pki, cert.cert_pem, cert.key_pem))


def test_metrics_over_mutual_tls(pki: Path, secured: ServerProcess) -> None:
    assert secured.metrics_url is not None and secured.metrics_url.startswith("https://")
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "monitor.crt"), str(pki / "monitor.key"))
    with urllib.request.urlopen(secured.metrics_url, context=context, timeout=10) as reply:
        text = reply.read().decode()
    assert "dispatch_insecure_transport 0.0" in text
    assert "dispatch_audit_records_lost 0.0" in text
    anonymous = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with pytest.raises((ssl.SSLError, OSError)):
        urllib.request.urlopen(secured.metrics_url, context=anonymous, timeout=10).read()


def test_demo_over_mutual_tls(pki: Path, secured: ServerProcess) -> None:
    tls = ["--tls-ca", str(pki / "ca.crt"), "--tls-cert", str(pki / "admin.crt")]
    tls += ["--tls-key", str(pki / "admin.key"), "--units", "40"]
    done = subprocess.run(
        [sys.executable, "-m", "dispatch_core.cli", "demo", "--target", secured.target, *tls],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "seeded 40 units" in done.stdout and "closed -> INCIDENT_STATUS_CLOSED" in done.stdout
