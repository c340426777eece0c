#!/usr/bin/env bash
# bench/trace.sh - the cost of tracing at 100% sampling, measured in one run
# against tracing off (make bench-trace). Issue 9's target: traced / untraced
# throughput >= 0.95 on the cached page path and >= 0.90 on the RPC path.
#
# Two identical stacks side by side, each in a cluster of its own (its own EPMD
# port), one with tracing off (no endpoint; metrics on, as in production) and one
# with OTEL_TRACES_SAMPLER=always_on exporting to a discarding OTLP/HTTP sink:
#   oneblog-cms serve (SQLite, demo content)
#   oneblog-client (page cache on)    cached page path: GET / from the page cache
#                                     (the HTTP span, the reader cookie, the page
#                                     view; no CMS call)
#   test-otel_front                   RPC path: GET /post/:slug = one gen_server
#                                     call {get_post, Slug} to cms (client and
#                                     server spans, the cms's SQLite span)
# The servers are pinned to SERVER_CPUS, wrk and the sink to LOAD_CPUS (taskset),
# so the load generator does not take CPU from the server under test. Rounds
# alternate on/off, the order flipping every round (off,on then on,off) so that a
# drift of the machine hits both sides alike; each round gives a ratio on/off per
# path and the printed figure is the median of those ratios:
#   trace_cost_http_ratio 0.97     trace_cost_rpc_ratio 0.95
# plus, per round and as medians, untraced/traced server CPU time per request
# (trace_cpu_per_request_*_ratio: schedstat of the server processes).
# The traced stacks export OTLP/protobuf (the default) to bench/otlp_sink.c, a C
# receiver that discards. Figures, never a gate. Needs wrk and taskset.
#
#   ROUNDS=9 SECS=3 CONNS=16 SERVER_CPUS=0 LOAD_CPUS=1 bash bench/trace.sh
set -uo pipefail
cd "$(dirname "$0")/.."
B=${ONEBLOG_BUILD:-build}
ROUNDS=${ROUNDS:-9} SECS=${SECS:-3} CONNS=${CONNS:-16}
NCPU=$(nproc)
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-$([ "$NCPU" -gt 1 ] && echo 1 || echo 0)}
POST=the-cost-of-a-process
for tool in wrk taskset curl; do
    command -v $tool >/dev/null || { echo "trace.sh: $tool is needed"; exit 1; }
done
T=$(mktemp -d /tmp/bench-trace.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
. tests/integ/port_lib.sh
port() { free_port; }
srv() { taskset -c "$SERVER_CPUS" "$@"; }

SINK=$(port)
# The sink shares the load CPU with wrk: a small C program that discards the
# exports (bench/otlp_sink.c), so the collector's cost is not counted as the
# tracing's (the node sink used before took ~1 us of that CPU per span).
taskset -c "$LOAD_CPUS" "$B/bin/bench-otlp_sink" "$SINK" >"$T/sink.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do grep -q listening "$T/sink.out" && break; sleep 0.1; done

export ONEBLOG_COOKIE=benchtracecookie ONEBLOG_LOG_LEVEL=error
declare -A CLIENT FRONT METRICS CMSP CLIP FRP
# stack MODE: start cms, client and front of one mode (off | on).
stack() {
    local m=$1 epmd cms_port
    epmd=$(port)
    local -a tel=(OTEL_SDK_DISABLED=true)
    [ "$m" = on ] && tel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK OTEL_TRACES_SAMPLER=always_on)
    mkdir -p "$T/$m"
    : >"$T/$m/cms.out"
    env ERL_EPMD_PORT=$epmd "${tel[@]}" OTEL_SERVICE_NAME=cms-$m ONEBLOG_DATA_DIR="$T/$m/data" \
        ONEBLOG_CMS_NODE=cms$m@127.0.0.1 ONEBLOG_ADMIN=0 ONEBLOG_ADMIN_PORT=$(port) \
        taskset -c "$SERVER_CPUS" "$B/bin/oneblog-cms" serve >"$T/$m/cms.out" 2>&1 &
    PIDS+=($!)
    CMSP[$m]=$!
    for _ in $(seq 100); do grep -q serving "$T/$m/cms.out" && break; sleep 0.1; done
    grep -q serving "$T/$m/cms.out" || { echo "trace.sh: cms ($m) did not start"; cat "$T/$m/cms.out"; exit 1; }
    CLIENT[$m]=$(port) FRONT[$m]=$(port)
    env ERL_EPMD_PORT=$epmd "${tel[@]}" OTEL_SERVICE_NAME=client-$m \
        ONEBLOG_CLUSTER_NODES=cms$m@127.0.0.1 ONEBLOG_CLIENT_NODE=client$m@127.0.0.1 \
        ONEBLOG_HTTP_PORT=${CLIENT[$m]} ONEBLOG_IMAGES_DIR="$T/$m/images" \
        taskset -c "$SERVER_CPUS" "$B/bin/oneblog-client" >"$T/$m/client.out" 2>&1 &
    PIDS+=($!)
    CLIP[$m]=$!
    env ERL_EPMD_PORT=$epmd "${tel[@]}" OTEL_SERVICE_NAME=front-$m \
        ONEBLOG_CLUSTER_NODES=cms$m@127.0.0.1 \
        taskset -c "$SERVER_CPUS" "$B/bin/test-otel_front" front$m@127.0.0.1 "${FRONT[$m]}" \
        cms$m@127.0.0.1 >"$T/$m/front.out" 2>&1 &
    PIDS+=($!)
    FRP[$m]=$!
}
stack off
stack on
for m in off on; do
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:${CLIENT[$m]}/readyz")" = 200 ] && break
        sleep 0.1
    done
