#!/usr/bin/env bash
# dist_hardening.sh BUILD - the distribution port under abuse:
#   - handshakes from one address are rate-limited (ONEBLOG_DIST_HANDSHAKE_RATE,
#     per second, bursts of twice that): a burst of 30 connections from
#     127.0.0.1 sees most of them closed at once, with one log line; a second
#     later the address may connect again and a real erl peer calls as usual;
#   - a cookie file open to its group is refused as well as one open to others;
#   - the cookie never appears in the node's output;
#   - a service started as root runs as ONEBLOG_USER (here: nobody), and one
#     asked to switch to a user that does not exist refuses to start.
. "$(dirname "$0")/dist_lib.sh" "$1"
compile_erl || { echo "0 passed, 1 failed"; exit 1; }
start_epmd || { echo "0 passed, 1 failed"; exit 1; }
unset ONEBLOG_COOKIE
COOKIE=secret-$RANDOM$RANDOM

printf '%s\n' "$COOKIE" >"$T/g.cookie"; chmod 640 "$T/g.cookie"
ONEBLOG_NODE=g$RANDOM@127.0.0.1 ONEBLOG_COOKIE_FILE=$T/g.cookie timeout 10 \
    "$BIN/test-dist_node" serve >"$T/g.log" 2>&1
rc=$?
check "cookie file readable by its group refused (exit $rc)" \
    bash -c "[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'accessible by owner only' '$T/g.log'"

printf '%s\n' "$COOKIE" >"$T/c.cookie"; chmod 400 "$T/c.cookie"
C=rl$RANDOM@127.0.0.1
# 1/s (burst 2): what the burst lets through stays in bounds even if the node,
# slowed by ASan on a loaded machine, spreads its accepts over a few seconds (at
# 3/s a one-second stall let through more than the check allows).
ONEBLOG_NODE=$C ONEBLOG_COOKIE_FILE=$T/c.cookie ONEBLOG_DIST_HANDSHAKE_RATE=1 \
    start_bg cnode "$BIN/test-dist_node" serve
wait_log cnode registered 10
PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$T/cnode.log" | head -1)
check "node listens (port $PORT)" [ -n "$PORT" ]

# 30 connections at once: a closed socket reads EOF at once; one being
# handshaken waits for our send_name (nothing comes within 0.5 s).
burst() {
    python3 - "$PORT" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
socks = []
for _ in range(30):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    socks.append(s)
time.sleep(0.3)
closed = 0
for s in socks:
    s.settimeout(0.5)
    try:
        if s.recv(1) == b"":
            closed += 1
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed += 1
print(closed, len(socks) - closed)
PY
}
read -r closed open < <(burst)
echo "    # burst of 30: $closed closed at once, $open let through to the handshake"
check "a burst from one address is mostly refused (limit 1/s, burst 2)" \
    bash -c "[ '$closed' -ge 20 ] && [ '$open' -ge 1 ] && [ '$open' -le 8 ]"
check "the refusal is logged with the address and the rate" \
    grep -qE "handshakes from 127\.0\.0\.1 over 1/s: [0-9]+ connection\(s\) refused" "$T/cnode.log"
sleep 2
R=$(erl_node "e$RANDOM@127.0.0.1" "$COOKIE" -eval "
    io:format(\"~p~n\", [catch gen_server:call({t, '$C'}, ping, 5000)]), halt()." 2>&1)
check "after a pause a real peer calls as usual" bash -c "grep -q '{echo,ping}' <<<'$R'"
check "the cookie never appears in the node's output" bash -c "! grep -q '$COOKIE' '$T/cnode.log'"
check "node alive" kill -0 "$PID_cnode"

if [ "$(id -u)" = 0 ]; then
    P=$(free_port)
    ONEBLOG_USER=nobody ONEBLOG_COOKIE=$COOKIE ONEBLOG_HTTP_PORT=$P \
        ONEBLOG_CLIENT_NODE=drop$RANDOM@127.0.0.1 ONEBLOG_THEME_DIR=$PWD/themes/default \
        ONEBLOG_IMAGES_DIR=$T/images start_bg drop "$BIN/oneblog-client"
    wait_log drop serving 10
    uid=$(awk '/^Uid:/ {print $2 "/" $3 "/" $4}' "/proc/$PID_drop/status" 2>/dev/null)
    check "started as root, the client runs as nobody (uid $uid)" [ "$uid" = "65534/65534/65534" ]
    check "it says so" grep -q "started as root: now running as nobody" "$T/drop.log"
    check "and serves" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P/healthz)\" = 200 ]"
    ONEBLOG_USER=nosuchuser$RANDOM ONEBLOG_COOKIE=$COOKIE timeout 10 "$BIN/oneblog-client" >"$T/nouser.log" 2>&1
    rc=$?
    check "an unknown ONEBLOG_USER: refuses to start (exit $rc)" \
        bash -c "[ $rc -eq 1 ] && grep -q 'no such user' '$T/nouser.log'"
else
    check "not root: nothing to drop" true
fi
finish
