#!/usr/bin/env bash
# events_contract.sh BUILD - the event store contract (test-events_contract) on all
# three backends, plus what only a real server shows:
#   file:      a temporary directory
#   postgres:  a PostgreSQL 15 started here (initdb as postgres, loopback, a free
#              port), stopped by PID at exit; UPDATE/DELETE/TRUNCATE are refused
#   mongodb:   CongoDB, the MongoDB-wire-compatible server of tests/mongo
#              (`npm ci` from the committed lockfile), on a free loopback port
# For PostgreSQL and MongoDB: the server goes away in the middle of a stream of
# appends; the CLI reports a clear error, and after a restart (PostgreSQL) every
# acknowledged event is there and the log verifies. An unreachable server at
# open gives a clear error and exit status 2.
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${1:-build}
BIN=$B/bin
passed=0
failed=0
T=$(mktemp -d /tmp/ev_contract.XXXXXX)
chown postgres:postgres "$T" 2>/dev/null
PG=/usr/lib/postgresql/15/bin
pg_started=
mongo_pid=

cleanup() {
    if [ -n "$pg_started" ]; then
        runuser -u postgres -- "$PG/pg_ctl" -D "$T/pg" -m immediate stop >/dev/null 2>&1
    fi
    [ -n "$mongo_pid" ] && kill "$mongo_pid" 2>/dev/null && wait "$mongo_pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok   $*"; }
ko() { failed=$((failed + 1)); echo "FAIL $*"; }

# contract NAME URL: run the suite, add its counts.
contract() {
    local out line
    out=$("$BIN/test-events_contract" "$2" 2>&1)
    echo "$out" | sed "s/^/[$1] /"
    line=$(echo "$out" | tail -n 1)
    if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
    else
        ko "$1: contract suite did not finish"
    fi
}

# free_port: a free TCP port on loopback, the kernel's pick (a random number that
# refuses a connection can still be a port another socket holds).
. tests/integ/port_lib.sh

# outage NAME URL STOP_CMD [START_CMD]: append a stream of events with the CLI,
# stop the server in the middle; the CLI must stop with a clear error; after
# START_CMD (if any) every acknowledged seq is there and the log verifies.
outage() {
    local name=$1 url=$2 stop=$3 start=${4:-} apid rc
    EVENTS_URL=$url "$BIN/oneblog-events" append --type page.view --actor outage --count 100000 \
        > "$T/acked.$name" 2> "$T/append.$name" &
    apid=$!
    # Stopped once 50 appends are acknowledged (60 s at most: a cold, sanitized
    # client on a busy machine is slow to start), so that some are.
    for _ in $(seq 1 1200); do
        [ "$(wc -l < "$T/acked.$name")" -ge 50 ] && break
        kill -0 "$apid" 2>/dev/null || break
        sleep 0.05
    done
    eval "$stop"
    wait "$apid"
    rc=$?
    if [ "$rc" -ne 0 ] && grep -qiE 'cannot connect|connection|server|socket|select' "$T/append.$name"; then
        ok "$name: appends fail with a clear error when the server goes: $(head -c 160 "$T/append.$name")"
    else
        ko "$name: append after the server stopped: exit $rc, '$(head -c 300 "$T/append.$name")'"
    fi
    [ -n "$start" ] || return 0
    eval "$start"
    local last n missing
    n=$(wc -l < "$T/acked.$name")
    EVENTS_URL=$url "$BIN/oneblog-events" export --format jsonl > "$T/export.$name" 2>/dev/null
    missing=0
    while read -r seq; do
        grep -q "\"seq\" : { \"\$numberLong\" : \"$seq\" }" "$T/export.$name" || missing=$((missing + 1))
    done < "$T/acked.$name"
    if [ "$missing" -eq 0 ] && [ "$n" -gt 0 ]; then
        ok "$name: all $n acknowledged events survived the outage"
    else
        ko "$name: $missing of $n acknowledged events missing after the outage"
    fi
    if EVENTS_URL=$url "$BIN/oneblog-events" verify > "$T/verify.$name" 2>&1; then
        ok "$name: verify after the outage"
    else
        ko "$name: verify after the outage: $(cat "$T/verify.$name")"
    fi
}

