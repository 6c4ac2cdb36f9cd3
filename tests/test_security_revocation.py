"""Revocation by policy and reload on SIGHUP, through real TLS connections to a real server
process: revoked certificate serials and principals are refused UNAUTHENTICATED with
nothing journaled; SIGHUP re-reads the policy and the JWKS file; a reload that fails keeps
the previous policy and says so in one error line."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.certs import Issued, issue, make_ca
from dispatch_core.security.policy import Policy, PolicyError
from tests.conftest import ServerProcess, start_server

POLICY = (
    '[roles.dispatcher]\nrpcs = ["Ping", "UpsertUnit", "GetUnit"]\n'
    '[roles.admin]\nrpcs = ["*"]\n'
    '[principals]\n"alice" = ["dispatcher"]\n"bob" = ["dispatcher"]\n"carol" = ["dispatcher"]\n'
    '"root" = ["admin"]\n'
)
RELOADED = "reloaded the policy and JWKS"
FAILED = "reload of the policy and JWKS failed; the previous one stays"
AUDIENCE = "revocation-test"


def _hangup(server: ServerProcess, marker: str) -> None:
    """SIGHUP, then wait for one more `marker` line in the log."""
    before = server.log().count(marker)
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while server.log().count(marker) == before:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)


def _serial_text(leaf: Issued) -> str:
    """The serial as `openssl x509 -serial` shows it, with colons between the bytes."""
    serial = x509.load_pem_x509_certificate(leaf.cert_pem).serial_number
    digits = f"{serial:X}"
    digits = digits.zfill(len(digits) + len(digits) % 2)
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def _upsert(stub: pb_grpc.DispatchServiceStub, unit_id: str) -> grpc.StatusCode:
    try:
        stub.UpsertUnit(
            pb.UpsertUnitRequest(
                request_id=str(uuid.uuid4()),
                unit=pb.UnitSpec(unit_id=unit_id, agency=pb.AGENCY_POLICE, unit_type="irv"),
            ),
            timeout=10,
        )
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _exists(stub: pb_grpc.DispatchServiceStub, unit_id: str) -> bool:
    try:
        stub.GetUnit(pb.GetUnitRequest(unit_id=unit_id), timeout=10)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
        return False
    return True


def test_revoked_serials_and_principals_take_effect_on_sighup(tmp_path: Path) -> None:
    ca = make_ca()
    issue(ca, "localhost", server=True, ips=("127.0.0.1",)).write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    leaves = {name: issue(ca, name) for name in ("alice", "bob", "carol", "root")}
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)

    def creds(name: str) -> grpc.ChannelCredentials:
        leaf = leaves[name]
        return grpc.ssl_channel_credentials(ca.cert_pem, leaf.key_pem, leaf.cert_pem)

    server = start_server(
        tmp_path,
        extra_args=[
            "--tls-cert",
            str(tmp_path / "server.crt"),
            "--tls-key",
            str(tmp_path / "server.key"),
            "--client-ca",
            str(tmp_path / "ca.crt"),
            "--policy",
            str(policy),
        ],
        credentials=creds("root"),
    )
    channels = {name: grpc.secure_channel(server.target, creds(name)) for name in leaves}
    try:
        stubs = {name: pb_grpc.DispatchServiceStub(ch) for name, ch in channels.items()}
        for name in ("alice", "bob", "carol"):
            assert _upsert(stubs[name], f"{name}-1") == grpc.StatusCode.OK

        # Revoke alice by principal and bob's certificate by its serial; reload.
        policy.write_text(
            POLICY
            + f'[revoked]\nprincipals = ["alice"]\nserials = ["{_serial_text(leaves["bob"])}"]\n'
        )
        _hangup(server, RELOADED)
        # Their open connections carry on, but every call is refused, and nothing of it
        # reaches the journal.
        for name in ("alice", "bob"):
            assert _upsert(stubs[name], f"{name}-2") == grpc.StatusCode.UNAUTHENTICATED
            assert not _exists(stubs["root"], f"{name}-2")
            with pytest.raises(grpc.RpcError) as refused:
                stubs[name].Ping(pb.PingRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in str(refused.value.details())
        assert _upsert(stubs["carol"], "carol-2") == grpc.StatusCode.OK

        # A broken file: the reload fails in one line naming it, and the revocations stay.
        policy.write_text(POLICY.replace('"carol" = ["dispatcher"]', '"carol" = ["driver"]'))
        _hangup(server, FAILED)
        failures = [line for line in server.log().splitlines() if FAILED in line]
        assert len(failures) == 1 and "unknown role 'driver'" in failures[0], failures
        assert "Traceback" not in server.log()
        assert _upsert(stubs["alice"], "alice-3") == grpc.StatusCode.UNAUTHENTICATED
        assert _upsert(stubs["carol"], "carol-3") == grpc.StatusCode.OK

        # Lifting the revocation works the same way.
        policy.write_text(POLICY)
        _hangup(server, RELOADED)
        assert _upsert(stubs["alice"], "alice-4") == grpc.StatusCode.OK
        assert _upsert(stubs["bob"], "bob-4") == grpc.StatusCode.OK
    finally:
        for channel in channels.values():
            channel.close()
        assert server.stop() == 0, server.log()


def _jwks(key: rsa.RSAPrivateKey) -> str:
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return json.dumps({"keys": [{**jwk, "kid": "k", "alg": "RS256"}]})


def test_sighup_rereads_the_jwks_file(tmp_path: Path) -> None:
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "ab")
    ca = make_ca()
    issue(ca, "localhost", server=True, ips=("127.0.0.1",)).write(tmp_path, "server")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(_jwks(old))
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    server = start_server(
        tmp_path,
        extra_args=[
            "--tls-cert",
            str(tmp_path / "server.crt"),
            "--tls-key",
            str(tmp_path / "server.key"),
            "--jwks",
            str(jwks),
            "--jwt-audience",
            AUDIENCE,
            "--policy",
            str(policy),
        ],
        credentials=grpc.ssl_channel_credentials(ca.cert_pem),
    )

    def ping(key: rsa.RSAPrivateKey) -> grpc.StatusCode:
        body = {"sub": "alice", "aud": AUDIENCE, "exp": int(time.time()) + 600}
        token = jwt.encode(body, key, algorithm="RS256", headers={"kid": "k"})  # type: ignore[arg-type]
        try:
            stub.Ping(pb.PingRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=10)
        except grpc.RpcError as err:
            return err.code()
        return grpc.StatusCode.OK

    channel = grpc.secure_channel(server.target, grpc.ssl_channel_credentials(ca.cert_pem))
    stub = pb_grpc.DispatchServiceStub(channel)
    try:
        assert (ping(old), ping(new)) == (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED)
        # The signing key is rolled: the new set replaces the old.
        jwks.write_text(_jwks(new))
        _hangup(server, RELOADED)
        assert (ping(old), ping(new)) == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK)
        # A JWKS file that cannot be read keeps the keys in force.
        jwks.write_text("{not json")
        _hangup(server, FAILED)
        assert ping(new) == grpc.StatusCode.OK
    finally:
        channel.close()
        assert server.stop() == 0, server.log()


def test_policy_revocations_are_checked_when_loaded() -> None:
    policy = Policy.parse(
        '[revoked]\nserials = ["0x1A2B", "01:FF", "abc"]\nprincipals = ["mallory"]\n'
    )
    assert policy.revoked_serials == {0x1A2B, 0x01FF, 0xABC}
    assert policy.revoked_principals == {"mallory"}
    with pytest.raises(PolicyError, match=r"revoked.serials\[1\] \(line 3\).*'zz'"):
        Policy.parse('[revoked]\nserials = ["1A",\n  "zz"]\n')
    with pytest.raises(PolicyError, match=r"revoked.certs"):
        Policy.parse('[revoked]\ncerts = ["1A"]\n')
