"""`dispatch-core`: the command line.

dispatch-core serve [--host H] [--port P] [--data-dir D] [--metrics-port M]
    [--journal sqlite|memory|postgresql://...] [--synchronous FULL|NORMAL|OFF]
dispatch-core replay [--data-dir D] [--journal ...] [--after N]
dispatch-core demo [--target HOST:PORT] [--tls-ca F --tls-cert F --tls-key F | --token T]
dispatch-core certs --out DIR
dispatch-core audit [--data-dir D] [--journal ...] [--principal P] [--incident I] [--since T]
dispatch-core loadtest [--scenario NAME] [--duration S] [--scale F] [--target HOST:PORT] ...
dispatch-core simulate [--scenario NAME] [--seed N] [--days N] [--policies P,Q] [--calls F.csv] ...
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from dispatch_core import logs
from dispatch_core._core import (
    DEFAULT_CLOSED_RETENTION_COUNT,
    DEFAULT_CLOSED_RETENTION_MS,
    DEFAULT_MAX_FUTURE_SKEW_MS,
    DEFAULT_REQUEST_CAPACITY,
    __version__,
)
from dispatch_core.autodispatch import parse_grades
from dispatch_core.durability.recovery import JournalConfig, RecoveryError
from dispatch_core.durability.snapshotter import (
    DEFAULT_SNAPSHOT_EVERY,
    DEFAULT_SNAPSHOT_INTERVAL_S,
)
from dispatch_core.security.audit import DEFAULT_INTERVAL_S, DEFAULT_RETENTION_DAYS, AuditSettings
from dispatch_core.security.client import ClientCredentials
from dispatch_core.security.tls import DEFAULT_LOCAL_ROLE, SecurityConfig
from dispatch_core.server import (
    DEFAULT_SHUTDOWN_DELAY_S,
    DEFAULT_TICK_INTERVAL_S,
    CoreConfig,
    PortInUseError,
    serve,
)
from dispatch_core.service.interceptor import ACCESS_LOG_MODES
from dispatch_core.startup import EXIT_USAGE, StartupError, check_journal_spec
from dispatch_core.synthetic.demo import run_demo
from dispatch_core.types import Grade
from dispatch_core.views.events import DEFAULT_BUFFER
from dispatch_core.views.metrics import DEFAULT_METRICS_PORT

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = "./data"

T = TypeVar("T")


def _non_negative(text: str) -> float:
    """An argparse type: a number >= 0, refused with a one-line message otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _audit_days(text: str) -> float:
    """An argparse type: audit retention in days, at least one (a shorter trail could not
    answer for yesterday) and at most 100 years."""
    value = _non_negative(text)
    if not 1 <= value <= 36_500:
        raise argparse.ArgumentTypeError(f"{text!r} days must be within [1, 36500]")
    return value


def _audit_interval(text: str) -> float:
    """An argparse type: seconds between audit group commits, within [0.01, 60]."""
    value = _non_negative(text)
    if not 0.01 <= value <= 60:
        raise argparse.ArgumentTypeError(f"{text!r} seconds must be within [0.01, 60]")
    return value


