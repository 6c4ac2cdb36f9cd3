#!/usr/bin/env bash
# Make the comparison services the ranking benchmarks use ready: the PostGIS extension for
# the PostgreSQL server on 127.0.0.1:5432 (database `test`, user postgres, trust auth).
# Redis needs nothing beyond its running server.
#
# Idempotent: a no-op when PostGIS is already installed. It never fails the caller's run:
# when PostGIS cannot be installed the benchmarks record "unavailable" with the reason
# instead of a number (a missing comparison is reported, never faked).
set -uo pipefail

# The package must match the *server's* major version: ask the server first (150020 -> 15),
# then pg_config (which may describe a client library instead), then assume Debian 12's 15.
PG_MAJOR="${PG_MAJOR:-}"
if [[ -z "$PG_MAJOR" ]] && command -v psql >/dev/null 2>&1; then
    num="$(psql -h 127.0.0.1 -p 5432 -U postgres -d test -Atqc 'SHOW server_version_num' 2>/dev/null || true)"
    [[ "$num" =~ ^[0-9]{5,6}$ ]] && PG_MAJOR=$((num / 10000))
fi
if [[ -z "$PG_MAJOR" ]] && command -v pg_config >/dev/null 2>&1; then
    # pg_config --version prints e.g. "PostgreSQL 15.20 (Debian ...)"; keep the major number.
    PG_MAJOR="$(pg_config --version | awk '{print $2}' | cut -d. -f1)"
fi
PG_MAJOR="${PG_MAJOR:-15}"
PKG="postgresql-${PG_MAJOR}-postgis-3"

if [[ -f "/usr/share/postgresql/${PG_MAJOR}/extension/postgis.control" ]]; then
    echo "setup_services: ${PKG} already present"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_services: cannot install ${PKG} (needs root and apt-get); PostGIS benchmarks will report unavailable" >&2
    exit 0
fi

echo "setup_services: installing ${PKG}"
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when the candidate is unknown, so repeat runs stay offline.
if ! apt-cache policy "$PKG" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq || true
fi
if apt-get install -y -qq --no-install-recommends "$PKG" >/tmp/setup_services_apt.log 2>&1; then
    echo "setup_services: ${PKG} installed"
else
    echo "setup_services: installing ${PKG} failed (see /tmp/setup_services_apt.log); PostGIS benchmarks will report unavailable" >&2
fi
exit 0
