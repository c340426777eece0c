#!/usr/bin/env bash
# tests/integ/canary.sh BUILD - canary rollouts of the CMS (client/canary.c):
# two stable CMS nodes (the build's version) and one canary (ONEBLOG_VERSION)
# behind an uncached client (every page is CMS calls) under a bounded wrk load.
#   1. a canary failing half its calls (ONEBLOG_FAULT_ERROR_RATE=50) is rolled
#      back by the client within the window (10 s here), with a log line, the
#      metric oneblog_canary_rollbacks_total and a canary.rollback event in the
#      event log (oneblog-recs runs `events`); after it no reader sees an error
#      and the canary gets no more calls;
#   2. a slow canary (ONEBLOG_FAULT_DELAY_MS=250) is rolled back on p99 latency;
#   3. a healthy canary gets its share; oneblog-ctl canary status / abort /
#      promote act on it.
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh
command -v wrk >/dev/null || { bad "wrk is needed (make deps)"; summary; exit 1; }
RECS="$B/bin/oneblog-recs"
EVENTS="$B/bin/oneblog-events"
CTL="$B/bin/oneblog-ctl"
export ONEBLOG_ADMIN=0 ONEBLOG_SHUTDOWN_DRAIN_MS=300
WINDOW_MS=10000

cat >"$T/paths.lua" <<'LUA'
paths = { "/", "/page/2/", "/tag/engineering/", "/tag/erlang/", "/author/maya-chen/",
          "/why-we-built-our-blog-on-the-beam-model-in-c/", "/about/", "/rss/" }
i = 0
request = function()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
requests() { sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$1"; }
failures() {
    local n s
    n=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)/\1/p' "$1")
    s=$(sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\)/\1 \2 \3 \4/p' "$1" |
        awk '{n += $1+$2+$3+$4} END {print n+0}')
    echo $(( ${n:-0} + s ))
}
calls_to() { # calls the client made to NAME (0 if none)
    local n
    n=$(curl -s "$BASE/healthz" | grep -o "\"node\":\"$1@127.0.0.1\",\"outstanding\":[0-9]*,\"calls\":[0-9]*" |
        sed 's/.*"calls"://')
    echo "${n:-0}"
}
known() { # known NAME: the client has NAME's `cms` in its registry (30 s at most)
    for _ in $(seq 300); do
        curl -s -o /dev/null "$BASE/tag/erlang/"
        [ "$(calls_to "$1")" -gt 0 ] && return 0
        sleep 0.1
    done
    return 1
}
wait_log() { # wait_log FILE REGEX SECONDS
    for _ in $(seq $(($3 * 10))); do grep -qE "$2" "$1" && return 0; sleep 0.1; done
    return 1
}
ctl() { ONEBLOG_CLUSTER_NODES="client$$@127.0.0.1" ONEBLOG_CTL_WAIT_MS=3000 timeout 20 "$CTL" "$@"; }
now_ms() { date +%s%3N; }
# load N OUT [WRK ARGS...]: a wrk load of N pages (not of a number of seconds: a
# busy machine only takes longer), its summary in OUT. Stopped with SIGINT (wrk
# prints its summary) once the client has served N more pages; 120 s bound.
load() {
    local n=$1 out=$2 w rc; shift 2
    wrk -t1 -c8 -d300s --timeout 5s "$@" -s "$T/paths.lua" "$BASE" >"$out" 2>&1 &
    w=$!; PIDS+=($w)
    until_served "$n" "$BASE"; rc=$?
    kill -INT "$w"; wait "$w"
    return $rc
}

# The event log's owner: oneblog-recs runs `events` on a file log.
EVENTS_URL="file:$T/events" ONEBLOG_RECS_NODE=recs@127.0.0.1 ONEBLOG_RECS_CMS_NODE=cms1@127.0.0.1 \
    ONEBLOG_RECS_SNAPSHOTS="$T/snapshots" "$RECS" >"$T/recs.out" 2>&1 &
