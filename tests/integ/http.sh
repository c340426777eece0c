#!/usr/bin/env bash
# tests/integ/http.sh [VARIANT_ROOT] - cnode-static, the libcnode HTTP server's
# example, driven by curl and raw sockets (bash /dev/tcp) on a loopback port.
#
# The server starts with --port 0 and prints the port it got, so no free-port
# guessing; it is stopped by PID in the EXIT trap, and its graceful stop (SIGTERM,
# exit status 0) is itself the last check. Every wait is bounded. Prints one line
# per check and ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."

B=${1:-${ONEBLOG_BUILD:-build}}
BIN=$B/bin/cnode-static
pass=0
fail=0
PID=

T=$(mktemp -d /tmp/http-integ.XXXXXX)
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -KILL "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT

ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1${2:+: $2}"; fail=$((fail + 1)); }
# check NAME CMD...: the command's success is the check's.
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

if [ ! -x "$BIN" ]; then
    bad "cnode-static built" "$BIN missing (run make)"
    echo "$pass passed, $fail failed"
    exit 1
fi

# The site: a 10 KiB HTML page, a text file, a directory with an index.
mkdir -p "$T/www/sub"
for i in $(seq 1 300); do echo "<p>paragraph $i of the test page</p>"; done | head -c 10240 >"$T/www/index.html"
echo "plain text" >"$T/www/a.txt"
echo "sub index" >"$T/www/sub/index.html"

"$BIN" --port 0 --access-log "$T/access.log" "$T/www" >"$T/out" 2>"$T/err" &
PID=$!
PORT=
for _ in $(seq 1 300); do
    PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$T/out")
    [ -n "$PORT" ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$PORT" ]; then
    bad "server starts" "$(cat "$T/err")"
    echo "$pass passed, $fail failed"
    exit 1
fi
ok "server starts on port $PORT"
U=http://127.0.0.1:$PORT
C=(curl -sS --max-time 10)

# raw REQUEST_BYTES: send bytes on a fresh connection, print everything the server
# sends until it closes (bounded by timeout).
raw() {
    timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$PORT"'; printf "%b" "$1" >&3; cat <&3' _ "$1"
}

# --- GET, HEAD, errors ------------------------------------------------------
"${C[@]}" -o "$T/got" -D "$T/h" "$U/index.html"
check "GET /index.html is the file" cmp -s "$T/got" "$T/www/index.html"
check "GET has Content-Length 10240" grep -qi '^Content-Length: 10240' "$T/h"
check "GET has text/html" grep -qi '^Content-Type: text/html' "$T/h"
check "GET / serves index.html" cmp -s <("${C[@]}" "$U/") "$T/www/index.html"

"${C[@]}" -I "$U/index.html" >"$T/h"
check "HEAD has Content-Length" grep -qi '^Content-Length: 10240' "$T/h"
raw 'HEAD /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >"$T/head"
check "HEAD has no body" test "$(tail -c 4 "$T/head" | od -An -c | tr -d ' ')" = '\r\n\r\n'

check "404 for a missing file" test "$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/nope")" = 404
check "301 for a directory" test "$("${C[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' "$U/sub")" = "301 $U/sub/"
check "403 for .." test "$("${C[@]}" --path-as-is -o /dev/null -w '%{http_code}' "$U/sub/../../etc/passwd")" = 403
check "405 for POST" test "$("${C[@]}" -o /dev/null -w '%{http_code}' -d x=1 "$U/a.txt")" = 405

# --- validators and compression ---------------------------------------------
"${C[@]}" -D "$T/h" -o /dev/null "$U/index.html"
ETAG=$(sed -n 's/^ETag: \(.*\)\r$/\1/Ip' "$T/h")
LM=$(sed -n 's/^Last-Modified: \(.*\)\r$/\1/Ip' "$T/h")
check "ETag and Last-Modified present" test -n "$ETAG" -a -n "$LM"
check "304 for If-None-Match" test "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$U/index.html")" = 304
check "304 for If-Modified-Since" test "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "If-Modified-Since: $LM" "$U/index.html")" = 304
check "200 for another ETag" test "$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'If-None-Match: "x"' "$U/index.html")" = 200

"${C[@]}" --compressed -D "$T/h" -o "$T/got" "$U/index.html"
check "gzip when accepted" grep -qi '^Content-Encoding: gzip' "$T/h"
check "gzip body decompresses to the file" cmp -s "$T/got" "$T/www/index.html"
check "Vary: Accept-Encoding" grep -qi '^Vary: Accept-Encoding' "$T/h"
check "no gzip when not accepted" bash -c "! ${C[*]} -D - -o /dev/null $U/index.html | grep -qi '^Content-Encoding'"

# --- keep-alive, pipelining, Expect -----------------------------------------
"${C[@]}" -v -o /dev/null -o /dev/null "$U/a.txt" "$U/index.html" 2>"$T/v"
check "keep-alive: curl reuses the connection" grep -q 'Re-using existing connection' "$T/v"

raw 'GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >"$T/pipe"
check "pipelining: three responses in order" test "$(grep -a '^HTTP/1.1' "$T/pipe" | tr -d '\r' | tr '\n' ,)" = "HTTP/1.1 200 OK,HTTP/1.1 404 Not Found,HTTP/1.1 200 OK,"

head -c 3000 /dev/zero | tr '\0' a >"$T/post"
"${C[@]}" -v -o /dev/null -H 'Expect: 100-continue' --data-binary @"$T/post" "$U/a.txt" 2>"$T/v"
check "Expect: 100-continue answered" grep -q '< HTTP/1.1 100 Continue' "$T/v"

# --- limits and malformed input -----------------------------------------------
BIG=$(head -c 9000 /dev/zero | tr '\0' b)
check "431 for a 9000-byte header" test "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "X-Big: $BIG" "$U/a.txt")" = 431
check "400 for garbage" bash -c "$(declare -f raw); PORT=$PORT; raw 'NOT HTTP AT ALL\r\n\r\n' | head -1 | grep -q '^HTTP/1.1 400'"
check "400 for a bad chunk size" bash -c "$(declare -f raw); PORT=$PORT; raw 'POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n' | head -1 | grep -q '^HTTP/1.1 400'"
check "chunked body read (then 405)" bash -c "$(declare -f raw); PORT=$PORT; raw 'POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n' | head -1 | grep -q '^HTTP/1.1 405'"

# --- access log -----------------------------------------------------------------
"${C[@]}" -o /dev/null -A 'integ-agent' "$U/a.txt?x=1"
# The server writes the line once the response is sent: curl can be done first.
for _ in $(seq 1 200); do grep -qa 'integ-agent' "$T/access.log" && break; sleep 0.05; done
LINE=$(grep -a 'integ-agent' "$T/access.log" | tail -1)
check "access log: one JSON line per request" bash -c "[[ '$LINE' == \{*\} ]]"
for key in '"method":"GET"' '"path":"/a.txt?x=1"' '"status":200' '"bytes":' '"duration_us":' '"remote":"127.0.0.1:' '"ua":"integ-agent"'; do
    check "access log has $key" grep -qF "$key" <<<"$LINE"
done

# --- graceful stop ----------------------------------------------------------------
kill -TERM "$PID"
rc=
for _ in $(seq 1 300); do
    if ! kill -0 "$PID" 2>/dev/null; then
        wait "$PID"
        rc=$?
        break
    fi
    sleep 0.05
done
check "SIGTERM: graceful stop, exit status 0" test "$rc" = 0
[ -n "$rc" ] && PID=

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
