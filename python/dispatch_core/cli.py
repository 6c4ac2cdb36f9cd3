"""`dispatch-core`: the command line.

dispatch-core serve [--host H] [--port P] [--data-dir D] [--metrics-port M]
    [--journal sqlite|memory|postgresql://...] [--synchronous FULL|NORMAL|OFF]
dispatch-core replay [--data-dir D] [--journal ...] [--after N]
dispatch-core demo [--target HOST:PORT]
dispatch-core loadtest [--scenario NAME] [--duration S] [--scale F] [--target HOST:PORT] ...
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dispatch_core._core import (
    DEFAULT_CLOSED_RETENTION_COUNT,
    DEFAULT_CLOSED_RETENTION_MS,
    DEFAULT_MAX_FUTURE_SKEW_MS,
    DEFAULT_REQUEST_CAPACITY,
)
from dispatch_core.durability.journal import JournalError
from dispatch_core.durability.recovery import (
    EXIT_JOURNAL_REFUSED,
    JournalConfig,
    RecoveryError,
)
from dispatch_core.durability.snapshotter import (
    DEFAULT_SNAPSHOT_EVERY,
    DEFAULT_SNAPSHOT_INTERVAL_S,
)
from dispatch_core.server import DEFAULT_TICK_INTERVAL_S, CoreConfig, PortInUseError, serve
from dispatch_core.synthetic.demo import run_demo
from dispatch_core.views.events import DEFAULT_BUFFER
from dispatch_core.views.metrics import DEFAULT_METRICS_PORT

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = "./data"


def _non_negative(text: str) -> float:
    """An argparse type: a number >= 0, refused with a one-line message otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
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


