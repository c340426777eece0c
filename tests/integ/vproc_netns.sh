#!/usr/bin/env bash
# vproc_netns.sh BUILD - virtual processes across hosts: three nodes offering
# the `session` vproc type (tests/integ/c/vproc_node.c), a driver node that
# offers nothing and calls, each in its own network namespace on a bridge
# (10.77.0.0/24, REAL-COMPONENTS.md), and a real PostgreSQL in a fifth
# namespace (10.77.0.100) as the store. Addresses 10.77.x are only ever
# contacted from inside the namespaces.
#
#   10,000 keys {reader_session, K} are set to 7K+1 through the driver (spread
#   over the three nodes is printed and checked to be within 20% of even);
#   kill -9 of one node, then every key answers with its value, and the time
#   from the kill to the last answer is at most net_ticktime (5 s here); the
#   killed node's keys now answer from the other two.
#   Idle deactivation: with idle_ms 3 s every activation ends, and every key
#   answers again with its value, loaded from PostgreSQL.
#   The node comes back: the keys it owns move back to it (the others
#   deactivate them), and every key still answers with its value.
#   An Erlang node (real erl) calls GenServer-style {vproc, Node} with
#   {call, session, Key, Req} on a node that is not the key's owner: forwarded,
#   answered by the owner; the same in Elixir (GenServer.call).
#   n2 leaves gracefully (SIGTERM: withdraw, end activations, exit) while the
#   driver reads every key: all answer with their value, n2's from the others.
#   n3's link is cut (no socket closes): every key answers from n1 within
#   net_ticktime (+3 s), the time it takes to declare n3 down.
#
# Needs root, `ip netns` and PostgreSQL 15 (it says SKIP otherwise). About 45 s.
. "$(dirname "$0")/dist_lib.sh" "$1"
P=vp$$
NS=()
PGBIN=/usr/lib/postgresql/15/bin
PGT=
netns_cleanup() {
    if [ -n "$PGT" ] && [ -f "$PGT/data/postmaster.pid" ]; then
        ip netns exec "${P}db" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGT/data" \
            -m immediate stop >/dev/null 2>&1
    fi
    [ -n "$PGT" ] && rm -rf "$PGT"
    cleanup
    local n
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
}
trap netns_cleanup EXIT

if [ "$(id -u)" -ne 0 ] || [ ! -x "$PGBIN/postgres" ] || ! ip netns add "${P}sw" 2>/dev/null; then
    echo "# SKIP: needs root, ip netns and PostgreSQL 15"
    echo "0 passed, 0 failed"
    exit 0
fi
NS+=("${P}sw")
ip -n "${P}sw" link add br0 type bridge && ip -n "${P}sw" link set br0 up

# host NAME IP: a namespace with eth0 (veth to the bridge) and lo up.
host() {
    local h=$P$1 ip=$2 port=p${1}x
    ip netns add "$h" && NS+=("$h") &&
        ip link add eth0 netns "$h" type veth peer name "$port" netns "${P}sw" &&
        ip -n "${P}sw" link set "$port" master br0 up &&
        ip -n "$h" addr add "$ip/24" dev eth0 && ip -n "$h" link set eth0 up &&
        ip -n "$h" link set lo up
}
ip_of() { echo "10.77.0.$((${1#h} + 1))"; }
for i in 1 2 3 4; do host h$i "$(ip_of h$i)" || { echo "0 passed, 1 failed"; exit 1; }; done
host db 10.77.0.100 || { echo "0 passed, 1 failed"; exit 1; }

# ---- PostgreSQL in its own namespace ------------------------------------------
PGT=$(mktemp -d /tmp/vproc-pg.XXXXXX)
chown postgres:postgres "$PGT"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGT/data" -U postgres -A trust -E UTF8 \
    --locale=C.UTF-8 --no-sync >"$T/initdb.log" 2>&1
