#!/usr/bin/env bash
# Make sure Chromium, nginx, PostgreSQL and Redis are present (and the servers running), and
# axe-core installed (npm ci), for a run that requires them.
# Starts only what is down; never stops anything.
set -uo pipefail

if ! command -v chromium >/dev/null 2>&1; then
    echo "==> installing chromium"
    apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
fi

# nginx: only the binary. The nginx tests run their own instance (tests/nginx.py); a system
# nginx is never started. Debian starts a service when its package is installed unless
# policy-rc.d refuses, so refuse for the install if nothing does already.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "==> installing nginx (not started)"
    added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get update -qq >/dev/null && apt-get install -y -qq nginx >/dev/null
    if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi

# The fault tests run private redis-server instances of their own (tests/redis_server.py).
if ! command -v redis-server >/dev/null 2>&1; then
    echo "==> installing redis-server"
    printf '#!/bin/sh\nexit 101\n' > /tmp/policy-rc.d.townsquare
    apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "==> starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
# axe-core for the accessibility test (tests/test_browser_a11y.py), at the version
# package-lock.json pins.
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -f "$root/node_modules/axe-core/axe.min.js" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "==> installing npm"
        apt-get update -qq >/dev/null && apt-get install -y -qq npm >/dev/null
    fi
    echo "==> npm ci (axe-core)"
    (cd "$root" && npm ci --no-audit --no-fund --loglevel=error) || true
fi
exit 0
