#!/usr/bin/env bash
# dist_erl.sh BUILD - libcnode distribution against real Erlang/OTP: a C node
# (test-dist_node serve, and cnode-echo) and erl nodes on a private EPMD.
# erl -> C gen_server call and cast, hidden node, 1 MiB term, 10,000 concurrent
# calls, remote monitors with noproc both ways, link exits both ways, exit/2,
# C -> erl calls (from inside a C server and from a C client process), late
# replies to calls that timed out are dropped both ways (aliases).
. "$(dirname "$0")/dist_lib.sh" "$1"
compile_erl || { echo "0 passed, 1 failed"; exit 1; }
start_epmd || { echo "# epmd did not start"; echo "0 passed, 1 failed"; exit 1; }
export ONEBLOG_COOKIE=integ-cookie-$RANDOM

C=c$RANDOM@127.0.0.1
ONEBLOG_NODE=$C start_bg cnode "$BIN/test-dist_node" serve
check "C node registers with EPMD" wait_log cnode "registered" 10

# Every case of dist_test:main prints "ok NAME" or "FAIL NAME: ..."
erl_node "e$RANDOM@127.0.0.1" "$ONEBLOG_COOKIE" -run dist_test main "$C" >"$T/erl.log" 2>&1
cat "$T/erl.log" | sed 's/^/# /'
for c in call cast hidden big_term concurrent_calls monitor_noproc call_noproc \
         link_c_to_erl link_erl_to_c unlink c_calls_erl c_monitors_erl exit2_kill \
         monitor_by_name_exit late_reply_dropped; do
    check "erl: $c" grep -qx "ok $c" "$T/erl.log"
done

# C client -> erl gen_server; and a missing name there -> DOWN noproc -> -ESRCH.
E=srv$RANDOM@127.0.0.1
start_bg erlsrv timeout 60 erl -noshell -start_epmd false -pa "$T/ebin" -name "$E" \
    -setcookie "$ONEBLOG_COOKIE" -eval 'dist_test:start_erlsrv(), io:format("ready~n")'
wait_log erlsrv ready 20
ONEBLOG_NODE=cl$RANDOM@127.0.0.1 timeout 20 "$BIN/test-dist_node" call "$E" erlsrv \
    >"$T/call.log" 2>&1
sed 's/^/# /' "$T/call.log"
check "C -> erl gen_server call" grep -qE "^reply \{erl_reply, ?ping\}" "$T/call.log"
ONEBLOG_NODE=cl$RANDOM@127.0.0.1 timeout 20 "$BIN/test-dist_node" late "$E" erlsrv \
    >"$T/late.log" 2>&1
sed 's/^/# /' "$T/late.log"
check "C -> erl call that times out: the late reply is dropped (alias)" \
    grep -q "^late ok" "$T/late.log"
ONEBLOG_NODE=cl$RANDOM@127.0.0.1 timeout 20 "$BIN/test-dist_node" noproc "$E" \
    >"$T/noproc.log" 2>&1
check "C -> erl call to a missing name gives noproc" grep -q "^noproc ok" "$T/noproc.log"
ONEBLOG_NODE=cl$RANDOM@127.0.0.1 timeout 20 "$BIN/test-dist_node" call nosuch@127.0.0.1 t \
    >"$T/unreach.log" 2>&1
check "C -> unknown node fails cleanly (node not connected)" \
    grep -q "^error node not connected" "$T/unreach.log"

# cnode-echo, the example binary, serves erl too.
ONEBLOG_NODE=echo$RANDOM@127.0.0.1 start_bg echo "$BIN/cnode-echo"
wait_log echo registered 10
ECHO=$(grep -o 'registered [a-z0-9]*' "$T/echo.log" | awk '{print $2}')@127.0.0.1
R=$(erl_node "e$RANDOM@127.0.0.1" "$ONEBLOG_COOKIE" -eval "
    io:format(\"~p~n\", [gen_server:call({echo, '$ECHO'}, hello)]), halt().")
check "cnode-echo answers erl: $R" test "$R" = "{echo,hello}"

check "C node still alive" kill -0 "$PID_cnode"
finish
