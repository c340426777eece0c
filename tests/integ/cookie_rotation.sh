#!/usr/bin/env bash
# tests/integ/cookie_rotation.sh BUILD - rotating the distribution cookie of a
# running cluster under load, the three-step procedure of docs/operations.md:
#
#   step 1 "add"    every cookie file becomes "old,new" (present old, accept both)
#   step 2 "switch" every file becomes "new,old"         (present new, accept both)
#   step 3 "drop"   every file becomes "new"
#
# Each step is applied the two ways a fleet applies it: the running nodes reload
# their file on SIGHUP (VMs, systemd), and the CMS fleet is replaced one node at
# a time (ECS: a new task reads the new secret at start; the oldest task gets
# SIGTERM, leaves the registry and drains). Meanwhile wrk loads an uncached
# client (every request is CMS calls). Checks: zero failed HTTP requests, zero
# failed CMS calls in the client's counters, every new node taken into service;
# after step 1 a new-cookie peer (erl) is accepted by every node; after step 3
# an old-cookie peer (erl, and a CMS node) is refused. Ends "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh
command -v wrk >/dev/null || { bad "wrk is needed (make deps)"; summary; exit 1; }
command -v erl >/dev/null || { bad "erl is needed (make deps)"; summary; exit 1; }
unset ONEBLOG_COOKIE
export ONEBLOG_ADMIN=0 ONEBLOG_LOG_LEVEL=info ONEBLOG_SHUTDOWN_DRAIN_MS=1000
OLD=old-$RANDOM$RANDOM NEW=new-$RANDOM$RANDOM

# Each node has its own cookie file (as each host or task has its own copy).
set_cookie() { # set_cookie NAME TEXT...  (one cookie a line, mode 0400)
    local f="$T/$1.cookie"; shift
    rm -f "$f"; printf '%s\n' "$@" >"$f"; chmod 400 "$f"
}
start_cms() { # start_cms NAME COOKIES...
    local name=$1; shift
    set_cookie "$name" "$@"
    ONEBLOG_COOKIE_FILE="$T/$name.cookie" cms_start "$name"
}
calls_to() { # calls the client made to NAME
    curl -s "$BASE/healthz" | grep -o "\"node\":\"$1@127.0.0.1\",\"outstanding\":[0-9]*,\"calls\":[0-9]*" |
        sed 's/.*"calls"://'
}
serves() { # serves NAME: the client calls it within 10 s
    for _ in $(seq 300); do
        [ "$(calls_to "$1")" -gt 0 ] 2>/dev/null && return 0
        curl -s -o /dev/null "$BASE/tag/erlang/"; sleep 0.1
    done
    return 1
}
ping_from_erl() { # ping_from_erl COOKIE NODE... -> one "Node true|false" line each (handshake accepted or not)
    local cookie=$1; shift
    local nodes; nodes=$(printf "'%s@127.0.0.1'," "$@"); nodes=${nodes%,}
    timeout 20 erl -noshell -start_epmd false -name "probe$RANDOM@127.0.0.1" -setcookie "$cookie" \
        -eval "[io:format(\"~s ~p~n\", [N, net_kernel:connect_node(N)]) || N <- [$nodes]], halt()." 2>&1
}
reloads() { # reloads FILE: the SIGHUP cookie reloads FILE's node has logged
    grep -cE 'SIGHUP: (reloaded [0-9]+ cookie|cookies reloaded)' "$1"
}
hup_all() { # hup_all COOKIES... : every live node's file, then SIGHUP to each
    local n f
    local -A before=()
    for n in "${LIVE[@]}" client; do before[$n]=$(reloads "$T/$n.out"); done
    for n in "${LIVE[@]}"; do set_cookie "$n" "$@"; done
    set_cookie client "$@"
    for n in "${LIVE[@]}"; do kill -HUP "${CMS_PID[$n]}"; done
    kill -HUP "$CLIENT_PID"
    # The step is applied once every node says it has read its file (30 s at most).
    for _ in $(seq 300); do
        f=0
        for n in "${LIVE[@]}" client; do [ "$(reloads "$T/$n.out")" -gt "${before[$n]}" ] || f=1; done
        [ "$f" = 0 ] && return 0
        sleep 0.1
    done
    for n in "${LIVE[@]}" client; do echo "$n: $(reloads "$T/$n.out") reloads logged, ${before[$n]} before"; done
    return 1
}
retire() { # retire NAME: SIGTERM, wait for the exit, drop it from LIVE
    kill -TERM "${CMS_PID[$1]}"
    for _ in $(seq 100); do kill -0 "${CMS_PID[$1]}" 2>/dev/null || break; sleep 0.1; done
    LIVE=("${LIVE[@]/$1}")
    LIVE=($(printf '%s\n' "${LIVE[@]}" | grep .))
}

start_cms cms1 "$OLD" || { bad "cms1 starts"; summary; exit 1; }
start_cms cms2 "$OLD" || { bad "cms2 starts"; summary; exit 1; }
LIVE=(cms1 cms2)
set_cookie client "$OLD"
NODES=$(printf 'cms%d@127.0.0.1,' 1 2 3 4 5 6); NODES=${NODES%,}
client_start "$NODES" ONEBLOG_CACHE_MB=0 ONEBLOG_COOKIE_FILE="$T/client.cookie" \
    ONEBLOG_CLUSTER_BACKOFF_MIN_MS=100 ONEBLOG_CLUSTER_BACKOFF_MAX_MS=300 ||
    { bad "client starts"; summary; exit 1; }
