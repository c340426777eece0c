#!/usr/bin/env bash
# tests/integ/cms_store.sh BUILD - the CMS store suite (build/tests/cms/store_test)
# on both backends: SQLite in a temp dir, then a real PostgreSQL 15 started here
# (initdb as the postgres user in a temp dir, a free port on 127.0.0.1, stopped by
# pg_ctl in the EXIT trap). Also the RPC and import suites against PostgreSQL
# (on SQLite they run as ordinary unit tests). Ends with
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-${ONEBLOG_BUILD:-build}}
PGBIN=/usr/lib/postgresql/15/bin
. tests/integ/port_lib.sh
PORT=${CMS_PG_PORT:-$(free_port)}
passed=0 failed=0

T=$(mktemp -d /tmp/cms-pg.XXXXXX)
cleanup() {
    if [ -f "$T/data/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/data" -m immediate stop >/dev/null 2>&1
    fi
    rm -rf "$T"
}
trap cleanup EXIT

# run NAME CMD... : run a unit-test binary and add its counts.
run() {
    local name=$1 out line
    shift
    echo "# $name"
    out=$("$@" 2>&1)
    echo "$out" | grep -E '^(ok|FAIL|    )' || true
    line=$(echo "$out" | grep -E '[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
    else
        echo "# $name: no summary line"
        failed=$((failed + 1))
    fi
}

for bin in "$B/tests/cms/store_test" "$B/tests/cms/rpc_test" "$B/tests/cms/import_test"; do
    [ -x "$bin" ] || { echo "# missing $bin (run make)"; failed=$((failed + 1)); }
done

run "store on sqlite" env -u DATABASE_URL "$B/tests/cms/store_test"

if [ ! -x "$PGBIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
    echo "# postgresql-15 is not installed (make deps): the PostgreSQL half fails"
    failed=$((failed + 1))
else
    chown postgres:postgres "$T"
    if runuser -u postgres -- "$PGBIN/initdb" -D "$T/data" -U postgres -A trust -E UTF8 \
            --locale=C.UTF-8 --no-sync >"$T/initdb.log" 2>&1 &&
       runuser -u postgres -- "$PGBIN/pg_ctl" -D "$T/data" -l "$T/log" -w -o \
            "-p $PORT -k $T -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null; then
        URL="postgres://postgres@127.0.0.1:$PORT/postgres"
        run "store on postgres" env DATABASE_URL="$URL" "$B/tests/cms/store_test"
        run "rpc on postgres" env DATABASE_URL="$URL" "$B/tests/cms/rpc_test"
        run "import on postgres" env DATABASE_URL="$URL" "$B/tests/cms/import_test"
    else
        echo "# could not start PostgreSQL:"; tail -5 "$T/initdb.log" "$T/log" 2>/dev/null
        failed=$((failed + 1))
    fi
fi

echo "cms_store.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
