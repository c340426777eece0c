#!/usr/bin/env bash
# tests/integ/cms_admin_e2e.sh BUILD - headless Chromium (Debian's, driven by
# playwright-core from tests/e2e/package-lock.json) uses the admin of a real
# `oneblog-cms serve` (demo content, private EPMD, admin on a free port): sign in,
# write a post, live preview and the Preview button, publish; then the post is
# read on a real oneblog-client found through the cluster, and through `cms`
# (get_post from an erl node) as well. SCREENSHOTS=DIR keeps admin-editor.png
# there (docs/img for the docs). Ends with "N passed, N failed".
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
PW='e2e password long enough'
mkdir -p "$T/cms"
echo "$PW" | ONEBLOG_DATA_DIR="$T/cms" "$CMS" init --email owner@example.com --name 'Olivia Owner' \
    --password-stdin >/dev/null || { bad "init"; summary; exit 1; }
export ONEBLOG_ADMIN_PORT=0
cms_start cms || { bad "cms starts"; summary; exit 1; }
ADMIN=$(sed -n 's|.*admin on \(http://127.0.0.1:[0-9]*\)/admin/.*|\1|p' "$T/cms.out")
check "the admin is up" test -n "$ADMIN"
CLIENT_URL=-
if [ -x "$CLIENT" ]; then
    client_start cms@127.0.0.1 && wait_ready && CLIENT_URL=$BASE
    check "the client is ready" test "$CLIENT_URL" != -
else
    echo "note: $CLIENT is not built: the reader-site check is skipped, the post is checked through cms"
fi
shots=${SCREENSHOTS:-$T/shots}
mkdir -p "$shots"
timeout 120 node tests/e2e/admin.mjs "$ADMIN" "$CLIENT_URL" owner@example.com "$PW" "$shots" >"$T/admin.out" 2>&1
grep -E '^(ok|FAIL)' "$T/admin.out"
p=$(sed -n 's/^admin.mjs: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' "$T/admin.out")
f=$(sed -n 's/^admin.mjs: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' "$T/admin.out")
if [ -z "$p" ]; then bad "admin.mjs ran to the end"; tail -20 "$T/admin.out"; else
    passed=$((passed + p)); failed=$((failed + f)); fi
check "screenshot taken" test -s "$shots/admin-editor.png"
if command -v erl >/dev/null; then
    timeout 30 erl -name "t$$@127.0.0.1" -setcookie "$ONEBLOG_COOKIE" -noshell -eval '
        {ok, P} = gen_server:call({cms, '"'"'cms@127.0.0.1'"'"'}, {get_post, <<"written-in-headless-chromium">>}),
        <<"Written in headless Chromium">> = maps:get(title, P),
        io:format("erl-ok~n"), halt().' >"$T/erl.out" 2>&1
    check "cms serves the published post (get_post from erl)" grep -q erl-ok "$T/erl.out"
fi
summary
