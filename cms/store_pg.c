/* store_pg.c - the PostgreSQL backend, through libpq's asynchronous API so that a
 * query never blocks the scheduler.
 *
 * Each connection is made with PQconnectStart/PQconnectPoll and set non-blocking;
 * a statement is PQsendQueryParams (text parameters, text results), PQflush until
 * sent, then PQconsumeInput/PQisBusy/PQgetResult, parking the calling process in
 * cn_wait_fd() on PQsocket() whenever libpq would wait. Outside a process (no
 * scheduler to park on) the same loops wait with poll(2).
 *
 * Closing: the poller remembers fds it has seen, so a socket must leave it through
 * cn_fd_close() before libpq forgets it. libpq then closes the number a second
 * time (EBADF, harmless unless another thread reused the number in between).
 * TODO(cms): a cn_fd_forget() in libcnode (deregister without closing) would close
 * that window; see the report of the CMS work.
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
        cn_fd_close(fd);
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

/* Collect every result of the query in flight. The first error wins; otherwise
 * the last result's rows go to out. */
static int collect(PGconn *pg, cms_rows_t *out, char *err)
{
    int rc = 0;
    for (;;) {
        while (PQisBusy(pg)) {
            if (wait_fd(PQsocket(pg), CN_READABLE, PG_TIMEOUT_MS) < 0) {
                snprintf(err, CMS_ERR_LEN, "postgres: no answer in %d ms", PG_TIMEOUT_MS);
                return -ECONNRESET; /* a query still runs: the connection is unusable */
            }
            if (!PQconsumeInput(pg)) {
                snprintf(err, CMS_ERR_LEN, "postgres: %s", PQerrorMessage(pg));
                err[strcspn(err, "\n")] = '\0';
                return -ECONNRESET;
            }
        }
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

static int pg_exec(cms_conn_t *c, int stmt, const cms_val_t *params, int n, cms_rows_t *out,
                   char err[CMS_ERR_LEN])
{
    const char *values[32];
    char ints[32][24];
    if (stmt < 0 || stmt >= CMS_SQL__COUNT || pg_sql[stmt] == NULL || n > 32) {
        snprintf(err, CMS_ERR_LEN, "postgres: no statement %d", stmt);
        return -EINVAL;
    }
    for (int i = 0; i < n; i++) {
        if (params[i].type == CMS_V_INT) {
            snprintf(ints[i], sizeof ints[i], "%lld", (long long)params[i].i);
            values[i] = ints[i];
        } else {
            values[i] = params[i].type == CMS_V_TEXT ? params[i].s : NULL;
        }
    }
    if (!PQsendQueryParams(c->pg, pg_sql[stmt], n, NULL, values, NULL, NULL, 0)) {
        snprintf(err, CMS_ERR_LEN, "postgres: %s", PQerrorMessage(c->pg));
        err[strcspn(err, "\n")] = '\0';
        return -ECONNRESET;
    }
    int rc = flush_all(c->pg, err);
    return rc < 0 ? rc : collect(c->pg, out, err);
}

static int pg_exec_script(cms_conn_t *c, const char *sql, char err[CMS_ERR_LEN])
{
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
    .default_pool = 4,
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .exec_script = pg_exec_script,
};
