#!/usr/bin/env bash
# tests/integ/client_recs.sh BUILD - readers, with `recs` and `events` found
# through the cluster registry only (no ONEBLOG_RECS_NODE / ONEBLOG_EVENTS_NODE):
#   1. `oneblog-cms serve` runs `events` (file:$ONEBLOG_DATA_DIR/events) and
#      `recs` beside `cms`: a post page shows "Recommended for you" in place of
#      the cached "Read next", and every page view becomes a page.view event in
#      the CMS node's log (actor = the reader id cookie, data.post = the slug);
#   2. a CMS with ONEBLOG_RECS=off ONEBLOG_EVENTS=off and a standalone
#      `oneblog-recs` node, found in the registry; once it is killed, "Read next"
#      and nothing waits.
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh
RECS="$B/bin/oneblog-recs"
EVENTS="$B/bin/oneblog-events"
[ -x "$RECS" ] || { bad "$RECS is not built"; summary; exit 1; }
unset ONEBLOG_RECS_NODE ONEBLOG_EVENTS_NODE EVENTS_URL

cms_start cms || { bad "cms starts"; summary; exit 1; }
check "cms serve runs events and recs" grep -q '`events`, `recs`' "$T/cms.out"
EV_URL="file:$T/cms/events"
client_start cms@127.0.0.1 || { bad "client starts"; summary; exit 1; }
check "client becomes ready" wait_ready

R=0123456789abcdef0123456789abcdef
page() { curl -s -H "Cookie: ob_rid=$R" "$BASE/$1/"; }
for p in the-cost-of-a-process how-our-supervisors-restart-things; do page "$p" >"$T/$p.html"; done
check "post page: \"Recommended for you\" from recs" grep -q 'Recommended for you' "$T/the-cost-of-a-process.html"
check "the cached copy is spliced, per reader" sh -c "curl -s -H 'Cookie: ob_rid=$R' '$BASE/the-cost-of-a-process/' | grep -q 'Recommended for you'"
check "recommendations are not the page itself" sh -c "! sed -n '/Recommended for you/,\$p' '$T/the-cost-of-a-process.html' | grep -q 'href=\"$BASE/the-cost-of-a-process/\"'"
# The personal copy is gzipped (joined from the cached page's parts) and has an
# ETag of its own: revalidating gets a 304, or a 200 under another tag when the
# recommendations moved meanwhile (view counts change them).
curl -s -D "$T/gz.h" -o "$T/gz.body" -H "Cookie: ob_rid=$R" -H 'Accept-Encoding: gzip' "$BASE/the-cost-of-a-process/"
check "personal copy: gzip, private, an ETag" sh -c "grep -qi '^content-encoding: gzip' '$T/gz.h' && grep -qi '^cache-control: private' '$T/gz.h' && grep -qi '^etag: \"[0-9a-f]*-gz\"' '$T/gz.h'"
check "personal copy: the gzip is the whole page" sh -c "gzip -dc '$T/gz.body' | grep -q 'Recommended for you' && gzip -dc '$T/gz.body' | tail -c 20 | grep -q '</html>'"
ETAG=$(awk 'tolower($1) == "etag:" {print $2}' "$T/gz.h" | tr -d '\r')
revalidate() {
    curl -s -o /dev/null -D "$T/rv.h" -w '%{http_code}' -H "Cookie: ob_rid=$R" -H 'Accept-Encoding: gzip' \
        -H "If-None-Match: $ETAG" "$BASE/the-cost-of-a-process/" >"$T/rv.code"
    [ "$(cat "$T/rv.code")" = 304 ] && return 0
    [ "$(cat "$T/rv.code")" = 200 ] && ! grep -qiF "etag: $ETAG" "$T/rv.h"
}
check "personal copy: If-None-Match gets a 304 (or a new tag)" revalidate
views() {
    for _ in $(seq 300); do
        EVENTS_URL="$EV_URL" "$EVENTS" tail -n 50 >"$T/tail" 2>&1
        [ "$(grep -c "\"type\" : \"page.view\", \"actor\" : \"$R\"" "$T/tail")" -ge 3 ] && return 0
        sleep 0.1
    done
    cat "$T/tail" | tail -3; return 1
}
check "page views reach the event log as page.view events" views
check "a page.view names the post" grep -q '"post" : "the-cost-of-a-process"' "$T/tail"

# 2. recs on its own node, found in the registry; then gone.
kill "$CLIENT_PID"; wait "$CLIENT_PID" 2>/dev/null
ONEBLOG_RECS=off ONEBLOG_EVENTS=off cms_start cms2 || { bad "cms2 starts"; summary; exit 1; }
check "cms2 runs neither events nor recs" sh -c "! grep -q '\`recs\`' '$T/cms2.out'"
EVENTS_URL="file:$T/events2" ONEBLOG_RECS_NODE=recs2@127.0.0.1 ONEBLOG_RECS_CMS_NODE=cms2@127.0.0.1 \
    ONEBLOG_CLUSTER_NODES=cms2@127.0.0.1 ONEBLOG_RECS_SNAPSHOTS="$T/snapshots" "$RECS" >"$T/recs.out" 2>&1 &
RECS_PID=$!
PIDS+=($!)
for _ in $(seq 300); do grep -qs serving "$T/recs.out" && break; sleep 0.1; done
check "oneblog-recs starts" grep -q serving "$T/recs.out"
client_start cms2@127.0.0.1,recs2@127.0.0.1 || { bad "client starts"; summary; exit 1; }
check "client becomes ready" wait_ready
recs_shown() {
    for _ in $(seq 300); do
        page how-our-supervisors-restart-things | grep -q 'Recommended for you' && return 0
        sleep 0.2
    done
    return 1
}
check "recs on another node: found in the registry" recs_shown
kill -9 "$RECS_PID"; wait "$RECS_PID" 2>/dev/null
sleep 0.5
start=$(date +%s%N)
page how-our-supervisors-restart-things >"$T/norecs.html"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "recs down: the post page still works, with \"Read next\" (${ms} ms)" \
    sh -c "grep -q 'Read next' '$T/norecs.html' && ! grep -q 'Recommended for you' '$T/norecs.html'"
summary
