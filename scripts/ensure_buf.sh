#!/usr/bin/env bash
# Makes sure buf (the protobuf linter and formatter scripts/test.sh runs on protos/) is
# installed at the pinned version in .tools/buf (git-ignored), and prints its path.
# Idempotent: a warm machine only runs `buf --version`. buf comes from the npm registry as
# @bufbuild/buf, whose platform package carries the prebuilt binary; npm itself is installed
# from Debian when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUF_VERSION=1.75.0
dir=.tools/buf
bin="$dir/node_modules/.bin/buf"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$BUF_VERSION" ]; then
    echo "$PWD/$bin"
    exit 0
fi

say() { printf '\033[1m[ensure_buf]\033[0m %s\n' "$*" >&2; }
if ! command -v npm >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    say "npm missing: installing Debian's nodejs and npm packages"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
say "installing @bufbuild/buf@$BUF_VERSION into $dir"
mkdir -p "$dir"
# --ignore-scripts: the binary comes with the platform package; the package's postinstall
# script only re-links it. --no-save: no package.json or lock file to keep in the tree.
npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts \
    --loglevel=error "@bufbuild/buf@$BUF_VERSION" >&2
[ "$("$bin" --version)" = "$BUF_VERSION" ] || { say "buf $BUF_VERSION did not install"; exit 1; }
echo "$PWD/$bin"
