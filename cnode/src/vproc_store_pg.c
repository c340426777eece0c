/* vproc_store_pg.c - the PostgreSQL vproc store, on libpq's asynchronous API.
 *
 * One table, created if missing by each new connection (under a transaction
 * advisory lock, since concurrent CREATE TABLE IF NOT EXISTS can still collide
 * in PostgreSQL's catalogs):
 *
 *   cn_vproc_state (type text, key bytea, version bigint, state bytea,
 *                   updated_at timestamptz, PRIMARY KEY (type, key))
 *
 * A load is one SELECT; a save is one statement, so one round trip and its own
 * transaction: INSERT ... ON CONFLICT DO NOTHING for a key never saved, else
 * UPDATE ... WHERE version = expected. No row changed means another writer got
 * there first: -ESTALE. The version is thus a fencing token that PostgreSQL
 * checks under the row lock, whatever the nodes believe about ownership.
 *
 * Connections: at most `pool` per store, opened on first use with
 * PQconnectStart/PQconnectPoll; the statements are prepared once per
 * connection. The calling process parks in cn_wait_fd on the socket. A store
 * belongs to one node (its scheduler thread): no locks. A process that finds
 * every connection busy queues its pid and waits for a '$vp_pg_free' nudge
 * (rechecking every 100 ms in case the nudged process died meanwhile). A
 * process killed while holding a connection closes it from its exit hook (its
 * protocol state is unknown); the next user reconnects. Any error closes the
 * connection too and answers -EIO.
 */
#include "vproc_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define PG_TIMEOUT_MS 5000

typedef struct pg_conn {
    PGconn *pg;
    bool busy;
    long hook;                       /* the holder's exit hook */
    struct pg_store *s;
} pg_conn_t;

typedef struct pg_store {
    cn_vproc_store_t base;
    char *conninfo;
    int pool;
    pg_conn_t *conns;
    cn_pid_t *waiters;               /* FIFO of parked pids */
    int nwait, capwait;
    cn_node_t *node;                 /* the node that used it first: the only one
                                        allowed (no locks, one scheduler thread) */
} pg_store_t;

/* One simple query is one implicit transaction: the transaction-scoped lock is
 * held until the CREATE has committed. (A session lock released by a statement
 * of the same string would be free before the commit, and a second creator
 * could then fail on the catalog's unique index.) */
static const char create_sql[] =
    "SELECT pg_advisory_xact_lock(7306093861);"
    "CREATE TABLE IF NOT EXISTS cn_vproc_state ("
    " type text NOT NULL, key bytea NOT NULL, version bigint NOT NULL,"
    " state bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (type, key));";

static const struct {
    const char *name, *sql;
    int nparams;
} stmts[] = {
    { "vp_load", "SELECT version, state FROM cn_vproc_state WHERE type = $1 AND key = $2", 2 },
    { "vp_ins", "INSERT INTO cn_vproc_state (type, key, version, state) VALUES ($1, $2, 1, $3)"
                " ON CONFLICT DO NOTHING", 3 },
    { "vp_upd", "UPDATE cn_vproc_state SET version = version + 1, state = $3, updated_at = now()"
                " WHERE type = $1 AND key = $2 AND version = $4", 4 },
};

/* ---------------------------------------------------------------------------------
 * Sockets
 * ------------------------------------------------------------------------------ */

/* Wait until fd is ready for `events`. cn_wait_fd is edge-triggered and libpq
 * asks to wait without saying whether it saw EAGAIN, so look at the level
 * first (poll with a zero timeout) and park only when it is not ready. */
static int wait_fd(int fd, int events)
{
    struct pollfd p = { fd, (short)((events & CN_READABLE ? POLLIN : 0) |
                                    (events & CN_WRITABLE ? POLLOUT : 0)), 0 };
    if (poll(&p, 1, 0) > 0 && p.revents)
        return events;
    return cn_wait_fd(fd, events, PG_TIMEOUT_MS);
}

static void conn_close(pg_conn_t *c)
{
    if (c->pg == NULL)
        return;
    int fd = PQsocket(c->pg);
    if (fd >= 0)
        cn_fd_forget(fd);
    PQfinish(c->pg);
    c->pg = NULL;
}

/* Flush what PQsend* queued, then collect results until libpq has no more,
 * keeping the last; PGRES_COMMAND_OK / TUPLES_OK results are success. Returns
 * 0 with *out (may be NULL when the caller does not want it) or -EIO. */
