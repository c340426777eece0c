#!/usr/bin/env bash
# bench/cms.sh - the CMS read path against its databases straight (`make bench-cms`).
#
# 1,000 published posts are made through the store API (bench-cms gen) in a SQLite
# data directory and in a PostgreSQL 15 started here (initdb as the postgres user
# in a temp dir, a free port on 127.0.0.1, fsync off, stopped by pg_ctl in the EXIT
# trap). One `oneblog-cms serve` runs on each (private EPMD, admin off). Systems,
# per backend B (sqlite, pg):
#   direct_B   bench-cms direct-B: the CMS's own statements for the request, in one
#              read transaction, prepared once per connection, 64 threads with a
#              connection each (the limit)
#   cnode_B    bench-cms cnode-client: a libcnode node, 64 caller processes over
#              one distribution connection to `cms`
#   erl_B      bench/beam/cms_bench.erl: an erl node, 64 erl processes
# Requests: {get_post, Slug} (random slug of the 1,000) and {list_posts, #{page =>
# P}} (P cycles 1..10, the site's 10 per page). Each client prints the sequential
# p50 of each request and calls/s with 64 callers.
#
# Each round runs every system once, in an order that rotates every round, because
# idle CPUs here wake slowly and the machine's speed drifts. No pinning: the CMS,
# the database and the clients share the machine's CPUs, as the direct programs
# share them with the database.
#
# stdout: `name: value` lines - medians over the rounds of SYS_{get,list}_p50_us
#   and SYS_{get,list}_calls_per_s_64, then ratios, each the median over both
#   requests and every round of the per-round ratio:
#     cms_calls_per_s_64_vs_direct_sqlite       cnode_sqlite / direct_sqlite
#     cms_calls_per_s_64_vs_direct_pg           cnode_pg / direct_pg
#     erl_cms_calls_per_s_64_vs_direct_sqlite   erl_sqlite / direct_sqlite
#     erl_cms_calls_per_s_64_vs_direct_pg       erl_pg / direct_pg
#     cms_p50_vs_direct_sqlite, cms_p50_vs_direct_pg   (latency: lower is better)
#   and per request (get, list) the same calls/s ratios as cms_REQ_calls_per_s_64_vs_direct_B;
#   `rounds: N`.
# stderr: every run's raw figures.
#
# Environment: ROUNDS (3), BENCH_CMS_SAMPLES (2000), BENCH_CMS_CALLS (100 per
# caller), BENCH_CMS_POSTS (1000), ONEBLOG_DB_POOL (the CMS's default), SYSTEMS
# (all six), ONEBLOG_BUILD (build).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
B=${ONEBLOG_BUILD:-build}
BIN=$B/bin/bench-cms
CMS=$B/bin/oneblog-cms
PGBIN=/usr/lib/postgresql/15/bin
export BENCH_CMS_SAMPLES=${BENCH_CMS_SAMPLES:-2000}
export BENCH_CMS_CALLS=${BENCH_CMS_CALLS:-100}
export BENCH_CMS_POSTS=${BENCH_CMS_POSTS:-1000}
read -r -a SYSTEMS <<<"${SYSTEMS:-direct_sqlite cnode_sqlite erl_sqlite direct_pg cnode_pg erl_pg}"

