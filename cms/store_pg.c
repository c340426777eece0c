/* store_pg.c - the PostgreSQL backend, through libpq's asynchronous API so that a
 * query never blocks the scheduler.
 *
 * Each connection is made with PQconnectStart/PQconnectPoll and set non-blocking;
 * statements go out as libpq pipelines of prepared statements (a request's BEGIN
 * rides with its first statement), then PQconsumeInput/PQisBusy/PQgetResult,
 * parking the calling process in cn_wait_fd() on PQsocket() whenever libpq would
 * wait. Outside a process (no scheduler to park on) the same loops wait with
 * poll(2).
 *
 * Closing: the poller remembers fds it has seen, so a socket leaves it through
 * cn_fd_forget() (deregister without closing) before libpq closes it itself.
 */
#include "store.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cnode/proc.h"
#include "store_pg_sql.h"
#include "util.h"

#define PG_TIMEOUT_MS 30000 /* a statement or a connection attempt */

struct cms_conn {
    PGconn *pg;
    int pending_begin;             /* a BEGIN statement not sent yet, or -1 */
    bool prepared[CMS_SQL__COUNT]; /* statement "sN" is prepared on this connection */
};

/* Wait for fd to become readable/writable. Returns the ready CN_* bits (> 0), or
 * -ETIMEDOUT.
 *
 * cn_wait_fd() is edge-triggered: it is meant to follow an I/O call that failed
 * with EAGAIN. libpq asks to wait without saying whether it saw EAGAIN (after a
 * connect it asks for "writable" on a socket that already is), so we first ask
 * the kernel for the level with a zero-timeout poll(2), and park only when the
 * fd is not ready now; any later readiness is then a new edge. */
static int wait_fd(int fd, int events, int64_t timeout_ms)
{
    struct pollfd p = { fd, (short)((events & CN_READABLE ? POLLIN : 0) |
                                    (events & CN_WRITABLE ? POLLOUT : 0)), 0 };
    int rc = poll(&p, 1, 0);
    if (rc > 0) {
        int got = 0;
        if (p.revents & (POLLIN | POLLHUP | POLLERR))
            got |= events & CN_READABLE;
        if (p.revents & (POLLOUT | POLLHUP | POLLERR))
            got |= events & CN_WRITABLE;
        if (got)
            return got;
    }
    rc = cn_wait_fd(fd, events, timeout_ms);
    if (rc != -EINVAL)
        return rc;
    /* Not in a process: block this thread instead. */
    rc = poll(&p, 1, (int)timeout_ms);
    return rc > 0 ? events : rc == 0 ? -ETIMEDOUT : -errno;
}

static void forget_socket(PGconn *pg)
{
    int fd = PQsocket(pg);
    if (fd >= 0 && cn_node_self() != NULL)
        cn_fd_forget(fd);
}

static void pg_close(cms_conn_t *c)
{
    if (c == NULL)
        return;
    if (c->pg) {
        forget_socket(c->pg);
        PQfinish(c->pg);
    }
    free(c);
}

/* Server notices ("relation ... already exists, skipping") go to the debug log,
 * not to stderr as libpq's default processor would. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    cms_log(CMS_LOG_DEBUG, "store", "postgres: %.*s", (int)strcspn(message, "\n"), message);
}

static int pg_open(const char *target, int index, cms_conn_t **out, char err[CMS_ERR_LEN])
{
    (void)index;
    PGconn *pg = PQconnectStart(target);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (pg == NULL) {
        snprintf(err, CMS_ERR_LEN, "postgres: out of memory");
        return -EIO;
    }
    if (PQstatus(pg) == CONNECTION_BAD)
        goto fail;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            goto fail;
        int rc = wait_fd(PQsocket(pg), st == PGRES_POLLING_READING ? CN_READABLE : CN_WRITABLE,
                         PG_TIMEOUT_MS);
        if (rc < 0) {
            snprintf(err, CMS_ERR_LEN, "DATABASE_URL: connecting timed out");
            forget_socket(pg);
            PQfinish(pg);
            return -EIO;
        }
        st = PQconnectPoll(pg);
    }
    if (PQsetnonblocking(pg, 1) != 0)
        goto fail;
    PQsetNoticeProcessor(pg, on_notice, NULL);
    cms_conn_t *c = xcalloc(1, sizeof(*c));
    c->pg = pg;
    c->pending_begin = -1;
    *out = c;
    return 0;
fail:
    /* Keep the first line of libpq's message; it names host and port. */
    snprintf(err, CMS_ERR_LEN, "DATABASE_URL: %s", PQerrorMessage(pg));
    err[strcspn(err, "\n")] = '\0';
    forget_socket(pg);
    PQfinish(pg);
    return -EIO;
}