def _count(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


_GRADES = ("IMMEDIATE", "SIGNIFICANT", "EXTENDED", "REFERRED")
_NO_ACK_TIMEOUTS: tuple[tuple[str, int], ...] = ()
_PREEMPTIBLE_BY_DEFAULT: tuple[str, ...] = ("SIGNIFICANT", "EXTENDED", "REFERRED")


def _grade_names(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated grade names (empty for none)."""
    names = tuple(n.strip().upper() for n in text.split(",") if n.strip())
    for name in names:
        if name not in _GRADES:
            raise argparse.ArgumentTypeError(f"{name!r} is not a grade ({', '.join(_GRADES)})")
    return names


def _ack_timeouts(text: str) -> tuple[tuple[str, int], ...]:
    """An argparse type: GRADE=SECONDS pairs, comma-separated, as (grade, ms) pairs."""
    out: list[tuple[str, int]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        grade, sep, seconds = part.partition("=")
        (name,) = _grade_names(grade) or ("",)
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{part!r} is not GRADE=SECONDS")
        value = _non_negative(seconds)
        if not 0 < value <= 86_400:
            raise argparse.ArgumentTypeError(f"{part!r}: seconds must be in (0, 86400]")
        out.append((name, round(value * 1000)))
    return tuple(out)


def _flag(text: str) -> bool:
    """An environment flag: 1/true/yes or 0/false/no."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no", ""):
        return False
    raise argparse.ArgumentTypeError("must be 1/true/yes or 0/false/no")


def _env_port(name: str = "DISPATCH_PORT", default: int = DEFAULT_PORT) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StartupError(
            EXIT_USAGE, f"{name}={raw!r} is not a port number", f"set {name} to a number"
        ) from None


def _env(name: str, convert: Callable[[str], T], default: T) -> T:
    """The environment's default for a flag, checked now: a bad value is one line naming
    the variable (a StartupError, exit 2), not a traceback."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return convert(raw)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        reason = str(exc) if isinstance(exc, argparse.ArgumentTypeError) else "not a number"
        raise StartupError(
            EXIT_USAGE, f"{name}={raw!r}: {reason}", f"fix or unset {name}"
        ) from None


def _auto_dispatch_grades(text: str) -> frozenset[Grade]:
    try:
        return parse_grades(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--auto-dispatch: ")) from None


def _choice(*choices: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}")
        return text

    return check


def _add_logging_args(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--log-level and --log-format, on the main parser (with defaults) and again on each
    subcommand (without: a value given after the subcommand wins, an absent one leaves
    the main parser's)."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    parser.add_argument(
        "--log-level",
        default=default(_env("DISPATCH_LOG_LEVEL", lambda t: _choice(*levels)(t.upper()), "INFO")),
        type=str.upper,
        choices=levels,
        help="logging level (env DISPATCH_LOG_LEVEL; default INFO)",
    )
    parser.add_argument(
        "--log-format",
        default=default(_env("DISPATCH_LOG_FORMAT", _choice(*logs.FORMATS), "text")),
        choices=logs.FORMATS,
        help="json: one JSON object per line; text: for people; both in UTC "
        "(env DISPATCH_LOG_FORMAT; default text)",
    )


def _add_journal_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DISPATCH_DATA_DIR", DEFAULT_DATA_DIR)),
        help="directory for durable state, created if missing "
        f"(env DISPATCH_DATA_DIR; default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--journal",
        default=os.environ.get("DISPATCH_JOURNAL", "sqlite"),
        help="where commands are journaled: 'sqlite' (a file under --data-dir), a "
        "postgresql:// DSN, or 'memory' (no durability: tests and benchmarks only) "
        "(env DISPATCH_JOURNAL; default sqlite)",
    )
    parser.add_argument(
        "--journal-name",
        default=os.environ.get("DISPATCH_JOURNAL_NAME", "dispatch_journal"),
        help="PostgreSQL schema of the journal's tables (env DISPATCH_JOURNAL_NAME; "
        "default dispatch_journal)",
    )
    parser.add_argument(
        "--synchronous",
        default=os.environ.get("DISPATCH_SYNCHRONOUS", "FULL"),
        type=str.upper,
        choices=("FULL", "NORMAL", "OFF"),
        help="sync policy: FULL survives power loss; NORMAL survives a process crash only "
        "(SQLite); OFF is for baselines (env DISPATCH_SYNCHRONOUS; default FULL)",
    )


def _add_security_args(serve: argparse.ArgumentParser) -> None:
    """The serve flags of transport security and authentication (README, "Security")."""

    def path(name: str) -> Path | None:
        raw = os.environ.get(name)
        return Path(raw) if raw else None

    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=path("DISPATCH_TLS_CERT"),
        help="server certificate (PEM, chain allowed) for TLS on gRPC and /metrics "
        "(env DISPATCH_TLS_CERT)",
    )
    serve.add_argument(
        "--tls-key", type=Path, default=path("DISPATCH_TLS_KEY"), help="its private key (PEM)"
    )
    serve.add_argument(
        "--client-ca",
        type=Path,
        default=path("DISPATCH_CLIENT_CA"),
        help="mutual TLS: clients must present a certificate signed by this CA; the "
        "principal is its URI SAN or CN (env DISPATCH_CLIENT_CA)",
    )
    serve.add_argument(
        "--jwks",
        type=Path,
        default=path("DISPATCH_JWKS"),
        help="JWKS file: accept 'authorization: Bearer <JWT>' signed by its keys; the "
        "principal is the token's sub (env DISPATCH_JWKS)",
    )
    serve.add_argument(
        "--jwt-audience",
        default=os.environ.get("DISPATCH_JWT_AUDIENCE"),
        help="the aud bearer tokens must carry (env DISPATCH_JWT_AUDIENCE)",
    )
    serve.add_argument(
        "--policy",
        type=Path,
        default=path("DISPATCH_POLICY"),
        help="TOML policy: principals to roles, roles to RPCs and rate limits (env "
        "DISPATCH_POLICY; default: the shipped policy, README 'Security')",
    )
    serve.add_argument(
        "--local-role",
        default=os.environ.get("DISPATCH_LOCAL_ROLE", DEFAULT_LOCAL_ROLE),
        help="development only: the role of every caller of a plaintext server without "
        f"--jwks, all named 'local' (env DISPATCH_LOCAL_ROLE; default {DEFAULT_LOCAL_ROLE})",
    )
    serve.add_argument(
        "--audit-trail",
        default="on",
        choices=("on", "off"),
        help="record every RPC in the audit table beside the journal (default on; off is for "
        "benchmarks measuring what it costs)",
    )
    serve.add_argument(
        "--audit-retention-days",
        type=_audit_days,
        default=_env("DISPATCH_AUDIT_RETENTION_DAYS", _audit_days, DEFAULT_RETENTION_DAYS),
        help="days an audit record is kept; older ones are removed in the background, hourly "
        f"(env DISPATCH_AUDIT_RETENTION_DAYS; default {DEFAULT_RETENTION_DAYS:g}: a year of "
        "access logs plus the time a complaint about them takes to arrive)",
    )
    serve.add_argument(
        "--audit-interval",
        type=_audit_interval,
        default=_env("DISPATCH_AUDIT_INTERVAL", _audit_interval, DEFAULT_INTERVAL_S),
        help="seconds between group commits of the audit trail: the records of reads a crash "
        "may lose (commands' are rebuilt from the journal at the next start) (env "
        f"DISPATCH_AUDIT_INTERVAL; default {DEFAULT_INTERVAL_S:g})",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=os.environ.get("DISPATCH_INSECURE", "") == "1",
        help="allow plaintext on a non-loopback --host: unencrypted and, without --jwks, "
        "unauthenticated; logged loudly and exported as dispatch_insecure_transport 1",
    )


def add_client_tls_args(parser: argparse.ArgumentParser) -> None:
    """A client's credentials for a secured server (demo; the load test has its own)."""
    parser.add_argument("--tls-ca", type=Path, help="CA that signed the server's certificate")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="its private key")
    parser.add_argument(
        "--token",
        default=os.environ.get("DISPATCH_TOKEN"),
        help="bearer JWT sent as 'authorization: Bearer ...' (env DISPATCH_TOKEN)",
    )


