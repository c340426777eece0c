#!/usr/bin/env bash
# tests/integ/client_e2e.sh BUILD - headless Chromium (Debian's, driven by
# playwright-core from tests/e2e/package-lock.json) walks the reader site served
# by oneblog-client from a real `oneblog-cms serve` with the demo content: home ->
# post -> tag -> author -> search -> RSS, plus the 404 page and dark mode.
# SCREENSHOTS=DIR keeps the screenshots there (docs/img for the README).
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integ/client_lib.sh

if ! command -v chromium >/dev/null || ! command -v node >/dev/null; then
    bad "chromium and node are needed (make deps installs chromium)"; summary; exit 1
fi
if [ ! -d tests/e2e/node_modules/playwright-core ]; then
    (cd tests/e2e && npm ci --no-audit --no-fund >/dev/null 2>&1) ||
        { bad "npm ci in tests/e2e (playwright-core) failed"; summary; exit 1; }
fi
cms_start cms || { bad "cms starts"; summary; exit 1; }
client_start cms@127.0.0.1 || { bad "client starts"; summary; exit 1; }
check "client becomes ready" wait_ready
shots=${SCREENSHOTS:-$T/shots}
mkdir -p "$shots"
timeout 120 node tests/e2e/walk.mjs "$BASE" "$shots" >"$T/walk.out" 2>&1
cat "$T/walk.out" | grep -E '^(ok|FAIL)'
p=$(sed -n 's/^walk.mjs: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$T/walk.out")
f=$(sed -n 's/^walk.mjs: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$T/walk.out")
if [ -z "$p" ]; then bad "walk.mjs ran to the end"; tail -20 "$T/walk.out"; else
    passed=$((passed + p)); failed=$((failed + f)); fi
check "screenshots taken" test -s "$shots/home.png" -a -s "$shots/post.png"
summary
