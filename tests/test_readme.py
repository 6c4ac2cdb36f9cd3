"""The README's worked client example runs, unchanged, against a real server: a plaintext
development one, and a mutual-TLS one with the certificates `dispatch-core certs` makes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dispatch_core.security.certs import write_dev_certs
from tests.conftest import start_server

README = Path(__file__).resolve().parent.parent / "README.md"


def _run_example(tmp_path: Path, extra_args: list[str], env: dict[str, str]) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert code, "the README has no Python example"
    credentials = None
    if "DISPATCH_TLS_CA" in env:
        key, cert = env.get("DISPATCH_TLS_KEY"), env.get("DISPATCH_TLS_CERT")
        credentials = grpc.ssl_channel_credentials(
            Path(env["DISPATCH_TLS_CA"]).read_bytes(),
            Path(key).read_bytes() if key else None,
            Path(cert).read_bytes() if cert else None,
        )
    server = start_server(tmp_path / "server", extra_args=extra_args, credentials=credentials)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code.group(1)],
            env={**os.environ, "DISPATCH_TARGET": server.target, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        assert server.stop() == 0
    assert done.returncode == 0, done.stderr
    # The taser-trained car is the only one that qualifies, so it must be the one sent.
    assert done.stdout.startswith("CW-IRV-1 ETA "), done.stdout
    assert "FAILED_PRECONDITION" not in done.stdout


def test_worked_example_runs(tmp_path: Path) -> None:
    _run_example(tmp_path, [], {})


def test_worked_example_runs_over_mutual_tls(tmp_path: Path) -> None:
    pki = tmp_path / "certs"
    write_dev_certs(pki, ("admin",))
    _run_example(
        tmp_path,
        [
            "--tls-cert",
            str(pki / "server.crt"),
            "--tls-key",
            str(pki / "server.key"),
            "--client-ca",
            str(pki / "ca.crt"),
        ],
        {
            "DISPATCH_TLS_CA": str(pki / "ca.crt"),
            "DISPATCH_TLS_CERT": str(pki / "admin.crt"),
            "DISPATCH_TLS_KEY": str(pki / "admin.key"),
        },
    )


def test_worked_example_runs_with_a_bearer_token(tmp_path: Path) -> None:
    pki = tmp_path / "certs"
    write_dev_certs(pki, ())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
    (tmp_path / "policy.toml").write_text(
        '[roles.admin]\nrpcs = ["*"]\n[principals]\n"console-17" = ["admin"]\n'
    )
    token = jwt.encode(
        {"sub": "console-17", "aud": "dispatch", "exp": int(time.time()) + 600},
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    _run_example(
        tmp_path,
        [
            "--tls-cert",
            str(pki / "server.crt"),
            "--tls-key",
            str(pki / "server.key"),
            "--jwks",
            str(tmp_path / "jwks.json"),
            "--jwt-audience",
            "dispatch",
            "--policy",
            str(tmp_path / "policy.toml"),
        ],
        {"DISPATCH_TLS_CA": str(pki / "ca.crt"), "DISPATCH_TOKEN": token},
    )
