#!/usr/bin/env bash
# tests/integ/client_retry.sh BUILD - a CMS node that stops answering but stays
# in the cluster (SIGSTOP: its connection stays up, the registry keeps it until
# net_ticktime) costs readers nothing but time: the client's call to it times
# out (ONEBLOG_CMS_TIMEOUT_MS=400 here) and is tried again on the other node.
# Uncached pages (ONEBLOG_CACHE_MB=0), asked one after another, so the client's
# round robin hands the stopped node its turn: every page is a 200, the stopped
# node was called (its errors counted in /healthz), and its breaker keeps later
# pages from waiting on it. client_failover.sh covers a node that dies instead
# (the registry drops it at once, so a missing retry shows there as at most a
# page per connection). Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh

cms_start cms1 || { bad "cms1 starts"; summary; exit 1; }
cms_start cms2 || { bad "cms2 starts"; summary; exit 1; }
client_start cms1@127.0.0.1,cms2@127.0.0.1 ONEBLOG_CACHE_MB=0 ONEBLOG_CMS_TIMEOUT_MS=400 ||
    { bad "client starts"; summary; exit 1; }
check "client becomes ready" wait_ready

# Both CMS nodes known and called before one stops.
both_called() {
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 10 "$BASE/"
        n=$(curl -s "$BASE/healthz" | grep -o '"node":"cms[12]@127.0.0.1","outstanding":[0-9]*,"calls":[1-9]' |
            sort -u | wc -l)
        [ "$n" = 2 ] && return 0
        sleep 0.05
    done
    return 1
}
check "both CMS nodes take calls" both_called

# errors_of NODE: the client's count of failed calls to NODE.
errors_of() {
    curl -s "$BASE/healthz" | grep -o "\"node\":\"$1@127.0.0.1\"[^}]*" |
        sed -n 's/.*"errors":\([0-9]*\).*/\1/p'
}

e0=$(errors_of cms1)
kill -STOP "${CMS_PID[cms1]}"
codes=
slow=0
for p in / /tag/erlang/ /about/ /a-gentle-introduction-to-gen-server/ /page/2/ / /tag/erlang/ /about/; do
    t0=$(date +%s%N)
    codes="$codes $(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$BASE$p")"
    t1=$(date +%s%N)
    [ $(((t1 - t0) / 1000000)) -ge 350 ] && slow=$((slow + 1))
done
e1=$(errors_of cms1)
kill -CONT "${CMS_PID[cms1]}"
echo "# pages:$codes; calls to the stopped cms1 that failed: $((${e1:-0} - ${e0:-0})); slow pages: $slow"
check "every page is a 200 while cms1 does not answer" [ "$(echo $codes | tr ' ' '\n' | grep -vc '^200$')" = 0 ]
check "the stopped cms1 was called (and timed out)" [ "$((${e1:-0} - ${e0:-0}))" -ge 1 ]
check "a page that waited on cms1 was answered by cms2 (retried)" [ "$slow" -ge 1 ]
summary