PIDS+=($!)
# The CMS nodes run neither their own `events` nor `recs`: the one event log is
# oneblog-recs's (above), where the rollback event must land.
export ONEBLOG_RECS=off ONEBLOG_EVENTS=off
cms_start cms1 || { bad "cms1 starts"; summary; exit 1; }
cms_start cms2 || { bad "cms2 starts"; summary; exit 1; }
STABLE=$(sed -n 's/.*serving `cms` \([^ ]*\) .*/\1/p' "$T/cms1.out")
check "stable nodes announce the build's version ($STABLE)" [ "$STABLE" = "$(cat VERSION)" ]
ONEBLOG_VERSION=9.0.0-bad ONEBLOG_FAULT_ERROR_RATE=50 cms_start cms3 || { bad "cms3 starts"; summary; exit 1; }
check "the canary announces ONEBLOG_VERSION and says faults are on" \
    sh -c "grep -q 'serving .cms. 9.0.0-bad' '$T/cms3.out' && grep -q 'TEST ONLY fault injection' '$T/cms3.out'"
NODES=$(printf 'cms%d@127.0.0.1,' 1 2 3 4 5)recs@127.0.0.1
client_start "$NODES" ONEBLOG_CACHE_MB=0 ONEBLOG_LOG_LEVEL=info ONEBLOG_CANARY_SHARE=20 \
    ONEBLOG_CANARY_WINDOW_MS=$WINDOW_MS ONEBLOG_CANARY_MIN_CALLS=10 \
    ONEBLOG_EVENTS_NODE=recs@127.0.0.1 || { bad "client starts"; summary; exit 1; }
check "client ready" wait_ready

# 1. Error rate. The load starts when the canary is known; the clock with it.
# (The canary's breaker opens after 3 failures in a row and holds most calls
# back, so it gets few calls: MIN_CALLS is 10 here, see docs/operations.md.)
check "the canary is called" known cms3
T0=$(now_ms)
# The load runs until the rollback is seen (or the check gives up).
wrk -t1 -c8 -d120s --timeout 5s -s "$T/paths.lua" "$BASE" >"$T/wrk1.out" 2>&1 &
W=$!; PIDS+=($W)
check "rollback logged within the window" \
    wait_log "$T/client.out" "canary: cms 9.0.0-bad rolled back \(stable $STABLE\): error rate" $((WINDOW_MS / 1000 + 2))
T1=$(now_ms)
grep -m1 "rolled back" "$T/client.out" | sed 's/^/    # /'
echo "    # rollback $((T1 - T0)) ms after the canary got its first call (window $WINDOW_MS ms)"
check "rollback came within the window" [ $((T1 - T0)) -le "$WINDOW_MS" ]
kill -INT "$W"; wait "$W"
after=$(calls_to cms3)
echo "    # during the rollout: $(requests "$T/wrk1.out") requests, $(failures "$T/wrk1.out") failed"
check "after the rollback: load ran (1,000 pages)" load 1000 "$T/wrk2.out"
r2=$(requests "$T/wrk2.out") e2=$(failures "$T/wrk2.out")
echo "    # after the rollback: $r2 requests, $e2 failed"
check "after the rollback: no reader-visible error ($e2 of $r2)" [ "$e2" -eq 0 ]
check "after the rollback: the canary gets no more calls ($after then $(calls_to cms3))" \
    [ "$(calls_to cms3)" -eq "$after" ]
curl -s "$BASE/metrics" >"$T/metrics"
check "metric oneblog_canary_rollbacks_total{reason=error_rate}" \
    grep -qE '^oneblog_canary_rollbacks_total\{version="9.0.0-bad",reason="error_rate"\} 1$' "$T/metrics"
check "metric oneblog_canary_share of the canary is 0" \
    grep -qE '^oneblog_canary_share\{version="9.0.0-bad"\} 0$' "$T/metrics"
events_has() {
    for _ in $(seq 150); do
        EVENTS_URL="file:$T/events" "$EVENTS" query --type canary.rollback >"$T/tail" 2>&1
        grep -q "$1" "$T/tail" && return 0
        sleep 0.2
    done
    return 1
}
check "a canary.rollback event in the event log" events_has 'canary.rollback'
grep -m1 canary.rollback "$T/tail" | cut -c1-400 | sed 's/^/    # /'
ctl canary status >"$T/status1" 2>&1
check "oneblog-ctl canary status: the canary is rolled back" \
    grep -qE "9.0.0-bad +rolled-back" "$T/status1"
