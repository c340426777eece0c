#!/usr/bin/env bash
# cluster_static.sh BUILD - the cluster on loopback (127.0.0.2..5, a private
# EPMD) with the static strategy: four nodes form a full mesh and every node
# sees every service; calls from zone z1 go to z1 only; a killed node leaves the
# registry of the others and the hook reports it; it is reconnected (backoff)
# when it comes back under the same name; when no z1 member is left, calls fall
# back to z2. Then the epmd strategy: a node that knows only the EPMD host finds
# all of them.
. "$(dirname "$0")/dist_lib.sh" "$1"
start_epmd || { echo "0 passed, 1 failed"; exit 1; }
export ONEBLOG_COOKIE=cl-$RANDOM ONEBLOG_CLUSTER_POLL_MS=500
export ONEBLOG_CLUSTER_BACKOFF_MIN_MS=100 ONEBLOG_CLUSTER_BACKOFF_MAX_MS=800
S=s$RANDOM
N1=${S}a@127.0.0.2 N2=${S}b@127.0.0.3 N3=${S}c@127.0.0.4 N4=${S}d@127.0.0.5
export ONEBLOG_CLUSTER_NODES=$N1,$N2,$N3,$N4
node() { # node LOGNAME NAME ZONE SERVICES [extra env...]
    local log=$1 name=$2 zone=$3 svcs=$4
    shift 4
    env ONEBLOG_NODE="$name" ONEBLOG_CLUSTER_ZONE="$zone" CLUSTER_SERVICES="$svcs" "$@" \
        "$BIN/test-cluster_node" >"$T/$log.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$log=$!"
    disown $!
}
node n1 "$N1" z1 client:1.0 CLUSTER_PROBE=cms
node n2 "$N2" z1 cms:2.0
node n3 "$N3" z2 cms:2.0
node n4 "$N4" z2 cms:2.1,recs:0.3

full="view up=3 listed=3 members=5 "
for n in n1 n2 n3 n4; do
    check "$n: full mesh and all 5 members" wait_log $n "$full" 15
done
check "hooks: n1 saw 3 nodes come up" bash -c "[ \$(grep -c '^hook up' '$T/n1.log') -eq 3 ]"
# n1 probes from its start, when it may know only z2's cms: only the probes made
# once it sees everyone count (five of them).
m=$(mark n1)
probes_after() { [ "$(tail -n +$((m + 1)) "$T/n1.log" | grep -c '^probe ')" -ge 5 ]; }
check "n1 probes again once it sees everyone" wait_until 20 probes_after
check "n1 (z1) calls cms on z1 only" bash -c \
    "tail -n +$((m + 1)) '$T/n1.log' | grep '^probe ' | head -n 5 | grep -qv '^probe $N2 z1\$' && exit 1; exit 0"

# Kill the only z1 cms: it leaves every registry, the hook says so, and n1
# falls back to z2.
# (Marks: the same view and probe lines can come while the mesh forms.)
declare -A M=()
for n in n1 n3 n4; do M[$n]=$(mark $n); done
kill -9 "$PID_n2"
for n in n1 n3 n4; do
    check "$n: killed node left the registry" wait_log_after $n "${M[$n]}" "view up=2 listed=3 members=4 " 30
done
check "hook down on n1" wait_log_after n1 "${M[n1]}" "^hook down $N2" 20
check "n1 falls back to z2 members" wait_log_after n1 "${M[n1]}" "^probe ${S}[cd]@127.0.0.[45] z2" 20

# It comes back under the same name: reconnected by the backoff loop (nobody
# dials it from its side: it is started with no list).
for n in n1 n3 n4; do M[$n]=$(mark $n); done
node n2b "$N2" z1 cms:2.0 ONEBLOG_CLUSTER_NODES=
for n in n1 n3 n4; do
    check "$n: restarted node rejoined (retry with backoff)" wait_log_after $n "${M[$n]}" "$full" 30
done
check "n1 prefers z1 again" wait_until 15 bash -c "tail -n 3 '$T/n1.log' | grep -q '^probe $N2 z1'"

# epmd strategy: ask the EPMD of 127.0.0.1 for every name it knows. EPMD does
# not know hosts, so these two are named after the host the list uses.
node e1 "${S}e@127.0.0.1" z3 recs:1 ONEBLOG_CLUSTER_STRATEGY=epmd \
    ONEBLOG_CLUSTER_EPMD_HOSTS=127.0.0.1:$EPMD_PORT ONEBLOG_CLUSTER_NODES=
node e2 "${S}f@127.0.0.1" z3 recs:1 ONEBLOG_CLUSTER_STRATEGY=epmd \
    ONEBLOG_CLUSTER_EPMD_HOSTS=127.0.0.1:$EPMD_PORT ONEBLOG_CLUSTER_NODES=
check "epmd strategy: e1 lists every name EPMD knows" wait_log e1 "listed=5 " 10
check "epmd strategy: e1 and e2 find each other" wait_log e1 "nodes=${S}e@127.0.0.1,${S}f@127.0.0.1" 10
finish