check "client ready" wait_ready
check "client calls cms1" serves cms1
check "client calls cms2" serves cms2

cat >"$T/paths.lua" <<'LUA'
paths = { "/", "/page/2/", "/tag/engineering/", "/tag/erlang/", "/author/maya-chen/",
          "/why-we-built-our-blog-on-the-beam-model-in-c/", "/about/", "/rss/" }
i = 0
request = function()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
# Bounded: wrk stops at 300 s at the latest; it is stopped (SIGINT: it prints its
# summary) once the three steps are done. The load is measured in pages served,
# not seconds: 200 before step 1 and 200 more after each step.
wrk -t1 -c8 -d300s --timeout 5s -s "$T/paths.lua" "$BASE" >"$T/wrk.out" 2>&1 &
WRK=$!
PIDS+=($WRK)
check "load runs (200 pages)" until_served 200 "$BASE"

# Step 1: add the new cookie, still presenting the old one.
check "step 1: every node reloaded its cookie file" hup_all "$OLD" "$NEW"
start_cms cms3 "$OLD" "$NEW" || bad "cms3 starts"
LIVE+=(cms3)
check "step 1: the client takes cms3 into service" serves cms3
ping_from_erl "$NEW" cms1 cms2 cms3 client$$ >"$T/ping1" 2>&1
check "step 1: a new-cookie peer is accepted by every node" \
    sh -c "[ \$(grep -c ' true' '$T/ping1') -eq 4 ]"
sed 's/^/    # /' "$T/ping1"
retire cms1
check "step 1: load goes on (200 more pages)" until_served 200 "$BASE"

# Step 2: present the new cookie; the old one is still accepted.
check "step 2: every node reloaded its cookie file" hup_all "$NEW" "$OLD"
start_cms cms4 "$NEW" "$OLD" || bad "cms4 starts"
LIVE+=(cms4)
check "step 2: the client takes cms4 into service" serves cms4
retire cms2
check "step 2: load goes on (200 more pages)" until_served 200 "$BASE"

# Step 3: drop the old cookie.
check "step 3: every node reloaded its cookie file" hup_all "$NEW"
start_cms cms5 "$NEW" || bad "cms5 starts"
LIVE+=(cms5)
check "step 3: the client takes cms5 into service" serves cms5
retire cms3
check "step 3: load goes on (200 more pages)" until_served 200 "$BASE"
kill -INT "$WRK"
wait "$WRK"

requests() { sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$1"; }
non2xx() { local n; n=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)/\1/p' "$1"); echo "${n:-0}"; }
sockerr() { sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\)/\1 \2 \3 \4/p' "$1" | awk '{n += $1+$2+$3+$4} END {print n+0}'; }
r=$(requests "$T/wrk.out"); e=$(( $(non2xx "$T/wrk.out") + $(sockerr "$T/wrk.out") ))
H=$(curl -s "$BASE/healthz")
calls=$(grep -o '"calls":[0-9]*' <<<"$H" | awk -F: '{n += $2} END {print n+0}')
errs=$(grep -o '"errors":[0-9]*' <<<"$H" | awk -F: '{n += $2} END {print n+0}')
echo "    rotation under load: $r requests, $e failed; $calls CMS calls, $errs failed"
check "wrk reported its load" [ "${r:-0}" -gt 0 ]
check "zero failed requests during the rotation ($e of $r)" [ "$e" -eq 0 ]
check "zero failed CMS calls during the rotation ($errs of $calls)" [ "$errs" -eq 0 ]
check "retired nodes drained (log)" grep -q "leaving the cluster, draining" "$T/cms1.out"

# After the rotation: the old cookie is refused everywhere, the new one works.
ping_from_erl "$OLD" cms4 cms5 client$$ >"$T/ping3" 2>&1
check "step 3: an old-cookie peer is refused by every node" \
    sh -c "[ \$(grep -c ' false' '$T/ping3') -eq 3 ]"
check "the refusal is logged with the peer's address" \
    grep -qE "refused connection from probe[0-9]+@127.0.0.1 at 127\.0\.0\.1:[0-9]+: bad cookie" "$T/cms5.out"
check "no cookie in any log" sh -c "! grep -l -e '$OLD' -e '$NEW' '$T'/*.out"
start_cms cms6 "$OLD" || bad "cms6 (old cookie only) starts"
# The client dials every node of its list: wait until it has been turned away by
# cms6 (or has turned cms6 away), then ask for pages that would go to cms6 if it
# had got in (the cache is off: each is CMS calls).
check "cms6 and the client refuse each other (bad cookie)" \
    sh -c "for i in \$(seq 300); do grep -qE 'refused connection from (client$$|cms6)@127.0.0.1 .*bad cookie' '$T/cms6.out' '$T/client.out' && exit 0; sleep 0.1; done; exit 1"
for _ in $(seq 20); do curl -s -o /dev/null --max-time 10 "$BASE/page/2/"; done
check "a CMS node left on the old cookie is never called" \
    sh -c "[ -z \"\$(curl -s '$BASE/healthz' | grep -o '\"node\":\"cms6@127.0.0.1\"')\" ]"
check "the client still serves" [ "$(status /page/2/)" = 200 ]
summary