die() { echo "bench/cms.sh: error: $*" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $BENCH_CMS_SAMPLES =~ ^[1-9][0-9]+$ ]] || die "BENCH_CMS_SAMPLES must be an integer >= 10"
[[ $BENCH_CMS_CALLS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CMS_CALLS must be a positive integer"
[[ -x $BIN && -x $CMS ]] || die "$BIN and $CMS must be built (make bench-cms builds them)"
command -v erl >/dev/null && command -v erlc >/dev/null && command -v epmd >/dev/null ||
    die "erl/erlc/epmd (Erlang/OTP) not found in PATH"
[ -x "$PGBIN/initdb" ] && id postgres >/dev/null 2>&1 ||
    die "postgresql-15 is not installed (make deps)"

T=$(mktemp -d /tmp/bench-cms.XXXXXX)
chmod 755 "$T" # the postgres user reaches $T/pg
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -f "$T/pg/data/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT

. tests/integ/port_lib.sh

# PostgreSQL in a temp dir (tests/integ/cms_store.sh does the same).
PG_PORT=$(free_port)
mkdir -p "$T/pg"
chown postgres:postgres "$T/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$T/pg/data" -U postgres -A trust -E UTF8 \
    --locale=C.UTF-8 --no-sync >"$T/pg/initdb.log" 2>&1 || die "initdb: $(tail -5 "$T/pg/initdb.log")"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/log" -w -o \
    "-p $PG_PORT -k $T/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
    start >/dev/null || die "PostgreSQL did not start: $(tail -5 "$T/pg/log")"
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

mkdir -p "$T/sqlite"
"$BIN" gen "$T/sqlite" "$BENCH_CMS_POSTS" >/dev/null 2>"$T/gen-sqlite.log" ||
    die "gen sqlite: $(cat "$T/gen-sqlite.log")"
"$BIN" gen "$PG_URL" "$BENCH_CMS_POSTS" >/dev/null 2>"$T/gen-pg.log" ||
    die "gen pg: $(cat "$T/gen-pg.log")"

erlc -o "$T" bench/beam/cms_bench.erl

EPMD_PORT=$(free_port)
export ERL_EPMD_PORT=$EPMD_PORT
export ONEBLOG_COOKIE=bench-cms-$RANDOM$RANDOM
unset ONEBLOG_COOKIE_FILE ONEBLOG_EPMD_LESS ONEBLOG_DIST_PORT DATABASE_URL
epmd -port "$EPMD_PORT" >"$T/epmd.log" 2>&1 &
PIDS+=($!)
sleep 0.3

ID=$$
SQ_NODE=cmssq$ID@127.0.0.1
PG_NODE=cmspg$ID@127.0.0.1
export ONEBLOG_LOG_LEVEL=warn ONEBLOG_ADMIN=0 ONEBLOG_DEMO=0
ONEBLOG_DATA_DIR="$T/sqlite" ONEBLOG_CMS_NODE=$SQ_NODE "$CMS" serve >"$T/cms-sqlite.out" 2>&1 &
PIDS+=($!)
DATABASE_URL=$PG_URL ONEBLOG_CMS_NODE=$PG_NODE "$CMS" serve >"$T/cms-pg.out" 2>&1 &
PIDS+=($!)
for f in "$T/cms-sqlite.out" "$T/cms-pg.out"; do
    for _ in $(seq 100); do grep -qs serving "$f" && break; sleep 0.1; done
    grep -qs serving "$f" || die "oneblog-cms did not start: $(cat "$f")"
done

RAW=$T/raw
: >"$RAW"
# run_one ROUND SYS: one client run; appends "round sys key value" lines to $RAW.
run_one() {
    local round=$1 sys=$2 out line summary="" key
    case $sys in
        direct_sqlite) out=$("$BIN" direct-sqlite "$T/sqlite") ;;
        direct_pg) out=$("$BIN" direct-pg "$PG_URL") ;;
        cnode_sqlite) out=$(ONEBLOG_NODE=cmsc$ID-$round@127.0.0.1 "$BIN" cnode-client "$SQ_NODE") ;;
        cnode_pg) out=$(ONEBLOG_NODE=cmsp$ID-$round@127.0.0.1 "$BIN" cnode-client "$PG_NODE") ;;
        erl_sqlite | erl_pg)
            local node=$SQ_NODE
            [ "$sys" = erl_pg ] && node=$PG_NODE
            out=$(erl -noshell -start_epmd false -pa "$T" -name "cmserl$ID-$round-${sys#erl_}@127.0.0.1" \
                      -setcookie "$ONEBLOG_COOKIE" -eval "cms_bench:client('$node')") ;;
        *) die "unknown system '$sys'" ;;
    esac || die "$sys client failed (round $round)"
    while IFS= read -r line; do
        if [[ $line =~ ^([a-z0-9_]+):\ *([-+0-9.eE]+)$ ]]; then
            echo "$round $sys ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}" >>"$RAW"
            summary+=" ${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
        elif [[ -n $line ]]; then
            echo "warning: $sys: ignoring output line: $line" >&2
        fi
    done <<<"$out"
    for key in get_p50_us list_p50_us get_calls_per_s_64 list_calls_per_s_64; do
        [[ $summary == *" $key="* ]] || die "$sys did not print '$key'"
    done
    echo "round $round/$ROUNDS $sys:$summary" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#SYSTEMS[@]}; k++)); do
        run_one "$r" "${SYSTEMS[$(((k + r - 1) % ${#SYSTEMS[@]}))]}"
    done
done

awk -v rounds="$ROUNDS" -v systems="${SYSTEMS[*]}" '
    { v[$2, $3, $1] = $4; seen[$2] = 1 }
    function median(a, m,    i, j, t) {
        for (i = 2; i <= m; i++)
            for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    function med(sys, key,    a, r) {
        for (r = 1; r <= rounds; r++) a[r] = v[sys, key, r] + 0
        return median(a, rounds)
    }
    # ratio NAME S1 S2 KEYS: median over the keys and rounds of S1/S2.
    function ratio(name, s1, s2, keys,    a, r, b, n, k, nk, ks) {
        if (!(s1 in seen) || !(s2 in seen)) return
        nk = split(keys, ks, " ")
        n = 0
        for (r = 1; r <= rounds; r++)
            for (k = 1; k <= nk; k++) {
                b = v[s2, ks[k], r] + 0
                a[++n] = b == 0 ? 0 : (v[s1, ks[k], r] + 0) / b
            }
        printf "%s: %.3f\n", name, median(a, n)
    }
    END {
        ns = split(systems, sys, " ")
        for (s = 1; s <= ns; s++)
            for (q = 0; q < 2; q++) {
                op = q ? "list" : "get"
                printf "%s_%s_p50_us: %.1f\n", sys[s], op, med(sys[s], op "_p50_us")
                printf "%s_%s_calls_per_s_64: %.0f\n", sys[s], op, med(sys[s], op "_calls_per_s_64")
            }
        both = "get_calls_per_s_64 list_calls_per_s_64"
        ratio("cms_calls_per_s_64_vs_direct_sqlite", "cnode_sqlite", "direct_sqlite", both)
        ratio("cms_calls_per_s_64_vs_direct_pg", "cnode_pg", "direct_pg", both)
        ratio("erl_cms_calls_per_s_64_vs_direct_sqlite", "erl_sqlite", "direct_sqlite", both)
        ratio("erl_cms_calls_per_s_64_vs_direct_pg", "erl_pg", "direct_pg", both)
        for (q = 0; q < 2; q++) {
            op = q ? "list" : "get"
            ratio("cms_" op "_calls_per_s_64_vs_direct_sqlite", "cnode_sqlite", "direct_sqlite", op "_calls_per_s_64")
            ratio("cms_" op "_calls_per_s_64_vs_direct_pg", "cnode_pg", "direct_pg", op "_calls_per_s_64")
        }
        ratio("cms_p50_vs_direct_sqlite", "cnode_sqlite", "direct_sqlite", "get_p50_us list_p50_us")
        ratio("cms_p50_vs_direct_pg", "cnode_pg", "direct_pg", "get_p50_us list_p50_us")
        print "rounds: " rounds
    }' "$RAW"