static int finish(PGconn *pg, PGresult **out)
{
    int f;
    while ((f = PQflush(pg)) == 1) {
        if (wait_fd(PQsocket(pg), CN_READABLE | CN_WRITABLE) < 0 || !PQconsumeInput(pg))
            return -EIO;
    }
    if (f < 0)
        return -EIO;
    PGresult *last = NULL;
    bool failed = false;
    for (;;) {
        while (PQisBusy(pg)) {
            if (wait_fd(PQsocket(pg), CN_READABLE) < 0 || !PQconsumeInput(pg)) {
                PQclear(last);
                return -EIO;
            }
        }
        PGresult *r = PQgetResult(pg);
        if (r == NULL)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            failed = true;
        PQclear(last);
        last = r;
    }
    if (failed || PQstatus(pg) == CONNECTION_BAD) {
        PQclear(last);
        return -EIO;
    }
    if (out)
        *out = last;
    else
        PQclear(last);
    return 0;
}

static int conn_open(pg_store_t *s, pg_conn_t *c)
{
    /* In c->pg from the start, so the holder's exit hook closes it too. */
    PGconn *pg = c->pg = PQconnectStart(s->conninfo);
    if (pg == NULL)
        return -ENOMEM;
    if (PQstatus(pg) == CONNECTION_BAD)
        goto fail;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            goto fail;
        if (wait_fd(PQsocket(pg), st == PGRES_POLLING_READING ? CN_READABLE : CN_WRITABLE) < 0)
            goto fail;
        st = PQconnectPoll(pg);
    }
    if (PQsetnonblocking(pg, 1) != 0)
        goto fail;
    if (!PQsendQuery(pg, create_sql) || finish(pg, NULL) < 0)
        goto fail;
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        if (!PQsendPrepare(pg, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL) ||
            finish(pg, NULL) < 0)
            goto fail;
    return 0;
fail:
    conn_close(c);
    return -EIO;
}

/* ---------------------------------------------------------------------------------
 * The pool
 * ------------------------------------------------------------------------------ */

static bool match_free(const cn_msg_t *m, void *arg)
{
    (void)arg;
    int i = 1;
    return cn_decode_atom_is(m->buf, &i, "$vp_pg_free");
}

static void wake_one(pg_store_t *s)
{
    while (s->nwait > 0) {
        cn_pid_t p = s->waiters[0];
        memmove(s->waiters, s->waiters + 1, (size_t)--s->nwait * sizeof(*s->waiters));
        ei_x_buff x;
        if (cn_x_new(&x) < 0)
            return;
        ei_x_encode_atom(&x, "$vp_pg_free");
        if (cn_send(p, &x) == 0)
            return;
    }
}

/* Exit hook of a holder killed mid-statement: the connection's state is
 * unknown, so close it. */
static void on_holder_exit(void *arg)
{
    pg_conn_t *c = arg;
    conn_close(c);
    c->busy = false;
    wake_one(c->s);
}

static int checkout(pg_store_t *s, pg_conn_t **out)
{
    /* The pool is unlocked: a second node (another scheduler thread) would race
     * on it. Refuse rather than corrupt it. */
    cn_node_t *self = cn_node_self();
    if (s->node == NULL)
        s->node = self;
    else if (s->node != self)
        return -EXDEV;
    for (;;) {
        for (int i = 0; i < s->pool; i++) {
            pg_conn_t *c = &s->conns[i];
            if (c->busy)
                continue;
            c->busy = true;
            c->s = s;
            c->hook = cn_on_exit(on_holder_exit, c);
            if (c->hook < 0) {
                c->busy = false;
                return -ENOMEM;
            }
            if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
                conn_close(c);
                int rc = conn_open(s, c);
                if (rc < 0) {
                    cn_on_exit_cancel(c->hook);
                    c->busy = false;
                    wake_one(s);
                    return rc;
                }
            }
            *out = c;
            return 0;
        }
        if (s->nwait == s->capwait) {
            int cap = s->capwait ? s->capwait * 2 : 16;
            cn_pid_t *w = cn__realloc(s->waiters, (size_t)cap * sizeof(*w));
            if (w == NULL)
                return -ENOMEM;
            s->waiters = w;
            s->capwait = cap;
        }
        s->waiters[s->nwait++] = cn_self();
        cn_msg_t *m;
        if (cn_receive(match_free, NULL, 100, &m) == 0) {
            cn_msg_free(m);
        } else {
            /* Not nudged: take ourselves off the queue and look again. */
            cn_pid_t me = cn_self();
            for (int i = 0; i < s->nwait; i++) {
                if (cn_pid_eq(s->waiters[i], me)) {
                    memmove(s->waiters + i, s->waiters + i + 1,
                            (size_t)(s->nwait - i - 1) * sizeof(*s->waiters));
                    s->nwait--;
                    break;
                }
            }
        }
    }
}

