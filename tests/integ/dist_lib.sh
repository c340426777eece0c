# dist_lib.sh - shared helpers of the distribution integration tests (sourced,
# not run). Each test gets a temp dir, its own EPMD port (the kernel's pick, never
# 4369), loopback names only, and an EXIT trap that ends what it started by PID.
#
#   . "$(dirname "$0")/dist_lib.sh" "$1"
#   start_epmd                      # private epmd on $EPMD_PORT
#   start_bg NAME CMD...            # background process, output in $T/NAME.log
#   wait_log NAME REGEX SECONDS     # wait for a line in $T/NAME.log
#   mark NAME                       # lines in $T/NAME.log so far
#   wait_log_after NAME MARK REGEX SECONDS  # wait for a line after the first MARK
#   wait_until SECONDS CMD...       # wait until CMD succeeds
#   port_closed PORT                # nothing listens on PORT
#   check NAME CMD...               # run CMD, count pass/fail
#   finish                          # "N passed, N failed", exit status

set -u
BUILD=${1:-${ONEBLOG_BUILD:-build}}
BUILD=$(cd "$BUILD" && pwd)
BIN=$BUILD/bin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d /tmp/dist-test.XXXXXX)
PIDS=()
PASSED=0
FAILED=0

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -CONT "$p" 2>/dev/null
        kill "$p" 2>/dev/null
    done
    sleep 0.2
    for p in "${PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT

# A free TCP port on loopback: the kernel's pick (bind to port 0). A random
# number checked against `ss -ltn` could still be a port another socket holds
# (a connection's local port is no listener), and two tests could draw the same.
. "$(dirname "${BASH_SOURCE[0]}")/port_lib.sh"

EPMD_PORT=$(free_port)
export ERL_EPMD_PORT=$EPMD_PORT

start_bg() {
    local name=$1
    shift
    "$@" >"$T/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$name=$!"
    disown $! # no "Killed" notices from bash when the trap ends it
}

start_epmd() {
    start_bg epmd epmd -port "$EPMD_PORT"
    wait_port "$EPMD_PORT" 15
}

wait_port() {
    local port=$1 secs=$2
    for _ in $(seq 1 $((secs * 20))); do
        ss -ltn 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$port\$" && return 0
        sleep 0.05
    done
    return 1
}

# port_closed PORT: nothing listens on PORT (e.g. a killed server has let go).
port_closed() {
    ! ss -ltn 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$1\$"
}

wait_log() {
    local name=$1 re=$2 secs=$3
    for _ in $(seq 1 $((secs * 20))); do
        grep -qE "$re" "$T/$name.log" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "# timed out waiting for /$re/ in $name.log:"
    sed 's/^/#   /' "$T/$name.log" | tail -20
    return 1
}

# mark NAME: how many lines $T/NAME.log holds now, for wait_log_after.
mark() {
    local n
    n=$(wc -l <"$T/$1.log" 2>/dev/null)
    echo "${n:-0}"
}

# wait_log_after NAME MARK REGEX SECONDS: wait_log for a line after the first
# MARK lines, so that what an earlier phase logged cannot end the wait.
wait_log_after() {
    local name=$1 mk=$2 re=$3 secs=$4
    for _ in $(seq 1 $((secs * 20))); do
        tail -n +$((mk + 1)) "$T/$name.log" 2>/dev/null | grep -qE "$re" && return 0
        sleep 0.05
    done
    echo "# timed out waiting for /$re/ after line $mk of $name.log:"
    tail -n +$((mk + 1)) "$T/$name.log" | tail -20 | sed 's/^/#   /'
    return 1
}

# wait_until SECONDS CMD...: run CMD every 0.1 s until it succeeds or SECONDS
# pass. For what must happen (not a sleep): generous limits, since the wait ends
# as soon as CMD succeeds.
wait_until() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}

check() {
    local name=$1
    shift
    if "$@"; then
        echo "ok - $name"
        PASSED=$((PASSED + 1))
    else
        echo "not ok - $name"
        FAILED=$((FAILED + 1))
    fi
}

# The Erlang test module, compiled once per test run.
compile_erl() {
    mkdir -p "$T/ebin"
    erlc -o "$T/ebin" "$HERE/erl/dist_test.erl"
}

# erl NAME COOKIE ARGS... : a short-lived erl node that never starts an epmd.
erl_node() {
    local name=$1 cookie=$2
    shift 2
    timeout 120 erl -noshell -start_epmd false -pa "$T/ebin" -name "$name" \
        -setcookie "$cookie" "$@"
}

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}
