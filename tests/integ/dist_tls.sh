#!/usr/bin/env bash
# dist_tls.sh BUILD - distribution over TLS (ONEBLOG_DIST_TLS=1), with a
# throwaway CA and node certificates made by the openssl CLI in the temp dir:
#   - C node <-> C node calls over TLS (TLS 1.3), and a call loop that keeps
#     running across a certificate reload;
#   - a node whose certificate comes from another CA is refused both ways (when
#     it dials us, and when we dial it), with the reason in the log; the node
#     keeps serving;
#   - a plain node cannot talk to a TLS node in either direction (a clean
#     failure on both sides, no crash);
#   - start-up refuses a missing file, a key that does not match, and a
#     certificate that does not verify against the CA;
#   - reload: new certificate files + SIGHUP -> new connections are served with
#     the new certificate (seen by openssl s_client), the established one stays;
#     a broken certificate file + SIGHUP keeps the old context and says why;
#   - real erl with -proto_dist inet_tls -ssl_dist_optfile: the whole
#     dist_test:main suite against our node (erl calls us), our node calls an
#     erl gen_server, and an erl node with a foreign certificate is refused;
#     Elixir (elixir --erl "-proto_dist inet_tls ...") calls us; 16 MiB terms
#     and a flood to a stopped erl node go through intact;
#   - neither the private keys nor the cookie appear in any log.
. "$(dirname "$0")/dist_lib.sh" "$1"
compile_erl || { echo "0 passed, 1 failed"; exit 1; }
start_epmd || { echo "0 passed, 1 failed"; exit 1; }
COOKIE=tls-cookie-$RANDOM$RANDOM
export ONEBLOG_COOKIE=$COOKIE
P=$T/pki
mkdir -p "$P"

# ---- a CA, node certificates, a foreign CA -------------------------------------
# Node certificates name the host of the node names (127.0.0.1) as an IP and as
# a DNS name: erl checks the DNS name against the host part of the node name.
ca() { # NAME
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$P/$1.key" -out "$P/$1.pem" -subj "/CN=$1" 2>/dev/null
}
cert() { # NAME CA
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$P/$1.key" -out "$P/$1.csr" -subj "/CN=$1" 2>/dev/null &&
    printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost' \
        'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature' \
        'extendedKeyUsage=serverAuth,clientAuth' >"$P/$1.ext" &&
    openssl x509 -req -in "$P/$1.csr" -CA "$P/$2.pem" -CAkey "$P/$2.key" \
        -CAcreateserial -days 2 -extfile "$P/$1.ext" -out "$P/$1.pem" 2>/dev/null
}
ca ca && ca otherca && cert a ca && cert a2 ca && cert b ca && cert x otherca &&
    cert e ca && cert ex otherca
check "openssl made a CA and node certificates" \
    bash -c "openssl verify -CAfile '$P/ca.pem' '$P/a.pem' '$P/b.pem' >/dev/null"
chmod 600 "$P"/*.key
cat "$P/ca.pem" "$P/otherca.pem" >"$P/both.pem"

# tls NAME CA: environment for a TLS node with certificate NAME, trusting CA.
tls() {
    echo ONEBLOG_DIST_TLS=1 ONEBLOG_DIST_TLS_CERT="$P/$1.pem" \
        ONEBLOG_DIST_TLS_KEY="$P/$1.key" ONEBLOG_DIST_TLS_CA="$P/$2.pem"
}
node() { # LOGNAME NODENAME TLSNAME CA ARGS... (foreground, 20 s at most)
    local log=$1 name=$2 cert=$3 ca=$4
    shift 4
    env ONEBLOG_NODE="$name" $(tls "$cert" "$ca") timeout 20 "$BIN/test-dist_node" "$@" \
        >"$T/$log.log" 2>&1
}

# ---- start-up checks -------------------------------------------------------------
ONEBLOG_NODE=s$RANDOM@127.0.0.1 ONEBLOG_DIST_TLS=1 timeout 10 "$BIN/test-dist_node" serve \
    >"$T/nofiles.log" 2>&1
check "TLS without its files refuses to start, naming the variables" \
    grep -q "ONEBLOG_DIST_TLS_CERT, ONEBLOG_DIST_TLS_KEY" "$T/nofiles.log"
env ONEBLOG_NODE=s$RANDOM@127.0.0.1 $(tls a ca) ONEBLOG_DIST_TLS_KEY="$P/b.key" timeout 10 \
    "$BIN/test-dist_node" serve >"$T/mismatch.log" 2>&1
check "a key that does not match the certificate is refused at start" \
    grep -q "does not match certificate" "$T/mismatch.log"
env ONEBLOG_NODE=s$RANDOM@127.0.0.1 $(tls x ca) timeout 10 \
    "$BIN/test-dist_node" serve >"$T/foreign.log" 2>&1
check "a certificate that does not verify against the CA is refused at start" \
    grep -q "does not verify against the CA .*unable to get local issuer" "$T/foreign.log"
env ONEBLOG_NODE=s$RANDOM@127.0.0.1 $(tls a ca) ONEBLOG_DIST_TLS_CA="$P/nosuch.pem" timeout 10 \
    "$BIN/test-dist_node" serve >"$T/missing.log" 2>&1
check "a missing CA file is refused at start" \
    grep -q "TLS CA .*nosuch.pem: No such file" "$T/missing.log"

# ---- our nodes over TLS ----------------------------------------------------------
# A's certificate files are copies, so that the reload below can replace them.
cp "$P/a.pem" "$P/live.pem"; cp "$P/a.key" "$P/live.key"; chmod 600 "$P/live.key"
A=a$RANDOM@127.0.0.1
ONEBLOG_NODE=$A ONEBLOG_DIST_TLS=1 ONEBLOG_DIST_TLS_CERT=$P/live.pem \
    ONEBLOG_DIST_TLS_KEY=$P/live.key ONEBLOG_DIST_TLS_CA=$P/ca.pem \
    start_bg a "$BIN/test-dist_node" serve
check "TLS node starts and says so" wait_log a "TLS on: certificate .*live.pem \(/CN=a," 10
wait_log a registered 10 >/dev/null
APORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\) (TLS).*/\1/p' "$T/a.log" | head -1)

