"""Bearer JWTs against a real TLS server: a good token's `sub` is the principal (journaled as
such); a bad signature, another audience, an expired token, `alg: none`, an HMAC token
keyed with the public key and a malformed header are UNAUTHENTICATED, change nothing and
journal nothing."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.certs import issue, make_ca
from dispatch_core.security.client import ClientCredentials
from tests.conftest import ServerProcess, start_server

AUDIENCE = "dispatch-core-test"
KID = "k1"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """The key the server trusts, and another."""
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture(scope="module")
def server(
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, bytes]]:
    work = tmp_path_factory.mktemp("jwt")
    ca = make_ca()
    leaf = issue(ca, "localhost", server=True, dns=("localhost",), ips=("127.0.0.1",))
    leaf.write(work, "server")
    jwk = json.loads(RSAAlgorithm.to_jwk(keys[0].public_key()))
    (work / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": KID, "alg": "RS256"}]}))
    (work / "policy.toml").write_text(
        '[roles.dispatcher]\nrpcs = ["Ping", "CreateIncident", "GetIncident"]\n'
        '[roles.monitor]\nrpcs = ["Ping"]\n'
        '[principals]\n"alice" = ["dispatcher"]\n"bob" = ["monitor"]\n'
    )
    running = start_server(
        work,
        extra_args=[
            "--tls-cert",
            str(work / "server.crt"),
            "--tls-key",
            str(work / "server.key"),
            "--jwks",
            str(work / "jwks.json"),
            "--jwt-audience",
            AUDIENCE,
            "--policy",
            str(work / "policy.toml"),
            "--access-log",
            "errors",
        ],
        credentials=grpc.ssl_channel_credentials(ca.cert_pem),
    )
    yield running, ca.cert_pem
    assert running.stop() == 0, running.log()
    assert "Traceback" not in running.log(), running.log()


def _token(key: object, **claims: object) -> str:
    body = {"sub": "alice", "aud": AUDIENCE, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": KID})  # type: ignore[arg-type]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _create(
    server: tuple[ServerProcess, bytes], authorization: str | None
) -> tuple[grpc.StatusCode, str]:
    process, ca = server
    metadata = [("authorization", authorization)] if authorization is not None else []
    request_id = str(uuid.uuid4())
    with grpc.secure_channel(process.target, grpc.ssl_channel_credentials(ca)) as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        try:
            stub.CreateIncident(
                pb.CreateIncidentRequest(
                    request_id=request_id,
                    grade=pb.GRADE_IMMEDIATE,
                    incident_type="test",
                    location=pb.Location(lat=51.5, lon=-0.12),
                    requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
                ),
                metadata=metadata,
                timeout=10,
            )
        except grpc.RpcError as err:
            return err.code(), request_id
    return grpc.StatusCode.OK, request_id


def _journal(process: ServerProcess) -> list[tuple[str, str]]:
    path = process.log_path.parent / "data" / "journal.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [(a, r) for a, r in db.execute("SELECT actor, request_id FROM journal_entries")]


def test_a_valid_token_is_its_subject(
    server: tuple[ServerProcess, bytes], keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    code, request_id = _create(server, f"Bearer {_token(keys[0])}")
    assert code == grpc.StatusCode.OK
    assert ("jwt:alice", request_id) in _journal(server[0])
    # bob's token is good, but his role may not create incidents.
    code, _ = _create(server, f"Bearer {_token(keys[0], sub='bob')}")
    assert code == grpc.StatusCode.PERMISSION_DENIED


def _bad_tokens(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> dict[str, str | None]:
    public_pem = (
        keys[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"sub": "alice", "aud": AUDIENCE, "exp": int(time.time()) + 600}
    return {
        "no credentials": None,
        "bad signature": f"Bearer {_token(keys[1])}",
        "wrong audience": f"Bearer {_token(keys[0], aud='someone-else')}",
        "expired": f"Bearer {_token(keys[0], exp=int(time.time()) - 3600)}",
        "alg none": f"Bearer {_b64({'alg': 'none', 'kid': KID, 'typ': 'JWT'})}.{_b64(claims)}.",
        "hmac with the public key": f"Bearer {_hmac_token(claims, public_pem)}",
        "not bearer": f"Basic {_token(keys[0])}",
        "garbage": "Bearer not.a.jwt",
    }


def _hmac_token(claims: dict[str, object], secret: bytes) -> str:
    """HS256 keyed with the public key, made by hand: PyJWT rightly refuses to do it."""
    import hashlib  # noqa: PLC0415
    import hmac  # noqa: PLC0415

    signing = f"{_b64({'alg': 'HS256', 'kid': KID, 'typ': 'JWT'})}.{_b64(claims)}"
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_bad_tokens_are_unauthenticated_and_journal_nothing(
    server: tuple[ServerProcess, bytes], keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    before = _journal(server[0])
    wrong = {}
    bad = _bad_tokens(keys)
    for what, header in bad.items():
        code, _ = _create(server, header)
        if code != grpc.StatusCode.UNAUTHENTICATED:
            wrong[what] = code.name
    assert not wrong, wrong
    assert _journal(server[0]) == before
    # Each refusal is logged for the operator (the access log, written within 0.2 s)...
    time.sleep(0.5)
    log = server[0].log()
    assert log.count("CreateIncident UNAUTHENTICATED") >= len(bad), log
    # ...and no token is.
    for header in bad.values():
        signature = header.split(".")[-1] if header else ""
        if len(signature) > 8:
            assert signature not in log


def test_health_needs_no_token(server: tuple[ServerProcess, bytes]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    process, ca = server
    with grpc.secure_channel(process.target, grpc.ssl_channel_credentials(ca)) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_client_credentials_send_the_token(
    server: tuple[ServerProcess, bytes],
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    tmp_path: Path,
) -> None:
    """The channel `demo` opens (`security/client.py`) carries --token as a bearer JWT."""
    process, ca = server
    (tmp_path / "ca.crt").write_bytes(ca)
    good = ClientCredentials(ca=tmp_path / "ca.crt", token=_token(keys[0]))
    with good.channel(process.target) as channel:
        pb_grpc.DispatchServiceStub(channel).Ping(pb.PingRequest(), timeout=10)
    bad = ClientCredentials(ca=tmp_path / "ca.crt", token=_token(keys[1]))
    with bad.channel(process.target) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.DispatchServiceStub(channel).Ping(pb.PingRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
