"""The identity of the caller of the RPC running on this thread.

Kept apart from `auth.py` so the servicer can read it (for the journal's actor) without
importing the authentication machinery, and the interceptor can set it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

#: The principal of every caller of a plaintext loopback server (development only).
LOCAL_PRINCIPAL = "local"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated (or, on a plaintext loopback server, assumed) caller."""

    #: The principal: a client certificate's URI SAN or CN, a JWT's `sub`, or `local`.
    principal: str
    #: The roles the policy gives it, in the policy's order.
    roles: tuple[str, ...]
    #: How it was established: "mtls", "jwt" or "local" (nothing proved).
    via: str

    @property
    def authenticated(self) -> bool:
        return self.via != "local"

    @property
    def actor(self) -> str:
        """The journal's actor for a proved identity: the proof's kind and the principal,
        so no certificate's CN can pass for another kind of name."""
        return f"{self.via}:{self.principal}"

    @property
    def role(self) -> str:
        """The roles as one audit/log field."""
        return ",".join(self.roles)


#: The identity of the call whose handler runs on this thread (None outside an RPC or
#: on a server without authentication, the in-process tests').
current_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "dispatch_identity", default=None
)