/* Send what PQsendQuery* queued. Returns 0 or -ECONNRESET. */
static int flush_all(PGconn *pg, char *err)
{
    int f;
    while ((f = PQflush(pg)) == 1) {
        /* libpq's rule: wait for either direction, and read when readable so the
         * server can make progress draining its own output. */
        int rc = wait_fd(PQsocket(pg), CN_READABLE | CN_WRITABLE, PG_TIMEOUT_MS);
        if (rc < 0) {
            snprintf(err, CMS_ERR_LEN, "postgres: sending timed out");
            return -ECONNRESET;
        }
        if ((rc & CN_READABLE) && !PQconsumeInput(pg))
            break;
    }
    if (f < 0 || PQstatus(pg) == CONNECTION_BAD) {
        snprintf(err, CMS_ERR_LEN, "postgres: %s", PQerrorMessage(pg));
        return -ECONNRESET;
    }
    return 0;
}

static void copy_rows(PGresult *res, cms_rows_t *out)
{
    int nr = PQntuples(res), nc = PQnfields(res);
    cms_rows_alloc(out, nr, nc);
    for (int i = 0; i < nr; i++)
        for (int k = 0; k < nc; k++)
            out->cells[i * nc + k] =
                PQgetisnull(res, i, k)
                    ? NULL
                    : xstrndup(PQgetvalue(res, i, k), (size_t)PQgetlength(res, i, k));
    out->changes = strtoll(PQcmdTuples(res), NULL, 10);
}

/* Wait (parked on the socket, PG_TIMEOUT_MS at most) until PQgetResult will
 * not block. 0, or -ECONNRESET with err set: a timeout leaves a query running,
 * so either way the connection is unusable. */
static int wait_result(PGconn *pg, char *err)
{
    while (PQisBusy(pg)) {
        if (wait_fd(PQsocket(pg), CN_READABLE, PG_TIMEOUT_MS) < 0) {
            snprintf(err, CMS_ERR_LEN, "postgres: no answer in %d ms", PG_TIMEOUT_MS);
            return -ECONNRESET;
        }
        if (!PQconsumeInput(pg)) {
            snprintf(err, CMS_ERR_LEN, "postgres: %s", PQerrorMessage(pg));
            err[strcspn(err, "\n")] = '\0';
            return -ECONNRESET;
        }
    }
    return 0;
}

/* Collect every result of the query in flight. The first error wins; otherwise
 * the last result's rows go to out. */
static int collect(PGconn *pg, cms_rows_t *out, char *err)
{
    int rc = 0;
    for (;;) {
        if (wait_result(pg, err) < 0)
            return -ECONNRESET;
        PGresult *res = PQgetResult(pg);
        if (res == NULL)
            break;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            if (rc == 0 && out) {
                cms_rows_free(out);
                copy_rows(res, out);
            }
        } else if (rc == 0) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(err, CMS_ERR_LEN, "postgres: %s", PQresultErrorMessage(res));
            err[strcspn(err, "\n")] = '\0';
            rc = state && strcmp(state, "23505") == 0 ? -EEXIST : -EIO;
            if (PQstatus(pg) == CONNECTION_BAD)
                rc = -ECONNRESET;
        }
        PQclear(res);
    }
    if (rc < 0 && out)
        cms_rows_free(out);
    if (rc == 0 && out && out->cells == NULL)
        cms_rows_alloc(out, 0, 0);
    return rc;
}

/* The results of one pipeline, up to its sync. The first error wins (and is the
 * result); otherwise the last statement's rows go to out. *prepare_ok says
 * whether the Prepare that was query number `prepare_at` (1-based; 0: none)
 * succeeded. */
static int collect_pipeline(PGconn *pg, cms_rows_t *out, int prepare_at, bool *prepare_ok,
                            char *err)
{
    int rc = 0, k = 1; /* the query whose results come next */
    for (;;) {
        if (wait_result(pg, err) < 0)
            return -ECONNRESET;
        PGresult *res = PQgetResult(pg);
        if (res == NULL) { /* the end of one query's results */
            k++;
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            break;
        }
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            if (k == prepare_at)
                *prepare_ok = true;
            if (rc == 0 && out) {
                cms_rows_free(out);
                copy_rows(res, out);
            }
        } else if (rc == 0 && st != PGRES_PIPELINE_ABORTED) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(err, CMS_ERR_LEN, "postgres: %s", PQresultErrorMessage(res));
            err[strcspn(err, "\n")] = '\0';
            rc = state && strcmp(state, "23505") == 0 ? -EEXIST : -EIO;
        }
        PQclear(res);
    }
    if (PQstatus(pg) == CONNECTION_BAD)
        rc = -ECONNRESET;
    if (rc < 0 && out)
        cms_rows_free(out);
    if (rc == 0 && out && out->cells == NULL)
        cms_rows_alloc(out, 0, 0);
    return rc;
}