for b in test-events_contract oneblog-events; do
    [ -x "$BIN/$b" ] || { echo "FAIL $BIN/$b is not built"; echo "0 passed, 1 failed"; exit 1; }
done

# ---- file -----------------------------------------------------------------------
contract file "file:$T/file"

# ---- PostgreSQL -----------------------------------------------------------------
pgport=$(free_port)
if runuser -u postgres -- "$PG/initdb" -D "$T/pg" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 --no-sync >/dev/null 2>&1 &&
   runuser -u postgres -- "$PG/pg_ctl" -D "$T/pg" -l "$T/pg.log" -w \
        -o "-p $pgport -k $T -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null; then
    pg_started=1
    PGURL="postgres://postgres@127.0.0.1:$pgport/postgres"
    contract postgres "$PGURL"
    EVENTS_URL=$PGURL "$BIN/oneblog-events" append --type page.view --count 2 >/dev/null
    for sql in "UPDATE events SET type = 'x'" "DELETE FROM events" "TRUNCATE events"; do
        if psql -h 127.0.0.1 -p "$pgport" -U postgres -c "$sql" 2>&1 | grep -q 'events are immutable'; then
            ok "postgres: refused: $sql"
        else
            ko "postgres: not refused: $sql"
        fi
    done
    out=$(EVENTS_URL="postgres://postgres@127.0.0.1:$(free_port)/postgres" "$BIN/oneblog-events" tail 2>&1)
    rc=$?
    if [ "$rc" -eq 2 ] && [[ $out == *"cannot connect"* ]]; then ok "postgres: unreachable: $out"; else ko "postgres unreachable: rc $rc: $out"; fi
    outage postgres "$PGURL?table=outage" \
        "runuser -u postgres -- $PG/pg_ctl -D $T/pg -m immediate stop >/dev/null; pg_started=" \
        "runuser -u postgres -- $PG/pg_ctl -D $T/pg -l $T/pg.log -w -o '-p $pgport -k $T -c listen_addresses=127.0.0.1 -c fsync=off' start >/dev/null && pg_started=1"
else
    ko "postgres: could not start a server: $(tail -n 3 "$T/pg.log" 2>/dev/null)"
fi

# ---- MongoDB (wire-compatible test server) --------------------------------------
if [ ! -d tests/mongo/node_modules/@push.rocks/smartmongo ]; then
    (cd tests/mongo && npm ci --no-audit --no-fund >/dev/null 2>&1) || true
fi
mport=$(free_port)
if [ -d tests/mongo/node_modules/@push.rocks/smartmongo ]; then
    node tests/mongo/server.mjs "$mport" > "$T/mongo.log" 2>&1 &
    mongo_pid=$!
    # A cold start of node (right after npm ci, on a busy machine) can take a while.
    for _ in $(seq 1 600); do
        grep -q listening "$T/mongo.log" && break
        kill -0 "$mongo_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q listening "$T/mongo.log" ||
        ko "mongodb: the test server did not start: $(head -c 300 "$T/mongo.log")"
    MURL="mongodb://127.0.0.1:$mport/oneblog"
    contract mongodb "$MURL"
    out=$(EVENTS_URL="mongodb://127.0.0.1:$(free_port)/oneblog?serverSelectionTimeoutMS=500" \
          "$BIN/oneblog-events" tail 2>&1)
    rc=$?
    if [ "$rc" -eq 2 ] && [[ $out == *"cannot reach"* ]]; then ok "mongodb: unreachable: $out"; else ko "mongodb unreachable: rc $rc: $out"; fi
    # The test server keeps data in memory: after the outage only the clear error
    # can be checked (acknowledged events die with it, as with any in-memory server).
    outage mongodb "$MURL?collection=outage&serverSelectionTimeoutMS=1000" \
        "kill $mongo_pid; wait $mongo_pid 2>/dev/null; mongo_pid="
else
    ko "mongodb: tests/mongo: npm ci failed (no test server)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
