"""The policy: which roles each principal holds, which RPCs each role may call, and how
fast (README, "Security", has the shipped table).

This module is the one place that decides whether a principal may call a method. The file
is TOML (`default_policy.toml` ships with the package; `--policy FILE` replaces it):

    [roles.dispatcher]
    rpcs = ["Ping", "AssignUnits", ...]     # "*": every dispatch.v1 RPC
    rate = 100                              # token bucket per principal: calls/s ...
    burst = 200                             # ... and at once
    [principals]
    "dev-dispatcher" = ["dispatcher"]
    [revoked]
    serials = ["4F:1A:9C"]                  # client certificates, by serial number (hex)
    principals = ["dev-partner"]            # principals, however they authenticate

A role or RPC the server does not know is refused when the file is loaded, naming the key
and its line: a typo must not silently grant (or withhold) access. A revoked certificate or
principal is refused UNAUTHENTICATED before anything else is looked at; SIGHUP reloads the
file (`reload.py`), so a revocation takes effect without a restart.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb

#: Every role there is. A policy gives each its RPCs; it cannot invent one.
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

_SERVICE = pb.DESCRIPTOR.services_by_name["DispatchService"]
#: The RPCs a policy may name: dispatch.v1's methods by their short name.
RPCS: tuple[str, ...] = tuple(m.name for m in _SERVICE.methods)
SERVICE_PREFIX = f"/{_SERVICE.full_name}/"
#: RPCs "*" does not grant: separation of duties (whoever administers the server does not
#: read the trail of what was done with it). A role gets them only by naming them.
SEPARATE_DUTIES = frozenset({"QueryAudit"})
#: Services any caller may use: health checks carry no data and load balancers probe them.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
#: Services any caller holding a role may use: reflection describes the API, not the data.
ANY_ROLE_PREFIXES = ("/grpc.reflection.",)

#: Token bucket of a role that names none: generous, so forgetting it throttles nobody.
DEFAULT_RATE = 1000.0
DEFAULT_BURST = 2000.0


def is_open(full_method: str) -> bool:
    """Whether `full_method` needs no identity at all (health checks)."""
    return full_method.startswith(OPEN_PREFIXES)


class PolicyError(ValueError):
    """The policy file is unusable: `str()` names the file, key and line."""


@dataclass(frozen=True)
class Role:
    name: str
    rpcs: frozenset[str]
    rate: float = DEFAULT_RATE
    burst: float = DEFAULT_BURST


@dataclass(frozen=True)
class Grant:
    """What one principal (or the plaintext `local` caller) may do."""

    roles: tuple[str, ...]
    #: Full gRPC method names (`/dispatch.v1.DispatchService/AssignUnits`).
    methods: frozenset[str]
    rate: float
    burst: float

    def allows(self, full_method: str) -> bool:
        if full_method in self.methods or full_method.startswith(OPEN_PREFIXES):
            return True
        return bool(self.roles) and full_method.startswith(ANY_ROLE_PREFIXES)


#: No roles: only health checks.
NO_GRANT = Grant((), frozenset(), 0.0, 0.0)


class Policy:
    """Roles and principals, loaded and checked."""

    def __init__(
        self,
        roles: dict[str, Role],
        principals: dict[str, tuple[str, ...]],
        *,
        revoked_serials: frozenset[int] = frozenset(),
        revoked_principals: frozenset[str] = frozenset(),
    ) -> None:
        self.roles = roles
        self.principals = principals
        #: Client certificate serial numbers refused whatever they name.
        self.revoked_serials = revoked_serials
        #: Principals refused however they authenticate.
        self.revoked_principals = revoked_principals
        self._grants = {p: self.grant_roles(r) for p, r in principals.items()}

    def grant(self, principal: str) -> Grant:
        """What `principal` may do: NO_GRANT for one the policy does not name."""
        return self._grants.get(principal, NO_GRANT)

    def grant_roles(self, roles: tuple[str, ...]) -> Grant:
        held = [self.roles[r] for r in roles if r in self.roles]
        methods = frozenset(SERVICE_PREFIX + rpc for role in held for rpc in role.rpcs)
        return Grant(
            tuple(roles),
            methods,
            max((role.rate for role in held), default=0.0),
            max((role.burst for role in held), default=0.0),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> Policy:
        """The policy in `path`, or the shipped one; raises PolicyError naming what is
        wrong and where."""
        if path is None:
            text = (resources.files("dispatch_core.security") / "default_policy.toml").read_text()
            where = "the shipped policy"
        else:
            try:
                text = path.read_text()
            except OSError as exc:
                raise PolicyError(f"policy {path} cannot be read ({exc.strerror})") from None
            where = f"policy {path}"
        return cls.parse(text, where)

    @classmethod
    def parse(cls, text: str, where: str = "policy") -> Policy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{where} is not valid TOML: {exc}") from None

        def fail(key: str, problem: str, needle: str) -> PolicyError:
            return PolicyError(f"{where}, {key} (line {_line_of(text, needle)}): {problem}")

        unknown = sorted(set(data) - {"roles", "principals", "revoked"})
        if unknown:
            raise fail(
                unknown[0],
                "unknown table; expected [roles.*], [principals] and [revoked]",
                unknown[0],
            )
        roles: dict[str, Role] = {}
        for name, spec in data.get("roles", {}).items():
            key = f"roles.{name}"
            if name not in ROLES:
                raise fail(key, f"unknown role {name!r}; roles are {', '.join(ROLES)}", key)
            if not isinstance(spec, dict):
                raise fail(key, "must be a table", key)
            extra = sorted(set(spec) - {"rpcs", "rate", "burst"})
            if extra:
                raise fail(f"{key}.{extra[0]}", "unknown key; expected rpcs, rate, burst", extra[0])
            rpcs = spec.get("rpcs", [])
            if not isinstance(rpcs, list) or not all(isinstance(r, str) for r in rpcs):
                raise fail(f"{key}.rpcs", "must be a list of RPC names", key)
            for i, rpc in enumerate(rpcs):
                if rpc != "*" and rpc not in RPCS:
                    raise fail(
                        f"{key}.rpcs[{i}]",
                        f'unknown RPC {rpc!r}; RPCs are {", ".join(RPCS)} or "*"',
                        f'"{rpc}"',
                    )
            rate = spec.get("rate", DEFAULT_RATE)
            burst = spec.get("burst", DEFAULT_BURST)
            for field, value in (("rate", rate), ("burst", burst)):
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise fail(f"{key}.{field}", "must be a number > 0", field)
            names = frozenset(rpcs) - {"*"}
            if "*" in rpcs:
                names |= frozenset(RPCS) - SEPARATE_DUTIES
            roles[name] = Role(name, names, float(rate), float(burst))
        principals: dict[str, tuple[str, ...]] = {}
        for principal, held in data.get("principals", {}).items():
            key = f"principals.{principal!r}"
            if not isinstance(held, list) or not all(isinstance(r, str) for r in held):
                raise fail(key, "must be a list of role names", principal)
            for role in held:
                if role not in ROLES:
                    raise fail(
                        key, f"unknown role {role!r}; roles are {', '.join(ROLES)}", principal
                    )
            principals[principal] = tuple(held)
        serials, revoked_principals = _revoked(data.get("revoked", {}), fail)
        return cls(
            roles,
            principals,
            revoked_serials=serials,
            revoked_principals=revoked_principals,
        )


def _revoked(
    table: object, fail: Callable[[str, str, str], PolicyError]
) -> tuple[frozenset[int], frozenset[str]]:
    """The [revoked] table: certificate serials (hex, with or without colons or 0x, as
    `openssl x509 -serial` and browsers print them) and principals."""
    if not isinstance(table, dict):
        raise fail("revoked", "must be a table", "[revoked]")
    extra = sorted(set(table) - {"serials", "principals"})
    if extra:
        raise fail(f"revoked.{extra[0]}", "unknown key; expected serials, principals", extra[0])
    lists: dict[str, list[str]] = {}
    for key in ("serials", "principals"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"revoked.{key}", "must be a list of strings", key)
        lists[key] = value
    serials: set[int] = set()
    for i, text in enumerate(lists["serials"]):
        digits = text.strip().lower().removeprefix("0x").replace(":", "")
        try:
            serials.add(int(digits, 16))
        except ValueError:
            raise fail(
                f"revoked.serials[{i}]", f"{text!r} is not a hexadecimal serial number", text
            ) from None
    return frozenset(serials), frozenset(lists["principals"])


def check_role(role: str) -> str:
    """`role` if it is one (for `--local-role`), else ValueError."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def _line_of(text: str, needle: str) -> int:
    """The first line holding `needle` (1-based), or 0: TOML parsers give no positions
    for keys, and the line is what a person fixing the file looks for."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line and not line.lstrip().startswith("#"):
            return number
    return 0
