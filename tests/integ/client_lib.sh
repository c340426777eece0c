# tests/integ/client_lib.sh - sourced by the client_*.sh tests (not executable, so
# tests/run.sh does not run it): start `oneblog-cms serve` nodes and an
# `oneblog-client` on loopback with a private EPMD port, a cookie and a temp dir;
# stop everything by PID in the EXIT trap; count results.
#
#   T                 the temp dir (removed at exit)
#   cms_start NAME    start CMS node NAME@127.0.0.1 with its own SQLite in $T/NAME
#                     (demo content loaded); its PID in CMS_PID[NAME]
#   client_start NODES [ENV...]  start the client (ONEBLOG_CLUSTER_NODES=NODES) on
#                     a free port: BASE=http://127.0.0.1:PORT, CLIENT_PID
#   wait_ready        until /readyz says 200 (10 s at most)
#   served URL        pages the client at URL has answered so far (for loads
#                     measured in requests, not seconds)
#   until_served N URL...  until each URL's client has answered N more pages
#   ok/bad/check      as in cms_cli.sh; summary prints "N passed, N failed"
B=${1:-${ONEBLOG_BUILD:-build}}
CMS="$B/bin/oneblog-cms"
CLIENT="$B/bin/oneblog-client"
T=$(mktemp -d /tmp/client-test.XXXXXX)
declare -A CMS_PID=()
CLIENT_PID=
PIDS=()
passed=0 failed=0

client_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap client_cleanup EXIT

ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { # check NAME CMD... : passes when CMD succeeds
    local name=$1; shift
    if "$@" >"$T/last" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$T/last" | head -40; fi
}
summary() {
    echo "$(basename "$0"): $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# free_port: a free TCP port on 127.0.0.1, below the kernel's ephemeral range.
. "$(dirname "${BASH_SOURCE[0]}")/port_lib.sh"
# The cluster's EPMD port: one nothing holds (else no node can register and none
# finds another).
ERL_EPMD_PORT=$(free_port)
export ERL_EPMD_PORT
export ONEBLOG_COOKIE=client-test-cookie-$RANDOM$RANDOM
export ONEBLOG_LOG_LEVEL=${ONEBLOG_LOG_LEVEL:-warn}


cms_start() {
    local name=$1
    mkdir -p "$T/$name"
    ONEBLOG_DATA_DIR="$T/$name" ONEBLOG_CMS_NODE="$name@127.0.0.1" \
        "$CMS" serve >"$T/$name.out" 2>&1 &
    CMS_PID[$name]=$!
    PIDS+=($!)
    for _ in $(seq 300); do grep -qs serving "$T/$name.out" && return 0; sleep 0.1; done
    echo "cms $name did not start:"; cat "$T/$name.out"
    return 1
}

client_start() {
    local nodes=$1; shift
    CLIENT_PORT=$(free_port)
    BASE=http://127.0.0.1:$CLIENT_PORT
    env ONEBLOG_HTTP_PORT="$CLIENT_PORT" ONEBLOG_CLUSTER_NODES="$nodes" \
        ONEBLOG_CLIENT_NODE="client$$@127.0.0.1" ONEBLOG_SITE_URL="$BASE" \
        ONEBLOG_IMAGES_DIR="$T/images" ONEBLOG_CLUSTER_BACKOFF_MAX_MS=500 "$@" \
        "$CLIENT" >"$T/client.out" 2>&1 &
    CLIENT_PID=$!
    PIDS+=($!)
    for _ in $(seq 300); do grep -qs serving "$T/client.out" && return 0; sleep 0.1; done
    echo "client did not start:"; cat "$T/client.out"
    return 1
}

wait_ready() {
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 200 ] && return 0
        sleep 0.1
    done
    # Not ready: say why (the check prints the first lines of this).
    echo "readyz: $(curl -s --max-time 2 "$BASE/readyz")"
    echo "healthz: $(curl -s --max-time 2 "$BASE/healthz" | head -c 600)"
    echo "client log (last lines):"; tail -n 8 "$T/client.out"
    for f in "$T"/*.out; do
        [ "$f" = "$T/client.out" ] || { echo "$(basename "$f") (last lines):"; tail -n 3 "$f"; }
    done
    return 1
}

# status PATH [CURL ARGS...] -> the HTTP status
status() { local p=$1; shift; curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" "$BASE$p"; }

# served URL: pages URL's client has answered (any status) so far; the test's own
# /metrics, /healthz and /readyz requests are not counted.
served() {
    curl -s --max-time 10 "$1/metrics" | grep '^http_server_requests_total' |
        grep -vE 'route="/(metrics|healthz|readyz)"' | awk '{n += $2} END {print n+0}'
}
# until_served N URL...: each URL's client has answered N more pages than when
# called. The bound (120 s) only stops a load that died: a slow machine is slow.
until_served() {
    local n=$1 u ok end=$((SECONDS + 120)); shift
    local -A want=()
    for u in "$@"; do want[$u]=$(( $(served "$u") + n )); done
    while [ "$SECONDS" -lt "$end" ]; do
        ok=1
        for u in "$@"; do [ "$(served "$u")" -ge "${want[$u]}" ] || ok=0; done
        [ "$ok" = 1 ] && return 0
        sleep 0.1
    done
    for u in "$@"; do echo "$u: $(served "$u") requests served, wanted ${want[$u]}"; done
    return 1
}
