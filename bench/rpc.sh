#!/usr/bin/env bash
# bench/rpc.sh - a remote call with a 1 KiB reply, four ways (and ours once more
# without busy polling), interleaved in one run:
#
#   tcp        raw TCP ping-pong in C, the same bytes as the calls (the limit):
#              bench-rpc tcp-client -> bench-rpc tcp-server
#   beam       BEAM -> BEAM gen_server:call over Erlang distribution
#              (bench/beam/rpc_bench.erl client -> server)
#   cnode      libcnode -> libcnode (bench-rpc cnode-client -> cnode-server)
#   erl_cnode  erl -> libcnode (rpc_bench client -> bench-rpc cnode-server)
#   cnode_nospin  libcnode -> libcnode with busy polling off on both sides
#              (ONEBLOG_DIST_BUSY_POLL_US=0): what the spinning buys
#   cnode_tls  libcnode -> libcnode over TLS (ONEBLOG_DIST_TLS=1, TLS 1.3, a
#              throwaway CA and certificates made with openssl in the temp dir)
#   beam_tls   BEAM -> BEAM over TLS (-proto_dist inet_tls, TLS 1.3, same
#              certificates): the real peer for cnode_tls
#
# Every client measures p50/p99 of single calls (1 caller) and calls/s with 64
# concurrent callers (64 connections for raw TCP; 64 processes sharing the one
# distribution connection otherwise). The request is {get, 42}, the reply a 1 KiB
# binary, everywhere.
#
# The four servers run for the whole run, on loopback, with a private EPMD. Each
# round runs the clients back to back in an order that rotates every round,
# because idle CPUs here wake slowly and the machine's speed drifts. With two or
# more CPUs the servers are pinned to CPU 0 and the clients to CPU 1 (PIN=0 turns
# that off), so each side has one core: our nodes have one scheduler, and erl
# started on one CPU runs one scheduler as well.
#
# stdout: `name: value` lines - medians over the rounds of SYS_p50_us, SYS_p99_us,
#   SYS_calls_per_s_64 for each system, then ratios, each the median of the
#   per-round ratios (the runs of a round are close together in time):
#     rpc_p50_vs_tcp                        cnode p50 / tcp p50
#     beam_p50_vs_tcp                       beam p50 / tcp p50
#     erl_to_cnode_p50_vs_tcp               erl_cnode p50 / tcp p50
#     rpc_calls_per_s_64_vs_beam            cnode calls/s / beam calls/s
#     erl_to_cnode_calls_per_s_64_vs_beam   erl_cnode calls/s / beam calls/s
#     rpc_calls_per_s_64_vs_tcp             cnode calls/s / tcp round trips/s
#     rpc_nospin_p50_vs_tcp                 cnode_nospin p50 / tcp p50
#     rpc_nospin_calls_per_s_64_vs_beam     cnode_nospin calls/s / beam calls/s
#     rpc_tls_p50_vs_plain                  cnode_tls p50 / cnode p50
#     rpc_tls_calls_per_s_64_vs_plain       cnode_tls calls/s / cnode calls/s
#     rpc_tls_p50_vs_beam_tls               cnode_tls p50 / beam_tls p50
#     rpc_tls_calls_per_s_64_vs_beam_tls    cnode_tls calls/s / beam_tls calls/s
#   and `rounds: N`.
# stderr: every run's raw figures.
#
# Environment: ROUNDS (3), PIN (1), BENCH_RPC_SAMPLES (20000 timed single calls),
# BENCH_RPC_CALLS (1000 per concurrent caller), ONEBLOG_BUILD (build).
# `make bench-rpc` builds build/bin/bench-rpc first.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/integ/port_lib.sh

ROUNDS=${ROUNDS:-3}
PIN=${PIN:-1}
B=${ONEBLOG_BUILD:-build}
BIN=$B/bin/bench-rpc
export BENCH_RPC_SAMPLES=${BENCH_RPC_SAMPLES:-20000}
export BENCH_RPC_CALLS=${BENCH_RPC_CALLS:-1000}
SYSTEMS=(tcp beam cnode erl_cnode cnode_nospin cnode_tls beam_tls)