echo "host all all 10.77.0.0/24 trust" >>"$PGT/data/pg_hba.conf"
check "PostgreSQL starts in its namespace" ip netns exec "${P}db" runuser -u postgres -- \
    "$PGBIN/pg_ctl" -D "$PGT/data" -l "$PGT/log" -w \
    -o "-p 55432 -k $PGT -c listen_addresses=10.77.0.100 -c fsync=off -c max_connections=100" \
    start
DB="host=10.77.0.100 port=55432 user=postgres dbname=postgres connect_timeout=3"

# ---- nodes -----------------------------------------------------------------------
export ONEBLOG_COOKIE=vp-$RANDOM ONEBLOG_NET_TICKTIME=5
export ONEBLOG_CLUSTER_STRATEGY=static ONEBLOG_CLUSTER_POLL_MS=500
export ONEBLOG_CLUSTER_BACKOFF_MIN_MS=100 ONEBLOG_CLUSTER_BACKOFF_MAX_MS=500
export ONEBLOG_CLUSTER_NODES=app@10.77.0.2,app@10.77.0.3,app@10.77.0.4,app@10.77.0.5
export VPROC_DATABASE_URL=$DB VPROC_IDLE_MS=3000
# node LOG HOST ENV... : app@IP in the host's namespace
node() {
    local log=$1 h=$2
    shift 2
    ip netns exec "$P$h" env ONEBLOG_NODE="app@$(ip_of "$h")" "$@" \
        "$BIN/test-vproc_node" >>"$T/$log.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$log=$!"
    disown $!
}
for i in 1 2 3; do node n$i h$i VPROC_OFFER=1; done
node d h4 VPROC_DRIVE=10000 VPROC_EXPECT=3 VPROC_CONC=32 VPROC_GO="$T/go"

check "driver: 10,000 keys set through 3 nodes" wait_log d "^set done .*ok=10000 fail=0" 90
grep '^set done' "$T/d.log" | sed 's/^/# /'
# spread LINE: every node's count within 20% of a third.
spread_ok() {
    local line=$1 n c
    for i in 1 2 3; do
        n="app@$(ip_of h$i)"
        c=$(echo "$line" | grep -oE "$n:[0-9]+" | cut -d: -f2)
        [ -n "$c" ] && [ "$c" -ge 2666 ] && [ "$c" -le 4000 ] || return 1
    done
}
check "keys spread evenly (each node 2666..4000 of 10,000)" spread_ok "$(grep '^set done' "$T/d.log")"
for i in 1 2 3; do
    check "n$i holds activations" wait_log n$i "^stats active=[1-9]" 20
done

# ---- kill -9 of n3 -----------------------------------------------------------------
# Where n1's and n2's stats stand before verify 1 (for the idle check below).
m1=$(mark n1) m2=$(mark n2)
kill -9 "$PID_n3"
touch "$T/go.1"
check "after kill -9 of n3: every key answers with its state" wait_log d "^verify 1 ok=10000 bad=0 err=0 " 30
line=$(grep '^verify 1' "$T/d.log")
echo "# $line"
ms=$(echo "$line" | grep -oE 'ms=[0-9]+' | cut -d= -f2)
# Issue 11's promise: every key answers within one net_ticktime of the kill. A
# killed node's sockets close at once, so this is ~0.3 s plain and ~1 s under ASan:
# the bound tells "the caller learnt of the kill from the closed connection" from
# "it waited for a tick timeout", with a wide margin for a loaded machine.
check "all 10,000 keys answered within net_ticktime (5000 ms) of the kill: ${ms:-?} ms" \
    test "${ms:-999999}" -le 5000
check "n3's keys answer from n1 and n2 only" bash -c "! echo '$line' | grep -q 'app@10.77.0.4:'"