sed 's/^/    # /' "$T/status1"
kill -TERM "${CMS_PID[cms3]}"

# 2. Latency: each call of the canary waits 250 ms.
ONEBLOG_VERSION=9.1.0-slow ONEBLOG_FAULT_DELAY_MS=250 cms_start cms4 || bad "cms4 starts"
check "the slow canary is called" known cms4
wrk -t1 -c2 -d120s --timeout 5s -s "$T/paths.lua" "$BASE" >"$T/wrk3.out" 2>&1 &
W=$!; PIDS+=($W)
check "slow canary rolled back on p99 within the window" \
    wait_log "$T/client.out" "cms 9.1.0-slow rolled back .*: p99" $((WINDOW_MS / 1000 + 2))
grep -m1 "9.1.0-slow rolled back" "$T/client.out" | sed 's/^/    # /'
kill -INT "$W"; wait "$W"
check "metric: rollback for p99_latency" \
    sh -c "curl -s '$BASE/metrics' | grep -qE '^oneblog_canary_rollbacks_total\\{version=\"9.1.0-slow\",reason=\"p99_latency\"\\} 1$'"
kill -TERM "${CMS_PID[cms4]}"

# 3. A healthy canary: its share, then abort and promote by hand.
ONEBLOG_VERSION=9.2.0 cms_start cms5 || bad "cms5 starts"
check "the healthy canary is called" known cms5
s5=$(calls_to cms5) s12=$(( $(calls_to cms1) + $(calls_to cms2) ))
check "load on the healthy canary's share (2,000 pages)" load 2000 "$T/wrk4.out"
c5=$(( $(calls_to cms5) - s5 )) c12=$(( $(calls_to cms1) + $(calls_to cms2) - s12 ))
echo "    # healthy canary: cms5 $c5 calls, cms1+cms2 $c12 (share 20%)"
check "the healthy canary is not rolled back" sh -c "! grep -q '9.2.0 rolled back' '$T/client.out'"
check "it gets about its share (5-40% of calls)" \
    sh -c "[ $((c5 * 100)) -ge $(( (c12 + c5) * 5 )) ] && [ $((c5 * 100)) -le $(( (c12 + c5) * 40 )) ]"
ctl canary status >"$T/status2" 2>&1
check "status: 9.2.0 is a running canary" grep -qE "9.2.0 +canary" "$T/status2"
check "oneblog-ctl canary abort" sh -c "ONEBLOG_CLUSTER_NODES=client$$@127.0.0.1 timeout 20 '$CTL' canary abort | grep -q '9.2.0 rolled back'"
check "abort: a log line" wait_log "$T/client.out" "cms 9.2.0 rolled back .*aborted by oneblog-ctl" 10
before=$(calls_to cms5)
check "load after the abort (500 pages)" load 500 "$T/wrk5.out"
check "abort: no more calls to 9.2.0" [ "$(calls_to cms5)" -eq "$before" ]
check "oneblog-ctl canary promote (the one canary version in sight)" \
    sh -c "ONEBLOG_CLUSTER_NODES=client$$@127.0.0.1 timeout 20 '$CTL' canary promote | grep -q '9.2.0 is the stable version'"
s5=$(calls_to cms5) s12=$(( $(calls_to cms1) + $(calls_to cms2) ))
check "load after the promote (1,000 pages)" load 1000 "$T/wrk6.out"
d5=$(( $(calls_to cms5) - s5 ))
d12=$(( $(calls_to cms1) + $(calls_to cms2) - s12 ))
echo "    # after promote: cms5 +$d5 calls, cms1+cms2 +$d12"
check "promote: 9.2.0 takes most calls" [ "$d5" -gt "$d12" ]
ctl canary status >"$T/status3" 2>&1
check "status: 9.2.0 is stable" grep -qE "stable 9.2.0 \(set\)" "$T/status3"
check "oneblog-ctl with a bad command: usage, exit 2" sh -c "'$CTL' canary frobnicate 2>/dev/null; [ \$? -eq 2 ]"
summary