def _security_config(args: argparse.Namespace) -> SecurityConfig:
    return SecurityConfig(
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        insecure=args.insecure,
        jwks=args.jwks,
        jwt_audience=args.jwt_audience,
        local_role=args.local_role,
        policy=args.policy,
    )


def _journal_config(args: argparse.Namespace) -> JournalConfig:
    return JournalConfig(
        spec=args.journal,
        data_dir=args.data_dir,
        synchronous=args.synchronous,
        name=args.journal_name,
        snapshot_every=getattr(args, "snapshot_every", DEFAULT_SNAPSHOT_EVERY),
        snapshot_interval_s=getattr(args, "snapshot_interval", DEFAULT_SNAPSHOT_INTERVAL_S),
        watch_buffer=getattr(args, "watch_buffer", DEFAULT_BUFFER),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatch-core", description="Police dispatch engine: gRPC service (dispatch.v1)."
    )
    parser.add_argument("--version", action="version", version=f"dispatch-core {__version__}")
    _add_logging_args(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the gRPC server",
        description="Run the gRPC server until SIGTERM or SIGINT, then drain and exit 0. "
        "Exit codes: 2 usage error or port taken, 3 another writer holds the journal, 4 the "
        "journal failed while serving, 5 data directory unusable, 6 journal unreachable, "
        "7 journal corrupt or of an unknown version.",
    )
    _add_logging_args(serve, defaults=False)
    serve.add_argument(
        "--host",
        default=os.environ.get("DISPATCH_HOST", DEFAULT_HOST),
        help=f"interface to listen on (env DISPATCH_HOST; default {DEFAULT_HOST})",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"TCP port; 0 picks a free one (env DISPATCH_PORT; default {DEFAULT_PORT})",
    )
    _add_journal_args(serve)
    serve.add_argument(
        "--snapshot-every",
        type=int,
        default=_env("DISPATCH_SNAPSHOT_EVERY", int, DEFAULT_SNAPSHOT_EVERY),
        help="snapshot after this many journal entries (env DISPATCH_SNAPSHOT_EVERY; "
        f"default {DEFAULT_SNAPSHOT_EVERY})",
    )
    serve.add_argument(
        "--snapshot-interval",
        type=float,
        default=_env("DISPATCH_SNAPSHOT_INTERVAL", float, DEFAULT_SNAPSHOT_INTERVAL_S),
        help="...or this many seconds after the last snapshot, if anything changed "
        f"(env DISPATCH_SNAPSHOT_INTERVAL; default {DEFAULT_SNAPSHOT_INTERVAL_S:g})",
    )
    serve.add_argument(
        "--watch-buffer",
        type=int,
        default=_env("DISPATCH_WATCH_BUFFER", int, DEFAULT_BUFFER),
        help="events a WatchEvents client may fall behind before its stream is ended "
        f"with RESOURCE_EXHAUSTED (env DISPATCH_WATCH_BUFFER; default {DEFAULT_BUFFER})",
    )
    serve.add_argument(
        "--grace",
        type=_non_negative,
        default=10.0,
        help="seconds in-flight RPCs get to finish once the drain starts",
    )
    serve.add_argument(
        "--shutdown-delay",
        type=_non_negative,
        default=_env("DISPATCH_SHUTDOWN_DELAY", _non_negative, DEFAULT_SHUTDOWN_DELAY_S),
        help="seconds between SIGTERM and the drain: health says NOT_SERVING while the server "
        "still serves, so load balancers move away before connections are refused; a "
        "second signal cuts it short (env DISPATCH_SHUTDOWN_DELAY; default "
        f"{DEFAULT_SHUTDOWN_DELAY_S:g})",
    )
    serve.add_argument(
        "--access-log",
        default=_env("DISPATCH_ACCESS_LOG", _choice(*ACCESS_LOG_MODES), "off"),
        choices=ACCESS_LOG_MODES,
        help="one log line per RPC (all) or per failed RPC (errors): method, code, "
        "duration, request_id, actor, peer (env DISPATCH_ACCESS_LOG; default off)",
    )
    serve.add_argument(
        "--tick-interval",
        type=_non_negative,
        default=_env("DISPATCH_TICK_INTERVAL", _non_negative, DEFAULT_TICK_INTERVAL_S),
        help="seconds between checks of the clock command: a tick is journaled whenever a "
        "time-driven change is due (env DISPATCH_TICK_INTERVAL; default "
        f"{DEFAULT_TICK_INTERVAL_S:g})",
    )
    serve.add_argument(
        "--max-clock-skew",
        type=_non_negative,
        default=_env("DISPATCH_MAX_CLOCK_SKEW", _non_negative, DEFAULT_MAX_FUTURE_SKEW_MS / 1000),
        help="seconds a location ping may be dated after its arrival; later ones are "
        "skipped and counted as from the future (env DISPATCH_MAX_CLOCK_SKEW; default "
        f"{DEFAULT_MAX_FUTURE_SKEW_MS / 1000:g})",
    )
    serve.add_argument(
        "--closed-retention",
        type=_non_negative,
        default=_env(
            "DISPATCH_CLOSED_RETENTION", _non_negative, DEFAULT_CLOSED_RETENTION_MS / 3_600_000
        ),
        help="hours a closed incident stays in memory (and in ListIncidents); after that "
        "GetIncident answers it from the journal's archive (env DISPATCH_CLOSED_RETENTION; "
        f"default {DEFAULT_CLOSED_RETENTION_MS / 3_600_000:g})",
    )
    serve.add_argument(
        "--ack-timeout",
        type=_ack_timeouts,
        default=_env("DISPATCH_ACK_TIMEOUT", _ack_timeouts, _NO_ACK_TIMEOUTS),
        help="GRADE=SECONDS[,GRADE=SECONDS...]: how long a DISPATCHED unit has to go EN_ROUTE "
        "before it is flagged (at a clock tick, once per dispatch), e.g. "
        "IMMEDIATE=60,SIGNIFICANT=180; grades left out have no deadline (env "
        "DISPATCH_ACK_TIMEOUT; default none)",
    )
    serve.add_argument(
        "--preemptible-grades",
        type=_grade_names,
        default=_env("DISPATCH_PREEMPTIBLE_GRADES", _grade_names, _PREEMPTIBLE_BY_DEFAULT),
        help="grades whose committed units RecommendUnits may offer to IMMEDIATE incidents "
        "when asked for diversions, comma-separated; empty for none (env "
        "DISPATCH_PREEMPTIBLE_GRADES; default SIGNIFICANT,EXTENDED,REFERRED)",
    )
    serve.add_argument(
        "--preempt-on-scene",
        action="store_true",
        default=_env("DISPATCH_PREEMPT_ON_SCENE", _flag, False),
        help="offer ON_SCENE units for diversion too, not only DISPATCHED and EN_ROUTE ones "
        "(env DISPATCH_PREEMPT_ON_SCENE)",
    )
    serve.add_argument(
        "--diversion-cost",
        type=_non_negative,
        default=_env("DISPATCH_DIVERSION_COST", _non_negative, 180.0),
        help="seconds added to a diverted candidate's score (env DISPATCH_DIVERSION_COST; "
        "default 180)",
    )
    serve.add_argument(
        "--closed-retention-count",
        type=_count,
        default=_env("DISPATCH_CLOSED_RETENTION_COUNT", _count, DEFAULT_CLOSED_RETENTION_COUNT),
        help="at most this many closed incidents in memory, closed longest ago leaving first "
        f"(env DISPATCH_CLOSED_RETENTION_COUNT; default {DEFAULT_CLOSED_RETENTION_COUNT})",
    )
    serve.add_argument(
        "--auto-dispatch",
        type=_auto_dispatch_grades,
        default=_env("DISPATCH_AUTO_DISPATCH", _auto_dispatch_grades, frozenset[Grade]()),
        metavar="GRADES",
        help="grades whose pending incidents the server assigns itself, e.g. IMMEDIATE: the "
        "team RecommendUnits proposes (and diversions for IMMEDIATE), journaled as an "
        "AssignUnits by actor server:auto-dispatch:<GRADE> (env DISPATCH_AUTO_DISPATCH; "
        "default none: dispatchers decide)",
    )
    serve.add_argument(
        "--response-plans",
        type=Path,
        # argparse converts a string default with `type`, so the environment gives a Path.
        default=os.environ.get("DISPATCH_RESPONSE_PLANS"),
        metavar="PATH",
        help="response-plan file (TOML): what CreateIncident without requirements sends; "
        "checked at start, installed when it differs from the state's, re-read by "
        "ReloadResponsePlans; `none` for no file (env DISPATCH_RESPONSE_PLANS; default the "
        "shipped plans)",
    )
    serve.add_argument(
        "--request-memory",
        type=_count,
        default=_env("DISPATCH_REQUEST_MEMORY", _count, DEFAULT_REQUEST_CAPACITY),
        help="answers to request_ids kept in memory for retries; older ones (up to 24 h) "
        "are answered from the journal (env DISPATCH_REQUEST_MEMORY; default "
        f"{DEFAULT_REQUEST_CAPACITY})",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="HTTP port for Prometheus /metrics on --host; 0 picks a free one, -1 disables "
        f"metrics (env DISPATCH_METRICS_PORT; default {DEFAULT_METRICS_PORT})",
    )

    _add_security_args(serve)

    certs = sub.add_parser(
        "certs",
        help="make development certificates: a CA, a server and one client per role",
        description="Write a development CA (ca.crt, ca.key), a server certificate for "
        "localhost/127.0.0.1 (server.crt, server.key) and a client certificate per role "
        "(<role>.crt, <role>.key; principal dev-<role>) into --out. Development and tests "
        "only: the CA key is written unencrypted beside them.",
    )
    _add_logging_args(certs, defaults=False)
    certs.add_argument("--out", type=Path, required=True, help="directory to write into")

    audit = sub.add_parser(
        "audit",
        help="print the audit trail: every RPC with its principal, outcome and resources",
        description="Print audit records (oldest first) from the audit table beside the "
        "journal: time, principal, roles, method, code, incidents, units, location count, "
        "justification, request_id, peer. Opens it read-only: runs beside a live server.",
    )
    _add_logging_args(audit, defaults=False)
    _add_journal_args(audit)
    audit.add_argument("--principal", default="", help="only calls by this principal")
    audit.add_argument("--incident", default="", help="only calls naming this incident")
    audit.add_argument("--unit", default="", help="only calls naming this unit")
    audit.add_argument(
        "--since", default=None, help="only calls at or after this time (ISO 8601, UTC if no zone)"
    )
    audit.add_argument("--until", default=None, help="only calls before this time (ISO 8601)")
    audit.add_argument("--limit", type=_count, default=1000, help="records at most (default 1000)")

    plans = sub.add_parser(
        "plans",
        help="check a response-plan file offline, or print the shipped one",
        description="`plans check FILE` validates a response-plan file (and its includes) "
        "as the server would at start-up, printing every problem as FILE:LINE: KEY: what; "
        "exit 0 when it is good, 2 when not. `plans show-default` prints the shipped file.",
    )
    _add_logging_args(plans, defaults=False)
    plans_sub = plans.add_subparsers(dest="plans_command", required=True)
    plans_check = plans_sub.add_parser("check", help="validate a response-plan file")
    plans_check.add_argument("file", type=Path)
    plans_sub.add_parser("show-default", help="print the shipped response-plan file")

    replay = sub.add_parser(
        "replay",
        help="print a journal and the state it rebuilds",
        description="Print every journal entry kept (sequence, time, actor, method, "
        "request_id, summary) and the state recovery rebuilds from it. Opens the journal "
        "read-only: runs beside a live server; refuses where no journal exists.",
    )
    _add_logging_args(replay, defaults=False)
    _add_journal_args(replay)
    replay.add_argument(
        "--after", type=int, default=None, help="print only entries after this sequence"
    )

    demo = sub.add_parser(
        "demo",
        help="seed a London fleet into a running server and walk incidents through it",
    )
    demo.add_argument(
        "--target",
        default=os.environ.get("DISPATCH_TARGET", f"{DEFAULT_HOST}:{DEFAULT_PORT}"),
        help="server address (env DISPATCH_TARGET; default %(default)s)",
    )
    _add_logging_args(demo, defaults=False)
    add_client_tls_args(demo)
    demo.add_argument("--units", type=int, default=400, help="fleet size (default 400)")
    demo.add_argument("--seed", type=int, default=7, help="fleet layout seed (default 7)")

    roster = sub.add_parser(
        "roster",
        help="duty management: import people, skills and shifts from CSV into a server",
    )
    roster_sub = roster.add_subparsers(dest="roster_command", required=True)
    roster_import = roster_sub.add_parser(
        "import",
        help="send a roster CSV (people with skills, shifts) to a running server",
        description="Check a roster CSV whole (columns kind,id,person_id,name,skills,start,"
        "end,role,area; README, 'Duty management'), then send it to the server as "
        "UpsertPerson and UpsertShift calls. Errors are named by line; a file with any bad "
        "line sends nothing unless --skip-bad.",
    )
    roster_import.add_argument("file", type=Path, help="the CSV file")
    roster_import.add_argument(
        "--skip-bad", action="store_true", help="send the good lines, listing every skipped one"
    )
    roster_import.add_argument(
        "--target",
        default=os.environ.get("DISPATCH_TARGET", f"{DEFAULT_HOST}:{DEFAULT_PORT}"),
        help="server address (env DISPATCH_TARGET; default %(default)s)",
    )
    _add_logging_args(roster_import, defaults=False)
    add_client_tls_args(roster_import)

    # Options are parsed by dispatch_core.loadtest.main (`dispatch-core loadtest --help`),
    # imported only when asked for: the generator's modules are not needed to serve.
    # prefix_chars="+" hands every "--option" through untouched as one REMAINDER list.
    loadtest = sub.add_parser(
        "loadtest",
        help="open-loop surge scenarios against a server and per-RPC capacity (see --help)",
        add_help=False,
        prefix_chars="+",
    )
    loadtest.add_argument("loadtest_args", nargs=argparse.REMAINDER)
    simulate = sub.add_parser(
        "simulate",
        help="compare dispatch policies on identical seeded demand, in-process (see --help)",
        add_help=False,
        prefix_chars="+",
    )
    simulate.add_argument("simulate_args", nargs=argparse.REMAINDER)
    return parser


