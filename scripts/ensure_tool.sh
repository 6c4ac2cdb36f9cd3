#!/usr/bin/env bash
# Makes sure a command from a Debian package is on PATH, for the tests that need it:
#   bash scripts/ensure_tool.sh promtool prometheus      (rule and metrics checks, ops/)
#   bash scripts/ensure_tool.sh h2load nghttp2-client    (the load tests' capacity mode)
# Idempotent: does nothing when the command is there, else installs the package. apt's
# index is refreshed only when an install is needed, so a warm machine pays nothing.
set -euo pipefail

cmd=${1:?usage: ensure_tool.sh COMMAND DEBIAN_PACKAGE}
package=${2:?usage: ensure_tool.sh COMMAND DEBIAN_PACKAGE}

if command -v "$cmd" >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "[ensure_tool] $cmd missing: installing Debian's $package package" >&2
# --no-install-recommends: only the command is needed, not what the package recommends.
# A package's postinst may try to start a service; policy-rc.d-less containers just log it.
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null

if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "[ensure_tool] the $package package installed but $cmd is not on PATH" >&2
    exit 1
fi
