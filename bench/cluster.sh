#!/usr/bin/env bash
# bench/cluster.sh - `make bench-cluster`: how long 20 nodes take to become a
# full mesh with every service registered everywhere, by gossip and by DNS.
#
# 20 test-cluster_node processes on 127.0.0.11 .. 127.0.0.30 (EPMD-less, one
# distribution port shared by all, since each has its own address), one service
# each. Each node prints the wall-clock time at which it first saw 19 peers up
# and 20 members; the figure is the latest of those minus the start time of the
# last node to start. Gossip: broadcast on 127.255.255.255, 1 s heartbeats.
# DNS: dnsmasq on 127.0.0.1 with the 20 A records, polled every second. Each
# strategy runs ROUNDS times (default 3); the median is printed.
#
# Lines: mesh_20_gossip_s, mesh_20_dns_s, dns_poll_interval_s (figures, not gates).
set -u
BUILD=${ONEBLOG_BUILD:-build}
BIN=$(cd "$BUILD" && pwd)/bin
ROUNDS=${ROUNDS:-3}
N=20
POLL_MS=1000
T=$(mktemp -d /tmp/bench-cluster.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.2
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/../tests/integ/port_lib.sh"
DPORT=$(free_port)
DNSPORT=$(free_port)
GPORT=$(free_port)

for i in $(seq 1 $N); do echo "127.0.0.$((10 + i)) app.bench.internal"; done >"$T/hosts"
cat >"$T/dnsmasq.conf" <<EOF2
port=$DNSPORT
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
local=/bench.internal/
addn-hosts=$T/hosts
EOF2
dnsmasq --conf-file="$T/dnsmasq.conf" --keep-in-foreground --user=root --pid-file= \
    >"$T/dnsmasq.log" 2>&1 &
PIDS+=($!)
sleep 0.3

# round STRATEGY ENV... : start N nodes, wait for all to be full, print seconds.
round() {
    local strat=$1 i
    shift
    local pids=()
    rm -f "$T"/n*.log
    for i in $(seq 1 $N); do
        env ONEBLOG_NODE="app@127.0.0.$((10 + i))" ONEBLOG_COOKIE=bench ONEBLOG_EPMD_LESS=1 \
            ONEBLOG_DIST_PORT="$DPORT" CLUSTER_SERVICES="svc$i:1" \
            CLUSTER_EXPECT_NODES=$((N - 1)) CLUSTER_EXPECT_MEMBERS=$N "$@" \
            "$BIN/test-cluster_node" >"$T/n$i.log" 2>&1 &
        pids+=($!)
        PIDS+=($!)
    done
    local ok=0
    for _ in $(seq 1 300); do
        [ "$(grep -l '^full at' "$T"/n*.log 2>/dev/null | wc -l)" -eq $N ] && { ok=1; break; }
        sleep 0.1
    done
    local last_start last_full
    last_start=$(grep -h '^started at' "$T"/n*.log | awk '{print $3}' | sort -n | tail -1)
    last_full=$(grep -h '^full at' "$T"/n*.log | awk '{print $3}' | sort -n | tail -1)
    for i in "${pids[@]}"; do kill "$i" 2>/dev/null; done
    wait "${pids[@]}" 2>/dev/null
    if [ $ok -eq 0 ]; then
        echo "# $strat: no full mesh within 30 s" >&2
        echo "nan"
        return
    fi
    awk -v a="$last_start" -v b="$last_full" 'BEGIN { printf "%.3f\n", (b - a) / 1000 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

G=() D=()
for r in $(seq 1 "$ROUNDS"); do
    G+=("$(round gossip ONEBLOG_CLUSTER_STRATEGY=gossip ONEBLOG_CLUSTER_GOSSIP_ADDR=127.255.255.255 \
        ONEBLOG_CLUSTER_GOSSIP_PORT="$GPORT" ONEBLOG_CLUSTER_GOSSIP_SECRET=bench-secret \
        ONEBLOG_CLUSTER_GOSSIP_INTERVAL_MS=1000 ONEBLOG_CLUSTER_POLL_MS=$POLL_MS)")
    D+=("$(round dns ONEBLOG_CLUSTER_STRATEGY=dns ONEBLOG_CLUSTER_DNS_NAME=app.bench.internal \
        ONEBLOG_CLUSTER_DNS_SERVER=127.0.0.1:"$DNSPORT" ONEBLOG_CLUSTER_POLL_MS=$POLL_MS)")
    echo "# round $r: gossip ${G[-1]} s, dns ${D[-1]} s"
done
echo "mesh_20_gossip_s $(printf '%s\n' "${G[@]}" | median)"
echo "mesh_20_dns_s $(printf '%s\n' "${D[@]}" | median)"
echo "dns_poll_interval_s $(awk -v p=$POLL_MS 'BEGIN { printf "%.3f\n", p / 1000 }')"
