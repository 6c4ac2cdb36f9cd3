#!/usr/bin/env bash
# Sets up everything dispatch-core needs on a fresh machine, idempotently: the Rust
# components, a virtualenv in .venv, the Python dependencies and the Rust extension built
# in release mode. Sourced by scripts/serve.sh and scripts/test.sh; safe to run alone.
#   DISPATCH_EXTRAS=dev  also installs the test, lint and benchmark tools.
#   --check              only reports: exit 0 when the set-up is current, 1 when not.
#
# pip and maturin run only when something they act on changed since the last successful
# set-up: .venv/.dispatch-setup records a hash of those inputs (see setup_key), so a second
# start neither rebuilds nor touches the package index.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

STAMP=.venv/.dispatch-setup
extras=()
[ "${DISPATCH_EXTRAS:-}" = dev ] && extras=(--extras dev)

# What pip and maturin build from: the dependency lists and entry points (pyproject.toml),
# the Rust workspace (manifests, lock file, sources, build scripts) and the protos the core
# compiles in. The Python sources are not in it: `maturin develop` installs them editable.
setup_key() {
    {
        .venv/bin/python -c 'import sys; print(sys.version)'
        find pyproject.toml Cargo.toml Cargo.lock rust protos -type f \
            \( -name '*.toml' -o -name '*.lock' -o -name '*.rs' -o -name '*.proto' \) \
            -not -path '*/target/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1
}

# Current when the stamp names the same key and at least the extras asked for (a dev
# set-up serves a plain one), and the installed extension still imports.
current() {
    [ -f "$STAMP" ] && [ -x .venv/bin/dispatch-core ] || return 1
    local key stamped_extras
    read -r key stamped_extras <"$STAMP" || return 1
    [ "$key" = "$(setup_key)" ] || return 1
    [ "${DISPATCH_EXTRAS:-}" != dev ] || [ "$stamped_extras" = dev ] || return 1
    .venv/bin/python -c 'import dispatch_core._core' >/dev/null 2>&1
}

if [ "${1:-}" = --check ]; then
    [ -x .venv/bin/python ] && current
    exit
fi

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

if current; then
    say "ready (nothing changed since the last set-up): dispatch_core in .venv"
    exit 0
fi

rm -f "$STAMP"  # an interrupted set-up must not look current
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check "maturin==1.16.0"

say "building the Rust extension (release) and installing dependencies"
# maturin develop installs the project's dependencies (and extras) with pip, then builds
# and installs the extension into .venv; cargo's cache makes a rebuild quick.
key=$(setup_key)
VIRTUAL_ENV="$PWD/.venv" .venv/bin/maturin develop --release --quiet "${extras[@]}" >/dev/null
say "ready: $(.venv/bin/python -c 'import dispatch_core; print("dispatch_core", dispatch_core.__version__)')"
# The key of the inputs as they were when the build started: an edit made during the build
# leaves the stamp stale, so the next start builds again.
echo "$key ${DISPATCH_EXTRAS:-}" >"$STAMP"