def _run_loadtest(argv: list[str]) -> int:
    """Runs the load-test command, which ships in the package (dispatch_core.loadtest)."""
    from dispatch_core.loadtest.main import main as loadtest_main  # noqa: PLC0415

    return loadtest_main(argv)


def _run_plans(args: argparse.Namespace) -> int:
    """`dispatch-core plans check FILE | show-default`."""
    from dispatch_core.errors import PlanFileError  # noqa: PLC0415
    from dispatch_core.response_plans import default_path, read_plans  # noqa: PLC0415

    if args.plans_command == "show-default":
        sys.stdout.write(default_path().read_text(encoding="utf-8"))
        return 0
    try:
        request = read_plans(CoreConfig().build(), args.file)
    except PlanFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"dispatch-core: {len(exc.problems)} problem(s) in {args.file}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.file}: {len(request.plans)} response plans, all valid")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; returns the exit code (startup.py's table). Start-up mistakes
    end in one line on stderr, never a traceback."""
    try:
        return _main(argv)
    except StartupError as exc:
        return _refuse(exc, exc.exit_code)


def _refuse(exc: BaseException, code: int) -> int:
    """Reports a refused start in one line: a log record in the chosen format once logging
    is set up (so a JSON log stays JSON), a plain line before that."""
    if logs.is_configured():
        logging.getLogger("dispatch_core").critical("%s", exc)
    else:
        print(f"dispatch-core: {exc}", file=sys.stderr)
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    if args.command == "serve":
        port = args.port if args.port is not None else _env_port()
        metrics_port = (
            args.metrics_port
            if args.metrics_port is not None
            else _env_port("DISPATCH_METRICS_PORT", DEFAULT_METRICS_PORT)
        )
        try:
            return serve(
                args.host,
                port,
                args.data_dir,
                grace_s=args.grace,
                metrics_port=metrics_port,
                journal=_journal_config(args),
                core=CoreConfig(
                    request_capacity=args.request_memory,
                    max_future_skew_ms=round(args.max_clock_skew * 1000),
                    closed_retention_ms=round(args.closed_retention * 3_600_000),
                    closed_retention_count=args.closed_retention_count,
                    ack_timeout_ms=args.ack_timeout,
                    preemptible_grades=args.preemptible_grades,
                    preempt_on_scene=args.preempt_on_scene,
                    diversion_cost_seconds=args.diversion_cost,
                ),
                tick_interval_s=args.tick_interval,
                access_log=args.access_log,
                shutdown_delay_s=args.shutdown_delay,
                security=_security_config(args),
                audit_trail=args.audit_trail == "on",
                response_plans=args.response_plans,
                audit_settings=AuditSettings(
                    interval_s=args.audit_interval, retention_days=args.audit_retention_days
                ),
                auto_dispatch=args.auto_dispatch,
            )
        except PortInUseError as exc:
            return _refuse(exc, EXIT_USAGE)
        except RecoveryError as exc:
            return _refuse(exc, exc.exit_code)
    if args.command == "replay":
        from dispatch_core.replay import run_replay  # noqa: PLC0415

        check_journal_spec(args.journal)
        try:
            return run_replay(_journal_config(args), sys.stdout, after=args.after)
        except RecoveryError as exc:
            return _refuse(exc, exc.exit_code)
    if args.command == "loadtest":
        return _run_loadtest(args.loadtest_args)
    if args.command == "plans":
        return _run_plans(args)
    if args.command == "simulate":
        from dispatch_core.simulate.main import main as simulate_main  # noqa: PLC0415

        return simulate_main(args.simulate_args)
    if args.command == "audit":
        from dispatch_core.security.audit_cli import run_audit  # noqa: PLC0415

        check_journal_spec(args.journal)
        return run_audit(args, sys.stdout)
    if args.command == "roster":
        from dispatch_core.roster.importer import run_import  # noqa: PLC0415

        return run_import(
            args.target,
            args.file,
            sys.stdout,
            credentials=ClientCredentials(args.tls_ca, args.tls_cert, args.tls_key, args.token),
            skip_bad=args.skip_bad,
        )
    if args.command == "certs":
        from dispatch_core.security.certs import write_dev_certs  # noqa: PLC0415
        from dispatch_core.security.policy import ROLES  # noqa: PLC0415

        for written in write_dev_certs(args.out, ROLES):
            print(written)
        return 0
    return run_demo(
        args.target,
        n_units=args.units,
        seed=args.seed,
        credentials=ClientCredentials(args.tls_ca, args.tls_cert, args.tls_key, args.token),
    )


if __name__ == "__main__":
    sys.exit(main())
