#!/usr/bin/env bash
# dist_epmd.sh BUILD - EPMD: with no EPMD on the port the C node starts its
# built-in one, which real epmd tools, erl and other C nodes use; a node
# re-registers when a real epmd restarts; EPMD-less mode (fixed ports, like
# erl -erl_epmd_port) interoperates with erl both ways.
. "$(dirname "$0")/dist_lib.sh" "$1"
compile_erl || { echo "0 passed, 1 failed"; exit 1; }
export ONEBLOG_COOKIE=epmd-$RANDOM

# 1. Built-in EPMD (nothing listens on $EPMD_PORT).
A=a$RANDOM@127.0.0.1
ONEBLOG_NODE=$A start_bg nodea "$BIN/test-dist_node" serve
check "C node starts the built-in EPMD" wait_log nodea "started the built-in one" 10
check "and registers with it" wait_log nodea "registered" 10
E=e$RANDOM@127.0.0.1
start_bg erlsrv erl -noshell -start_epmd false -pa "$T/ebin" -name "$E" \
    -setcookie "$ONEBLOG_COOKIE" -eval 'dist_test:start_erlsrv(), io:format("ready~n")'
check "erl registers with the built-in EPMD" wait_log erlsrv ready 20
NAMES=$(timeout 5 epmd -port "$EPMD_PORT" -names 2>&1)
echo "$NAMES" | sed 's/^/# /'
check "epmd -names lists the C node" grep -q "name ${A%@*} at port" <<<"$NAMES"
check "epmd -names lists the erl node" grep -q "name ${E%@*} at port" <<<"$NAMES"
R=$(erl_node "x$RANDOM@127.0.0.1" "$ONEBLOG_COOKIE" -eval "
    io:format(\"~p~n\", [catch gen_server:call({t, '$A'}, ping, 5000)]), halt()." 2>&1)
check "erl finds and calls the C node through the built-in EPMD" grep -q "{echo,ping}" <<<"$R"
ONEBLOG_NODE=b$RANDOM@127.0.0.1 timeout 20 "$BIN/test-dist_node" call "$E" erlsrv >"$T/b.log" 2>&1
check "another C node finds erl through it" grep -qE "^reply \{erl_reply, ?ping\}" "$T/b.log"
kill "$PID_erlsrv" "$PID_nodea"
# The real epmd below needs the port node A's built-in one held: wait until it
# is let go (0.3 s was not always enough on a loaded machine).
wait_until 20 port_closed "$EPMD_PORT"

# 2. Re-registration when a real epmd restarts.
start_epmd
ONEBLOG_NODE=r$RANDOM@127.0.0.1 start_bg noder "$BIN/test-dist_node" serve
wait_log noder registered 10
kill "$PID_epmd"
check "C node notices the lost EPMD connection" wait_log noder "lost the EPMD connection" 15
wait_until 20 port_closed "$EPMD_PORT"
start_epmd
ok=1
for _ in $(seq 1 60); do
    timeout 5 epmd -port "$EPMD_PORT" -names 2>/dev/null | grep -q "name r[0-9]* at port" && { ok=0; break; }
    sleep 0.1
done
check "C node re-registers with the restarted epmd" test $ok -eq 0
kill "$PID_noder" "$PID_epmd"

# 3. EPMD-less: every node listens on the same fixed port, on its own loopback
#    address, and dials peers at that port.
Q=$(free_port)
unset ERL_EPMD_PORT
ONEBLOG_NODE=c$RANDOM@127.0.0.2 ONEBLOG_EPMD_LESS=1 ONEBLOG_DIST_PORT=$Q \
    start_bg less "$BIN/test-dist_node" serve
check "EPMD-less C node listens on the fixed port" wait_log less "listening on 127.0.0.2:$Q \(no EPMD\)" 10
CL=$(grep -o 'dist c[0-9]*@127.0.0.2' "$T/less.log" | head -1 | awk '{print $2}')
start_bg erlless erl -noshell -start_epmd false -erl_epmd_port "$Q" -pa "$T/ebin" \
    -kernel inet_dist_use_interface '{127,0,0,1}' -name "t$RANDOM@127.0.0.1" \
    -setcookie "$ONEBLOG_COOKIE" -eval "
    dist_test:start_erlsrv(),
    io:format(\"~p~n\", [catch gen_server:call({t, '$CL'}, ping, 5000)])."
check "erl (-erl_epmd_port) calls the EPMD-less C node" wait_log erlless "{echo,ping}" 20
ET=$(grep -o 'connected to t[0-9]*@127.0.0.1' "$T/less.log" | head -1 | awk '{print $3}')
ONEBLOG_NODE=d$RANDOM@127.0.0.3 ONEBLOG_EPMD_LESS=1 ONEBLOG_DIST_PORT=$Q timeout 20 \
    "$BIN/test-dist_node" call "$ET" erlsrv >"$T/d.log" 2>&1
check "EPMD-less C node calls erl" grep -qE "^reply \{erl_reply, ?ping\}" "$T/d.log"
finish
