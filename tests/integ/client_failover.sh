#!/usr/bin/env bash
# tests/integ/client_failover.sh BUILD - two CMS nodes behind the client; one is
# killed (SIGKILL) while a wrk load runs:
#   - client A (page cache on) serving cached pages: no 5xx at all;
#   - client B (ONEBLOG_CACHE_MB=0: every request is CMS calls) serving the same
#     pages uncached: at most one error per wrk connection (a call in flight to
#     the dead node is tried again on the live one; the registry drops the dead
#     node at once), however few or many requests the machine manages.
# The load is measured in requests, not seconds: cms1 dies once each client has
# served 300 requests of it, and the load stops once each has served 2,000 more
# (a busy or sanitized machine only takes longer; 120 s bound).
# Then the second CMS is killed too: A keeps serving its cache, B answers a 503
# without waiting for a CMS call to time out (its call timeout is raised to 10 s
# and the 503 must come within 5 s). Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh
command -v wrk >/dev/null || { bad "wrk is needed (make deps)"; summary; exit 1; }

cms_start cms1 || { bad "cms1 starts"; summary; exit 1; }
cms_start cms2 || { bad "cms2 starts"; summary; exit 1; }
NODES=cms1@127.0.0.1,cms2@127.0.0.1
client_start "$NODES" || { bad "client A starts"; summary; exit 1; }
A=$BASE A_PID=$CLIENT_PID
mv "$T/client.out" "$T/clientA.out"
client_start "$NODES" ONEBLOG_CACHE_MB=0 ONEBLOG_CMS_TIMEOUT_MS=10000 ONEBLOG_CLIENT_NODE="clientb$$@127.0.0.1" ||
    { bad "client B starts"; summary; exit 1; }
B=$BASE
check "client B becomes ready" wait_ready
BASE=$A
check "client A becomes ready" wait_ready

# Both CMS nodes known to both clients before the load starts.
both_known() {
    for _ in $(seq 100); do
        for u in "$A" "$B"; do for _ in 1 2 3 4; do curl -s -o /dev/null "$u/tag/erlang/"; done; done
        na=$(curl -s "$A/healthz" | grep -o '"node":"cms[12]@127.0.0.1"' | sort -u | wc -l)
        nb=$(curl -s "$B/healthz" | grep -o '"node":"cms[12]@127.0.0.1"' | sort -u | wc -l)
        [ "$na" = 2 ] && [ "$nb" = 2 ] && return 0
        sleep 0.1
    done
    return 1
}
check "both clients call both CMS nodes" both_known

cat >"$T/paths.lua" <<'LUA'
paths = { "/", "/page/2/", "/page/3/", "/tag/engineering/", "/tag/erlang/",
          "/author/maya-chen/", "/why-we-built-our-blog-on-the-beam-model-in-c/",
          "/a-gentle-introduction-to-gen-server/", "/the-cost-of-a-process/",
          "/how-our-supervisors-restart-things/", "/about/", "/rss/", "/sitemap.xml" }
i = 0
request = function()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
for p in $(grep -o '"/[^"]*"' "$T/paths.lua" | tr -d '"'); do curl -s -o /dev/null "$A$p"; done

# Bounded: wrk stops at 120 s at the latest; it is stopped (SIGINT: it prints its
# summary) once both clients have served enough requests after the kill.
wrk -t1 -c8 -d120s --timeout 5s -s "$T/paths.lua" "$A" >"$T/wrkA.out" 2>&1 &
WA=$!
wrk -t1 -c8 -d120s --timeout 5s -s "$T/paths.lua" "$B" >"$T/wrkB.out" 2>&1 &
WB=$!
PIDS+=($WA $WB)
check "load runs on both clients before the kill (300 requests each)" until_served 300 "$A" "$B"
kill -9 "${CMS_PID[cms1]}"
wait "${CMS_PID[cms1]}" 2>/dev/null
check "load goes on after the kill (2,000 more requests each)" until_served 2000 "$A" "$B"
kill -INT "$WA" "$WB"
wait "$WA" "$WB"
requests() { sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$1"; }
non2xx() { local n; n=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)/\1/p' "$1"); echo "${n:-0}"; }
sockerr() { sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\)/\1 \2 \3 \4/p' "$1" | awk '{n += $1+$2+$3+$4} END {print n+0}'; }
ra=$(requests "$T/wrkA.out"); ea=$(( $(non2xx "$T/wrkA.out") + $(sockerr "$T/wrkA.out") ))
rb=$(requests "$T/wrkB.out"); eb=$(( $(non2xx "$T/wrkB.out") + $(sockerr "$T/wrkB.out") ))
echo "    cached (A):   $ra requests, $ea errors"
echo "    uncached (B): $rb requests, $eb errors"
check "wrk reported its load on both clients" [ "${ra:-0}" -gt 0 -a "${rb:-0}" -gt 0 ]
check "cached pages: no 5xx and no errors while cms1 died" [ "$ea" -eq 0 ]
# Only a request in flight when cms1 died could fail (and should not: its call is
# tried again on cms2); wrk keeps 8 connections, so 8 in flight at most.
check "uncached pages: no more errors than requests in flight at the kill ($eb of $rb, at most 8)" \
    [ "$eb" -le 8 ]
check "client B: still serving from cms2 after the kill" [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$B/page/2/")" = 200 ]

# Every CMS gone: A serves its cache, B says 503 quickly; neither hangs.
kill -9 "${CMS_PID[cms2]}"
wait "${CMS_PID[cms2]}" 2>/dev/null
BASE=$B
notready() { for _ in $(seq 300); do [ "$(status /readyz)" = 503 ] && return 0; sleep 0.1; done; return 1; }
check "B: /readyz 503 with no CMS left" notready
# B's CMS calls time out after 10 s: a 503 within 5 s was not a call timing out.
check "B: an uncached page is a 503 before a CMS call could time out" \
    sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 '$B/page/2/')\" = 503 ]"
check "A: cached pages still 200" sh -c "for p in / /tag/erlang/ /about/; do [ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 '$A'\$p)\" = 200 ] || exit 1; done"
summary
