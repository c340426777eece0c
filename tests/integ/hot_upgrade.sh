#!/usr/bin/env bash
# tests/integ/hot_upgrade.sh BUILD - hot code upgrade of the `recs` server
# (docs/hot-upgrade.md). A CMS node with the demo content and a recs node
# (oneblog-recs, `events` on a file log) started from the module recs-1.so, with
# every reader in the recs@2 share (so the served model shows the version: recs 1
# serves only recs@1, recs 2 serves recs@2). Under a bounded load of 8 erl callers,
# `oneblog-ctl upgrade` goes 1 -> 2, tries recs-bad.so (its code_change fails: 2
# keeps running, ctl says why), then downgrades 2 -> 1. Checks: zero failed calls;
# each caller saw recs@1, recs@2, recs@1 in that order; in the event log the
# recs.request events switch version exactly twice (at one seq each way), never
# show the bad build, and carry the model of their version; files failing the
# loader's checks are refused with their reason; erl's :sys.suspend/resume/
# get_state/get_status work on the server; the recs embedded in `oneblog-cms
# serve` (linked in, version 2) changes to recs-1.so too. Ends with "N passed,
# N failed".
. "$(dirname "$0")/dist_lib.sh" "$1"

CMS=$BIN/oneblog-cms RECS=$BIN/oneblog-recs EV=$BIN/oneblog-events CTL=$BIN/oneblog-ctl
MODS=$BUILD/lib/modules
if ! command -v erl >/dev/null; then
    check "erl is installed (make deps)" false
    finish
fi
for f in "$CMS" "$RECS" "$EV" "$CTL" "$MODS/recs-1.so" "$MODS/recs-2.so" "$MODS/recs-bad.so"; do
    [ -e "$f" ] || { check "$f is built" false; finish; }
done

# The code directory: owned by us, writable by nobody else, as a deploy would
# make it. The loader refuses anything outside it.
CODE=$T/code
mkdir -m 0755 "$CODE"
cp "$MODS/recs-1.so" "$MODS/recs-2.so" "$MODS/recs-bad.so" "$CODE/"
cp "$MODS/recs-2.so" "$CODE/recs-ww.so" && chmod 0666 "$CODE/recs-ww.so"

export ONEBLOG_DATA_DIR="$T/data" ONEBLOG_LOG_LEVEL=warn ONEBLOG_COOKIE=hotupgradecookie
export ONEBLOG_CMS_NODE=cms@127.0.0.1 ONEBLOG_RECS_NODE=recs@127.0.0.1
export ONEBLOG_RECS_CMS_NODE=cms@127.0.0.1 ONEBLOG_RECS_SNAPSHOTS="$T/snapshots"
export EVENTS_URL="file:$T/events" ONEBLOG_CODE_DIR="$CODE"
R=recs@127.0.0.1

start_epmd
# The CMS node runs the linked-in recs (no event log of its own: its answers
# would fail, but only its code is checked here), the recs node the module.
start_bg cms env ONEBLOG_EVENTS=off EVENTS_URL= ONEBLOG_RECS_SNAPSHOTS="$T/cms-snapshots" "$CMS" serve
check "the CMS node serves the demo content" wait_log cms 'serving `cms`' 30
start_bg recs env ONEBLOG_RECS_MODULE="$CODE/recs-1.so" ONEBLOG_RECS_V2_SHARE=1 "$RECS"
check "the recs node starts from recs-1.so" wait_log recs 'serving `recs`' 60

ctl() { # ctl NAME ARGS... : run oneblog-ctl, output and status in $T/ctl-NAME.{out,rc}
    local name=$1
    shift
    timeout 150 "$CTL" "$@" >"$T/ctl-$name.out" 2>&1
    echo $? >"$T/ctl-$name.rc"
}
ctl_says() { # ctl_says NAME RC TEXT
    local rc
    rc=$(cat "$T/ctl-$1.rc")
    if [ "$rc" = "$2" ] && grep -qF -- "$3" "$T/ctl-$1.out"; then return 0; fi
    echo "# ctl $1: status $rc (want $2), output:"; sed 's/^/#   /' "$T/ctl-$1.out"
    return 1
}

ctl cmswhich which cms@127.0.0.1 recs
check "oneblog-cms serve: its embedded recs runs the linked-in version 2" \
    ctl_says cmswhich 0 "cms@127.0.0.1: recs runs module recs version 2"
ctl cmsdown upgrade cms@127.0.0.1 recs "$CODE/recs-1.so"
check "oneblog-cms serve: the linked-in recs 2 changes to the module recs-1.so" \
    ctl_says cmsdown 0 "cms@127.0.0.1: recs upgraded 2 -> 1"

ctl which0 which "$R" recs
check "ctl which: the server runs module recs version 1" \
    ctl_says which0 0 "$R: recs runs module recs version 1"

