#!/usr/bin/env bash
# Sets everything up and runs the dispatch-core gRPC service with embedded defaults (SQLite
# journal under ./data, no external server). Extra arguments go to `dispatch-core serve`.
# The set-up is skipped when nothing it builds from changed since the last one (see
# scripts/setup.sh), so a second start is immediate and needs no package index.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/dispatch-core serve "$@"
