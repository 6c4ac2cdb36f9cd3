#!/usr/bin/env bash
# Makes sure `promtool` (Prometheus's rule and metrics checker) is on PATH, for the tests of
# ops/prometheus/*.yml and of a real /metrics scrape. Idempotent: does nothing when promtool
# is already there, else installs Debian's `prometheus` package, which ships it. apt's index
# is refreshed once, and only when the install is needed, so a warm machine pays nothing.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "[ensure_promtool] promtool missing: installing Debian's prometheus package" >&2
# --no-install-recommends: only promtool is needed, not the exporters the package recommends.
# The package's postinst may try to start the service; policy-rc.d-less containers just log it.
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null

if ! command -v promtool >/dev/null 2>&1; then
    echo "[ensure_promtool] the prometheus package installed but promtool is not on PATH" >&2
    exit 1
fi
promtool --version 2>&1 | head -1 >&2
