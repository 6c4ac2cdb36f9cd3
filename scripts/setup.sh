#!/usr/bin/env bash
# Sets up everything dispatch-core needs on a fresh machine, idempotently: the Rust
# components, a virtualenv in .venv, the Python dependencies and the Rust extension built
# in release mode. Sourced by scripts/serve.sh and scripts/test.sh; safe to run alone.
#   DISPATCH_EXTRAS=dev  also installs the test, lint and benchmark tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { say "cargo not found: install a Rust toolchain (rustup) first"; exit 1; }
if [ "${DISPATCH_EXTRAS:-}" = dev ] && command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$component" \
            || rustup component add "$component" >/dev/null 2>&1 || say "could not add $component"
    done
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check "maturin==1.16.0"

extras=()
[ "${DISPATCH_EXTRAS:-}" = dev ] && extras=(--extras dev)
say "building the Rust extension (release) and installing dependencies"
# maturin develop installs the project's dependencies (and extras) with pip, then builds
# and installs the extension into .venv; cargo's cache makes a rebuild quick.
VIRTUAL_ENV="$PWD/.venv" .venv/bin/maturin develop --release --quiet "${extras[@]}" >/dev/null
say "ready: $(.venv/bin/python -c 'import dispatch_core; print("dispatch_core", dispatch_core.__version__)')"