# ---- idle deactivation and reactivation from the store -------------------------------
# idle_after_verify LOG MARK: after line MARK, a stats line with more calls than
# the last one before it (verify 1 reached the node), then one with no activation
# left and idle stops counted. A plain "active=0 idle>0" line could be the set
# phase's activations ending, had verify 1 started 3 s late.
idle_after_verify() {
    awk -v m="$2" '
        /^stats / {
            match($0, / calls=[0-9]+/); c = substr($0, RSTART + 7, RLENGTH - 7) + 0
            match($0, /active=[0-9]+/); a = substr($0, RSTART + 7, RLENGTH - 7) + 0
            if (NR <= m) { c0 = c; next }
            if (c > c0) seen = 1
            if (seen && a == 0 && $0 ~ / idle=[1-9]/) { ok = 1; exit }
        }
        END { exit !ok }' "$T/$1.log"
}
check "n1: every activation ended after idle_ms" wait_until 30 idle_after_verify n1 "$m1"
check "n2: every activation ended after idle_ms" wait_until 30 idle_after_verify n2 "$m2"
before=$(grep '^stats' "$T/n1.log" | tail -n 1 | grep -oE 'activations=[0-9]+' | cut -d= -f2)
touch "$T/go.2"
check "after idle deactivation: every key answers with its state" wait_log d "^verify 2 ok=10000 bad=0 err=0 " 30
grep '^verify 2' "$T/d.log" | sed 's/^/# /'
activations() { grep '^stats' "$T/n1.log" | tail -n 1 | grep -oE 'activations=[0-9]+' | cut -d= -f2; }
reactivated() { local a; a=$(activations); [ "${a:-0}" -ge $((${before:-0} + 3000)) ]; }
wait_until 10 reactivated # its stats line comes a little later: waited for, not slept on
after=$(activations)
check "n1 activated its keys again from the store (${before:-?} -> ${after:-?})" \
    test "${after:-0}" -ge $((${before:-0} + 3000))

# ---- n3 comes back: its keys move back ---------------------------------------------------
m1=$(mark n1) m2=$(mark n2)
node n3 h3 VPROC_OFFER=1
moved_back() {
    tail -n +$((m1 + 1)) "$T/n1.log" | grep -q '^stats .* moved=[1-9]' &&
        tail -n +$((m2 + 1)) "$T/n2.log" | grep -q '^stats .* moved=[1-9]'
}
check "n1 and n2 deactivate the keys that move back to n3" wait_until 30 moved_back
touch "$T/go.3"
check "after n3 is back: every key answers with its state" wait_log d "^verify 3 ok=10000 bad=0 err=0 " 30
line=$(grep '^verify 3' "$T/d.log")
echo "# $line"
check "n3 serves its keys again" spread_ok "$line"