/* A statement is one pipeline and one round trip: the BEGIN held back from
 * store_begin() (so that a request does not pay a round trip for it), the
 * statement's Prepare the first time this connection runs it (named "sN"; the
 * server plans it once), then its execution and a sync. A BEGIN followed at once
 * by COMMIT or ROLLBACK is never sent: there is nothing to end. */
static int pg_exec(cms_conn_t *c, int stmt, const cms_val_t *params, int n, cms_rows_t *out,
                   char err[CMS_ERR_LEN])
{
    const char *values[32];
    char ints[32][24], name[16];
    if (stmt < 0 || stmt >= CMS_SQL__COUNT || pg_sql[stmt] == NULL || n > 32) {
        snprintf(err, CMS_ERR_LEN, "postgres: no statement %d", stmt);
        return -EINVAL;
    }
    if (stmt == CMS_SQL_BEGIN_READ || stmt == CMS_SQL_BEGIN_WRITE ||
        ((stmt == CMS_SQL_COMMIT || stmt == CMS_SQL_ROLLBACK) && c->pending_begin >= 0)) {
        c->pending_begin = stmt == CMS_SQL_BEGIN_READ || stmt == CMS_SQL_BEGIN_WRITE ? stmt : -1;
        if (out)
            cms_rows_alloc(out, 0, 0);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (params[i].type == CMS_V_INT) {
            snprintf(ints[i], sizeof ints[i], "%lld", (long long)params[i].i);
            values[i] = ints[i];
        } else {
            values[i] = params[i].type == CMS_V_TEXT ? params[i].s : NULL;
        }
    }
    int nq = 0, prepare_at = 0, rc;
    bool ok, prepare_ok = false;
    snprintf(name, sizeof name, "s%d", stmt);
    ok = PQenterPipelineMode(c->pg);
    if (ok && c->pending_begin >= 0) {
        ok = PQsendQueryParams(c->pg, pg_sql[c->pending_begin], 0, NULL, NULL, NULL, NULL, 0);
        nq++;
    }
    c->pending_begin = -1;
    if (ok && !c->prepared[stmt]) {
        ok = PQsendPrepare(c->pg, name, pg_sql[stmt], 0, NULL);
        prepare_at = ++nq;
    }
    ok = ok && PQsendQueryPrepared(c->pg, name, n, values, NULL, NULL, 0) &&
         PQpipelineSync(c->pg);
    if (!ok) {
        snprintf(err, CMS_ERR_LEN, "postgres: %s", PQerrorMessage(c->pg));
        err[strcspn(err, "\n")] = '\0';
        return -ECONNRESET;
    }
    if ((rc = flush_all(c->pg, err)) < 0)
        return rc;
    rc = collect_pipeline(c->pg, out, prepare_at, &prepare_ok, err);
    if (prepare_ok)
        c->prepared[stmt] = true;
    if (rc != -ECONNRESET && !PQexitPipelineMode(c->pg)) {
        snprintf(err, CMS_ERR_LEN, "postgres: %s", PQerrorMessage(c->pg));
        err[strcspn(err, "\n")] = '\0';
        rc = -ECONNRESET;
    }
    return rc;
}

static int pg_exec_script(cms_conn_t *c, const char *sql, char err[CMS_ERR_LEN])
{
    if (c->pending_begin >= 0) { /* the script belongs to the transaction */
        int begin = c->pending_begin;
        c->pending_begin = -1;
        int rc = PQsendQuery(c->pg, pg_sql[begin]) ? flush_all(c->pg, err) : -ECONNRESET;
        if (rc == 0)
            rc = collect(c->pg, NULL, err);
        if (rc < 0)
            return rc;
    }
    if (!PQsendQuery(c->pg, sql)) {
        snprintf(err, CMS_ERR_LEN, "postgres: %s", PQerrorMessage(c->pg));
        return -ECONNRESET;
    }
    int rc = flush_all(c->pg, err);
    return rc < 0 ? rc : collect(c->pg, NULL, err);
}

const cms_backend_t cms_backend_pg = {
    .name = "postgres",
    .sql = pg_sql,
    .migrations = pg_migrations,
    .nmigrations = (int)(sizeof(pg_migrations) / sizeof(pg_migrations[0])),
    .single_writer = false,
    .default_pool = 8, /* reads wait on round trips more than on CPU */
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .exec_script = pg_exec_script,
};
