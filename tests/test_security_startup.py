"""Safe defaults at start-up: plaintext only on loopback unless --insecure (loud, and a
metric), TLS flags that authenticate somebody, policy files checked before serving, and
the plaintext loopback server's `local` caller with its `--local-role`."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.policy import Policy, PolicyError
from tests.conftest import start_server


def _serve(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dispatch_core.cli",
            "serve",
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--data-dir",
            str(tmp_path / "data"),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_plaintext_on_a_public_address_refuses_to_start(tmp_path: Path) -> None:
    line = _one_line(_serve(tmp_path, "--host", "0.0.0.0"))
    assert "refusing to serve plaintext on 0.0.0.0" in line and "--insecure" in line
    # Refused before anything was opened: no journal was created.
    assert not (tmp_path / "data").exists()


def test_tls_must_authenticate_somebody(tmp_path: Path) -> None:
    from dispatch_core.security.certs import issue, make_ca  # noqa: PLC0415

    leaf = issue(make_ca(), "localhost", server=True, dns=("localhost",))
    leaf.write(tmp_path, "server")
    cert, key = str(tmp_path / "server.crt"), str(tmp_path / "server.key")
    line = _one_line(_serve(tmp_path, "--tls-cert", cert, "--tls-key", key))
    assert "--client-ca or --jwks" in line
    assert "go together" in _one_line(_serve(tmp_path, "--tls-cert", cert))
    assert "needs TLS" in _one_line(_serve(tmp_path, "--client-ca", cert))
    line = _one_line(_serve(tmp_path, "--tls-cert", key, "--tls-key", key, "--client-ca", cert))
    assert "no PEM certificate" in line


def test_a_policy_with_an_unknown_role_or_rpc_refuses_to_start(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[roles.monitor]\nrpcs = ["Ping"]\n\n[roles.chief]\nrpcs = ["Ping"]\n')
    line = _one_line(_serve(tmp_path, "--policy", str(policy)))
    assert "roles.chief (line 4)" in line and "unknown role 'chief'" in line
    policy.write_text('[roles.monitor]\nrpcs = ["Ping",\n  "DeleteEverything"]\n')
    line = _one_line(_serve(tmp_path, "--policy", str(policy)))
    assert "roles.monitor.rpcs[1] (line 3)" in line and "'DeleteEverything'" in line
    policy.write_text('[principals]\n"alice" = ["dispatcher"]\n"bob" = ["wizard"]\n')
    line = _one_line(_serve(tmp_path, "--policy", str(policy)))
    assert "principals.'bob' (line 3)" in line and "unknown role 'wizard'" in line


def test_the_shipped_policy_loads_and_every_role_has_rpcs() -> None:
    policy = Policy.load()
    for role in ("call_taker", "dispatcher", "supervisor", "avl_feed", "monitor"):
        assert policy.roles[role].rpcs, role
    assert policy.grant("dev-admin").allows("/dispatch.v1.DispatchService/UpsertUnit")
    assert not policy.grant("nobody").allows("/dispatch.v1.DispatchService/Ping")
    with pytest.raises(PolicyError, match="rate"):
        Policy.parse('[roles.monitor]\nrpcs = ["Ping"]\nrate = -1\n')


def test_insecure_on_a_public_address_is_loud_and_a_metric(tmp_path: Path) -> None:
    server = start_server(tmp_path, metrics_port=0, extra_args=["--host", "0.0.0.0", "--insecure"])
    try:
        assert "INSECURE: serving plaintext on 0.0.0.0" in server.log()
        assert server.metrics_url is not None
        url = server.metrics_url.replace("0.0.0.0", "127.0.0.1")
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert "dispatch_insecure_transport 1.0" in reply.read().decode()
    finally:
        assert server.stop() == 0


def test_local_callers_get_the_local_role(tmp_path: Path) -> None:
    server = start_server(tmp_path, extra_args=["--local-role", "monitor"])
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.DispatchServiceStub(channel)
            stub.ListUnits(pb.ListUnitsRequest(), timeout=10)
            with pytest.raises(grpc.RpcError) as refused:
                stub.UpsertUnit(pb.UpsertUnitRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "local (roles: monitor)" in str(refused.value.details())
    finally:
        assert server.stop() == 0
    line = _one_line(_serve(tmp_path, "--local-role", "chief"))
    assert "--local-role" in line
