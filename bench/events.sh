#!/usr/bin/env bash
# bench/events.sh - `make bench-events`: durable appends through the events server on
# the file log (group commit, fsync every 2 ms) and on PostgreSQL (JSONB, the same
# documents, the same server and concurrency, synchronous_commit on, fsync on),
# in one run. PostgreSQL is started here in a temporary directory (loopback, a
# free port) and stopped by PID at exit.
#
# Prints `name: value` lines: file_events_per_s, file_append_p50_us/p99_us,
# pg_events_per_s, pg_append_p50_us/p99_us, file_events_per_s_vs_pg; then
# bench-recs (bench/recs.c) on the file log with the same fsync policy
# (recs_fsync_policy; a lone request is committed at once, so each reply waits for
# one fdatasync of its own event): recs_request_p50_us/p99_us (a full
# recommendation request over 1,000 posts with its durable event, paced load),
# recs_disk_sync_p50_us/p99_us (a raw event-sized pwrite + fdatasync beside the
# log, interleaved: the disk's floor under the request), recs_request_over_disk_p50_us,
# recs_log_appends (how the log writes: direct, O_DIRECT, or buffered and why),
# recs_paced_inline_appends (paced appends run on the scheduler's thread; the rest
# went to the pool because the disk was slow),
# recs_disk_direct_sync_p50_us/p99_us (the same record written as direct appends
# write it: its aligned blocks through O_DIRECT, then fdatasync; interleaved: the
# floor of the direct mode), recs_disk_direct_flush_p50_us/p99_us (that write
# synced by a clean file's fdatasync, the device flush alone: the floor where the
# log syncs that way, on ext4), recs_request_over_direct_p50_us (with direct
# appends, over the floor of the log's way),
# recs_request_closed_p50_us/p99_us, recs_model_p50_us;
# recs_request_sync_mtime_on_p50_us (the paced requests again with sync_mtime=on:
# every append synced by the segment's fdatasync); then the same paced
# requests with fsync=none (not durable: the code's share, steady when the disk
# is not): recs_nosync_request_p50_us/p99_us.
# Environment: ONEBLOG_BUILD (build root, default build), BENCH_APPENDERS (1000),
# BENCH_EVENTS_FILE (300000), BENCH_EVENTS_PG (60000), BENCH_FOLLOW (1: a follower
# reads every commit, see bench/events.c). Figures, never a gate.
set -u
cd "$(dirname "$0")/.." || exit 2
B=${ONEBLOG_BUILD:-build}
BIN=$B/bin/bench-events
PG=/usr/lib/postgresql/15/bin
[ -x "$BIN" ] || { echo "bench-events: $BIN is not built" >&2; exit 2; }

T=$(mktemp -d /tmp/ev_bench.XXXXXX)
chown postgres:postgres "$T"
pg_started=
cleanup() {
    [ -n "$pg_started" ] && runuser -u postgres -- "$PG/pg_ctl" -D "$T/pg" -m fast stop >/dev/null 2>&1
    rm -rf "$T"
}
trap cleanup EXIT

port=
for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
runuser -u postgres -- "$PG/initdb" -D "$T/pg" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    >/dev/null 2>&1 || { echo "bench-events: initdb failed" >&2; exit 2; }
runuser -u postgres -- "$PG/pg_ctl" -D "$T/pg" -l "$T/pg.log" -w \
    -o "-p $port -k $T -c listen_addresses=127.0.0.1 -c max_connections=20" start >/dev/null ||
    { echo "bench-events: postgres did not start" >&2; exit 2; }
pg_started=1

mkdir -p "$T/file"
export BENCH_EVENTS_FILE=${BENCH_EVENTS_FILE:-300000}
export BENCH_EVENTS_PG=${BENCH_EVENTS_PG:-60000}
out=$("$BIN" "file=file:$T/file/log?fsync=2ms" \
             "pg=postgres://postgres@127.0.0.1:$port/postgres") || { echo "$out"; exit 1; }
echo "$out"
f=$(echo "$out" | awk -F': ' '$1 == "file_events_per_s" { print $2 }')
p=$(echo "$out" | awk -F': ' '$1 == "pg_events_per_s" { print $2 }')
awk -v f="$f" -v p="$p" 'BEGIN { if (p > 0) printf "file_events_per_s_vs_pg: %.1f\n", f / p }'

# A full recommendation request (model + durable recs.request event).
if [ -x "$B/bin/bench-recs" ]; then
    mkdir -p "$T/recs"
    "$B/bin/bench-recs" "file:$T/recs/log?fsync=2ms" || exit 1
    # The same paced requests with every append synced by the segment's own
    # fdatasync (sync_mtime=on: on ext4 without a journal it writes the inode too).
    mkdir -p "$T/recs-mtime"
    "$B/bin/bench-recs" "file:$T/recs-mtime/log?fsync=2ms&sync_mtime=on" |
        awk -F': ' '$1 == "recs_request_p50_us" { print "recs_request_sync_mtime_on_p50_us: " $2 }'
    mkdir -p "$T/recs-nosync"
    "$B/bin/bench-recs" "file:$T/recs-nosync/log?fsync=none" || exit 1
fi
