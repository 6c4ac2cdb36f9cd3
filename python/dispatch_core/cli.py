"""`dispatch-core`: the command line.

dispatch-core serve [--host H] [--port P] [--data-dir D]
dispatch-core demo [--target HOST:PORT]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dispatch_core.demo import run_demo
from dispatch_core.server import PortInUseError, serve

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = "./data"


def _env_port() -> int:
    raw = os.environ.get("DISPATCH_PORT")
    if raw is None:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"dispatch-core: DISPATCH_PORT={raw!r} is not a port number") from None


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
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DISPATCH_DATA_DIR", DEFAULT_DATA_DIR)),
        help="directory for durable state, created if missing "
        f"(env DISPATCH_DATA_DIR; default {DEFAULT_DATA_DIR})",
    )
    serve.add_argument(
        "--grace", type=float, default=10.0, help="seconds in-flight RPCs get at shutdown"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        port = args.port if args.port is not None else _env_port()
        try:
            return serve(args.host, port, args.data_dir, grace_s=args.grace)
        except PortInUseError as exc:
            print(f"dispatch-core: {exc}", file=sys.stderr)
            return 2
    return run_demo(args.target, n_units=args.units, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
