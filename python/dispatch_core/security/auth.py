"""Who is calling: the principal of an RPC, from its client certificate, its bearer JWT or,
on a plaintext loopback server, nobody (`local`).

Order, per call:
1. `authorization: Bearer <JWT>` metadata, when the server has `--jwks`: the token must be
   signed by a key of that set (asymmetric algorithms only, so `alg: none` and HMAC tricks
   with a public key fail), unexpired, for `--jwt-audience`; its `sub` is the principal.
   A token that fails is UNAUTHENTICATED even if a certificate came with it: a front end
   behind a proxy speaks for its user, and a bad user token must not fall back to the
   proxy's own rights.
2. The client certificate, when the server verifies them (`--client-ca`): its URI SAN, or
   its subject CN without one. TLS itself has already refused certificates that are
   expired, not yet valid or from another CA.
3. On a plaintext server (loopback, or `--insecure`) without `--jwks`: `local`, with the
   role `--local-role`. Development only.
Otherwise the call is UNAUTHENTICATED, as is a call whose certificate serial or principal
the policy revokes (`[revoked]`). `replace` swaps the policy and the JWKS while serving
(SIGHUP): calls already past the check finish under the old ones.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography import x509

from dispatch_core.security.identity import LOCAL_PRINCIPAL, Identity
from dispatch_core.security.policy import Grant, Policy

AUTHORIZATION_METADATA = "authorization"
#: Asymmetric algorithms only: a verifier that accepted HS256 could be handed a token
#: "signed" with the public key as the HMAC secret.
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
#: Verified tokens remembered, so a front end's repeated token costs a dict lookup, not a
#: signature check, per call (each stays only until its `exp`).
TOKEN_CACHE = 4096
#: Seconds of clock difference tolerated on `exp`/`nbf`.
JWT_LEEWAY_S = 30


class UnauthenticatedError(Exception):
    """No acceptable identity: `str()` is the status message (never the token)."""


class JwtVerifier:
    """Bearer tokens checked against a JWKS file and one audience."""

    def __init__(self, jwks_path: Path, audience: str) -> None:
        try:
            data = json.loads(jwks_path.read_text())
            keys = jwt.PyJWKSet.from_dict(data).keys
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"JWKS {jwks_path} cannot be used: {exc}") from None
        self._by_kid = {key.key_id: key for key in keys}
        self._audience = audience
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def principal(self, token: str) -> str:
        """The token's `sub`, or UnauthenticatedError saying why."""
        now = time.time()
        with self._lock:
            hit = self._cache.get(token)
        if hit is not None and now < hit[1] + JWT_LEEWAY_S:
            return hit[0]
        try:
            header = jwt.get_unverified_header(token)
            key = self._by_kid.get(header.get("kid"))
            if key is None and len(self._by_kid) == 1 and header.get("kid") is None:
                key = next(iter(self._by_kid.values()))
            if key is None:
                raise UnauthenticatedError("bearer token signed by an unknown key")
            alg = header.get("alg")
            if alg not in JWT_ALGORITHMS:
                raise UnauthenticatedError(f"bearer token algorithm {alg!r} is not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                leeway=JWT_LEEWAY_S,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("bearer token expired") from None
        except jwt.InvalidAudienceError:
            raise UnauthenticatedError("bearer token is for another audience") from None
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(f"bearer token rejected: {exc}") from None
        subject = str(claims["sub"])
        with self._lock:
            self._cache[token] = (subject, float(claims["exp"]))
            while len(self._cache) > TOKEN_CACHE:
                self._cache.popitem(last=False)
        return subject


class Authenticator:
    """Turns a call's transport and metadata into an `Identity` and its `Grant`."""

    def __init__(
        self,
        policy: Policy,
        *,
        client_certs: bool = False,
        jwt_verifier: JwtVerifier | None = None,
        local_role: str | None = None,
    ) -> None:
        self._client_certs = client_certs
        self._local_role = local_role
        # Certificate PEM -> serial number: a connection's calls share a certificate.
        self._serials: dict[bytes, int] = {}
        self.replace(policy, jwt_verifier)

    def replace(self, policy: Policy, jwt_verifier: JwtVerifier | None) -> None:
        """Serves later calls under `policy` and `jwt_verifier` (a reload)."""
        local: tuple[Identity, Grant] | None = None
        if self._local_role is not None:
            grant = policy.grant_roles((self._local_role,))
            local = (Identity(LOCAL_PRINCIPAL, (self._local_role,), "local"), grant)
        # Principal -> identity under this policy: a connection's calls share a certificate.
        # Swapped as a whole with the policy, so no call mixes the old and the new.
        known: dict[tuple[str, str], tuple[Identity, Grant]] = {}
        self._state = (policy, jwt_verifier, local, known)

    @property
    def policy(self) -> Policy:
        return self._state[0]

    def identify(
        self, context: grpc.ServicerContext, metadata: Any = None
    ) -> tuple[Identity, Grant]:
        policy, verifier, local, known = self._state
        if verifier is not None:
            for key, value in (
                metadata if metadata is not None else (context.invocation_metadata() or ())
            ):
                if key == AUTHORIZATION_METADATA and isinstance(value, str):
                    scheme, _, token = value.partition(" ")
                    if scheme.lower() != "bearer" or not token:
                        raise UnauthenticatedError("authorization metadata is not 'Bearer <JWT>'")
                    principal = verifier.principal(token.strip())
                    return _known_as(policy, known, "jwt", principal)
        if self._client_certs:
            auth = context.auth_context()
            names = auth.get("peer_uri") or auth.get("x509_common_name")
            if names:
                if policy.revoked_serials:
                    self._check_serial(policy, auth.get("x509_pem_cert"))
                return _known_as(policy, known, "mtls", names[0].decode("utf-8", "replace"))
        if local is not None:
            return local
        raise UnauthenticatedError(
            "no credentials: present a client certificate or an 'authorization: Bearer' JWT"
        )

    def _check_serial(self, policy: Policy, pems: list[bytes] | None) -> None:
        if not pems:
            raise UnauthenticatedError("client certificate not available to check revocation")
        pem = pems[0]
        serial = self._serials.get(pem)
        if serial is None:
            serial = x509.load_pem_x509_certificate(pem).serial_number
            if len(self._serials) < TOKEN_CACHE:
                self._serials[pem] = serial
        if serial in policy.revoked_serials:
            raise UnauthenticatedError(f"client certificate serial {serial:X} is revoked")


def _known_as(
    policy: Policy, known: dict[tuple[str, str], tuple[Identity, Grant]], via: str, principal: str
) -> tuple[Identity, Grant]:
    """The identity of `principal` under `policy`; UnauthenticatedError when revoked."""
    if principal in policy.revoked_principals:
        raise UnauthenticatedError(f"principal {principal!r} is revoked")
    found = known.get((via, principal))
    if found is None:
        grant = policy.grant(principal)
        found = (Identity(principal, grant.roles, via), grant)
        if len(known) < TOKEN_CACHE:
            known[(via, principal)] = found
    return found
