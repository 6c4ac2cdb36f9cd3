"""Transport security: how the server is reached, checked before it starts.

The rule (README, "Security"):
* `--tls-cert`/`--tls-key`: TLS. With `--client-ca`, mutual TLS: a client without a
  certificate signed by that CA is refused in the handshake. A TLS server must
  authenticate its callers somehow, so it needs `--client-ca` or `--jwks` or both.
* No TLS: the server listens on loopback only. Any other address is refused at start
  (one line, exit 2) unless `--insecure` is given, which is logged loudly and exported as
  `dispatch_insecure_transport 1`. On a plaintext server without `--jwks` every caller is
  the principal `local` with the role `--local-role` (development only).
* /metrics follows the same rule: over TLS with the same certificate (and client CA) when
  the server has TLS, else plaintext, which needs loopback or `--insecure`.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dispatch_core.security.auth import Authenticator, JwtVerifier
from dispatch_core.security.policy import Policy, PolicyError, check_role
from dispatch_core.startup import EXIT_USAGE, StartupError

#: The role of `local` on a plaintext loopback server unless `--local-role` says otherwise.
DEFAULT_LOCAL_ROLE = "admin"


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(bare, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


@dataclass(frozen=True)
class SecurityConfig:
    """The serve flags of transport security and authentication."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    insecure: bool = False
    jwks: Path | None = None
    jwt_audience: str | None = None
    local_role: str = DEFAULT_LOCAL_ROLE
    policy: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def insecure_transport(self, host: str) -> bool:
        """Plaintext where others than this machine can reach it (`--insecure`)."""
        return not self.tls and not is_loopback(host)

    def check(self, host: str) -> None:
        """Every start-up mistake of these flags, as a StartupError (exit 2)."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise StartupError(
                EXIT_USAGE, "--tls-cert and --tls-key go together", "give both or neither"
            )
        if self.client_ca is not None and not self.tls:
            raise StartupError(
                EXIT_USAGE,
                "--client-ca needs TLS",
                "give --tls-cert and --tls-key too (client certificates are checked in TLS)",
            )
        if (self.jwks is None) != (self.jwt_audience is None):
            raise StartupError(
                EXIT_USAGE, "--jwks and --jwt-audience go together", "give both or neither"
            )
        if self.tls and self.client_ca is None and self.jwks is None:
            raise StartupError(
                EXIT_USAGE,
                "TLS without --client-ca or --jwks would authenticate no caller",
                "give --client-ca (mutual TLS) or --jwks with --jwt-audience (bearer tokens)",
            )
        if not self.tls and not self.insecure and not is_loopback(host):
            raise StartupError(
                EXIT_USAGE,
                f"refusing to serve plaintext on {host}, which is not loopback",
                "give --tls-cert/--tls-key (and --client-ca), listen on 127.0.0.1, or pass"
                " --insecure to accept unencrypted, unauthenticated traffic",
            )
        try:
            check_role(self.local_role)
        except ValueError as exc:
            raise StartupError(EXIT_USAGE, f"--local-role: {exc}", "name a role") from None
        for flag, path in (
            ("--tls-cert", self.tls_cert),
            ("--client-ca", self.client_ca),
        ):
            if path is not None:
                _check_certificate(flag, path)
        if self.tls_key is not None:
            _check_key(self.tls_key)
        self.load_policy()

    def load_policy(self) -> Policy:
        try:
            return Policy.load(self.policy)
        except PolicyError as exc:
            raise StartupError(EXIT_USAGE, str(exc), "fix the policy file (--policy)") from None

    def authenticator(self) -> Authenticator:
        try:
            verifier = self._jwt_verifier()
        except ValueError as exc:
            raise StartupError(EXIT_USAGE, str(exc), "fix --jwks") from None
        return Authenticator(
            self.load_policy(),
            client_certs=self.client_ca is not None,
            jwt_verifier=verifier,
            # `local` only where nothing can be proved: plaintext and no bearer tokens.
            local_role=self.local_role if not self.tls and verifier is None else None,
        )

    def reload(self, authenticator: Authenticator) -> None:
        """Re-reads the policy file and the JWKS file into `authenticator` (SIGHUP): both
        or, when either fails (PolicyError, ValueError naming the file), neither."""
        policy = Policy.load(self.policy)
        authenticator.replace(policy, self._jwt_verifier())

    def _jwt_verifier(self) -> JwtVerifier | None:
        if self.jwks is None or self.jwt_audience is None:
            return None
        return JwtVerifier(self.jwks, self.jwt_audience)

    def server_credentials(self) -> grpc.ServerCredentials:
        assert self.tls_cert is not None and self.tls_key is not None
        root = self.client_ca.read_bytes() if self.client_ca is not None else None
        return grpc.ssl_server_credentials(
            [(self.tls_key.read_bytes(), self.tls_cert.read_bytes())],
            root_certificates=root,
            require_client_auth=root is not None,
        )


def _check_certificate(flag: str, path: Path) -> None:
    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise StartupError(
            EXIT_USAGE, f"{flag} {path} cannot be read ({exc.strerror})", f"fix {flag}"
        ) from None
    except ValueError:
        raise StartupError(
            EXIT_USAGE, f"{flag} {path} holds no PEM certificate", f"fix {flag}"
        ) from None


def _check_key(path: Path) -> None:
    try:
        serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise StartupError(
            EXIT_USAGE, f"--tls-key {path} cannot be read ({exc.strerror})", "fix --tls-key"
        ) from None
    except (ValueError, TypeError):
        raise StartupError(
            EXIT_USAGE,
            f"--tls-key {path} holds no unencrypted PEM private key",
            "fix --tls-key",
        ) from None