def _env_port(name: str = "DISPATCH_PORT", default: int = DEFAULT_PORT) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"dispatch-core: {name}={raw!r} is not a port number") from None


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
    parser.add_argument(
        "--log-level",
        default=os.environ.get("DISPATCH_LOG_LEVEL", "INFO"),
        help="logging level (env DISPATCH_LOG_LEVEL; default INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the gRPC server",
        description="Run the gRPC server until SIGTERM or SIGINT, then drain and exit 0. "
        "Exits non-zero if the address cannot be bound.",
    )
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
        default=int(os.environ.get("DISPATCH_SNAPSHOT_EVERY", DEFAULT_SNAPSHOT_EVERY)),
        help="snapshot after this many journal entries (env DISPATCH_SNAPSHOT_EVERY; "
        f"default {DEFAULT_SNAPSHOT_EVERY})",
    )
    serve.add_argument(
        "--snapshot-interval",
        type=float,
        default=float(os.environ.get("DISPATCH_SNAPSHOT_INTERVAL", DEFAULT_SNAPSHOT_INTERVAL_S)),
        help="...or this many seconds after the last snapshot, if anything changed "
        f"(env DISPATCH_SNAPSHOT_INTERVAL; default {DEFAULT_SNAPSHOT_INTERVAL_S:g})",
    )
    serve.add_argument(
        "--watch-buffer",
        type=int,
        default=int(os.environ.get("DISPATCH_WATCH_BUFFER", DEFAULT_BUFFER)),
        help="events a WatchEvents client may fall behind before its stream is ended "
        f"with RESOURCE_EXHAUSTED (env DISPATCH_WATCH_BUFFER; default {DEFAULT_BUFFER})",
    )
    serve.add_argument(
        "--grace", type=float, default=10.0, help="seconds in-flight RPCs get at shutdown"
    )
    serve.add_argument(
        "--tick-interval",
        type=_non_negative,
        default=float(os.environ.get("DISPATCH_TICK_INTERVAL", DEFAULT_TICK_INTERVAL_S)),
        help="seconds between checks of the clock command: a tick is journaled whenever a "
        "time-driven change is due (env DISPATCH_TICK_INTERVAL; default "
        f"{DEFAULT_TICK_INTERVAL_S:g})",
    )
    serve.add_argument(
        "--max-clock-skew",
        type=_non_negative,
        default=float(os.environ.get("DISPATCH_MAX_CLOCK_SKEW", DEFAULT_MAX_FUTURE_SKEW_MS / 1000)),
        help="seconds a location ping may be dated after its arrival; later ones are "
        "skipped and counted as from the future (env DISPATCH_MAX_CLOCK_SKEW; default "
        f"{DEFAULT_MAX_FUTURE_SKEW_MS / 1000:g})",
    )
    serve.add_argument(
        "--closed-retention",
        type=_non_negative,
        default=float(
            os.environ.get("DISPATCH_CLOSED_RETENTION", DEFAULT_CLOSED_RETENTION_MS / 3_600_000)
        ),
        help="hours a closed incident stays in memory (and in ListIncidents); after that "
        "GetIncident answers it from the journal's archive (env DISPATCH_CLOSED_RETENTION; "
        f"default {DEFAULT_CLOSED_RETENTION_MS / 3_600_000:g})",
    )
    serve.add_argument(
        "--closed-retention-count",
        type=_count,
        default=int(
            os.environ.get("DISPATCH_CLOSED_RETENTION_COUNT", DEFAULT_CLOSED_RETENTION_COUNT)
        ),
        help="at most this many closed incidents in memory, closed longest ago leaving first "
        f"(env DISPATCH_CLOSED_RETENTION_COUNT; default {DEFAULT_CLOSED_RETENTION_COUNT})",
    )
    serve.add_argument(
        "--request-memory",
        type=_count,
        default=int(os.environ.get("DISPATCH_REQUEST_MEMORY", DEFAULT_REQUEST_CAPACITY)),
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

    replay = sub.add_parser(
        "replay",
        help="print a journal and the state it rebuilds",
        description="Print every journal entry kept (sequence, time, actor, method, "
        "request_id, summary) and the state recovery rebuilds from it. Takes the journal's "
        "writer lock: stop the server first.",
    )
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
    demo.add_argument("--units", type=int, default=400, help="fleet size (default 400)")
    demo.add_argument("--seed", type=int, default=7, help="fleet layout seed (default 7)")

    # Options are parsed by loadtests/loadtest.py (`dispatch-core loadtest --help`): they
    # live with the load tests, which ship in the source tree, not in the package.
    # prefix_chars="+" hands every "--option" through untouched as one REMAINDER list.
    loadtest = sub.add_parser(
        "loadtest",
        help="open-loop surge scenarios against a server (source checkout only; see --help)",
        add_help=False,
        prefix_chars="+",
    )
    loadtest.add_argument("loadtest_args", nargs=argparse.REMAINDER)
    return parser


def _run_loadtest(argv: list[str]) -> int:
    """Runs loadtests/loadtest.py from the source checkout this package is installed from."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "loadtests" / "loadtest.py").exists():
        print("dispatch-core loadtest: needs a source checkout (loadtests/)", file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from loadtests.loadtest import main as loadtest_main  # noqa: PLC0415

    return loadtest_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
                ),
                tick_interval_s=args.tick_interval,
            )
        except PortInUseError as exc:
            print(f"dispatch-core: {exc}", file=sys.stderr)
            return 2
        except RecoveryError as exc:
            logging.getLogger("dispatch_core").critical("%s", exc)
            print(f"dispatch-core: {exc}", file=sys.stderr)
            return EXIT_JOURNAL_REFUSED
    if args.command == "replay":
        from dispatch_core.replay import run_replay  # noqa: PLC0415

        try:
            return run_replay(_journal_config(args), sys.stdout, after=args.after)
        except (JournalError, OSError, ValueError) as exc:
            print(f"dispatch-core replay: {exc}", file=sys.stderr)
            return EXIT_JOURNAL_REFUSED
    if args.command == "loadtest":
        return _run_loadtest(args.loadtest_args)
    return run_demo(args.target, n_units=args.units, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