die() { echo "bench/rpc.sh: error: $*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $BENCH_RPC_SAMPLES =~ ^[1-9][0-9]+$ ]] || die "BENCH_RPC_SAMPLES must be an integer >= 10"
[[ $BENCH_RPC_CALLS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RPC_CALLS must be a positive integer"
[[ -x $BIN ]] || die "$BIN not built (make bench-rpc builds it)"
command -v erl >/dev/null && command -v erlc >/dev/null && command -v epmd >/dev/null ||
    die "erl/erlc/epmd (Erlang/OTP) not found in PATH"
command -v openssl >/dev/null || die "openssl (the CLI) not found in PATH"

T=$(mktemp -d /tmp/bench-rpc.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

erlc -o "$T" bench/beam/rpc_bench.erl

# TLS: a CA and one certificate every TLS node here uses (server and client).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/node.key" \
    -out "$T/node.csr" -subj "/CN=bench node" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\n' >"$T/node.ext"
openssl x509 -req -in "$T/node.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
    -days 1 -extfile "$T/node.ext" -out "$T/node.pem" 2>/dev/null || die "openssl failed"
TLS_ENV=(ONEBLOG_DIST_TLS=1 ONEBLOG_DIST_TLS_CERT=$T/node.pem ONEBLOG_DIST_TLS_KEY=$T/node.key
         ONEBLOG_DIST_TLS_CA=$T/ca.pem)
TLS_OPTS="{certfile, \"$T/node.pem\"}, {keyfile, \"$T/node.key\"}, {cacertfile, \"$T/ca.pem\"},
          {verify, verify_peer}, {versions, ['tlsv1.3']}"
printf '[{server, [%s, {fail_if_no_peer_cert, true}]}, {client, [%s]}].\n' \
    "$TLS_OPTS" "$TLS_OPTS" >"$T/ssl_dist.conf"
ERL_TLS=(-proto_dist inet_tls -ssl_dist_optfile "$T/ssl_dist.conf")

SRV_PIN=() CLI_PIN=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    SRV_PIN=(taskset -c 0)
    CLI_PIN=(taskset -c 1)
fi

# A private EPMD on a port the kernel says is free; every node here uses it.
EPMD_PORT=$(free_port)
export ERL_EPMD_PORT=$EPMD_PORT
export ONEBLOG_COOKIE=bench-rpc-$RANDOM$RANDOM
unset ONEBLOG_COOKIE_FILE ONEBLOG_EPMD_LESS ONEBLOG_DIST_PORT
epmd -port "$EPMD_PORT" >"$T/epmd.log" 2>&1 &
PIDS+=($!)

# erl_node srv|cli NAME ARGS...: an erl node on our EPMD (never starting its own),
# pinned as a server or a client.
erl_node() {
    local -a pin
    if [ "$1" = srv ]; then pin=("${SRV_PIN[@]}"); else pin=("${CLI_PIN[@]}"); fi
    local name=$2
    shift 2
    # exec: a background server's $! must be the VM itself (erl and taskset exec
    # too), or the cleanup would end only the shell around it.
    exec "${pin[@]}" erl -noshell -start_epmd false -pa "$T" -name "$name" \
        -setcookie "$ONEBLOG_COOKIE" "$@"
}

wait_log() { # wait_log FILE REGEX SECONDS
    for _ in $(seq 1 $(($3 * 20))); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    die "timed out waiting for /$2/ in $1: $(tail -n 5 "$1" 2>&1)"
}

ID=$$
BEAM_SRV=rpcbeam$ID@127.0.0.1
CNODE_SRV=rpccnode$ID@127.0.0.1
NOSPIN_SRV=rpcnospin$ID@127.0.0.1
TLS_SRV=rpctls$ID@127.0.0.1
BEAM_TLS_SRV=rpcbeamtls$ID@127.0.0.1

"${SRV_PIN[@]}" "$BIN" tcp-server >"$T/tcp.log" 2>&1 &
PIDS+=($!)
ONEBLOG_NODE=$CNODE_SRV "${SRV_PIN[@]}" "$BIN" cnode-server >"$T/cnode.log" 2>&1 &
PIDS+=($!)
ONEBLOG_NODE=$NOSPIN_SRV ONEBLOG_DIST_BUSY_POLL_US=0 "${SRV_PIN[@]}" "$BIN" cnode-server \
    >"$T/nospin.log" 2>&1 &
PIDS+=($!)
env ONEBLOG_NODE=$TLS_SRV "${TLS_ENV[@]}" "${SRV_PIN[@]}" "$BIN" cnode-server \
    >"$T/tls.log" 2>&1 &
PIDS+=($!)
# The EPMD must answer before the nodes try to register.
sleep 0.3
erl_node srv "$BEAM_SRV" -eval 'rpc_bench:server()' >"$T/beam.log" 2>&1 &
PIDS+=($!)
erl_node srv "$BEAM_TLS_SRV" "${ERL_TLS[@]}" -eval 'rpc_bench:server()' >"$T/beamtls.log" 2>&1 &
PIDS+=($!)
wait_log "$T/tcp.log" '^port: [0-9]+$' 10
TCP_PORT=$(awk '/^port:/ {print $2}' "$T/tcp.log")
wait_log "$T/cnode.log" 'registered' 10
wait_log "$T/nospin.log" 'registered' 10
wait_log "$T/tls.log" 'registered' 10
wait_log "$T/beam.log" 'ready' 20
wait_log "$T/beamtls.log" 'ready' 20

RAW=$T/raw
: >"$RAW"
# run_one ROUND SYS: one client run; appends "round sys key value" lines to $RAW.
run_one() {
    local round=$1 sys=$2 out line summary="" key
    case $sys in
        tcp) out=$("${CLI_PIN[@]}" "$BIN" tcp-client "$TCP_PORT") ;;
        beam) out=$(erl_node cli "rpccli$ID-$round@127.0.0.1" \
                        -eval "rpc_bench:client('$BEAM_SRV')") ;;
        cnode) out=$(ONEBLOG_NODE=rpcc$ID-$round@127.0.0.1 "${CLI_PIN[@]}" "$BIN" \
                         cnode-client "$CNODE_SRV") ;;
        cnode_nospin) out=$(ONEBLOG_NODE=rpcn$ID-$round@127.0.0.1 ONEBLOG_DIST_BUSY_POLL_US=0 \
                                "${CLI_PIN[@]}" "$BIN" cnode-client "$NOSPIN_SRV") ;;
        erl_cnode) out=$(erl_node cli "rpcerl$ID-$round@127.0.0.1" \
                             -eval "rpc_bench:client('$CNODE_SRV')") ;;
        cnode_tls) out=$(env ONEBLOG_NODE=rpct$ID-$round@127.0.0.1 "${TLS_ENV[@]}" \
                             "${CLI_PIN[@]}" "$BIN" cnode-client "$TLS_SRV") ;;
        beam_tls) out=$(erl_node cli "rpcclitls$ID-$round@127.0.0.1" "${ERL_TLS[@]}" \
                            -eval "rpc_bench:client('$BEAM_TLS_SRV')") ;;
    esac || die "$sys client failed (round $round)"
    while IFS= read -r line; do
        if [[ $line =~ ^([a-z0-9_]+):\ *([-+0-9.eE]+)$ ]]; then
            echo "$round $sys ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}" >>"$RAW"
            summary+=" ${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
        elif [[ -n $line ]]; then
            echo "warning: $sys: ignoring output line: $line" >&2
        fi
    done <<<"$out"
    for key in p50_us p99_us calls_per_s_64; do
        [[ $summary == *" $key="* ]] || die "$sys did not print '$key'"
    done
    echo "round $round/$ROUNDS $sys:$summary" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#SYSTEMS[@]}; k++)); do
        run_one "$r" "${SYSTEMS[$(((k + r - 1) % ${#SYSTEMS[@]}))]}"
    done
