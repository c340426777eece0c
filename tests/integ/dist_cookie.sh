#!/usr/bin/env bash
# dist_cookie.sh BUILD - cookies against real erl: a wrong cookie is refused in
# both directions, logged with the peer's address, and the C node keeps serving
# good peers; a cookie file open to others is refused; a node with cookies
# "new,old" serves both, and rotating the file to "new" with SIGHUP while an erl
# node with the old cookie keeps calling loses no call (its connection stays),
# while new connections need the new cookie.
. "$(dirname "$0")/dist_lib.sh" "$1"
compile_erl || { echo "0 passed, 1 failed"; exit 1; }
start_epmd || { echo "0 passed, 1 failed"; exit 1; }
unset ONEBLOG_COOKIE
NEW=new-$RANDOM OLD=old-$RANDOM

# A cookie file readable by others is refused, as erl refuses it.
printf '%s\n' "$NEW" >"$T/open.cookie"
chmod 644 "$T/open.cookie"
ONEBLOG_NODE=bad$RANDOM@127.0.0.1 ONEBLOG_COOKIE_FILE=$T/open.cookie timeout 10 \
    "$BIN/test-dist_node" serve >"$T/open.log" 2>&1
rc=$?
check "cookie file open to others refused (exit $rc)" \
    bash -c "[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'accessible by owner only' '$T/open.log'"

printf '%s\n%s\n' "$NEW" "$OLD" >"$T/c.cookie"
chmod 600 "$T/c.cookie"
C=c$RANDOM@127.0.0.1
ONEBLOG_NODE=$C ONEBLOG_COOKIE_FILE=$T/c.cookie start_bg cnode "$BIN/test-dist_node" serve
wait_log cnode registered 10

call_from_erl() { # COOKIE -> prints the call result
    erl_node "e$RANDOM@127.0.0.1" "$1" -eval "
        io:format(\"~p~n\", [catch gen_server:call({t, '$C'}, ping, 5000)]), halt()." 2>&1
}

# erl -> C with a wrong cookie: refused and logged with the address.
R=$(call_from_erl wrong-$RANDOM)
check "erl with a wrong cookie cannot call" bash -c "! grep -q '{echo,ping}' <<<'$R'"
check "C node logs the refusal with the peer address" \
    grep -qE "refused connection from e[0-9]+@127.0.0.1 at 127\.0\.0\.1:[0-9]+: bad cookie" \
    "$T/cnode.log"

# C -> erl with a wrong cookie: refused both ways, logged, no crash.
E=srv$RANDOM@127.0.0.1
start_bg erlsrv timeout 90 erl -noshell -start_epmd false -pa "$T/ebin" -name "$E" \
    -setcookie "other-$RANDOM" -eval 'dist_test:start_erlsrv(), io:format("ready~n")'
wait_log erlsrv ready 20
ONEBLOG_NODE=cl$RANDOM@127.0.0.1 ONEBLOG_COOKIE=$NEW timeout 20 \
    "$BIN/test-dist_node" call "$E" erlsrv >"$T/out.log" 2>&1
check "C client with a wrong cookie gets 'node not connected'" \
    grep -q "^error node not connected" "$T/out.log"
check "C client logs the refusal with the peer address" \
    grep -qE "$E at 127\.0\.0\.1:[0-9]+ closed the connection after our challenge reply" \
    "$T/out.log"

# Both cookies of the set are accepted; the node still serves after refusals.
check "erl with the new cookie calls" bash -c "grep -q '{echo,ping}' <<<'$(call_from_erl "$NEW")'"
check "erl with the old cookie calls" bash -c "grep -q '{echo,ping}' <<<'$(call_from_erl "$OLD")'"

# Rotation: an old-cookie caller keeps calling while the file drops the old one.
start_bg rot erl -noshell -start_epmd false -pa "$T/ebin" -name "rot$RANDOM@127.0.0.1" \
    -setcookie "$OLD" -run dist_test rotation_caller "$C" "$T/rot.stop"
# Rotate once the caller is connected and calling (after a fixed 2 s, an erl slow
# to start on a loaded machine connected after the rotation and was refused).
wait_log rot "rotation connected" 30 >/dev/null
printf '%s\n' "$NEW" >"$T/c.cookie"
kill -HUP "$PID_cnode"
check "SIGHUP reloads the cookie file" wait_log cnode "SIGHUP: reloaded 1 cookie" 20
# The caller stops 200 calls after this file appears: calls after the reload,
# however slow the machine (it ran for a fixed 6 s from its start before).
: >"$T/rot.stop"
check "rotation: the old-cookie caller saw zero failures" wait_log rot "rotation calls=[0-9]+ failed=0" 60
grep rotation "$T/rot.log" | sed 's/^/# /'
R=$(call_from_erl "$OLD")
check "after rotation a new connection with the old cookie is refused" \
    bash -c "! grep -q '{echo,ping}' <<<'$R'"
check "after rotation the new cookie still works" \
    bash -c "grep -q '{echo,ping}' <<<'$(call_from_erl "$NEW")'"
check "C node alive after all that" kill -0 "$PID_cnode"
finish
