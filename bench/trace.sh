#!/usr/bin/env bash
# bench/trace.sh - the cost of tracing at 100% sampling, in one run: two front
# nodes (tests/integ/c/otel_front.c) side by side against one oneblog-cms, one with
# tracing off (no endpoint; metrics on) and one with OTEL_TRACES_SAMPLER=always_on
# exporting to a discarding OTLP sink. wrk alternates between them, ROUNDS times,
# on the cached page path (GET /cached: no RPC) and the RPC path (GET /post/:slug:
# a gen_server call to cms and SQLite). Ratios are medians of per-round ratios
# (traced / untraced requests per second; 1.0 = free):
#   trace_cost_http_ratio 0.97     trace_cost_rpc_ratio 0.93
# Figures, never a gate. Needs wrk and node.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${ONEBLOG_BUILD:-build}
ROUNDS=${ROUNDS:-5} SECS=${SECS:-3} CONNS=${CONNS:-16}
T=$(mktemp -d /tmp/bench-trace.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK=$(port)
node -e "require('http').createServer((q,r)=>{q.resume();q.on('end',()=>{r.writeHead(200,{'content-type':'application/json'});r.end('{}')})}).listen($SINK,'127.0.0.1')" &
PIDS+=($!)
export ERL_EPMD_PORT=$(port) ONEBLOG_COOKIE=benchtracecookie ONEBLOG_LOG_LEVEL=error
: >"$T/cms.out"
ONEBLOG_DATA_DIR="$T/data" ONEBLOG_CMS_NODE=cms@127.0.0.1 ONEBLOG_ADMIN_PORT=$(port) \
    "$B/bin/oneblog-cms" serve >"$T/cms.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q serving "$T/cms.out" && break; sleep 0.1; done
OFF=$(port) ON=$(port)
ONEBLOG_CLUSTER_NODES=cms@127.0.0.1 "$B/bin/test-otel_front" off@127.0.0.1 "$OFF" cms@127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
ONEBLOG_CLUSTER_NODES=cms@127.0.0.1 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK \
    OTEL_TRACES_SAMPLER=always_on OTEL_SERVICE_NAME=front \
    "$B/bin/test-otel_front" on@127.0.0.1 "$ON" cms@127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
sleep 2
rps() { wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$1$2" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
for path in /cached /post/the-cost-of-a-process; do
    curl -sf -o /dev/null "127.0.0.1:$OFF$path" && curl -sf -o /dev/null "127.0.0.1:$ON$path" ||
        { echo "trace.sh: $path does not answer 200"; exit 1; }
done
declare -a RH RR
for r in $(seq "$ROUNDS"); do
    a=$(rps "$OFF" /cached); b=$(rps "$ON" /cached)
    c=$(rps "$OFF" /post/the-cost-of-a-process); d=$(rps "$ON" /post/the-cost-of-a-process)
    RH+=("$(python3 -c "print($b/$a)")"); RR+=("$(python3 -c "print($d/$c)")")
    printf 'round %d: cached off %s on %s | rpc off %s on %s (req/s)\n' "$r" "$a" "$b" "$c" "$d"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
printf 'trace_cost_http_ratio %.3f\n' "$(median "${RH[@]}")"
printf 'trace_cost_rpc_ratio %.3f\n' "$(median "${RR[@]}")"