# ---- Erlang calls a vproc through any node ------------------------------------------------
# erl runs in a namespace of its own with a real epmd there; it finds our
# nodes through their built-in EPMDs.
if command -v erl >/dev/null && host h5 10.77.0.6; then
    start_bg epmd_h5 ip netns exec "${P}h5" epmd -port "$EPMD_PORT"
    # erl registers its name with this epmd at start: it must be up first.
    epmd_h5_up() { ip netns exec "${P}h5" epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; }
    check "epmd runs in h5" wait_until 20 epmd_h5_up
    # Key 5 lives on one node; ask each of the three: the answer is 36 (7*5+1).
    for i in 1 2 3; do
        ip netns exec "${P}h5" timeout 30 erl -noshell -start_epmd false -name "e$i@10.77.0.6" \
            -setcookie "$ONEBLOG_COOKIE" -eval "
            R = gen_server:call({vproc, 'app@$(ip_of h$i)'},
                                {call, session, {reader_session, 5}, get}, 5000),
            io:format(\"erl got ~p~n\", [R]), halt(case R of 36 -> 0; _ -> 1 end)." \
            >"$T/erl$i.log" 2>&1
        rc=$?
        sed 's/^/# /' "$T/erl$i.log" | tail -n 3
        check "erl: gen_server:call({vproc, n$i}, {call, session, {reader_session, 5}, get}) = 36" \
            test "$rc" -eq 0
    done
    # The Elixir form of docs/virtual-processes.md, through n2.
    if command -v elixir >/dev/null; then
        ip netns exec "${P}h5" timeout 60 elixir --name x@10.77.0.6 --cookie "$ONEBLOG_COOKIE" \
            --erl "-start_epmd false" -e "
            r = GenServer.call({:vproc, :\"app@10.77.0.3\"},
                               {:call, :session, {:reader_session, 7}, :get})
            IO.puts(\"elixir got #{inspect(r)}\")
            System.halt(if r == 50, do: 0, else: 1)" >"$T/elixir.log" 2>&1
        rc=$?
        sed 's/^/# /' "$T/elixir.log" | tail -n 3
        check "elixir: GenServer.call({:vproc, n2}, {:call, :session, {:reader_session, 7}, :get}) = 50" \
            test "$rc" -eq 0
    fi
    for i in 1 2 3; do
        grep '^stats' "$T/n$i.log" | tail -n 1 | sed "s/^/# n$i /"
    done
    check "the calls through non-owners were forwarded" bash -c \
        "cat '$T'/n[123].log | grep '^stats' | grep -q 'forwards=[1-9]'"
fi
# ---- n2 leaves gracefully (SIGTERM): its keys move, nothing is lost ------------------------
# First every key is read, so that n2 holds its activations when it leaves.
m2=$(mark n2)
touch "$T/go.4"
check "every key answers (activations on all three)" wait_log d "^verify 4 ok=10000 bad=0 err=0 " 30
# A stats line of verify 4's (the first ones of the test satisfied the old wait).
check "n2 holds activations" wait_log_after n2 "$m2" "^stats active=[1-9]" 20
kill -TERM "$PID_n2"
touch "$T/go.5"
check "n2 leaves: withdraws, ends its activations, exits" wait_log n2 "^left active=0" 30
check "while and after n2 leaves: every key answers with its state" \
    wait_log d "^verify 5 ok=10000 bad=0 err=0 " 30
line=$(grep '^verify 5' "$T/d.log")
echo "# $line"
check "n2's keys answer from n1 and n3" bash -c "! echo '$line' | grep -q 'app@10.77.0.3:'"

# ---- n3's link is cut: its keys answer from n1 once n3 is declared down -------------------
# No socket closes: the other nodes see n3 down only after net_ticktime, and
# calls already sent to it fail then and are sent again (the driver uses
# CN_VPROC_RETRY_UNKNOWN; its requests are idempotent).
touch "$T/go.6"
check "every key answers (activations on n1 and n3)" wait_log d "^verify 6 ok=10000 bad=0 err=0 " 30
ip -n "${P}h3" link set eth0 down
touch "$T/go.7"
check "n3 cut off: every key answers with its state" wait_log d "^verify 7 ok=10000 bad=0 err=0 " 30
line=$(grep '^verify 7' "$T/d.log")
echo "# $line"
ms=$(echo "$line" | grep -oE 'ms=[0-9]+' | cut -d= -f2)
# A cut link is found by the tick (net_ticktime 5 s here): the time is reported,
# and bounded only at 20 s, which still tells it from the 60 s default.
echo "# all answered ${ms:-?} ms after the cut (net_ticktime is 5000 ms)"
check "all answered within 20 s of the cut (net_ticktime 5 s; the default would be 60 s)" \
    test "${ms:-999999}" -le 20000
check "all from n1" bash -c "echo '$line' | grep -q 'by=app@10.77.0.2:10000\$'"

if [ "$FAILED" -ne 0 ]; then
    echo "# driver's complaints and each node's last counters:"
    grep -E '^key [0-9]+:' "$T/d.log" | head -n 10 | sed 's/^/#   /'
    for i in 1 2 3; do grep '^stats' "$T/n$i.log" | tail -n 2 | sed "s/^/#   n$i /"; done
    for l in d n1 n2 n3; do
        if grep -q 'ERROR: AddressSanitizer\|runtime error' "$T/$l.log"; then
            grep -A 40 'ERROR: AddressSanitizer\|runtime error' "$T/$l.log" | sed "s/^/#   $l: /"
        else
            grep -vE '^(stats|key [0-9]+:)|warn dist' "$T/$l.log" | tail -n 12 | sed "s/^/#   $l: /"
        fi
    done
fi
finish