node b1 b$RANDOM@127.0.0.1 b ca call "$A" t
check "C -> C gen_server call over TLS" grep -q "^reply {echo, ping}" "$T/b1.log"
check "the connection is TLS 1.3 and each side saw the other's certificate" \
    bash -c "grep -q 'TLSv1.3 .*peer certificate /CN=a' '$T/b1.log' &&
             grep -q 'TLSv1.3 .*peer certificate /CN=b' '$T/a.log'"

# What is on the wire is TLS: a TLS client that knows nothing of Erlang gets
# A's certificate (and A stays up).
subject() { # PORT CERT -> the subject of the certificate the server presents
    echo | timeout 10 openssl s_client -connect "127.0.0.1:$1" -cert "$P/$2.pem" \
        -key "$P/$2.key" -CAfile "$P/ca.pem" 2>/dev/null | openssl x509 -noout -subject
}
S=$(subject "$APORT" b)
check "openssl s_client sees A's certificate ($S)" grep -q "CN = a$" <<<"$S"

# ---- refusals ------------------------------------------------------------------
# OpenSSL's words for a chain that does not end at our CA (X sends its root too).
NOTCA="unable to get local issuer certificate|self-signed certificate in certificate chain"
# X: a certificate from another CA (X itself trusts both CAs).
node x1 x$RANDOM@127.0.0.1 x both call "$A" t
check "foreign-CA node dialling us gets no reply" bash -c "! grep -q '^reply' '$T/x1.log'"
# (Waited for: A logs once its handshake call has failed, after OpenSSL sent the
# alert that can already have ended the peer.)
check "we log the refusal of its certificate, with its address" \
    wait_log a "refused TLS connection from 127\.0\.0\.1:[0-9]+: peer certificate refused: ($NOTCA) \(subject /CN=x\)" 10
check "it logs that we refused its certificate" \
    grep -qE "handshake with $A at .* failed: the peer refused our certificate" "$T/x1.log"
X=x$RANDOM@127.0.0.1
env ONEBLOG_NODE=$X $(tls x both) bash -c "exec '$BIN/test-dist_node' serve" \
    >"$T/xsrv.log" 2>&1 &
PIDS+=($!)
wait_log xsrv registered 10 >/dev/null
node b2 b$RANDOM@127.0.0.1 b ca call "$X" t
check "dialling a foreign-CA node: no reply" bash -c "! grep -q '^reply' '$T/b2.log'"
check "dialling a foreign-CA node: we refuse its certificate, and log it" \
    grep -qE "TLS handshake with $X at .* failed: peer certificate refused: ($NOTCA) \(subject /CN=x\)" \
    "$T/b2.log"

# Plain <-> TLS: clean failures both ways.
ONEBLOG_NODE=p$RANDOM@127.0.0.1 timeout 20 "$BIN/test-dist_node" call "$A" t >"$T/p1.log" 2>&1
rc=$?
check "a plain node dialling a TLS node fails cleanly (exit $rc)" \
    bash -c "[ $rc -lt 124 ] && grep -q '^error node not connected' '$T/p1.log'"
check "the TLS node logs the plain peer" \
    wait_log a "TLS handshake from 127\.0\.0\.1:[0-9]+ failed: not TLS" 10
