#!/usr/bin/env bash
# vproc_store_pg.sh BUILD - the PostgreSQL store of virtual processes against a
# real PostgreSQL 15 started here (initdb as the postgres user in a temp dir, a
# free port on 127.0.0.1, stopped by pg_ctl in the EXIT trap): the vproc unit
# tests with VPROC_TEST_DATABASE_URL set, whose pg_store_* tests then run
# (versions and fencing, sixteen connections creating the table at once, an
# unreachable server, a holder killed mid-statement, a counter type on it with
# its row deleted behind an active activation). Ends with
# "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/dist_lib.sh" "$1"
PGBIN=/usr/lib/postgresql/15/bin
PGT=$(mktemp -d /tmp/vproc-pg.XXXXXX)
pg_cleanup() {
    if [ -f "$PGT/data/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGT/data" -m immediate stop >/dev/null 2>&1
    fi
    rm -rf "$PGT"
    cleanup
}
trap pg_cleanup EXIT

if [ ! -x "$PGBIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
    echo "# postgresql-15 is not installed (make deps)"
    echo "0 passed, 1 failed"
    exit 1
fi
PORT=$(free_port)
chown postgres:postgres "$PGT"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGT/data" -U postgres -A trust -E UTF8 \
    --locale=C.UTF-8 --no-sync >"$T/initdb.log" 2>&1
check "PostgreSQL starts" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGT/data" -l "$PGT/log" \
    -w -o "-p $PORT -k $PGT -c listen_addresses=127.0.0.1 -c fsync=off" start
out=$(VPROC_TEST_DATABASE_URL="host=127.0.0.1 port=$PORT user=postgres dbname=postgres" \
    "$BUILD/tests/cnode/vproc_test" 2>&1)
echo "$out" | grep -E '^(ok|FAIL|    )'
for t in pg_store_versions_first_use_unreachable pg_store_killed_holder_closes_its_connection \
    pg_vproc_delete_behind_an_activation pg_vproc_killed_mid_save_frees_its_call; do
    check "$t ran against PostgreSQL and passed" bash -c \
        "echo \"\$1\" | grep -q '^ok .*:$t '" _ "$out"
done
check "the whole vproc unit suite passed" bash -c "echo \"\$1\" | grep -q ' passed, 0 failed'" _ "$out"
finish
