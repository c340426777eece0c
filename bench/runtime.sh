#!/usr/bin/env bash
# bench/runtime.sh - libcnode's runtime against the BEAM, on the same work.
#
# For every round and every kind (spawn, ring, call) this runs the Erlang
# benchmark (bench/beam/runtime_bench.erl, one fresh VM per kind) and the C
# one (build/bin/bench-runtime KIND), alternating which goes first (BEAM
# first in odd rounds, C first in even rounds), because idle CPUs here wake
# slowly and absolute times swing.  Each system prints `name: value` lines.
#
# stdout: medians over the rounds as beam_<name> and cnode_<name>, the
# ratios (ours / BEAM's) as <metric>_vs_beam, and `rounds: N`.
# stderr: the raw values of every run, so the spread is visible.
#
# Environment: ROUNDS (default 3), BENCH_N_SPAWN (processes in the spawn
# test, default 1000000; passed to both systems), BENCH_C_BIN (default
# build/bin/bench-runtime).  `make bench-runtime` builds the C binary first.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
C_BIN=${BENCH_C_BIN:-build/bin/bench-runtime}
export BENCH_N_SPAWN=${BENCH_N_SPAWN:-1000000}
BEAM_DIR=build/beam
KINDS=(spawn ring call)

die() { echo "bench/runtime.sh: error: $*" >&2; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $BENCH_N_SPAWN =~ ^[1-9][0-9]*$ ]] || die "BENCH_N_SPAWN must be a positive integer"
[[ -x $C_BIN ]] || die "$C_BIN not found or not executable; build it first with 'make bench-runtime'"
command -v erl >/dev/null && command -v erlc >/dev/null || die "erl/erlc (Erlang/OTP) not found in PATH"

mkdir -p "$BEAM_DIR"
erlc -o "$BEAM_DIR" bench/beam/runtime_bench.erl

# Process limit: room for the spawned processes plus the VM's own.
PROCS=$(( BENCH_N_SPAWN + 100000 ))
(( PROCS >= 2000000 )) || PROCS=2000000

# Keys each kind must print (the same on both systems).
declare -A EXPECT=(
    [spawn]="spawn_1m_s bytes_per_process"
    [ring]="ring_msgs_per_s"
    [call]="local_call_p50_us local_call_p99_us local_calls_per_s_64"
)

RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT

# run_one ROUND SYSTEM KIND: run one benchmark, append "system key value"
# lines to $RAW and echo the raw values to stderr.
run_one() {
    local round=$1 sys=$2 kind=$3 out line summary="" key
    if [[ $sys == beam ]]; then
        out=$(erl -noshell -pa "$BEAM_DIR" +P "$PROCS" \
                  -eval "runtime_bench:main([$kind])") \
            || die "BEAM benchmark '$kind' failed (round $round)"
    else
        out=$("$C_BIN" "$kind") || die "$C_BIN $kind failed (round $round)"
    fi
    while IFS= read -r line; do
        if [[ $line =~ ^([a-z0-9_]+):\ *([-+0-9.eE]+)$ ]]; then
            echo "$sys ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}" >>"$RAW"
            summary+=" ${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
        elif [[ -n $line ]]; then
            echo "warning: $sys $kind: ignoring output line: $line" >&2
        fi
    done <<<"$out"
    for key in ${EXPECT[$kind]}; do
        [[ $summary == *" $key="* ]] || die "$sys $kind did not print '$key'"
    done
    echo "round $round/$ROUNDS $sys $kind:$summary" >&2
}

for (( r = 1; r <= ROUNDS; r++ )); do
    if (( r % 2 )); then order=(beam cnode); else order=(cnode beam); fi
    for kind in "${KINDS[@]}"; do
        for sys in "${order[@]}"; do
            run_one "$r" "$sys" "$kind"
        done
    done
done

# Medians per system and key, then the ratios (ours divided by BEAM's).
awk -v rounds="$ROUNDS" '
    { k = $1 SUBSEP $2; n[k]++; v[k, n[k]] = $3
      if ($3 !~ /^-?[0-9]+$/) isfloat[$2] = 1 }
    function median(sys, key,    k, m, i, j, t, a) {
        k = sys SUBSEP key; m = n[k]
        for (i = 1; i <= m; i++) a[i] = v[k, i] + 0
        for (i = 2; i <= m; i++)            # insertion sort, m is small
            for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    function fmt(key, x) { return isfloat[key] ? sprintf("%.3f", x) : sprintf("%.0f", x) }
    function ratio(name, key,    b) {
        b = med["beam", key]
        printf "%s: %s\n", name, (b == 0) ? "nan" : sprintf("%.3f", med["cnode", key] / b)
    }
    END {
        nkeys = split("spawn_1m_s bytes_per_process ring_msgs_per_s " \
                      "local_call_p50_us local_call_p99_us local_calls_per_s_64", keys, " ")
        split("beam cnode", systems, " ")
        for (s = 1; s <= 2; s++)
            for (i = 1; i <= nkeys; i++) {
                med[systems[s], keys[i]] = median(systems[s], keys[i])
                printf "%s_%s: %s\n", systems[s], keys[i], fmt(keys[i], med[systems[s], keys[i]])
            }
        ratio("bytes_per_process_vs_beam", "bytes_per_process")
        ratio("spawn_time_vs_beam", "spawn_1m_s")
        ratio("ring_msgs_per_s_vs_beam", "ring_msgs_per_s")
        ratio("local_call_p50_vs_beam", "local_call_p50_us")
        ratio("local_calls_per_s_64_vs_beam", "local_calls_per_s_64")
        print "rounds: " rounds
    }' "$RAW"
