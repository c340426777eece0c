/* store_pg.c - the PostgreSQL event store (libpq): one table, JSONB for SQL.
 *
 *   CREATE TABLE events (
 *     seq bigint PRIMARY KEY,       -- gapless; the key makes a duplicate impossible
 *     id text NOT NULL, ts_ms bigint NOT NULL, type text NOT NULL,
 *     actor text, trace_id text,    -- indexed copies of the record's fields
 *     raw bytea NOT NULL,           -- the record's canonical BSON (authoritative;
 *                                      the hash chain is over these bytes)
 *     doc jsonb NOT NULL)           -- relaxed extended JSON of raw, for analytics
 *
 * Triggers refuse UPDATE, DELETE and TRUNCATE ("events are immutable"). Several
 * nodes may write directly: an append is one transaction that takes a
 * transaction-scoped advisory lock per table, reads the last record (its seq and
 * the hash of its raw bytes continue the chain), inserts the batch in one
 * multi-row INSERT and sends NOTIFY; the commit makes it durable
 * (synchronous_commit on; fsync=none sets it off for the session).
 *
 * Follow: wait() LISTENs on the table's channel and sleeps in poll(2) on the
 * connection's socket until a NOTIFY (or the timeout), then checks max(seq).
 *
 * A lost connection is reset on the next call; the call that met it fails with
 * -ECONNREFUSED/-EIO and nothing of its batch was acknowledged.
 */
#include "events/store.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "common/buf.h"

typedef struct pg_store {
    ev_store_t base;
    PGconn *conn;
    char *table;       /* validated identifier */
    bool listening;
} pg_store_t;