static void release(pg_store_t *s, pg_conn_t *c, bool broken)
{
    cn_on_exit_cancel(c->hook);
    if (broken)
        conn_close(c);
    c->busy = false;
    wake_one(s);
}

/* ---------------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------------ */

static int64_t be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (unsigned char)p[i];
    return (int64_t)v;
}

static int pg_load(cn_vproc_store_t *base, const char *type, const char *key, size_t klen,
                   ei_x_buff *out, int64_t *version)
{
    pg_store_t *s = (pg_store_t *)base;
    pg_conn_t *c;
    int rc = checkout(s, &c);
    if (rc < 0)
        return rc;
    const char *v[2] = { type, key };
    int len[2] = { 0, (int)klen }, fmt[2] = { 0, 1 };
    PGresult *r = NULL;
    rc = PQsendQueryPrepared(c->pg, "vp_load", 2, v, len, fmt, 1) ? finish(c->pg, &r) : -EIO;
    if (rc == 0) {
        if (r == NULL || PQnfields(r) != 2) {
            rc = -EIO;
        } else if (PQntuples(r) == 0) {
            rc = -ENOENT;
        } else if (PQgetlength(r, 0, 0) != 8) {
            rc = -EIO;
        } else {
            *version = be64(PQgetvalue(r, 0, 0));
            rc = ei_x_append_buf(out, PQgetvalue(r, 0, 1), PQgetlength(r, 0, 1)) < 0 ? -ENOMEM : 0;
        }
    }
    PQclear(r);
    release(s, c, rc == -EIO);
    return rc;
}

static int pg_save(cn_vproc_store_t *base, const char *type, const char *key, size_t klen,
                   int64_t expected, const char *data, size_t dlen)
{
    pg_store_t *s = (pg_store_t *)base;
    pg_conn_t *c;
    int rc = checkout(s, &c);
    if (rc < 0)
        return rc;
    char ver[24];
    snprintf(ver, sizeof(ver), "%lld", (long long)expected);
    const char *v[4] = { type, key, data ? data : "", ver };
    int len[4] = { 0, (int)klen, (int)dlen, 0 }, fmt[4] = { 0, 1, 1, 0 };
    PGresult *r = NULL;
    int ok = expected == 0 ? PQsendQueryPrepared(c->pg, "vp_ins", 3, v, len, fmt, 0)
                           : PQsendQueryPrepared(c->pg, "vp_upd", 4, v, len, fmt, 0);
    rc = ok ? finish(c->pg, &r) : -EIO;
    if (rc == 0)
        rc = r && strcmp(PQcmdTuples(r), "1") == 0 ? 0 : -ESTALE;
    PQclear(r);
    release(s, c, rc == -EIO);
    return rc;
}

static void pg_close_store(cn_vproc_store_t *base)
{
    pg_store_t *s = (pg_store_t *)base;
    for (int i = 0; i < s->pool; i++) {
        if (s->conns[i].pg) {
            /* The node may be gone: no cn_fd_forget outside it. */
            if (cn_node_self() != NULL)
                cn_fd_forget(PQsocket(s->conns[i].pg));
            PQfinish(s->conns[i].pg);
        }
    }
    cn__free(s->conns);
    cn__free(s->waiters);
    free(s->conninfo);
    cn__free(s);
}

static const cn_vproc_store_ops_t pg_ops = { pg_load, pg_save, pg_close_store };

int cn_vproc_store_pg_new(const char *conninfo, int pool, cn_vproc_store_t **out)
{
    if (conninfo == NULL || *conninfo == '\0' || pool < 0)
        return -EINVAL;
    pg_store_t *s = cn__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->pool = pool ? pool : 4;
    s->conns = cn__calloc((size_t)s->pool, sizeof(*s->conns));
    s->conninfo = strdup(conninfo);
    if (s->conns == NULL || s->conninfo == NULL) {
        cn__free(s->conns);
        free(s->conninfo);
        cn__free(s);
        return -ENOMEM;
    }
    s->base.ops = &pg_ops;
    *out = &s->base;
    return 0;
}
