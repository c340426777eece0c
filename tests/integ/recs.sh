#!/usr/bin/env bash
# tests/integ/recs.sh BUILD - recommendations end to end: a CMS node (oneblog-cms
# serve, SQLite, demo content) and a recs node (oneblog-recs: `events` on a file
# log with fsync=always, `recs` reaching `cms` over the distribution), called from
# a real erl node. Checks: answers exclude the context and the reader's history
# (fed from page.view events); each answer's recs.request event is in the log when
# the reply arrives, with the model version, params, input and the same output;
# content_changed rebuilds the index; `oneblog-events replay --model recs@1`
# finds every logged answer identical and `--model recs@2` finds differences, in
# its sandbox; with a 50% recs@2 share, ab-report gives the click-through rates of
# synthetic view and click events. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/port_lib.sh
B=${1:-${ONEBLOG_BUILD:-build}}
CMS="$B/bin/oneblog-cms" RECS="$B/bin/oneblog-recs" EV="$B/bin/oneblog-events"
T=$(mktemp -d /tmp/recs-integ.XXXXXX)
CMS_PID= RECS_PID=
cleanup() {
    for p in $RECS_PID $CMS_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { # check NAME CMD... : passes when CMD succeeds
    local name=$1; shift
    if "$@" >"$T/last" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$T/last" | head -30; fi
}
if ! command -v erl >/dev/null; then
    bad "erl is not installed (make deps)"; echo "recs.sh: $passed passed, $failed failed"; exit 1
fi

export ONEBLOG_DATA_DIR="$T/data" ONEBLOG_LOG_LEVEL=warn ONEBLOG_COOKIE=recstestcookie
export ERL_EPMD_PORT=$(free_port) ONEBLOG_CMS_NODE=cms@127.0.0.1
export ONEBLOG_RECS_NODE=recs@127.0.0.1 ONEBLOG_RECS_CMS_NODE=cms@127.0.0.1
export EVENTS_URL="file:$T/events?fsync=always" ONEBLOG_RECS_SNAPSHOTS="$T/snapshots"

# Reading history: reader r1 read three posts; twenty readers read one post
# (popularity for recs@2).
for s in why-our-nodes-are-hidden a-gentle-introduction-to-gen-server how-our-supervisors-restart-things; do
    "$EV" append --type page.view --actor r1 --data "{\"post\":\"$s\"}" >/dev/null
done
for i in $(seq 20); do
    "$EV" append --type page.view --actor "p$i" --data '{"post":"colour-systems-for-small-teams"}' >/dev/null
done

ONEBLOG_RECS=off ONEBLOG_EVENTS=off "$CMS" serve >"$T/cms.out" 2>&1 &  # recs: the standalone node below
CMS_PID=$!
for _ in $(seq 300); do grep -q serving "$T/cms.out" && break; sleep 0.1; done
check "the CMS node serves the demo content" grep -q "serving \`cms\`" "$T/cms.out"

start_recs() { # start_recs SHARE
    ONEBLOG_RECS_V2_SHARE=$1 "$RECS" >"$T/recs.out" 2>&1 &
    RECS_PID=$!
    for _ in $(seq 300); do grep -q "serving \`recs\`" "$T/recs.out" && break; sleep 0.1; done
}
stop_recs() {
    kill -TERM "$RECS_PID"
    for _ in $(seq 100); do kill -0 "$RECS_PID" 2>/dev/null || break; sleep 0.1; done
    wait "$RECS_PID"; local rc=$?; RECS_PID=
    return $rc
}
start_recs 0
check "the recs node starts (recs@2 share 0)" grep -q "serving \`recs\` (recs@2 share 0.00) and \`events\`" "$T/recs.out"
check "the recs node says how its event log writes" grep -Eq "events: appends (direct \(O_DIRECT|buffered \()" "$T/recs.out"

erl_run() { # erl_run NAME EXPR : runs EXPR in an erl node, output in $T/NAME.out
    timeout 60 erl -name "t$RANDOM$$@127.0.0.1" -setcookie "$ONEBLOG_COOKIE" -noshell -eval "
        R = '$ONEBLOG_RECS_NODE', C = '$ONEBLOG_CMS_NODE',
        Call = fun(Req) -> gen_server:call({recs, R}, Req, 20000) end,
        $2, halt()." >"$T/$1.out" 2>&1
}

# Phase 1: recs@1 answers.
erl_run calls '
    {ok, #{model := <<"recs@1">>, event := Ev1, items := Items}} =
        Call({recommend, #{reader => <<"r1">>, post => <<"the-cost-of-a-process">>, k => 5,
                           trace => <<"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01">>}}),
    5 = length(Items),
    Slugs = [maps:get(slug, I) || I <- Items],
    Excluded = [<<"the-cost-of-a-process">>, <<"why-our-nodes-are-hidden">>,
                <<"a-gentle-introduction-to-gen-server">>, <<"how-our-supervisors-restart-things">>],
    [] = [S || S <- Slugs, lists:member(S, Excluded)],
    Scores = [maps:get(score, I) || I <- Items],
    Scores = lists:reverse(lists:sort(Scores)),
    true = lists:all(fun(I) -> is_integer(maps:get(id, I)) andalso is_binary(maps:get(title, I)) end, Items),
    io:format("EV ~s ~s~n", [Ev1, hd(Slugs)]),
    lists:foreach(fun({Rd, P}) ->
        {ok, #{model := <<"recs@1">>, event := E, items := [#{slug := S1} | _]}} =
            Call({recommend, #{reader => Rd, post => P, k => 4}}),
        io:format("EV ~s ~s~n", [E, S1])
      end, [{<<"r2">>, <<"sqlite-in-production-wal-one-writer-many-readers">>},
            {<<"r3">>, <<"colour-systems-for-small-teams">>},
            {<<"r4">>, nil}, {<<"r1">>, <<"deploying-on-a-friday">>}]),
    {error, bad_request} = Call({recommend, #{k => 5}}),
    {error, bad_request} = Call({recommend, #{reader => <<"x">>, k => 0}}),
    {error, bad_request} = Call({recommend, #{reader => <<"x">>, colour => red}}),
    {ok, #{posts := NPosts}} = Call(info),
    true = NPosts >= 25,
    io:format("calls-ok ~p~n", [NPosts])'
check "erl calls recs: ranked answers without the context or history, bad requests refused" grep -q calls-ok "$T/calls.out"
grep -q calls-ok "$T/calls.out" || sed 's/^/    /' "$T/calls.out" | head -20

# Every answer's event was in the log when the reply came back (the node still runs).
check_events() {
    local n=0
    while read -r _ id first; do
        "$EV" show "$id" >"$T/ev.json" || { echo "event $id not in the log"; return 1; }
        python3 - "$T/ev.json" "$first" <<'PY' || return 1
import json, sys
e = json.load(open(sys.argv[1]))
assert e["type"] == "recs.request", e["type"]
assert e["model"]["name"] == "recs" and e["model"]["version"] == "1", e["model"]
assert "w_title" in e["model"]["params"], e["model"]["params"]
assert e["output"][0]["post"] == sys.argv[2], (e["output"][0], sys.argv[2])
assert "latency_us" in e and e["input"]["candidates_n"]["$numberLong"] != "0"
assert e["data"]["variant"] == "recs@1"
PY
        n=$((n + 1))
    done < <(grep '^EV ' "$T/calls.out")
    [ "$n" -eq 5 ]
}
check "each answer's recs.request event is durable before the reply (model, params, input, same output)" check_events
check "the first event carries the reader's history and the trace id" sh -c "
    id=\$(grep '^EV ' '$T/calls.out' | head -1 | cut -d' ' -f2)
    '$EV' show \$id | python3 -c '
import json, sys
e = json.load(sys.stdin)
assert e[\"input\"][\"history\"][:3] == [\"how-our-supervisors-restart-things\", \"a-gentle-introduction-to-gen-server\", \"why-our-nodes-are-hidden\"], e[\"input\"][\"history\"]
assert e[\"input\"][\"context_post\"] == \"the-cost-of-a-process\"
assert e[\"trace_id\"] == \"0af7651916cd43dd8448eb211c80319c\", e.get(\"trace_id\")
assert e[\"actor\"] == \"r1\"
'"

# content_changed: unpublishing a post rebuilds the index without it.
erl_run rebuild '
    {ok, #{posts := N0, rebuilds := R0}} = Call(info),
    {ok, #{id := Id}} = gen_server:call({cms, C}, {get_post, <<"deploying-on-a-friday">>}),
    {ok, _} = gen_server:call({cms, C}, {unpublish, Id}),
    Wait = fun W(0) -> timeout; W(K) -> case Call(info) of
              {ok, #{rebuilds := Rb}} when Rb > R0 -> ok; _ -> timer:sleep(100), W(K - 1) end end,
    ok = Wait(300), % up to 30 s (a loaded, sanitized run is slow to rebuild)
    {ok, #{posts := N1}} = Call(info),
    N1 = N0 - 1,
    {ok, #{items := Items}} = Call({recommend, #{reader => <<"r5">>, k => 50}}),
    false = lists:member(<<"deploying-on-a-friday">>, [maps:get(slug, I) || I <- Items]),
    io:format("rebuild-ok ~p -> ~p~n", [N0, N1])'
check "content_changed rebuilds the index (unpublished post gone)" grep -q rebuild-ok "$T/rebuild.out"
grep -q rebuild-ok "$T/rebuild.out" || sed 's/^/    /' "$T/rebuild.out" | head -20
check "snapshots were written for replay (one per index)" sh -c "[ \$(ls '$T/snapshots' | grep -c '\.snap\$') -ge 2 ]"

if stop_recs; then ok "SIGTERM stops the recs node cleanly"; else bad "recs node exit status"; fi

# Replay in the sandbox.
"$EV" replay --model recs@1 >"$T/replay1.out" 2>&1
check "replay --model recs@1: every logged answer identical" sh -c "
    grep -q '^identical: 6\$' '$T/replay1.out' && grep -q '^different: 0\$' '$T/replay1.out' &&
    grep -q '^overlap@k: 1.0000' '$T/replay1.out' && grep -q '^kendall_tau: 1.0000' '$T/replay1.out'"
check "replay runs in a sandbox without network and without the store" grep -q "^sandbox: .*network namespace.*no event store handle" "$T/replay1.out"
"$EV" replay --model recs@2 >"$T/replay2.out" 2>&1
check "replay --model recs@2: differences, overlap and rank correlation, one diff" sh -c "
    d=\$(sed -n 's/^different: //p' '$T/replay2.out'); [ \"\${d:-0}\" -gt 0 ] &&
    grep -q '^overlap@k: ' '$T/replay2.out' && grep -q '^kendall_tau: ' '$T/replay2.out' &&
    grep -q '^diff for event ' '$T/replay2.out'"
first=$(grep '^EV ' "$T/calls.out" | head -1 | cut -d' ' -f2)
"$EV" replay --model recs@2 --event "$first" --sample 2 >"$T/replay3.out" 2>&1
check "replay --event ID --sample N shows that event's full diff" sh -c "
    grep -q '^diff for event $first ' '$T/replay3.out' && grep -q 'recs.request events' '$T/replay3.out' &&
    [ \$(grep -c '^  [0-9]' '$T/replay3.out') -eq 5 ]"
check "replay leaves the log unchanged (verify ok, no new records)" sh -c "
    n=\$('$EV' query --type recs.request | wc -l); [ \"\$n\" -eq 6 ] && '$EV' verify | grep -q '^verify: ok'"
check "replay of a missing version is a usage error" sh -c "'$EV' replay --model recs@9; [ \$? -eq 2 ]"
[ "$failed" -eq 0 ] || { for f in replay1 replay2 replay3; do sed 's/^/    /' "$T/$f.out" | head -20; done; }

# Phase 2: A/B at 50%, then synthetic impressions and clicks.
start_recs 0.5
erl_run ab '
    lists:foreach(fun(I) ->
        Rd = list_to_binary("a" ++ integer_to_list(I)),
        {ok, #{model := M, event := E}} = Call({recommend, #{reader => Rd, k => 3}}),
        io:format("AB ~s ~s ~s~n", [Rd, E, M])
      end, lists:seq(1, 40)),
    io:format("ab-ok~n")'
check "a 50% share answers with both variants" sh -c "
    grep -q ab-ok '$T/ab.out' && grep -q ' recs@1\$' '$T/ab.out' && grep -q ' recs@2\$' '$T/ab.out'"
stop_recs >/dev/null
# Every request shown once; clicks: every 2nd recs@1 request, every 4th recs@2 one,
# plus a click naming another reader's request (must not count).
i1=0 i2=0 c1=0 c2=0 n1=0 n2=0 last=
while read -r _ rd ev model; do
    "$EV" append --type page.view --actor "$rd" --data "{\"post\":\"x\",\"recs_event\":\"$ev\"}" >/dev/null
    if [ "$model" = recs@1 ]; then n1=$((n1 + 1)); click=$((i1 % 2 == 0)); i1=$((i1 + 1)); [ $click = 1 ] && c1=$((c1 + 1))
    else n2=$((n2 + 1)); click=$((i2 % 4 == 0)); i2=$((i2 + 1)); [ $click = 1 ] && c2=$((c2 + 1)); fi
    [ "$click" = 1 ] && "$EV" append --type recs.click --actor "$rd" --data "{\"post\":\"y\",\"recs_event\":\"$ev\"}" >/dev/null
    last=$ev
done < <(grep '^AB ' "$T/ab.out")
"$EV" append --type recs.click --actor intruder --data "{\"post\":\"y\",\"recs_event\":\"$last\"}" >/dev/null
"$EV" ab-report >"$T/ab-report.out" 2>&1
want1=$(awk -v c="$c1" -v n="$n1" 'BEGIN { printf "impressions %d, clicks %d, ctr %.4f", n, c, c / n }')
want2=$(awk -v c="$c2" -v n="$n2" 'BEGIN { printf "impressions %d, clicks %d, ctr %.4f", n, c, c / n }')
check "ab-report: click-through per variant ($want1 / $want2)" sh -c "
    grep -q 'variant recs@1: requests $((n1 + 6)), $want1\$' '$T/ab-report.out' &&
    grep -q 'variant recs@2: requests $n2, $want2\$' '$T/ab-report.out' &&
    grep -q '^unmatched: 1 ' '$T/ab-report.out'"
grep -q "^unmatched: 1 " "$T/ab-report.out" || sed 's/^/    /' "$T/ab-report.out"

echo "recs.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