# Files the loader refuses, before the server is touched.
ctl ww upgrade "$R" recs "$CODE/recs-ww.so"
check "a module file writable by others is refused" ctl_says ww 1 "writable by group or others"
ctl outside upgrade "$R" recs "$MODS/recs-2.so"
check "a module file outside ONEBLOG_CODE_DIR is refused" ctl_says outside 1 "outside the code directory"
ctl noserver upgrade "$R" nosuch "$CODE/recs-2.so"
check "an unknown server name is reported" ctl_says noserver 1 "no process is registered as 'nosuch'"
ctl usage upgrade "$R" recs
check "ctl upgrade without a file is a usage error" ctl_says usage 2 "usage: oneblog-ctl"

# The bounded load and the upgrades, driven from one erl node so the order is
# fixed: load, up, bad, down, load, stop. Each caller stops after 60 s or 20,000
# calls at the latest.
cat >"$T/load.erl" <<EOF
-module(load).
-export([run/0]).

call(R, Id) ->
    Req = {recommend, #{reader => <<"reader-", (integer_to_binary(Id))/binary>>,
                         post => <<"the-cost-of-a-process">>, k => 3}},
    case catch gen_server:call({recs, R}, Req, 10000) of
        {ok, #{model := M}} -> {ok, M};
        Other -> {failed, Other}
    end.

worker(Parent, R, Id, Deadline) -> worker(Parent, R, Id, Deadline, 0, 0, [], none).
worker(Parent, R, Id, Deadline, Ok, Failed, Runs, Last) ->
    Stop = receive stop -> true after 0 -> false end,
    Now = erlang:monotonic_time(millisecond),
    if Stop orelse Now > Deadline orelse Ok + Failed >= 20000 ->
            Parent ! {done, Id, Ok, Failed, lists:reverse(Runs)};
       true ->
            case call(R, Id) of
                {ok, Last} -> worker(Parent, R, Id, Deadline, Ok + 1, Failed, Runs, Last);
                {ok, M} ->
                    Parent ! {saw, Id, iolist_to_binary(M)},
                    worker(Parent, R, Id, Deadline, Ok + 1, Failed, [M | Runs], M);
                {failed, Why} ->
                    io:format("FAILED ~p~n", [Why]),
                    worker(Parent, R, Id, Deadline, Ok, Failed + 1, Runs, Last)
            end
    end.

%% Wait until every worker has had an answer from model M (30 s at most): the
%% steps used to be a second apart, which on a loaded machine did not always let
%% each worker see each version.
seen_by_all(M) ->
    [receive {saw, Id, M} -> ok
     after 30000 -> io:format("FAILED worker ~p never saw ~s~n", [Id, M])
     end || Id <- lists:seq(1, 8)].

ctl(Args) ->
    Out = os:cmd("$CTL " ++ Args ++ " 2>&1; echo rc=\$?"),
    io:format("CTL ~s: ~s", [Args, Out]).

run() ->
    R = '$R',
    #{vsn := <<"1">>, module := <<"recs">>} = sys:get_state({recs, R}),
    Deadline = erlang:monotonic_time(millisecond) + 60000,
    Self = self(),
    Ws = [spawn_link(fun() -> worker(Self, R, Id, Deadline) end) || Id <- lists:seq(1, 8)],
    seen_by_all(<<"recs@1">>),
    ctl("upgrade $R recs $CODE/recs-2.so"),
    seen_by_all(<<"recs@2">>),
    #{vsn := <<"2">>} = sys:get_state({recs, R}),
    ctl("upgrade $R recs $CODE/recs-bad.so"),
    timer:sleep(1000),
    ctl("upgrade $R recs $CODE/recs-1.so"),
    seen_by_all(<<"recs@1">>),
    timer:sleep(500),
    [W ! stop || W <- Ws],
    Res = [receive {done, Id, Ok, Failed, Runs} -> {Ok, Failed, Runs} end || Id <- lists:seq(1, 8)],
    Ok = lists:sum([O || {O, _, _} <- Res]),
    Failed = lists:sum([F || {_, F, _} <- Res]),
    io:format("CALLS ok=~p failed=~p~n", [Ok, Failed]),
    [io:format("RUNS ~s~n", [lists:join(",", Runs)]) || {_, _, Runs} <- Res],
    %% the sys protocol, as an Elixir engineer would use it
    ok = sys:suspend({recs, R}),
    {status, _, {module, gen_server}, [_, suspended, _, _, _]} = sys:get_status({recs, R}),
    {'EXIT', {timeout, _}} = (catch gen_server:call({recs, R}, info, 300)),
    #{vsn := <<"1">>} = sys:get_state({recs, R}),
    ok = sys:resume({recs, R}),
    {ok, #{posts := _}} = gen_server:call({recs, R}, info, 5000),
    {status, _, {module, gen_server}, [_, running, _, _, _]} = sys:get_status({recs, R}),
    %% sys:change_code runs the running module's code_change (no code swap)
    ok = sys:suspend({recs, R}),
    ok = sys:change_code({recs, R}, recs, "1", []),
    ok = sys:resume({recs, R}),
    #{vsn := <<"1">>} = sys:get_state({recs, R}),
    %% a module swap may only come from the node itself
    {ok, {error, <<"only a process of this node", _/binary>>}} =
        gen:call({recs, R}, system, {'\$cn_change_module', 0, []}, 5000),
    io:format("SYS ok~n"),
    ok.
EOF
(cd "$T" && erlc load.erl) || check "load.erl compiles" false
ERL_CRASH_DUMP="$T/erl_crash.dump" timeout 120 erl -noshell -start_epmd false -pa "$T" -name "load$$@127.0.0.1" \
    -setcookie "$ONEBLOG_COOKIE" -eval 'load:run(), halt().' >"$T/load.out" 2>&1
echo "# erl load and upgrades:"; grep -E '^(CTL|CALLS|SYS|FAILED)' "$T/load.out" | head -20 | sed 's/^/#   /'

check "upgrade 1 -> 2 under load: ctl reports it" \
    grep -q "^CTL upgrade $R recs $CODE/recs-2.so: $R: recs upgraded 1 -> 2 (suspended [0-9.]* ms)$" "$T/load.out"
check "a failing code_change: ctl exits 1 and says why, 2 keeps running" sh -c "
    grep -A1 'recs-bad.so: ' '$T/load.out' | tr '\n' ' ' |
    grep -q '2 keeps running: recs 2-bad refuses to take over from recs 2 .*rc=1'"
check "downgrade 2 -> 1 under load: ctl reports it" \
    grep -q "^CTL upgrade $R recs $CODE/recs-1.so: $R: recs upgraded 2 -> 1 (suspended [0-9.]* ms)$" "$T/load.out"
check "zero failed calls during the upgrades (and some thousands made)" sh -c "
    grep -Eq '^CALLS ok=[0-9]{3,} failed=0$' '$T/load.out'"
check "every caller saw recs@1, then recs@2, then recs@1" sh -c "
    [ \$(grep -c '^RUNS ' '$T/load.out') -eq 8 ] &&
    ! grep '^RUNS ' '$T/load.out' | grep -vq '^RUNS recs@1,recs@2,recs@1$'"
check "erl's sys:suspend/get_status/get_state/change_code/resume work; a remote module swap is refused" \
    grep -q '^SYS ok$' "$T/load.out"
grep -q '^SYS ok$' "$T/load.out" || sed 's/^/#   /' "$T/load.out" | tail -15

ctl which1 which "$R" recs
check "after the downgrade the server runs version 1" \
    ctl_says which1 0 "$R: recs runs module recs version 1"
ctl modules modules "$R"
check "ctl modules lists the loaded files (not the refused ones)" sh -c "
    grep -q '^recs 1 $CODE/recs-1.so$' '$T/ctl-modules.out' &&
    grep -q '^recs 2 $CODE/recs-2.so$' '$T/ctl-modules.out' &&
    ! grep -q 'recs-ww' '$T/ctl-modules.out'"

# The event log: the version switches at one seq each way.
"$EV" query --type recs.request --limit 1000000 >"$T/events.json" 2>"$T/events.err"
check "the event log shows each switch at one sequence number" python3 - "$T/events.json" "$T/load.out" <<'PY'
import json, re, sys
evs = []
for line in open(sys.argv[1]):
    e = json.loads(line)
    seq = e["seq"]
    seq = int(seq["$numberLong"]) if isinstance(seq, dict) else int(seq)
    evs.append((seq, e["data"]["server_vsn"], e["model"]["version"]))
evs.sort()
assert evs, "no recs.request events"
runs = []
for seq, vsn, model in evs:
    assert model == ("1" if vsn == "1" else "2"), (seq, vsn, model)
    if not runs or runs[-1][0] != vsn:
        runs.append([vsn, seq, 0])
    runs[-1][2] += 1
assert [r[0] for r in runs] == ["1", "2", "1"], runs
ok = int(re.search(r"CALLS ok=(\d+)", open(sys.argv[2]).read()).group(1))
assert len(evs) >= ok, (len(evs), ok)
print("# runs (vsn, first seq, events):", runs)
PY

# The node stops cleanly on SIGTERM after all this (under ASan: no report).
stopped() {
    kill -TERM "$PID_recs"
    for _ in $(seq 100); do kill -0 "$PID_recs" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$PID_recs" 2>/dev/null && ! grep -q 'Sanitizer' "$T/recs.log"
}
check "the recs node stops cleanly after the upgrades" stopped
grep -q 'Sanitizer' "$T/recs.log" && sed 's/^/#   /' "$T/recs.log" | head -40
finish
