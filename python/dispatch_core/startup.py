"""Start-up checks and exit codes: a mistake in how the server is started ends in one line
saying what is wrong, where, and how to fix it, and an exit code a supervisor can act on.

The exit codes (README, "Exit codes") are defined here and nowhere else:

| code | meaning |
|---|---|
| 0 | stopped by SIGTERM/SIGINT after draining |
| 2 | usage error: a bad flag or environment value, or the gRPC/metrics port is taken |
| 3 | another writer holds the journal |
| 4 | the journal failed while serving (a fatal sync) |
| 5 | the data directory is unusable (cannot be created, not a directory, not writable) |
| 6 | the journal is unreachable (database down, bad DSN, bad role) or does not exist |
| 7 | the journal is corrupt or of a version this build does not read |

Checks run before anything is opened, cheapest first, so a mistake is reported before a
journal is recovered or a port is bound.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_JOURNAL_LOCKED = 3
EXIT_JOURNAL_FATAL = 4
EXIT_DATA_DIR = 5
EXIT_JOURNAL_UNREACHABLE = 6
EXIT_JOURNAL_CORRUPT = 7

#: The schemes `--journal` takes besides the two plain names.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StartupError(Exception):
    """A start-up mistake: `str()` is the one line printed, `exit_code` the process's."""

    def __init__(self, exit_code: int, what: str, fix: str) -> None:
        super().__init__(f"{what}; {fix}" if fix else what)
        self.exit_code = exit_code


def redact_dsn(dsn: str) -> str:
    """`dsn` with any password replaced by `***`, for logs and messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    if not parts.password and "password=" not in parts.query.lower():
        return dsn
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if sep else netloc
    query = "&".join(
        f"{key}=***" if key.lower() == "password" else f"{key}{sep}{value}"
        for key, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_journal_spec(spec: str) -> None:
    """`--journal` names a backend this build has, and a PostgreSQL DSN names its database
    (an empty `postgresql://` would silently connect wherever libpq's defaults point)."""
    if spec in ("sqlite", "memory"):
        return
    if not spec.startswith(POSTGRES_SCHEMES):
        raise StartupError(
            EXIT_USAGE,
            f"unknown journal {spec!r}",
            "use --journal sqlite, memory or postgresql://USER@HOST:PORT/DATABASE",
        )
    from psycopg import conninfo  # noqa: PLC0415 (psycopg only where PostgreSQL is used)

    try:
        params = conninfo.conninfo_to_dict(spec)
    except Exception as exc:  # psycopg.ProgrammingError; the message quotes the DSN
        raise StartupError(
            EXIT_JOURNAL_UNREACHABLE,
            f"journal DSN {redact_dsn(spec)} cannot be parsed ({_first_line(exc)})",
            "write it as postgresql://USER@HOST:PORT/DATABASE",
        ) from None
    if not params.get("dbname"):
        raise StartupError(
            EXIT_USAGE,
            f"journal DSN {redact_dsn(spec)} names no database",
            "name one, as in postgresql://USER@HOST:PORT/DATABASE",
        )


def check_data_dir(path: Path) -> None:
    """The data directory exists (or is created now) and can be written.

    Only its last component is created: a missing parent is more often a volume that is
    not mounted or a mistyped path than a wish for a new tree, and creating it would put
    the journal on the wrong disk.
    """
    fix = "point --data-dir (DISPATCH_DATA_DIR) at a writable directory"
    if path.exists() and not path.is_dir():
        raise StartupError(EXIT_DATA_DIR, f"data directory {path} is not a directory", fix)
    if not path.exists():
        if not path.parent.is_dir():
            raise StartupError(
                EXIT_DATA_DIR,
                f"data directory {path} cannot be created: its parent {path.parent} does not exist",
                f"create {path.parent} (or mount its volume) first, or {fix}",
            )
        try:
            path.mkdir()
        except FileExistsError:
            pass  # created meanwhile by someone else: checked below like any other
        except OSError as exc:
            raise StartupError(
                EXIT_DATA_DIR,
                f"data directory {path} cannot be created ({_os_reason(exc)})",
                fix,
            ) from None
    try:
        # A real write, not os.access: it sees read-only mounts, and root's bypass of the
        # permission bits does not fool it.
        with tempfile.TemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StartupError(
            EXIT_DATA_DIR, f"data directory {path} is not writable ({_os_reason(exc)})", fix
        ) from None


def check_port_free(host: str, port: int, what: str, flag: str) -> None:
    """Binds `host:port` once and lets go, so a taken port is reported in one line before
    gRPC's core logs its own error (port 0, any free port, needs no check). `what` says
    what the port is for: "listen on" (gRPC), "serve metrics on"."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StartupError(
            EXIT_USAGE, f"cannot {what} {host}:{port}: {exc.strerror}", "check --host"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As gRPC binds: SO_REUSEADDR, so a port in TIME_WAIT is not mistaken for taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "the port is in use" if exc.errno == errno.EADDRINUSE else _os_reason(exc)
            raise StartupError(
                EXIT_USAGE,
                f"cannot {what} {host}:{port}: {reason}",
                f"stop what holds it or choose another {flag}",
            ) from None


def _os_reason(exc: OSError) -> str:
    return exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
