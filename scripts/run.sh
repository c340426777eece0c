#!/usr/bin/env bash
# scripts/run.sh - what `make run` (and `scripts/oneblog dev`) starts once the
# binaries are built: the whole blog on this machine, with embedded defaults.
#
#   ./data/                 SQLite database, cookie, first login (ONEBLOG_DATA_DIR)
#   ./data/cookie           the Erlang distribution cookie: random, mode 0400,
#                           passed to both nodes with ONEBLOG_COOKIE_FILE
#   cms@127.0.0.1           `oneblog-cms serve`: the `cms` service, demo content in
#                           an empty database, the admin UI on ONEBLOG_ADMIN_PORT,
#                           and beside it `events` (the log in ./data/events, owned
#                           by this node) and `recs` ("Recommended for you")
#   client@127.0.0.1        `oneblog-client`: the reader site on ONEBLOG_HTTP_PORT,
#                           finding `cms`, `recs` and `events` through the cluster
#                           (a static node list); page views are cast to `events`
#
# EPMD: the first node starts the built-in one if none runs (as erl does). The
# first run creates the owner login with a random password and keeps it in
# ./data/first-login (mode 0600) so later runs can print it again. Ctrl-C stops
# both nodes (SIGTERM, by PID) and waits for them.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-${ONEBLOG_BUILD:-build}}
CMS="$B/bin/oneblog-cms"
CLIENT="$B/bin/oneblog-client"
export ONEBLOG_DATA_DIR=${ONEBLOG_DATA_DIR:-./data}
export ONEBLOG_HTTP_PORT=${ONEBLOG_HTTP_PORT:-8080}
export ONEBLOG_ADMIN_PORT=${ONEBLOG_ADMIN_PORT:-2369}
export ONEBLOG_CMS_NODE=${ONEBLOG_CMS_NODE:-cms@127.0.0.1}
export ONEBLOG_CLIENT_NODE=${ONEBLOG_CLIENT_NODE:-client@127.0.0.1}
export ONEBLOG_CLUSTER_NODES=${ONEBLOG_CLUSTER_NODES:-$ONEBLOG_CMS_NODE}
export ONEBLOG_LOG_LEVEL=${ONEBLOG_LOG_LEVEL:-warn}
ADMIN_EMAIL=${ONEBLOG_ADMIN_EMAIL:-admin@example.com}
say() { printf '\033[1moneblog:\033[0m %s\n' "$*"; }

for bin in "$CMS" "$CLIENT"; do
    [ -x "$bin" ] || { echo "oneblog: $bin is not built (run make)" >&2; exit 1; }
done
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$ONEBLOG_HTTP_PORT" "$ONEBLOG_ADMIN_PORT"; do
    if port_busy "$p"; then
        echo "oneblog: port $p is in use (another make run?). Stop it, or choose another:" >&2
        echo "         ONEBLOG_HTTP_PORT=8090 ONEBLOG_ADMIN_PORT=2370 make run" >&2
        exit 1
    fi
done

mkdir -p "$ONEBLOG_DATA_DIR"
chmod 0700 "$ONEBLOG_DATA_DIR"
COOKIE="$ONEBLOG_DATA_DIR/cookie"
if [ ! -s "$COOKIE" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$COOKIE")
    chmod 0400 "$COOKIE"
    say "generated a distribution cookie in $COOKIE"
fi
export ONEBLOG_COOKIE_FILE="$COOKIE"
unset ONEBLOG_COOKIE

# The first login: created once, kept for the next runs.
LOGIN="$ONEBLOG_DATA_DIR/first-login"
if [ ! -s "$LOGIN" ]; then
    pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=\n')
    if out=$(printf '%s\n' "$pw" | ONEBLOG_LOG_LEVEL=error "$CMS" init --email "$ADMIN_EMAIL" \
                 --name "Blog Owner" --password-stdin 2>&1); then
        if printf '%s' "$out" | grep -q 'already initialised'; then
            pw="(set earlier: not known to this script)"
        fi
        (umask 077; printf 'email: %s\npassword: %s\n' "$ADMIN_EMAIL" "$pw" >"$LOGIN")
    else
        echo "oneblog: oneblog-cms init failed: $out" >&2
        exit 1
    fi
fi

CMS_PID= CLIENT_PID=
stop() { # stop STATUS
    local rc=$1
    set +e
    trap - EXIT
    trap '' INT TERM # a second Ctrl-C must not cut the shutdown short
    echo
    say "stopping"
    [ -z "$CLIENT_PID" ] || kill -TERM "$CLIENT_PID" 2>/dev/null
    [ -z "$CMS_PID" ] || kill -TERM "$CMS_PID" 2>/dev/null
    for pid in $CLIENT_PID $CMS_PID; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    say "stopped"
    exit "$rc"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

LOGS="$ONEBLOG_DATA_DIR/logs"
mkdir -p "$LOGS"
"$CMS" serve >"$LOGS/cms.log" 2>&1 &
CMS_PID=$!
for _ in $(seq 150); do
    grep -qs 'serving' "$LOGS/cms.log" && break
    kill -0 "$CMS_PID" 2>/dev/null || { cat "$LOGS/cms.log" >&2; exit 1; }
    sleep 0.1
done
"$CLIENT" >"$LOGS/client.log" 2>&1 &
CLIENT_PID=$!
ready=
for _ in $(seq 150); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ONEBLOG_HTTP_PORT/readyz" 2>/dev/null)" = 200 ]; then
        ready=1; break
    fi
    kill -0 "$CLIENT_PID" 2>/dev/null || { cat "$LOGS/client.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$ready" ] || say "the client is up but has not reached the CMS yet (see $LOGS/client.log)"

email=$(sed -n 's/^email: //p' "$LOGIN")
pw=$(sed -n 's/^password: //p' "$LOGIN")
admin_note=
port_busy "$ONEBLOG_ADMIN_PORT" || admin_note="(not answering yet: see $LOGS/cms.log)"
cat <<MSG

  OneBlog is running.

    Reader site   http://127.0.0.1:$ONEBLOG_HTTP_PORT/
    Admin         http://127.0.0.1:$ONEBLOG_ADMIN_PORT/admin/ $admin_note
                  email     $email
                  password  $pw

    Data in $ONEBLOG_DATA_DIR (logs in $LOGS). Press Ctrl-C to stop.

MSG
# Wait for Ctrl-C (it reaches the nodes too, which then stop cleanly with status
# 0), or for a node to fail on its own.
rc=0
wait -n "$CMS_PID" "$CLIENT_PID" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; then
    say "a node stopped with status $rc; see $LOGS"
    stop 1
fi
stop 0