done
for m in off on; do
    for u in "127.0.0.1:${CLIENT[$m]}/" "127.0.0.1:${FRONT[$m]}/post/$POST"; do
        curl -sf -o /dev/null "$u" || { echo "trace.sh: $u does not answer 200"; exit 1; }
    done
done
grep -q listening "$T/sink.out" || { echo "trace.sh: the sink did not start"; exit 1; }

rps() { taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d"${1}s" "$2" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
# CPU time (ns) of processes, all their threads (schedstat: time on a CPU).
cpu_ns() {
    local p t sum=0
    for p in "$@"; do
        for t in /proc/"$p"/task/*/schedstat; do
            read -r ns _ <"$t" 2>/dev/null && sum=$((sum + ns))
        done
    done
    echo "$sum"
}
# measure KEY SECS URL PIDS...: req/s into CUR[KEY], server CPU us per request into CPUR[KEY].
measure() {
    local key=$1 secs=$2 url=$3 c0 out n
    shift 3
    c0=$(cpu_ns "$@")
    out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d"${secs}s" "$url" 2>/dev/null)
    n=$(awk '/ requests in / {print $1}' <<<"$out")
    CUR[$key]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    CPUR[$key]=$(python3 -c "print(($(cpu_ns "$@") - $c0) / 1e3 / max(${n:-0}, 1))")
}
# Warm up both sides of both paths (page cache filled, connections made).
for m in off on; do rps 1 "http://127.0.0.1:${CLIENT[$m]}/" >/dev/null; rps 1 "http://127.0.0.1:${FRONT[$m]}/post/$POST" >/dev/null; done

echo "tracing cost: $ROUNDS rounds of ${SECS}s, wrk -c$CONNS on CPU $LOAD_CPUS, servers on CPU $SERVER_CPUS ($NCPU CPUs)"
declare -a RH RR CH CR
declare -A CUR CPUR
for r in $(seq "$ROUNDS"); do
    order="off on"
    [ $((r % 2)) -eq 0 ] && order="on off"
    for m in $order; do measure http_$m "$SECS" "http://127.0.0.1:${CLIENT[$m]}/" "${CLIP[$m]}"; done
    for m in $order; do
        measure rpc_$m "$SECS" "http://127.0.0.1:${FRONT[$m]}/post/$POST" "${FRP[$m]}" "${CMSP[$m]}"
    done
    h=$(python3 -c "print(${CUR[http_on]:-0}/max(${CUR[http_off]:-0},1e-9))")
    p=$(python3 -c "print(${CUR[rpc_on]:-0}/max(${CUR[rpc_off]:-0},1e-9))")
    ch=$(python3 -c "print(${CPUR[http_off]}/max(${CPUR[http_on]},1e-9))")
    cr=$(python3 -c "print(${CPUR[rpc_off]}/max(${CPUR[rpc_on]},1e-9))")
    RH+=("$h"); RR+=("$p"); CH+=("$ch"); CR+=("$cr")
    printf 'round %d (%s): cached page off %s on %s (%.3f) | rpc off %s on %s (%.3f) req/s\n' "$r" \
        "${order/ /,}" "${CUR[http_off]}" "${CUR[http_on]}" "$h" "${CUR[rpc_off]}" "${CUR[rpc_on]}" "$p"
    printf '        server CPU per request: cached page off %.2f on %.2f us (%.3f) | rpc off %.2f on %.2f us (%.3f)\n' \
        "${CPUR[http_off]}" "${CPUR[http_on]}" "$ch" "${CPUR[rpc_off]}" "${CPUR[rpc_on]}" "$cr"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
# The traced side really exported (a full queue would drop spans and look cheap).
metric() { curl -s "$1/metrics" | awk -v n="$2" '$1 == n {print $2}'; }
for m in client front; do
    [ $m = client ] && u=127.0.0.1:${CLIENT[on]} || u=127.0.0.1:${FRONT[on]}
    printf '%s (tracing on): spans exported %s, dropped %s\n' $m \
        "$(metric "$u" cnode_trace_spans_exported_total)" "$(metric "$u" cnode_trace_spans_dropped_total)"
done
# The same cost as CPU: untraced / traced server CPU time per request (the
# client for the cached page; front + cms for the RPC path). Less sensitive to
# other load on the machine than req/s; a figure beside the ratios, not instead.
printf 'trace_cpu_per_request_http_ratio %.3f\n' "$(median "${CH[@]}")"
printf 'trace_cpu_per_request_rpc_ratio %.3f\n' "$(median "${CR[@]}")"
printf 'trace_cost_http_ratio %.3f\n' "$(median "${RH[@]}")"
printf 'trace_cost_rpc_ratio %.3f\n' "$(median "${RR[@]}")"
