/* store_sqlite.c - the SQLite backend (the embedded default).
 *
 * SQLite calls block on disk I/O and locks, so every call runs on libcnode's
 * blocking pool (cn_blocking) while the calling process is parked; the scheduler
 * keeps running other processes. A connection is used by one process at a time
 * (store.c's pool guarantees it), so connections are opened SQLITE_OPEN_NOMUTEX
 * and may move between pool threads. Connection 0 writes; the others are readers
 * (query_only). WAL mode lets readers run beside the writer. Prepared statements
 * are cached per connection, by statement number.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "cnode/proc.h"
#include "store_sqlite_sql.h"
#include "util.h"

struct cms_conn {
    sqlite3 *db;
    sqlite3_stmt *stmts[CMS_SQL__COUNT]; /* prepared on first use */
};

/* One call to run on a pool thread; lives on the caller's (pinned) stack. */
typedef struct job {
    cms_conn_t *c;
    int stmt;
    const cms_val_t *params;
    int n;
    cms_rows_t *out;
    const char *script; /* exec_script */
    const char *path;   /* open */
    int index;          /* open */
    char *err;
    int rc;
} job_t;

/* Run fn on the pool, or inline when not called from a process. */
static void run_blocking(void (*fn)(void *), job_t *j)
{
    if (cn_blocking(fn, j) < 0)
        fn(j);
}

static int map_error(sqlite3 *db, int rc, char *err)
{
    snprintf(err, CMS_ERR_LEN, "sqlite: %s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (db) {
        int ext = sqlite3_extended_errcode(db);
        if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
            return -EEXIST;
    }
    return -EIO;
}

/* ---- open / close ------------------------------------------------------------------ */

static void do_open(void *arg)
{
    job_t *j = arg;
    sqlite3 *db = NULL;
    char *msg = NULL;
    int rc = sqlite3_open_v2(j->path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        j->rc = map_error(db, rc, j->err);
        sqlite3_close(db);
        return;
    }
    /* The writer sets WAL (persistent in the file); everyone waits on locks up to
     * 5 s rather than failing at once (another oneblog-cms process, e.g. the CLI
     * beside `serve`). */
    const char *pragmas = j->index == 0
                              ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;"
                              : "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;"
                                "PRAGMA query_only=1;";
    rc = sqlite3_exec(db, pragmas, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(j->err, CMS_ERR_LEN, "sqlite: %s: %s", j->path, msg ? msg : "pragma failed");
        sqlite3_free(msg);
        sqlite3_close(db);
        j->rc = -EIO;
        return;
    }
    j->c = xcalloc(1, sizeof(cms_conn_t));
    j->c->db = db;
    j->rc = 0;
}

static int sq_open(const char *target, int index, cms_conn_t **out, char err[CMS_ERR_LEN])
{
    char path[4096];
    /* The data directory may not exist yet: make it (one level, as mkdir -p would
     * for the usual ./data). */
    if (mkdir(target, 0755) < 0 && errno != EEXIST) {
        snprintf(err, CMS_ERR_LEN, "ONEBLOG_DATA_DIR: cannot create '%s': %s", target,
                 strerror(errno));
        return -EIO;
    }
    snprintf(path, sizeof path, "%s/oneblog.db", target);
    job_t j = { .path = path, .index = index, .err = err };
    run_blocking(do_open, &j);
    if (j.rc == 0)
        *out = j.c;
    return j.rc;
}

static void sq_close(cms_conn_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < CMS_SQL__COUNT; i++)
        sqlite3_finalize(c->stmts[i]);
    sqlite3_close(c->db);
    free(c);
}

/* ---- statements --------------------------------------------------------------------- */

static void do_exec(void *arg)
{
    job_t *j = arg;
    cms_conn_t *c = j->c;
    sqlite3_stmt *st = c->stmts[j->stmt];
    int rc, nrows = 0, cap = 0, ncols;
    char **cells = NULL;

    if (st == NULL) {
        rc = sqlite3_prepare_v3(c->db, sqlite_sql[j->stmt], -1, SQLITE_PREPARE_PERSISTENT,
                                &st, NULL);
        if (rc != SQLITE_OK) {
            j->rc = map_error(c->db, rc, j->err);
            return;
        }
        c->stmts[j->stmt] = st;
    }
    for (int i = 0; i < j->n; i++) {
        const cms_val_t *v = &j->params[i];
        if (v->type == CMS_V_INT)
            rc = sqlite3_bind_int64(st, i + 1, v->i);
        else if (v->type == CMS_V_TEXT)
            rc = sqlite3_bind_text(st, i + 1, v->s, -1, SQLITE_STATIC);
        else
            rc = sqlite3_bind_null(st, i + 1);
        if (rc != SQLITE_OK) {
            j->rc = map_error(c->db, rc, j->err);
            goto out;
        }
    }
    ncols = sqlite3_column_count(st);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (j->out == NULL)
            continue;
        if (nrows == cap) {
            cap = cap ? 2 * cap : 8;
            cells = xrealloc(cells, (size_t)cap * (size_t)ncols * sizeof(char *));
        }
        for (int k = 0; k < ncols; k++) {
            const unsigned char *t = sqlite3_column_text(st, k);
            cells[nrows * ncols + k] =
                sqlite3_column_type(st, k) == SQLITE_NULL || t == NULL
                    ? NULL
                    : xstrndup((const char *)t, (size_t)sqlite3_column_bytes(st, k));
        }
        nrows++;
    }
    if (rc != SQLITE_DONE) {
        j->rc = map_error(c->db, rc, j->err);
        for (int k = 0; k < nrows * ncols; k++)
            free(cells[k]);
        free(cells);
        goto out;
    }
    if (j->out) {
        j->out->nrows = nrows;
        j->out->ncols = ncols;
        j->out->cells = cells ? cells : xcalloc(1, sizeof(char *));
        j->out->changes = sqlite3_changes64(c->db);
    }
    j->rc = 0;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int sq_exec(cms_conn_t *c, int stmt, const cms_val_t *params, int n, cms_rows_t *out,
                   char err[CMS_ERR_LEN])
{
    job_t j = { .c = c, .stmt = stmt, .params = params, .n = n, .out = out, .err = err };
    if (stmt < 0 || stmt >= CMS_SQL__COUNT || sqlite_sql[stmt] == NULL) {
        snprintf(err, CMS_ERR_LEN, "sqlite: no statement %d", stmt);
        return -EINVAL;
    }
    run_blocking(do_exec, &j);
    return j.rc;
}

static void do_script(void *arg)
{
    job_t *j = arg;
    char *msg = NULL;
    if (sqlite3_exec(j->c->db, j->script, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(j->err, CMS_ERR_LEN, "sqlite: %s", msg ? msg : "script failed");
        sqlite3_free(msg);
        j->rc = -EIO;
        return;
    }
    j->rc = 0;
}

static int sq_exec_script(cms_conn_t *c, const char *sql, char err[CMS_ERR_LEN])
{
    job_t j = { .c = c, .script = sql, .err = err };
    run_blocking(do_script, &j);
    return j.rc;
}

const cms_backend_t cms_backend_sqlite = {
    .name = "sqlite",
    .sql = sqlite_sql,
    .migrations = sqlite_migrations,
    .nmigrations = (int)(sizeof(sqlite_migrations) / sizeof(sqlite_migrations[0])),
    .single_writer = true,
    .blocking = true,
    .default_pool = 5, /* one writer, four readers: one per blocking-pool thread */
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .exec_script = sq_exec_script,
};
