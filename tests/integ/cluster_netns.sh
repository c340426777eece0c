#!/usr/bin/env bash
# cluster_netns.sh BUILD - the cluster across hosts: one network namespace per
# host on a bridge (10.77.0.0/24, REAL-COMPONENTS.md), each node with its own
# built-in EPMD, and dnsmasq in a namespace of its own (10.77.0.100:53).
# Addresses 10.77.x are only ever contacted from inside the namespaces.
#
#   DNS (A records, poll 1 s): 5 nodes form a full mesh with every service;
#   calls from zone a stay in zone a; a host cut off (link down) is declared
#   down within net_ticktime (4 s, +2 s margin), its member leaves the
#   registries, calls fall back to zone b, and it rejoins when the link is back;
#   a killed node leaves every registry; a new node (added to DNS, then started,
#   dialling nobody itself) is in everyone's mesh within two poll intervals
#   (+1 s margin).
#   Gossip (broadcast 10.77.0.255, 0.5 s): 5 nodes form a full mesh; a packet
#   with a bad HMAC is logged and ignored; a host cut off is down within
#   net_ticktime and rejoins when the link is back.
#
# Needs root and `ip netns` (it says SKIP otherwise). Takes about a minute.
. "$(dirname "$0")/dist_lib.sh" "$1"
P=ob$$
NS=()
netns_cleanup() {
    cleanup
    local n
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
}
trap netns_cleanup EXIT

if [ "$(id -u)" -ne 0 ] || ! ip netns add "${P}sw" 2>/dev/null; then
    echo "# SKIP: needs root and ip netns"
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
for i in 1 2 3 4 5 6; do host h$i "$(ip_of h$i)" || { echo "0 passed, 1 failed"; exit 1; }; done
host dns 10.77.0.100 || { echo "0 passed, 1 failed"; exit 1; }

# ---- DNS ------------------------------------------------------------------
HOSTS=$T/hosts
for i in 1 2 3 4 5; do echo "$(ip_of h$i) app.oneblog.internal"; done >"$HOSTS"
cat >"$T/dnsmasq.conf" <<EOF
port=53
listen-address=10.77.0.100
bind-interfaces
no-resolv
no-hosts
local=/oneblog.internal/
addn-hosts=$HOSTS
EOF
start_bg dnsmasq ip netns exec "${P}dns" dnsmasq --conf-file="$T/dnsmasq.conf" \
    --keep-in-foreground --user=root --pid-file= --log-facility=-
# resolves IP: dnsmasq answers app.oneblog.internal with IP among its addresses.
resolves() {
    ip netns exec "${P}h1" dig +short +time=1 +tries=1 @10.77.0.100 app.oneblog.internal | grep -qx "$1"
}
check "dnsmasq answers inside the namespaces" wait_until 20 resolves 10.77.0.6

export ONEBLOG_COOKIE=ns-$RANDOM ONEBLOG_NET_TICKTIME=4
export ONEBLOG_CLUSTER_BACKOFF_MIN_MS=200 ONEBLOG_CLUSTER_BACKOFF_MAX_MS=1000
DNSENV="ONEBLOG_CLUSTER_STRATEGY=dns ONEBLOG_CLUSTER_DNS_NAME=app.oneblog.internal
        ONEBLOG_CLUSTER_DNS_SERVER=10.77.0.100:53 ONEBLOG_CLUSTER_POLL_MS=1000"
# node LOG HOST ZONE SERVICES ENV... : a node named app@IP in the host's namespace
node() {
    local log=$1 h=$2 zone=$3 svcs=$4
    shift 4
    ip netns exec "$P$h" env ONEBLOG_NODE="app@$(ip_of "$h")" ONEBLOG_CLUSTER_ZONE="$zone" \
        CLUSTER_SERVICES="$svcs" "$@" "$BIN/test-cluster_node" >"$T/$log.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$log=$!"
    disown $!
}
# zone a: h1 (client, probes cms), h2 (cms); zone b: h3 (cms), h4 (recs), h5 (client)
start5() { # PREFIX ENV...
    local p=$1
    shift
    node ${p}1 h1 a client:1 CLUSTER_PROBE=cms "$@"
    node ${p}2 h2 a cms:2 "$@"
    node ${p}3 h3 b cms:2 "$@"
    node ${p}4 h4 b recs:1 "$@"
    node ${p}5 h5 b client:1 "$@"
}
start5 d $DNSENV
full="view up=4 listed=4 members=5 "
for i in 1 2 3 4 5; do
    check "dns: d$i sees 4 peers up and all 5 members" wait_log d$i "$full" 20
done
# d1 probes `cms` every 200 ms from its start, when it may know only h3's (zone
# b): only the probes made once it sees everyone count. Five of them, not a second.
m=$(mark d1)
probes_after() { [ "$(tail -n +$((m + 1)) "$T/d1.log" | grep -c '^probe ')" -ge "$1" ]; }
check "dns: d1 probes again once it sees everyone" wait_until 20 probes_after 5
check "dns: zone a calls go to zone a (h2) only" bash -c \
    "tail -n +$((m + 1)) '$T/d1.log' | grep '^probe ' | head -n 5 | grep -qv '^probe app@10.77.0.3 a\$' && exit 1; exit 0"