static bool valid_ident(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 48 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* Copy libpq's message (one line) into the store's error. */
static int pg_fail(pg_store_t *ps, const char *what, PGresult *res, int rc)
{
    const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(ps->conn);
    char line[400];
    snprintf(line, sizeof line, "%s", m && *m ? m : "unknown error");
    line[strcspn(line, "\n")] = '\0';
    ev__store_err(&ps->base, "postgres: %s: %s", what, line);
    if (res)
        PQclear(res);
    if (PQstatus(ps->conn) != CONNECTION_OK)
        return -ECONNREFUSED;
    return rc;
}

/* Make sure the connection is up (reset it after a loss). */
static int ensure_conn(pg_store_t *ps)
{
    if (PQstatus(ps->conn) == CONNECTION_OK)
        return 0;
    PQreset(ps->conn);
    ps->listening = false;
    if (PQstatus(ps->conn) != CONNECTION_OK)
        return pg_fail(ps, "connect", NULL, -ECONNREFUSED);
    return 0;
}

/* Run a statement without parameters; 0 or an error. */
static int exec_ok(pg_store_t *ps, const char *what, const char *sql)
{
    PGresult *res = PQexec(ps->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return pg_fail(ps, what, res, -EIO);
    PQclear(res);
    return 0;
}

static int create_schema(pg_store_t *ps)
{
    buf_t b = BUF_INIT;
    const char *t = ps->table;
    int rc;
    /* The advisory lock keeps concurrent first opens from racing on CREATE. */
    buf_printf(&b,
               "BEGIN;"
               "SELECT pg_advisory_xact_lock(hashtext('oneblog.events.%s'));"
               "CREATE TABLE IF NOT EXISTS %s (seq bigint PRIMARY KEY, id text NOT NULL,"
               " ts_ms bigint NOT NULL, type text NOT NULL, actor text, trace_id text,"
               " raw bytea NOT NULL, doc jsonb NOT NULL);"
               "CREATE INDEX IF NOT EXISTS %s_ts ON %s (ts_ms);"
               "CREATE INDEX IF NOT EXISTS %s_type ON %s (type, seq);"
               "CREATE INDEX IF NOT EXISTS %s_actor ON %s (actor, seq);"
               "CREATE INDEX IF NOT EXISTS %s_trace ON %s (trace_id);"
               "CREATE INDEX IF NOT EXISTS %s_id ON %s (id);"
               "CREATE OR REPLACE FUNCTION oneblog_events_immutable() RETURNS trigger"
               " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'events are immutable:"
               " no update, no delete'; END $$;"
               "CREATE OR REPLACE TRIGGER %s_immutable BEFORE UPDATE OR DELETE ON %s"
               " FOR EACH ROW EXECUTE FUNCTION oneblog_events_immutable();"
               "CREATE OR REPLACE TRIGGER %s_no_truncate BEFORE TRUNCATE ON %s"
               " FOR EACH STATEMENT EXECUTE FUNCTION oneblog_events_immutable();"
               "COMMIT;",
               t, t, t, t, t, t, t, t, t, t, t, t, t, t, t, t);
    rc = exec_ok(ps, "create table", b.data);
    if (rc < 0)
        exec_ok(ps, "rollback", "ROLLBACK");
    buf_free(&b);
    return rc;
}

static void pg_close(ev_store_t *base)
{
    pg_store_t *ps = (pg_store_t *)base;
    if (ps->conn)
        PQfinish(ps->conn);
    free(ps->table);
    free(ps);
}

static int pg_open(const ev_url_t *url, int mode, ev_store_t **out, char *err, size_t errlen)
{
    pg_store_t *ps = xcalloc(1, sizeof *ps);
    buf_t conninfo = BUF_INIT;
    int rc;

    ps->base.mode = mode;
    if ((rc = ev__store_sync_opt(&ps->base, url, err, errlen)) < 0)
        goto out;
    ps->table = xstrdup(ev_url_opt(url, "table", "events"));
    if (!valid_ident(ps->table)) {
        rc = -EINVAL;
        snprintf(err, errlen, "EVENTS_URL: table=%s: expected [a-z_][a-z0-9_]*", ps->table);
        goto out;
    }
    buf_puts(&conninfo, url->driver_url);
    /* Never hang on an unreachable server. */
    if (strstr(url->driver_url, "connect_timeout=") == NULL)
        buf_puts(&conninfo, strchr(url->driver_url, '?') ? "&connect_timeout=5"
                                                          : "?connect_timeout=5");
    ps->conn = PQconnectdb(conninfo.data);
    if (ps->conn == NULL || PQstatus(ps->conn) != CONNECTION_OK) {
        rc = -ECONNREFUSED;
        snprintf(err, errlen, "postgres: cannot connect: %s",
                 ps->conn ? PQerrorMessage(ps->conn) : "out of memory");
        err[strcspn(err, "\n")] = '\0';
        goto out;
    }
    if ((rc = exec_ok(ps, "set", "SET client_min_messages = warning")) < 0 ||
        (ps->base.sync == EV_SYNC_NONE &&
         (rc = exec_ok(ps, "set", "SET synchronous_commit = off")) < 0) ||
        (mode == EV_OPEN_WRITE && (rc = create_schema(ps)) < 0)) {
        snprintf(err, errlen, "%s", ps->base.err);
        goto out;
    }
    *out = &ps->base;
    ps = NULL;
out:
    buf_free(&conninfo);
    if (ps)
        pg_close(&ps->base);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Append
 * ------------------------------------------------------------------------------ */

static int pg_append(ev_store_t *base, const ev_slice_t *evs, size_t n, uint64_t *first_seq)
{
    pg_store_t *ps = (pg_store_t *)base;
    buf_t sql = BUF_INIT, recs = BUF_INIT, nums = BUF_INIT;
    PGresult *res = NULL;
    uint8_t prev[EV_HASH_LEN] = { 0 };
    uint64_t seq = 1;
    const int per_row = 8;
    const char **vals = NULL;
    int *lens = NULL, *fmts = NULL, rc;
    size_t *roff = NULL, *rlen = NULL;
    char **jsons = NULL;

    if ((rc = ensure_conn(ps)) < 0)
        return rc;
    if (n > 4096) {
        /* One INSERT takes at most 65535 parameters. */
        size_t half = n / 2;
        uint64_t f2;
        if ((rc = pg_append(base, evs, half, first_seq)) < 0)
            return rc;
        return pg_append(base, evs + half, n - half, &f2);
    }
    if ((rc = exec_ok(ps, "begin", "BEGIN")) < 0)
        return rc;
    buf_printf(&sql, "SELECT pg_advisory_xact_lock(hashtext('oneblog.events.%s'))", ps->table);
    if ((rc = exec_ok(ps, "lock", sql.data)) < 0)
        goto out;
    sql.len = 0;
    buf_printf(&sql, "SELECT raw FROM %s ORDER BY seq DESC LIMIT 1", ps->table);
    res = PQexecParams(ps->conn, sql.data, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = pg_fail(ps, "read last record", res, -EIO);
        res = NULL;
        goto out;
    }
    if (PQntuples(res) == 1) {
        ev_record_t r;
        const uint8_t *raw = (const uint8_t *)PQgetvalue(res, 0, 0);
        size_t rl = (size_t)PQgetlength(res, 0, 0);
        if (ev_record_parse(raw, rl, &r) < 0) {
            rc = -EBADMSG;
            ev__store_err(base, "postgres: the last record of %s is damaged; not appending "
                          "(run oneblog-events verify)", ps->table);
            goto out;
        }
        seq = r.seq + 1;
        ev_record_hash(raw, rl, prev);
    }
    PQclear(res);
    res = NULL;
    *first_seq = seq;

    /* Build every record first (the buffer may move while growing), then point
     * the parameters into it. */
    roff = xmalloc(n * sizeof *roff);
    rlen = xmalloc(n * sizeof *rlen);
    jsons = xcalloc(n, sizeof *jsons);
    for (size_t i = 0; i < n; i++) {
        roff[i] = recs.len;
        rlen[i] = ev_record_build(evs[i].data, evs[i].len, seq + i, prev, &recs);
        ev_record_hash((uint8_t *)recs.data + roff[i], rlen[i], prev);
    }
    vals = xcalloc(n * per_row, sizeof *vals);
    lens = xcalloc(n * per_row, sizeof *lens);
    fmts = xcalloc(n * per_row, sizeof *fmts);
    sql.len = 0;
    buf_printf(&sql, "INSERT INTO %s (seq, id, ts_ms, type, actor, trace_id, raw, doc) VALUES ",
               ps->table);
    /* Numbers as text, one NUL-terminated string each, offsets kept in nums. */
    size_t *noff = xmalloc(2 * n * sizeof *noff);
    for (size_t i = 0; i < n; i++) {
        ev_record_t r;
        bson_t b;
        ev_record_parse((uint8_t *)recs.data + roff[i], rlen[i], &r);
        noff[2 * i] = nums.len;
        buf_printf(&nums, "%" PRIu64, r.seq);
        buf_putc(&nums, '\0');
        noff[2 * i + 1] = nums.len;
        buf_printf(&nums, "%" PRId64, r.ts_ms);
        buf_putc(&nums, '\0');
        bson_init_static(&b, (uint8_t *)recs.data + roff[i], rlen[i]);
        jsons[i] = bson_as_relaxed_extended_json(&b, NULL);
        size_t p = i * per_row;
        vals[p + 1] = r.id;
        vals[p + 3] = r.type;
        vals[p + 4] = r.actor;
        vals[p + 5] = r.trace_id;
        vals[p + 6] = recs.data + roff[i];
        lens[p + 6] = (int)rlen[i];
        fmts[p + 6] = 1;
        vals[p + 7] = jsons[i];
        buf_printf(&sql, "%s($%zu,$%zu,$%zu,$%zu,$%zu,$%zu,$%zu,$%zu::jsonb)", i ? "," : "", p + 1,
                   p + 2, p + 3, p + 4, p + 5, p + 6, p + 7, p + 8);
    }
    for (size_t i = 0; i < n; i++) {
        vals[i * per_row] = nums.data + noff[2 * i];
        vals[i * per_row + 2] = nums.data + noff[2 * i + 1];
    }
    free(noff);
    res = PQexecParams(ps->conn, sql.data, (int)(n * per_row), NULL, vals, lens, fmts, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = pg_fail(ps, "insert", res, -EIO);
        res = NULL;
        goto out;
    }
    PQclear(res);
    res = NULL;
    sql.len = 0;
    buf_printf(&sql, "NOTIFY oneblog_events_%s", ps->table);
    if ((rc = exec_ok(ps, "notify", sql.data)) < 0)
        goto out;
    /* The commit is the acknowledgement: if its result is lost with the
     * connection, the batch is reported failed even though it may have landed
     * (the same "maybe" as a failed fsync; ids make duplicates detectable). */
    rc = exec_ok(ps, "commit", "COMMIT");
out:
    if (rc < 0 && PQstatus(ps->conn) == CONNECTION_OK) {
        PGresult *r2 = PQexec(ps->conn, "ROLLBACK");
        PQclear(r2);
    }
    if (res)
        PQclear(res);
    for (size_t i = 0; jsons && i < n; i++)
        bson_free(jsons[i]);
    free(jsons);
    free(vals);
    free(lens);
    free(fmts);
    free(roff);
    free(rlen);
    buf_free(&sql);
    buf_free(&recs);
    buf_free(&nums);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------------ */

/* Run a SELECT raw ... with text parameters and push the records, checked, to out.
 * A record that does not parse stops the read with -EBADMSG. */
static int select_raw(pg_store_t *ps, const char *sql, int nparams, const char *const *params,
                      const ev_query_t *q, ev_list_t *out)
{
    PGresult *res;
    int rc = 0;

    if ((rc = ensure_conn(ps)) < 0)
        return rc;
    res = PQexecParams(ps->conn, sql, nparams, NULL, params, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(ps, "select", res, -EIO);
    for (int i = 0; i < PQntuples(res); i++) {
        const uint8_t *raw = (const uint8_t *)PQgetvalue(res, i, 0);
        size_t rl = (size_t)PQgetlength(res, i, 0);
        ev_record_t r;
        if (ev_record_parse(raw, rl, &r) < 0) {
            ev__store_err(&ps->base, "postgres: table %s: row %d of the result is not a valid "
                          "record; reads stop here, run oneblog-events verify", ps->table, i);
            rc = -EBADMSG;
            break;
        }
        if (q && !ev_query_match(q, &r))
            continue;
        ev_list_push(out, raw, rl);
    }
    PQclear(res);
    return rc;
}

static int pg_read(ev_store_t *base, uint64_t from, size_t max, ev_list_t *out)
{
    pg_store_t *ps = (pg_store_t *)base;
    buf_t sql = BUF_INIT;
    char a[24], b[24];
    const char *p[2] = { a, b };
    int rc;
    snprintf(a, sizeof a, "%" PRIu64, from);
    snprintf(b, sizeof b, "%zu", max);
    buf_printf(&sql, "SELECT raw FROM %s WHERE seq >= $1 ORDER BY seq LIMIT $2", ps->table);
    rc = select_raw(ps, sql.data, 2, p, NULL, out);
    buf_free(&sql);
    return rc;
}

static int pg_query(ev_store_t *base, const ev_query_t *q, ev_list_t *out)
{
    pg_store_t *ps = (pg_store_t *)base;
    buf_t sql = BUF_INIT;
    char nums[4][24];
    const char *p[8];
    int np = 0, rc;

    buf_printf(&sql, "SELECT raw FROM %s WHERE seq >= $1", ps->table);
    snprintf(nums[0], sizeof nums[0], "%" PRIu64, q->from_seq);
    p[np++] = nums[0];
    if (q->from_ts_ms) {
        snprintf(nums[1], sizeof nums[1], "%" PRId64, q->from_ts_ms);
        p[np++] = nums[1];
        buf_printf(&sql, " AND ts_ms >= $%d", np);
    }
    if (q->to_ts_ms) {
        snprintf(nums[2], sizeof nums[2], "%" PRId64, q->to_ts_ms);
        p[np++] = nums[2];
        buf_printf(&sql, " AND ts_ms < $%d", np);
    }
    const struct { const char *v, *col; } eq[] = {
        { q->type, "type" }, { q->actor, "actor" }, { q->trace_id, "trace_id" }, { q->id, "id" }
    };
    for (size_t i = 0; i < 4; i++) {
        if (eq[i].v) {
            p[np++] = eq[i].v;
            buf_printf(&sql, " AND %s = $%d", eq[i].col, np);
        }
    }
    snprintf(nums[3], sizeof nums[3], "%zu", q->limit);
    p[np++] = nums[3];
    buf_printf(&sql, " ORDER BY seq LIMIT $%d", np);
    rc = select_raw(ps, sql.data, np, p, q, out);
    buf_free(&sql);
    return rc;
}

static int pg_last_seq(ev_store_t *base, uint64_t *out)
{
    pg_store_t *ps = (pg_store_t *)base;
    buf_t sql = BUF_INIT;
    PGresult *res;
    int rc = 0;

    *out = 0;
    if ((rc = ensure_conn(ps)) < 0)
        return rc;
    buf_printf(&sql, "SELECT coalesce(max(seq), 0) FROM %s", ps->table);
    res = PQexec(ps->conn, sql.data);
    buf_free(&sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(ps, "last seq", res, -EIO);
    *out = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return 0;
}

static int pg_wait(ev_store_t *base, uint64_t after, int timeout_ms)
{
    pg_store_t *ps = (pg_store_t *)base;
    struct timespec t0, t;
    uint64_t last;
    int rc;

    if ((rc = ensure_conn(ps)) < 0)
        return rc;
    if (!ps->listening) {
        buf_t sql = BUF_INIT;
        buf_printf(&sql, "LISTEN oneblog_events_%s", ps->table);
        rc = exec_ok(ps, "listen", sql.data);
        buf_free(&sql);
        if (rc < 0)
            return rc;
        ps->listening = true;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        /* Checked after LISTEN and after every wake-up, so no commit is missed. */
        if ((rc = pg_last_seq(base, &last)) < 0)
            return rc;
        if (last > after)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms)
            return -ETIMEDOUT;
        struct pollfd pfd = { PQsocket(ps->conn), POLLIN, 0 };
        if (poll(&pfd, 1, (int)(timeout_ms - el)) < 0 && errno != EINTR)
            return -errno;
        if (!PQconsumeInput(ps->conn))
            return pg_fail(ps, "wait", NULL, -ECONNREFUSED);
        PGnotify *nt;
        while ((nt = PQnotifies(ps->conn)) != NULL)
            PQfreemem(nt);
    }
}

static const char *pg_where(uint64_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "row seq=%" PRIu64, seq);
    return buf;
}

static int pg_verify(ev_store_t *base, ev_verify_cb cb, void *arg, ev_verify_stats_t *st)
{
    return ev__verify_by_reading(base, cb, arg, st, pg_where);
}

const ev_store_ops_t ev_store_pg_ops = {
    .scheme = "postgres",
    .open = pg_open,
    .close = pg_close,
    .append = pg_append,
    .last_seq = pg_last_seq,
    .read = pg_read,
    .query = pg_query,
    .wait = pg_wait,
    .verify = pg_verify,
};
