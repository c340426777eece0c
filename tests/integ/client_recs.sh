#!/usr/bin/env bash
# tests/integ/client_recs.sh BUILD - readers: with `oneblog-recs` running (`recs`
# and the `events` log), a post page shows "Recommended for you" in place of the
# cached "Read next", and every page view becomes a page.view event in the log
# (actor = the reader id cookie, data.post = the slug). Without it, "Read next"
# and nothing waits. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh
RECS="$B/bin/oneblog-recs"
EVENTS="$B/bin/oneblog-events"
[ -x "$RECS" ] || { bad "$RECS is not built"; summary; exit 1; }

cms_start cms || { bad "cms starts"; summary; exit 1; }
EVENTS_URL="file:$T/events" ONEBLOG_RECS_NODE=recs@127.0.0.1 ONEBLOG_RECS_CMS_NODE=cms@127.0.0.1 \
    ONEBLOG_RECS_SNAPSHOTS="$T/snapshots" "$RECS" >"$T/recs.out" 2>&1 &
RECS_PID=$!
PIDS+=($!)
for _ in $(seq 100); do grep -qs serving "$T/recs.out" && break; sleep 0.1; done
check "oneblog-recs starts" grep -q serving "$T/recs.out"
client_start cms@127.0.0.1 ONEBLOG_RECS_NODE=recs@127.0.0.1 ONEBLOG_EVENTS_NODE=recs@127.0.0.1 ||
    { bad "client starts"; summary; exit 1; }
check "client becomes ready" wait_ready

R=0123456789abcdef0123456789abcdef
page() { curl -s -H "Cookie: ob_rid=$R" "$BASE/$1/"; }
for p in the-cost-of-a-process how-our-supervisors-restart-things; do page "$p" >"$T/$p.html"; done
check "post page: \"Recommended for you\" from recs" grep -q 'Recommended for you' "$T/the-cost-of-a-process.html"
check "the cached copy is spliced, per reader" sh -c "curl -s -H 'Cookie: ob_rid=$R' '$BASE/the-cost-of-a-process/' | grep -q 'Recommended for you'"
check "recommendations are not the page itself" sh -c "! sed -n '/Recommended for you/,\$p' '$T/the-cost-of-a-process.html' | grep -q 'href=\"$BASE/the-cost-of-a-process/\"'"
views() {
    for _ in $(seq 50); do
        EVENTS_URL="file:$T/events" "$EVENTS" tail -n 50 >"$T/tail" 2>&1
        [ "$(grep -c "\"type\" : \"page.view\", \"actor\" : \"$R\"" "$T/tail")" -ge 3 ] && return 0
        sleep 0.1
    done
    cat "$T/tail" | tail -3; return 1
}
check "page views reach the event log as page.view events" views
check "a page.view names the post" grep -q '"post" : "the-cost-of-a-process"' "$T/tail"

# recs gone: "Read next", quickly
kill -9 "$RECS_PID"; wait "$RECS_PID" 2>/dev/null
start=$(date +%s%N)
page how-our-supervisors-restart-things >"$T/norecs.html"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "recs down: the post page still works, with \"Read next\" (${ms} ms)" \
    sh -c "grep -q 'Read next' '$T/norecs.html' && ! grep -q 'Recommended for you' '$T/norecs.html'"
summary