done

awk -v rounds="$ROUNDS" '
    { v[$2, $3, $1] = $4 }
    function median(a, m,    i, j, t) {
        for (i = 2; i <= m; i++)
            for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    function med(sys, key,    a, r) {
        for (r = 1; r <= rounds; r++) a[r] = v[sys, key, r] + 0
        return median(a, rounds)
    }
    function ratio(name, s1, k1, s2, k2,    a, r, b) {
        for (r = 1; r <= rounds; r++) {
            b = v[s2, k2, r] + 0
            a[r] = b == 0 ? 0 : (v[s1, k1, r] + 0) / b
        }
        printf "%s: %.3f\n", name, median(a, rounds)
    }
    END {
        ns = split("tcp beam cnode erl_cnode cnode_nospin cnode_tls beam_tls", sys, " ")
        for (s = 1; s <= ns; s++) {
            printf "%s_p50_us: %.1f\n", sys[s], med(sys[s], "p50_us")
            printf "%s_p99_us: %.1f\n", sys[s], med(sys[s], "p99_us")
            printf "%s_calls_per_s_64: %.0f\n", sys[s], med(sys[s], "calls_per_s_64")
        }
        ratio("rpc_p50_vs_tcp", "cnode", "p50_us", "tcp", "p50_us")
        ratio("beam_p50_vs_tcp", "beam", "p50_us", "tcp", "p50_us")
        ratio("erl_to_cnode_p50_vs_tcp", "erl_cnode", "p50_us", "tcp", "p50_us")
        ratio("rpc_calls_per_s_64_vs_beam", "cnode", "calls_per_s_64", "beam", "calls_per_s_64")
        ratio("erl_to_cnode_calls_per_s_64_vs_beam", "erl_cnode", "calls_per_s_64", "beam", "calls_per_s_64")
        ratio("rpc_calls_per_s_64_vs_tcp", "cnode", "calls_per_s_64", "tcp", "calls_per_s_64")
        ratio("rpc_nospin_p50_vs_tcp", "cnode_nospin", "p50_us", "tcp", "p50_us")
        ratio("rpc_nospin_calls_per_s_64_vs_beam", "cnode_nospin", "calls_per_s_64", "beam", "calls_per_s_64")
        ratio("rpc_tls_p50_vs_plain", "cnode_tls", "p50_us", "cnode", "p50_us")
        ratio("rpc_tls_calls_per_s_64_vs_plain", "cnode_tls", "calls_per_s_64", "cnode", "calls_per_s_64")
        ratio("rpc_tls_p50_vs_beam_tls", "cnode_tls", "p50_us", "beam_tls", "p50_us")
        ratio("rpc_tls_calls_per_s_64_vs_beam_tls", "cnode_tls", "calls_per_s_64", "beam_tls", "calls_per_s_64")
        print "rounds: " rounds
    }' "$RAW"
