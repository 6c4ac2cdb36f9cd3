#!/usr/bin/env bash
# Sets everything up and runs every check: formatting, lints, type checks, the Rust tests,
# and the Python tests against the real extension, the real server over gRPC and the real
# PostgreSQL / NATS / Redis services on 127.0.0.1 (started here when they are down).
# Extra arguments go to the final pytest run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }

DISPATCH_EXTRAS=dev bash scripts/setup.sh
bash scripts/services.sh
bash scripts/ensure_tool.sh promtool prometheus
bash scripts/ensure_tool.sh h2load nghttp2-client

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "cargo test (core: unit, property and doc tests)"
cargo test --release --quiet -p dispatch-engine

say "buf lint, buf format (protos/, configured by buf.yaml)"
buf=$(bash scripts/ensure_buf.sh)
"$buf" lint
"$buf" format -d --exit-code

say "ruff"
py_paths=(); for p in python tests benchmarks loadtests scripts; do [ -e "$p" ] && py_paths+=("$p"); done
.venv/bin/ruff check "${py_paths[@]}"
.venv/bin/ruff format --check "${py_paths[@]}"
say "mypy"
.venv/bin/mypy
say "stubtest (the .pyi cannot drift from the extension)"
# Every class is @final in the stub, so PEP 800 disjoint-base markers would add nothing.
.venv/bin/python -m mypy.stubtest --ignore-disjoint-bases dispatch_core._core

say "pytest"
.venv/bin/python -m pytest tests "$@"
say "benchmark smoke run (each benchmark once, untimed)"
.venv/bin/python -m pytest benchmarks --benchmark-disable -q -p no:cacheprovider
