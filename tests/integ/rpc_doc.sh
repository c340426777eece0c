#!/usr/bin/env bash
# tests/integ/rpc_doc.sh BUILD - runs every ```elixir block of docs/rpc.md, in order,
# with a real Elixir node against `oneblog-cms serve` holding the demo content, so the
# documented contract is the one the CMS answers. One check per block.
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/port_lib.sh
B=${1:-${ONEBLOG_BUILD:-build}}
CMS="$B/bin/oneblog-cms"
T=$(mktemp -d /tmp/rpc-doc.XXXXXX)
SERVE_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
passed=0 failed=0

if ! command -v elixir >/dev/null || [ ! -x "$CMS" ]; then
    echo "FAIL elixir or $CMS missing (make deps && make)"
    echo "rpc_doc.sh: 0 passed, 1 failed"
    exit 1
fi

# The blocks, each followed by a marker line, so a failure names its block.
awk -v out="$T/doc.exs" '
    /^```elixir$/ { inblock = 1; n++; print "# ---- block " n >> out; next }
    /^```$/ && inblock { inblock = 0; print "IO.puts(\"block-ok " n "\")" >> out; next }
    inblock { print >> out }
    END { print n > "/dev/stderr" }
' docs/rpc.md 2> "$T/nblocks"
nblocks=$(cat "$T/nblocks")

export ONEBLOG_DATA_DIR="$T/data" ONEBLOG_LOG_LEVEL=warn ONEBLOG_ADMIN_PORT=0
export ERL_EPMD_PORT=$(free_port) ONEBLOG_COOKIE=rpcdoc$RANDOM
export ONEBLOG_CMS_NODE=cms@127.0.0.1
"$CMS" serve > "$T/serve.out" 2>&1 &
SERVE_PID=$!
for _ in $(seq 300); do grep -q serving "$T/serve.out" && break; sleep 0.1; done

timeout 90 elixir --name "doc$$@127.0.0.1" --cookie "$ONEBLOG_COOKIE" "$T/doc.exs" > "$T/elixir.out" 2>&1
for i in $(seq "$nblocks"); do
    if grep -qx "block-ok $i" "$T/elixir.out"; then
        echo "ok   docs/rpc.md elixir block $i"
        passed=$((passed + 1))
    else
        echo "FAIL docs/rpc.md elixir block $i"
        failed=$((failed + 1))
    fi
done
if [ "$failed" -gt 0 ]; then
    sed 's/^/    /' "$T/elixir.out" | head -30
fi
echo "rpc_doc.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
