#!/usr/bin/env bash
# Makes sure the local services the tests and benchmarks use are up on 127.0.0.1 and that
# the Debian packages they need are installed. Idempotent; starts only what is down.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m[services]\033[0m %s\n' "$*" >&2; }
apt_updated=0
apt_install() {
    [ "$(id -u)" = 0 ] || { say "not root: cannot install $*"; return 1; }
    if [ $apt_updated = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
fi
if ! port_open 4222 && command -v nats-server >/dev/null 2>&1; then
    say "starting NATS"
    (nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/nats-dispatch >/tmp/nats-dispatch.log 2>&1 &)
fi
[ -f benchmarks/setup_services.sh ] && bash benchmarks/setup_services.sh
exit 0