# wait_view LOG REGEX SECONDS: the latest view line of LOG matches REGEX.
wait_view() {
    local log=$1 re=$2 secs=$3
    for _ in $(seq 1 $((secs * 20))); do
        grep '^view' "$T/$log.log" | tail -n 1 | grep -qE "$re" && return 0
        sleep 0.05
    done
    echo "# timed out waiting for view /$re/ in $log.log; last:"
    grep '^view' "$T/$log.log" | tail -n 1 | sed 's/^/#   /'
    return 1
}
# marks LOGS...: remember how many lines each log holds now (MARK[LOG]).
declare -A MARK=()
marks() { local l; for l in "$@"; do MARK[$l]=$(mark "$l"); done; }
# ms_until_all REGEX LOGS... : wait (up to 30 s) until every log has a line
# matching REGEX after its line MARK[LOG] (what was logged before the event
# measured does not count); print the elapsed ms.
ms_until_all() {
    local re=$1 t0 l ok
    shift
    t0=$(date +%s%N)
    for _ in $(seq 1 600); do
        ok=1
        for l in "$@"; do
            tail -n +$((${MARK[$l]:-0} + 1)) "$T/$l.log" | grep -qE "$re" || { ok=0; break; }
        done
        [ $ok -eq 1 ] && { echo $((($(date +%s%N) - t0) / 1000000)); return 0; }
        sleep 0.05
    done
    echo 999999
}
# Cut h2 off.
marks d1 d3 d4 d5
ip -n "${P}h2" link set eth0 down
ms=$(ms_until_all "^hook down app@10.77.0.3" d1 d3 d4 d5)
# Timing is reported, not gated to the second (CI runs under ASan on a loaded
# machine); the bound still tells net_ticktime 4 s from the default 60 s.
check "dns: cut-off host seen down by all well within the default net_ticktime: $ms ms" test "$ms" -le 20000
check "dns: its cms member left the registries" wait_view d3 "view up=3 listed=4 members=4 " 20
check "dns: zone a falls back to zone b" wait_log_after d1 "${MARK[d1]}" "^probe app@10.77.0.4 b" 20
ip -n "${P}h2" link set eth0 up
for i in 1 2 3 4 5; do
    check "dns: d$i sees the host back after the link is up" wait_view d$i "$full" 40
done

# Kill h4's node: its member leaves every registry.
kill -9 "$PID_d4"
for i in 1 2 3 5; do
    check "dns: killed node left d$i's registry" wait_view d$i "view up=3 listed=4 members=4 " 30
done

# A new node: in DNS, then started; measured until every node has it up.
echo "$(ip_of h6) app.oneblog.internal" >>"$HOSTS"
kill -HUP "$PID_dnsmasq"
check "dns: dnsmasq serves the new address" wait_until 20 resolves "$(ip_of h6)"
# It dials nobody itself (empty static list): the others must find it by polling.
marks d1 d2 d3 d5
node d6 h6 b cms:3 ONEBLOG_CLUSTER_STRATEGY=static ONEBLOG_CLUSTER_NODES=
ms=$(ms_until_all "nodes=.*app@10.77.0.7" d1 d2 d3 d5)
check "dns: new node in every registry (found by polling; 2 poll intervals are 2 s): $ms ms" \
    test "$ms" -le 20000
# The gossip nodes take the same names and ports: the DNS ones must be gone.
for p in $PID_d1 $PID_d2 $PID_d3 $PID_d5 $PID_d6; do kill "$p" 2>/dev/null; done
gone() { local p; for p in $PID_d1 $PID_d2 $PID_d3 $PID_d5 $PID_d6; do ! kill -0 "$p" 2>/dev/null || return 1; done; }
check "dns: its nodes exit on SIGTERM" wait_until 30 gone

# ---- Gossip ---------------------------------------------------------------
SECRET=g-$RANDOM$RANDOM
GOSENV="ONEBLOG_CLUSTER_STRATEGY=gossip ONEBLOG_CLUSTER_GOSSIP_ADDR=10.77.0.255
        ONEBLOG_CLUSTER_GOSSIP_PORT=45892 ONEBLOG_CLUSTER_GOSSIP_SECRET=$SECRET
        ONEBLOG_CLUSTER_GOSSIP_INTERVAL_MS=500 ONEBLOG_CLUSTER_POLL_MS=1000"
start5 g $GOSENV
for i in 1 2 3 4 5; do
    check "gossip: g$i sees 4 peers up and all 5 members" wait_log g$i "$full" 20
done
# A well-formed heartbeat for a node that does not exist, signed with the
# wrong secret, broadcast from h1.
ip netns exec "${P}h1" python3 - <<'EOF'
import hmac, hashlib, os, socket, struct, time
name = b"intruder@10.77.0.66"
body = b"OBG1" + struct.pack(">Q", int(time.time() * 1000)) + os.urandom(16) + \
       struct.pack(">H", 4370) + bytes([len(name)]) + name
pkt = body + hmac.new(b"not-the-secret", body, hashlib.sha256).digest()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.sendto(pkt, ("10.77.0.255", 45892))
EOF
for i in 2 3; do
    check "gossip: bad HMAC logged by g$i" wait_log g$i "gossip: bad HMAC in packet from 10.77.0.2" 20
done
sleep 1.5
check "gossip: the intruder is not listed" bash -c \
    "! grep -q intruder '$T/g2.log' && tail -n 1 <(grep '^view' '$T/g2.log') | grep -q 'listed=4 '"
marks g1 g2 g4 g5
ip -n "${P}h3" link set eth0 down
ms=$(ms_until_all "^hook down app@10.77.0.4" g1 g2 g4 g5)
check "gossip: cut-off host seen down by all well within the default net_ticktime: $ms ms" test "$ms" -le 20000
ip -n "${P}h3" link set eth0 up
for i in 1 2 3 4 5; do
    check "gossip: g$i sees the host back after the link is up" wait_view g$i "up=4 listed=4 members=5 " 40
done
finish