PL=pl$RANDOM@127.0.0.1
ONEBLOG_NODE=$PL start_bg plain "$BIN/test-dist_node" serve
wait_log plain registered 10 >/dev/null
node b3 b$RANDOM@127.0.0.1 b ca call "$PL" t
rc=$?
check "a TLS node dialling a plain node fails cleanly (exit $rc)" \
    bash -c "[ $rc -lt 124 ] && grep -q '^error node not connected' '$T/b3.log'"
check "the TLS side says why" \
    grep -qE "TLS handshake with $PL at .* failed: connection closed during the TLS handshake" \
    "$T/b3.log"
check "the plain node survives it" kill -0 "$PID_plain"
node b4 b$RANDOM@127.0.0.1 b ca call "$A" t
check "A still serves after the refusals" grep -q "^reply {echo, ping}" "$T/b4.log"

# ---- reload ------------------------------------------------------------------------
B=loop$RANDOM@127.0.0.1
env ONEBLOG_NODE=$B $(tls b ca) bash -c "exec '$BIN/test-dist_node' callloop '$A' t 5000" \
    >"$T/loop.log" 2>&1 &
LOOP=$!
PIDS+=($LOOP)
# Reload once its connection is made (not after a fixed 1.5 s: a slow start would
# connect after the reload, and then nothing was tested).
wait_log loop "callloop connected" 20 >/dev/null
cp "$P/a2.pem" "$P/live.pem"; cp "$P/a2.key" "$P/live.key"
kill -HUP "$PID_a"
check "SIGHUP reloads the certificate" wait_log a "TLS reloaded: certificate .*\(/CN=a2," 20
S=$(subject "$APORT" b)
check "new connections get the new certificate ($S)" grep -q "CN = a2$" <<<"$S"
node b5 b$RANDOM@127.0.0.1 b ca call "$A" t
check "a new C node connects after the reload" grep -q "^reply {echo, ping}" "$T/b5.log"
check "... and saw the new certificate" grep -q "peer certificate /CN=a2" "$T/b5.log"
wait "$LOOP"
sed 's/^/# /' "$T/loop.log" | grep calls=
check "the connection made before the reload kept calling without a failure" \
    grep -qE "^calls=[1-9][0-9]* failed=0" "$T/loop.log"
echo "garbage" >"$P/live.pem"
kill -HUP "$PID_a"
check "a broken certificate file is refused on reload, with the reason" \
    wait_log a "TLS reload failed, keeping the old certificate: TLS certificate .*live.pem: no start line" 20
node b6 b$RANDOM@127.0.0.1 b ca call "$A" t
check "... and A keeps serving with the old one" \
    bash -c "grep -q '^reply {echo, ping}' '$T/b6.log' && grep -q 'peer certificate /CN=a2' '$T/b6.log'"
check "A alive after all that" kill -0 "$PID_a"

# ---- real erl with -proto_dist inet_tls ----------------------------------------
optfile() { # NAME CA [FILE] -> an ssl_dist optfile for erl (TLS 1.3 or 1.2)
    local v="{versions, ['tlsv1.3', 'tlsv1.2']}"
    [ -z "${3:-}" ] || v="{depth, 10}" # no versions: OTP 25's default, TLS 1.2
    cat >"$P/${3:-$1}.conf" <<EOF
[{server, [{certfile, "$P/$1.pem"}, {keyfile, "$P/$1.key"}, {cacertfile, "$P/$2.pem"},
           {verify, verify_peer}, {fail_if_no_peer_cert, true}, $v]},
 {client, [{certfile, "$P/$1.pem"}, {keyfile, "$P/$1.key"}, {cacertfile, "$P/$2.pem"},
           {verify, verify_peer}, $v]}].
EOF
}
optfile e ca
optfile ex both
optfile e ca e12
erl_tls() { # NAME OPTFILE ARGS...
    local name=$1 opt=$2
    shift 2
    erl_node "$name" "$COOKIE" -proto_dist inet_tls -ssl_dist_optfile "$P/$opt.conf" "$@"
}
erl_tls "e$RANDOM@127.0.0.1" e -run dist_test main "$A" >"$T/erl.log" 2>&1
sed 's/^/# /' "$T/erl.log" | grep -v "^# ok"
for c in call cast hidden big_term concurrent_calls monitor_noproc call_noproc \
         link_c_to_erl link_erl_to_c unlink c_calls_erl c_monitors_erl exit2_kill \
         monitor_by_name_exit late_reply_dropped; do
    check "erl over inet_tls -> C: $c" grep -qx "ok $c" "$T/erl.log"
