#!/usr/bin/env bash
# scripts/run.sh - what `make run` starts, after installing and building.
#
# Until the CMS and client services exist, this brings up the one node there is:
# cnode-echo, a gen_server registered as `echo` (examples/echo.c). It first checks
# itself with --self-test, then serves in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${ONEBLOG_BUILD:-build}
export ONEBLOG_NODE=${ONEBLOG_NODE:-echo@127.0.0.1}

echo "oneblog: self-test of $B/bin/cnode-echo"
"$B/bin/cnode-echo" --self-test
echo "oneblog: starting node $ONEBLOG_NODE (Ctrl-C to stop)"
echo "oneblog: the blog services (CMS, client) are not built yet; see README.md"
exec "$B/bin/cnode-echo"
