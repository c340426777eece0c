#!/usr/bin/env bash
# tests/integ/cms_cli.sh BUILD - the oneblog-cms binary end to end on SQLite in a
# temp dir: init, migrate, user add, import (demo folder and a Ghost export),
# export, config errors, then `serve` with the distribution on a private EPMD
# port, called from a real erl node (gen_server:call({cms, Node}, ...)), and
# stopped with SIGTERM. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/port_lib.sh
B=${1:-${ONEBLOG_BUILD:-build}}
CMS="$B/bin/oneblog-cms"
T=$(mktemp -d /tmp/cms-cli.XXXXXX)
SERVE_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null
    [ -n "$SERVE_PID" ] && wait "$SERVE_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
export ONEBLOG_DATA_DIR="$T/data" ONEBLOG_LOG_LEVEL=warn
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { # check NAME CMD... : passes when CMD succeeds
    local name=$1; shift
    if "$@" >"$T/last" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$T/last"; fi
}

check "help lists the commands" sh -c "'$CMS' help | grep -q 'import DIR'"
check "migrate on an empty directory" sh -c "'$CMS' migrate | grep -q 'schema at version 2 (sqlite)'"
check "init creates the owner" sh -c "echo 'a long enough password' | '$CMS' init --email owner@example.com --name 'Olivia Owner' --password-stdin | grep -q '(owner)'"
check "init twice changes nothing" sh -c "'$CMS' init --email x@example.com --name X | grep -q 'already initialised'"
argon2_stored() {
    python3 - "$T/data/oneblog.db" <<'PY'
import sqlite3, sys
h = sqlite3.connect(sys.argv[1]).execute(
    "select password_hash from users where email = 'owner@example.com'").fetchone()[0]
sys.exit(0 if h.startswith("$argon2id$v=19$m=65536,t=2,p=1$") else 1)
PY
}
check "password stored as an argon2id hash" argon2_stored
check "user add editor" sh -c "'$CMS' user add --email ed@example.com --name 'Ed Itor' --role editor | grep -q '(editor)'"
check "user add refuses a bad role" sh -c "! '$CMS' user add --email z@example.com --name Z --role root 2>&1 | grep -q root || ! '$CMS' user add --email z@example.com --name Z --role root"
check "duplicate user is refused" sh -c "! '$CMS' user add --email ed@example.com --name 'Ed Itor' --role editor"
check "import the demo folder" sh -c "'$CMS' import cms/demo | grep -q '30 posts, 1 pages, 4 new authors, 49 tag links'"
check "import again skips everything" sh -c "'$CMS' import cms/demo | grep -q '0 posts, 0 pages, 0 new authors, 0 tag links, 31 skipped'"
check "import a Ghost export" sh -c "'$CMS' import --ghost cms/testdata/ghost-export.json | grep -q '3 posts, 1 pages'"
check "import of a missing folder fails" sh -c "! '$CMS' import /nonexistent"
check "export is JSON with every post" sh -c "'$CMS' export '$T/e.json' && python3 -c \"import json,sys; d=json.load(open('$T/e.json')); sys.exit(0 if len(d['posts'])==35 and d['format']=='oneblog-export' else 1)\""
check "a bad option names the variable" sh -c "ONEBLOG_DB_POOL=lots '$CMS' migrate 2>&1 | grep -q 'ONEBLOG_DB_POOL'"
check "an unknown command fails" sh -c "! '$CMS' frobnicate"

# serve, and a real Erlang node calling it
if command -v erl >/dev/null; then
    export ERL_EPMD_PORT=$(free_port) ONEBLOG_COOKIE=cmstestcookie
    export ONEBLOG_CMS_NODE=cms@127.0.0.1
    "$CMS" serve >"$T/serve.out" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 300); do grep -q serving "$T/serve.out" && break; sleep 0.1; done
    check "serve starts" grep -qE "serving \`cms\` [^ ]+ \(sqlite, 35 posts and pages\), distribution on" "$T/serve.out"
    timeout 30 erl -name "t$$@127.0.0.1" -setcookie cmstestcookie -noshell -eval '
        N = '"'"'cms@127.0.0.1'"'"',
        {ok, P} = gen_server:call({cms, N}, {get_post, <<"the-cost-of-a-process">>}),
        <<"The cost of a process">> = maps:get(title, P),
        {ok, #{posts := Ps, meta := #{pagination := #{total := Tot}}}} =
            gen_server:call({cms, N}, {list_posts, #{per_page => 5}}),
        5 = length(Ps),
        true = Tot >= 28,
        {ok, #{posts := [First | _]}} = gen_server:call({cms, N}, {search, <<"supervisor restarts">>, #{}}),
        <<"how-our-supervisors-restart-things">> = maps:get(slug, First),
        {error, not_found} = gen_server:call({cms, N}, {get_post, <<"no-such-post">>}),
        {error, bad_request} = gen_server:call({cms, N}, {get_post, 42}),
        {ok, #{version := _}} = gen_server:call({cms, N}, {subscribe, self()}),
        io:format("erl-calls-ok~n"),
        halt().' >"$T/erl.out" 2>&1
    check "an erl node calls cms (get_post, list_posts, search, errors, subscribe)" grep -q erl-calls-ok "$T/erl.out"
    grep -q erl-calls-ok "$T/erl.out" || sed 's/^/    /' "$T/erl.out" | head -20
    kill -TERM "$SERVE_PID"
    for _ in $(seq 100); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVE_PID" 2>/dev/null; then bad "SIGTERM stops serve"; else
        wait "$SERVE_PID"; rc=$?; SERVE_PID=
        if [ "$rc" -eq 0 ]; then ok "SIGTERM stops serve cleanly"; else bad "serve exit status $rc"; fi
    fi
else
    bad "erl is not installed (make deps): serve is not tested"
fi

echo "cms_cli.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