done
E12=e12$RANDOM@127.0.0.1
R=$(erl_tls "$E12" e12 -eval "
    io:format(\"~p~n\", [catch gen_server:call({t, '$A'}, ping, 5000)]), halt()." 2>&1)
check "erl with OTP's default TLS 1.2 calls us" grep -q "{echo,ping}" <<<"$R"
check "... over TLS 1.2" grep -qE "$E12 at .*: TLSv1\.2 " "$T/a.log"
E=srv$RANDOM@127.0.0.1
start_bg erlsrv timeout 60 erl -noshell -start_epmd false -pa "$T/ebin" -name "$E" \
    -setcookie "$COOKIE" -proto_dist inet_tls -ssl_dist_optfile "$P/e.conf" \
    -eval 'dist_test:start_erlsrv(), io:format("ready~n")'
wait_log erlsrv ready 20 >/dev/null
node b7 b$RANDOM@127.0.0.1 b ca call "$E" erlsrv
check "C -> erl (inet_tls) gen_server call" grep -qE "^reply \{erl_reply, ?ping\}" "$T/b7.log"
R=$(erl_tls "ex$RANDOM@127.0.0.1" ex -eval "
    io:format(\"~p~n\", [catch gen_server:call({t, '$A'}, ping, 5000)]), halt()." 2>&1)
check "erl with a foreign-CA certificate cannot call us" \
    bash -c "! grep -q '{echo,ping}' <<<'$R'"
# erl offers no certificate at all: ours lists the CA it accepts, and erl has
# none from it.
check "... and we log why" \
    grep -qE "refused TLS connection from 127\.0\.0\.1:[0-9]+: peer sent no certificate" \
    "$T/a.log"

# Big messages: 16 MiB terms both ways through TLS records, and a flood to a
# stopped erl node (our writer's TLS writes wait for a full socket and are
# retried with the same bytes) that all arrives once it runs again.
erl_tls "bg$RANDOM@127.0.0.1" e -run dist_test big_sender "$A" 2 >"$T/bigs.log" 2>&1
sed 's/^/# /' "$T/bigs.log" | grep "big calls"
check "2 x 16 MiB calls from erl over TLS round-trip intact" \
    grep -q "big calls ok=true" "$T/bigs.log"
SINK=sink$RANDOM@127.0.0.1
start_bg sink timeout 90 erl -noshell -start_epmd false -pa "$T/ebin" -name "$SINK" \
    -setcookie "$COOKIE" -proto_dist inet_tls -ssl_dist_optfile "$P/e.conf" \
    -eval 'dist_test:sink()'
wait_log sink "sink ready" 20 >/dev/null
start_bg flood env ONEBLOG_NODE=f$RANDOM@127.0.0.1 $(tls b ca) \
    "$BIN/test-dist_node" flood "$SINK" sink 40 1048576 "$T/flood.go"
wait_log flood "flood connected: success" 20 >/dev/null
kill -STOP "$PID_sink"
: >"$T/flood.go" # the flood starts only now, against the stopped peer
sleep 2 # the peer stays stopped a while (what is tested: nothing waits for this)
kill -CONT "$PID_sink"
check "a 40 MiB flood over TLS to a node stopped for 2 s completes" \
    wait_log flood "flood sent 40" 60
check "... and every byte arrives" wait_log sink "sink got 40 messages, 41943040 bytes" 60

# Elixir, started as docs/rpc.md says (--erl with the same two flags).
R=$(timeout 60 elixir --name "ix$RANDOM@127.0.0.1" --cookie "$COOKIE" \
    --erl "-start_epmd false -proto_dist inet_tls -ssl_dist_optfile $P/e.conf" -e "
    IO.inspect(GenServer.call({:t, :\"$A\"}, :ping))" 2>&1)
echo "$R" | sed 's/^/# /'
check "Elixir over inet_tls -> C: GenServer.call" grep -qx "{:echo, :ping}" <<<"$R"

# ---- secrets ---------------------------------------------------------------------
leaks() {
    local f k line
    for f in "$T"/*.log; do
        grep -qF "$COOKIE" "$f" && echo "cookie in $f"
        grep -q "PRIVATE KEY" "$f" && echo "key marker in $f"
        for k in "$P"/*.key; do
            line=$(sed -n 2p "$k")
            grep -qF "$line" "$f" && echo "key $k in $f"
        done
    done
}
L=$(leaks)
[ -z "$L" ] || echo "$L" | sed 's/^/# /'
check "no private key and no cookie in any log" [ -z "$L" ]
# Under build/san: the short-lived nodes exit normally, so LeakSanitizer ran.
S=$(grep -lE "Sanitizer|runtime error:" "$T"/*.log)
[ -z "$S" ] || grep -hE -A5 "Sanitizer|runtime error:" $S | head -40 | sed 's/^/# /'
check "no sanitizer report in any node's output" [ -z "$S" ]
finish
