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
Otherwise the call is UNAUTHENTICATED.
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
        self.policy = policy
        self._client_certs = client_certs
        self._jwt = jwt_verifier
        self._local: tuple[Identity, Grant] | None = None
        if local_role is not None:
            grant = policy.grant_roles((local_role,))
            self._local = (Identity(LOCAL_PRINCIPAL, (local_role,), "local"), grant)
        # Certificate principal -> identity: a connection's calls share a certificate.
        self._known: dict[tuple[str, str], tuple[Identity, Grant]] = {}

    def identify(
        self, context: grpc.ServicerContext, metadata: Any = None
    ) -> tuple[Identity, Grant]:
        if self._jwt is not None:
            for key, value in (
                metadata if metadata is not None else (context.invocation_metadata() or ())
            ):
                if key == AUTHORIZATION_METADATA and isinstance(value, str):
                    scheme, _, token = value.partition(" ")
                    if scheme.lower() != "bearer" or not token:
                        raise UnauthenticatedError("authorization metadata is not 'Bearer <JWT>'")
                    return self._known_as("jwt", self._jwt.principal(token.strip()))
        if self._client_certs:
            auth = context.auth_context()
            names = auth.get("peer_uri") or auth.get("x509_common_name")
            if names:
                return self._known_as("mtls", names[0].decode("utf-8", "replace"))
        if self._local is not None:
            return self._local
        raise UnauthenticatedError(
            "no credentials: present a client certificate or an 'authorization: Bearer' JWT"
        )

    def _known_as(self, via: str, principal: str) -> tuple[Identity, Grant]:
        found = self._known.get((via, principal))
        if found is None:
            grant = self.policy.grant(principal)
            found = (Identity(principal, grant.roles, via), grant)
            if len(self._known) < TOKEN_CACHE:
                self._known[(via, principal)] = found
        return found
