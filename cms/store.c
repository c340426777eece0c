/* store.c - the store's machinery and its small tables: backend choice, the
 * connection pool, transactions, migrations; tags, authors, users, API keys,
 * settings, the sitemap and the content version. Posts are in posts.c.
 *
 * The pool. Each operation checks a connection out for its whole duration (one
 * transaction, one snapshot). With SQLite, connection 0 is the only writer and
 * the others read (WAL lets them run beside the writer); with PostgreSQL any
 * connection does anything. A process that finds no free connection parks in
 * cn_receive() until a release wakes it. If a holder dies mid-operation (it was
 * killed), its exit handler frees the slot and marks it dirty: the next user
 * reopens the connection, which rolls back whatever was left open.
 */
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cnode/proc.h"
#include "cnode/telemetry.h"
#include "store_int.h"
#include "util.h"

#define ACQUIRE_TIMEOUT_MS 30000

/* ---------------------------------------------------------------------------------
 * Rows
 * ------------------------------------------------------------------------------ */

void cms_rows_alloc(cms_rows_t *r, int nrows, int ncols)
{
    r->nrows = nrows;
    r->ncols = ncols;
    r->cells = xcalloc((size_t)(nrows > 0 ? nrows : 1) * (size_t)(ncols > 0 ? ncols : 1),
                       sizeof(char *));
}

const char *cms_rows_str(const cms_rows_t *r, int row, int col)
{
    if (row < 0 || row >= r->nrows || col < 0 || col >= r->ncols)
        return NULL;
    return r->cells[row * r->ncols + col];
}

int64_t cms_rows_int(const cms_rows_t *r, int row, int col)
{
    const char *s = cms_rows_str(r, row, col);
    return s ? strtoll(s, NULL, 10) : 0;
}

char *cms_rows_dup(const cms_rows_t *r, int row, int col)
{
    return cms_strdup(cms_rows_str(r, row, col));
}

char *cms_rows_take(cms_rows_t *r, int row, int col)
{
    if (row < 0 || row >= r->nrows || col < 0 || col >= r->ncols)
        return NULL;
    char *c = r->cells[row * r->ncols + col];
    r->cells[row * r->ncols + col] = NULL;
    return c;
}

void cms_rows_free(cms_rows_t *r)
{
    if (r == NULL)
        return;
    if (r->cells)
        for (int i = 0; i < r->nrows * r->ncols; i++)
            free(r->cells[i]);
    free(r->cells);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------------------------
 * Opening and the pool
 * ------------------------------------------------------------------------------ */

static void store_names(cms_store_t *s);

int cms_store_open(const char *url, int pool, cms_store_t **out, char err[CMS_ERR_LEN])
{
    char scratch[CMS_ERR_LEN];
    const cms_backend_t *be = &cms_backend_sqlite;
    if (err == NULL)
        err = scratch;
    if (url && (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0))
        be = &cms_backend_pg;
    cms_store_t *s = xcalloc(1, sizeof(*s));
    s->be = be;
    store_names(s);
    s->target = cms_strdup(url && *url ? url : "./data");
    s->nslots = pool > 0 ? pool : be->default_pool;
    if (be->single_writer && s->nslots < 2)
        s->nslots = 2;
    s->slots = xcalloc((size_t)s->nslots, sizeof(store_slot_t));
    for (int i = 0; i < s->nslots; i++)
        s->slots[i].store = s;
    /* Open the first connection now, so a bad URL or directory fails at start;
     * the others open on first use. */
    int rc = be->open(s->target, 0, &s->slots[0].conn, err);
    if (rc < 0) {
        cms_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cms_store_close(cms_store_t *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nslots; i++)
        if (s->slots[i].conn)
            s->be->close(s->slots[i].conn);
    free(s->slots);
    free(s->waiters);
    free(s->target);
    free(s);
}

const cms_backend_t *cms_store_backend(const cms_store_t *s)
{
    return s->be;
}

int cms_store_latest_version(const cms_store_t *s)
{
    return s->be->nmigrations;
}

int cms_store_read_slots(const cms_store_t *s)
{
    return s->be->single_writer ? s->nslots - 1 : s->nslots;
}

static void wake_waiters(cms_store_t *s)
{
    /* Wake them all: each looks again and the losers queue up again. With a
     * handful of connections and processes this is simpler than handing a slot
     * over, and cannot lose a wakeup to a waiter that timed out. */
    for (int i = 0; i < s->nwaiters; i++) {
        ei_x_buff x;
        if (cn_x_new(&x) == 0 && ei_x_encode_atom(&x, "cms_store_free") == 0)
            cn_send(s->waiters[i], &x);
        else
            ei_x_free(&x);
    }
    s->nwaiters = 0;
}

/* Exit handler of a holder that dies with the slot checked out. */
static void on_holder_exit(void *arg)
{
    store_slot_t *slot = arg;
    slot->busy = false;
    slot->dirty = true;
    slot->on_exit = 0;
    wake_waiters(slot->store);
}

static bool match_free(const cn_msg_t *m, void *arg)
{
    (void)arg;
    cn_term_t t = cn_msg_term(m);
    int i = t.index;
    return cn_decode_atom_is(t.buf, &i, "cms_store_free");
}

static store_slot_t *find_free(cms_store_t *s, bool write)
{
    int lo = 0, hi = s->nslots;
    if (s->be->single_writer) {
        if (write)
            hi = 1;
        else
            lo = 1;
    }
    for (int i = lo; i < hi; i++)
        if (!s->slots[i].busy)
            return &s->slots[i];
    return NULL;
}

/* Pool gauges for /metrics (telemetry.h): connections busy and idle, waiters. */
static void pool_metrics(cms_store_t *s)
{
    if (!cn_telemetry_on())
        return;
    int busy = 0;
    for (int i = 0; i < s->nslots; i++)
        busy += s->slots[i].busy;
    cn_metric_t *g = cn_metric_gauge(NULL, "cms_db_pool_connections",
                                     "Database pool connections, by state", "state");
    cn_metric_set(g, (const char *[]){ "busy" }, busy);
    cn_metric_set(g, (const char *[]){ "idle" }, s->nslots - busy);
    cn_metric_set(cn_metric_gauge(NULL, "cms_db_pool_waiters",
                                  "Processes waiting for a database connection", NULL),
                  NULL, s->nwaiters);
}

static int acquire(cms_store_t *s, bool write, store_slot_t **out, char *err)
{
    uint64_t deadline = cn_now_ms() + ACQUIRE_TIMEOUT_MS;
    for (;;) {
        store_slot_t *slot = find_free(s, write);
        if (slot) {
            slot->busy = true;
            if (slot->dirty && slot->conn) {
                s->be->close(slot->conn);
                slot->conn = NULL;
            }
            slot->dirty = false;
            if (slot->conn == NULL) {
                int rc = s->be->open(s->target, (int)(slot - s->slots), &slot->conn, err);
                if (rc < 0) {
                    slot->conn = NULL;
                    slot->busy = false;
                    wake_waiters(s);
                    return rc;
                }
            }
            long h = cn_on_exit(on_holder_exit, slot);
            slot->on_exit = h > 0 ? h : 0;
            *out = slot;
            pool_metrics(s);
            return 0;
        }
        uint64_t now = cn_now_ms();
        if (now >= deadline) {
            snprintf(err, CMS_ERR_LEN, "no database connection free after %d ms",
                     ACQUIRE_TIMEOUT_MS);
            return -ETIMEDOUT;
        }
        if (s->nwaiters == s->capwaiters) {
            s->capwaiters = s->capwaiters ? 2 * s->capwaiters : 8;
            s->waiters = xrealloc(s->waiters, (size_t)s->capwaiters * sizeof(cn_pid_t));
        }
        s->waiters[s->nwaiters++] = cn_self();
        cn_msg_t *m = NULL;
        int rc = cn_receive(match_free, NULL, (int64_t)(deadline - now), &m);
        if (rc < 0) {
            /* Timed out: leave the queue (unless a release emptied it already). */
            for (int i = 0; i < s->nwaiters; i++)
                if (cn_pid_eq(s->waiters[i], cn_self())) {
                    s->waiters[i] = s->waiters[--s->nwaiters];
                    break;
                }
        }
        cn_msg_free(m);
    }
}

static void release(store_slot_t *slot)
{
    if (slot->on_exit)
        cn_on_exit_cancel(slot->on_exit);
    slot->on_exit = 0;
    slot->busy = false;
    wake_waiters(slot->store);
    pool_metrics(slot->store);
}

int store_fail(store_tx_t *tx, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tx->err, CMS_ERR_LEN, fmt, ap);
    va_end(ap);
    return rc;
}

/* The operation's name as a literal when it is one of these (our SQL's), so
 * that the span holds it as static (no copy; its encoding cached by the
 * exporter); NULL otherwise. */
static const char *op_literal(const char *op)
{
    static const char *const ops[] = { "SELECT", "INSERT", "UPDATE", "DELETE", "WITH" };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(op, ops[i]) == 0)
            return ops[i];
    return NULL;
}

/* s->sys and s->names: each statement's operation (its first word, upper
 * case) and span name "<OP> <system>". */
static void store_names(cms_store_t *s)
{
    s->sys = strcmp(s->be->name, "postgres") == 0 ? "postgresql" : s->be->name;
    for (int stmt = 0; stmt < CMS_SQL__COUNT; stmt++) {
        store_stmt_name_t *nm = &s->names[stmt];
        const char *sql = s->be->sql[stmt] ? s->be->sql[stmt] : "";
        size_t k = 0;
        while (*sql == ' ' || *sql == '\n' || *sql == '\t')
            sql++;
        while (k + 1 < sizeof nm->opbuf && sql[k] && sql[k] != ' ' && sql[k] != '\n') {
            nm->opbuf[k] = (char)(sql[k] >= 'a' && sql[k] <= 'z' ? sql[k] - 32 : sql[k]);
            k++;
        }
        nm->opbuf[k] = '\0';
        nm->sql = sql;
        const char *lit = op_literal(nm->opbuf);
        nm->op_static = lit != NULL;
        nm->op = lit ? lit : nm->opbuf;
        /* op is < 24 bytes and sys is ours: it fits (snprintf cuts otherwise). */
        snprintf(nm->span, sizeof nm->span, "%s %s", nm->opbuf, s->sys);
    }
}

/* A CLIENT span per statement, named by its operation (OpenTelemetry database
 * conventions: db.system.name, db.operation.name, db.query.text - our SQL has
 * placeholders, never values). NULL when tracing is off or trace is false. */
static cn_span_t *db_span(const cms_store_t *s, int stmt, bool trace, uint64_t start_ns)
{
    if (!trace || !cn_tracing_enabled())
        return NULL;
    const store_stmt_name_t *nm = &s->names[stmt];
    cn_span_t *span = cn_span_start_at(nm->span, CN_SPAN_CLIENT, start_ns);
    /* A new span: appended, no search. The system name and the SQL are static
     * (the backend's tables), so they are not copied into the span; an
     * operation of our own buffer is, since the store may close first. */
    cn_span_add_static_str(span, "db.system.name", s->sys);
    if (nm->op_static)
        cn_span_add_static_str(span, "db.operation.name", nm->op);
    else
        cn_span_add_str(span, "db.operation.name", nm->op);
    cn_span_add_static_str(span, "db.query.text", nm->sql);
    return span;
}

/* ---------------------------------------------------------------------------------
 * Read batches: every store call of one request in one blocking-pool job
 * ------------------------------------------------------------------------------ */

/* Statements timed per batch: 16 requests of up to 8 statements (more are run
 * but not observed). */
#define BATCH_TIMINGS 128

/* The batch running on this pool thread (NULL elsewhere). Its store calls reuse
 * one checked-out read connection and leave telemetry to the scheduler. */
typedef struct store_batch {
    cms_store_t *s;
    store_slot_t *slot;
    void (*fn)(void *arg);
    void *arg;
    bool tel;     /* telemetry on: record statement times for the histogram */
    bool sampled; /* traced: statement spans are made afterwards, with these times */
    cms_batch_part_t *parts; /* several requests (cms_store_read_batch_parts), or NULL */
    int nparts, cur;         /* the part running: cur (-1 before the first) */
    uint64_t start_ns;       /* the job's start on the pool, when sampled */
    int ntimings; /* recorded (at most BATCH_TIMINGS; more are not observed) */
    struct {
        int stmt;
        double secs;
        int rc, nrows;
        uint64_t start_ns, end_ns; /* cn_trace_now_ns(), when sampled */
    } timings[BATCH_TIMINGS];
} store_batch_t;

static _Thread_local store_batch_t *tl_batch;

static void batch_job(void *arg)
{
    store_batch_t *b = arg;
    if (b->sampled)
        b->start_ns = cn_trace_now_ns();
    tl_batch = b;
    b->fn(b->arg);
    tl_batch = NULL;
}

static void observe_statement(const cms_store_t *s, int stmt, double secs)
{
    cn_metric_observe(cn_metric_histogram(NULL, "db_client_operation_duration_seconds",
                                          "Database statement time, by system and operation",
                                          "system,operation", NULL, 0),
                      (const char *[]){ s->sys, s->names[stmt].op }, secs);
}

static bool part_sampled(const cms_batch_part_t *p)
{
    return p->parent.valid && (p->parent.flags & 1);
}

void cms_store_batch_part(cms_batch_part_t *parts, int k)
{
    store_batch_t *b = tl_batch;
    if (b && b->parts == parts) {
        /* On the pool: times and statement ranges, spans come after the batch. */
        uint64_t now = b->sampled ? cn_trace_now_ns() : 0;
        if (b->cur >= 0) {
            parts[b->cur].end_ns = now;
            parts[b->cur].last = b->ntimings;
        }
        parts[k].start_ns = now;
        parts[k].first = parts[k].last = b->ntimings;
        if (b->cur < 0) {
            /* What ran before the first part (the batch's content version read)
             * is the first request's: it waited for it. */
            parts[k].start_ns = b->start_ns;
            parts[k].first = 0;
        }
        b->cur = k;
        return;
    }
    /* In the caller (PostgreSQL, or no free connection): statement spans are made
     * as they run, under the current span: the part's own. */
    for (int i = 0; i < k; i++) {
        cn_span_end(parts[i].span);
        parts[i].span = NULL;
    }
    if (part_sampled(&parts[k]) && cn_tracing_enabled()) {
        parts[k].span = cn_span_start_ctx("cms read", CN_SPAN_INTERNAL, &parts[k].parent);
        cn_span_add_str(parts[k].span, "rpc.method", parts[k].name);
    }
}

/* After a batch of parts: each sampled part's `cms read` span and its
 * statements' spans; the statement metrics of all. */
static void part_spans(cms_store_t *s, store_batch_t *b)
{
    if (b->cur >= 0) {
        b->parts[b->cur].end_ns = b->sampled ? cn_trace_now_ns() : 0;
        b->parts[b->cur].last = b->ntimings;
    }
    for (int k = 0; b->sampled && k <= b->cur; k++) {
        cms_batch_part_t *p = &b->parts[k];
        if (!part_sampled(p))
            continue;
        cn_span_t *read = cn_span_start_ctx_at("cms read", CN_SPAN_INTERNAL, &p->parent,
                                               p->start_ns);
        cn_span_add_str(read, "rpc.method", p->name);
        for (int i = p->first; i < p->last; i++) {
            cn_span_t *span = db_span(s, b->timings[i].stmt, true, b->timings[i].start_ns);
            if (span) {
                if (b->timings[i].rc < 0 && b->timings[i].rc != -EEXIST)
                    cn_span_set_status(span, CN_STATUS_ERROR, NULL);
                else
                    cn_span_add_int(span, "db.response.returned_rows", b->timings[i].nrows);
                cn_span_end_at(span, b->timings[i].end_ns);
            }
        }
        cn_span_end_at(read, p->end_ns);
    }
    for (int i = 0; b->tel && i < b->ntimings; i++)
        observe_statement(s, b->timings[i].stmt, b->timings[i].secs);
}

int cms_store_read_batch_parts(cms_store_t *s, void (*fn)(void *arg), void *arg,
                               cms_batch_part_t *parts, int n)
{
    char scratch[CMS_ERR_LEN];
    bool sampled = false;
    for (int k = 0; k < n; k++) {
        parts[k].start_ns = parts[k].end_ns = 0;
        parts[k].first = parts[k].last = 0;
        parts[k].span = NULL;
        sampled |= part_sampled(&parts[k]);
    }
    sampled = sampled && cn_tracing_enabled();
    store_batch_t b = { .s = s, .fn = fn, .arg = arg, .tel = cn_telemetry_on(),
                        .sampled = sampled, .parts = parts, .nparts = n, .cur = -1 };
    if (!s->be->blocking || tl_batch != NULL || acquire(s, false, &b.slot, scratch) < 0) {
        fn(arg); /* statement by statement, spans as they go */
        for (int k = 0; k < n; k++) {
            cn_span_end(parts[k].span);
            parts[k].span = NULL;
        }
        return 0;
    }
    int rc = cn_blocking(batch_job, &b);
    release(b.slot);
    if (rc < 0) {
        fn(arg);
        for (int k = 0; k < n; k++) {
            cn_span_end(parts[k].span);
            parts[k].span = NULL;
        }
        return 0;
    }
    part_spans(s, &b);
    return 1;
}

int cms_store_read_batch(cms_store_t *s, void (*fn)(void *arg), void *arg)
{
    cn_span_ctx_t ctx;
    char scratch[CMS_ERR_LEN];
    /* A sampled request gets its statement spans after the batch, with the times
     * taken on the pool (running it statement by statement on the scheduler made
     * 100% sampling cost 3x the throughput, bench/trace.sh). */
    bool sampled = cn_tracing_enabled() && cn_trace_current(&ctx) == 0 && ctx.valid &&
                   (ctx.flags & 1);
    /* On the caller's stack, which cn_blocking() keeps in place (store users run
     * on their own stacks anyway, see store.h). */
    store_batch_t b = { .s = s, .fn = fn, .arg = arg, .tel = cn_telemetry_on(),
                        .sampled = sampled };
    if (!s->be->blocking || tl_batch != NULL ||
        acquire(s, false, &b.slot, scratch) < 0) {
        fn(arg); /* statement by statement; a failed acquire is fn's own error */
        return 0;
    }
    int rc = cn_blocking(batch_job, &b);
    release(b.slot);
    if (rc < 0) {
        fn(arg);
        return 0;
    }
    for (int i = 0; b.tel && i < b.ntimings; i++) {
        cn_span_t *span = db_span(s, b.timings[i].stmt, sampled, b.timings[i].start_ns);
        if (span) {
            if (b.timings[i].rc < 0 && b.timings[i].rc != -EEXIST)
                cn_span_set_status(span, CN_STATUS_ERROR, NULL);
            else
                cn_span_add_int(span, "db.response.returned_rows", b.timings[i].nrows);
            cn_span_end_at(span, b.timings[i].end_ns);
        }
        observe_statement(s, b.timings[i].stmt, b.timings[i].secs);
    }
    return 1;
}

int store_run(store_tx_t *tx, int stmt, const cms_val_t *p, int n, cms_rows_t *out)
{
    if (out)
        memset(out, 0, sizeof(*out));
    /* A statement number out of range is the backend's error to report; it
     * has no name for telemetry (s->names). */
    bool known = stmt >= 0 && stmt < CMS_SQL__COUNT;
    if (tl_batch) {
        /* On a pool thread inside cms_store_read_batch(): no libcnode here. */
        store_batch_t *b = tl_batch;
        struct timespec a, z;
        uint64_t start_ns = b->sampled ? cn_trace_now_ns() : 0;
        if (b->tel)
            clock_gettime(CLOCK_MONOTONIC, &a);
        int rc = tx->s->be->exec(tx->slot->conn, stmt, p, n, out, tx->err);
        if (b->tel && known && b->ntimings < BATCH_TIMINGS) {
            clock_gettime(CLOCK_MONOTONIC, &z);
            b->timings[b->ntimings].start_ns = start_ns;
            b->timings[b->ntimings].end_ns = b->sampled ? cn_trace_now_ns() : 0;
            b->timings[b->ntimings].rc = rc;
            b->timings[b->ntimings].nrows = out && rc == 0 ? (int)out->nrows : 0;
            b->timings[b->ntimings].stmt = stmt;
            b->timings[b->ntimings++].secs =
                (double)(z.tv_sec - a.tv_sec) + (double)(z.tv_nsec - a.tv_nsec) / 1e9;
        }
        if (rc == -ECONNRESET) {
            tx->slot->dirty = true;
            rc = -EIO;
        }
        if (rc < 0 && rc != -EEXIST)
            cms_log(CMS_LOG_WARN, "store", "statement %d: %s", stmt, tx->err);
        return rc;
    }
    bool tel = known && cn_telemetry_on();
    struct timespec t0 = { 0, 0 }, t1;
    if (tel)
        clock_gettime(CLOCK_MONOTONIC, &t0);
    cn_span_t *span = tel ? db_span(tx->s, stmt, true, 0) : NULL;
    int rc = tx->s->be->exec(tx->slot->conn, stmt, p, n, out, tx->err);
    if (tel) {
        if (rc < 0 && rc != -EEXIST)
            cn_span_set_status(span, CN_STATUS_ERROR, tx->err);
        if (out && rc == 0)
            cn_span_set_int(span, "db.response.returned_rows", out->nrows);
        cn_span_end(span);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        observe_statement(tx->s, stmt,
                          (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
    if (rc == -ECONNRESET) {
        tx->slot->dirty = true; /* reopen before the next use */
        rc = -EIO;
    }
    if (rc < 0 && rc != -EEXIST)
        cms_log(CMS_LOG_WARN, "store", "statement %d: %s", stmt, tx->err);
    return rc;
}

int store_begin(cms_store_t *s, bool write, store_tx_t *tx, char *err)
{
    memset(tx, 0, sizeof(*tx));
    tx->s = s;
    tx->err = err ? err : tx->scratch;
    tx->err[0] = '\0';
    if (tl_batch && tl_batch->s == s) {
        /* In a read batch: the batch's connection, one transaction after another. */
        if (write)
            return store_fail(tx, -EINVAL, "store: a write inside a read batch");
        tx->slot = tl_batch->slot;
        tx->batched = true;
        int rc = RUN0(tx, CMS_SQL_BEGIN_READ, NULL);
        if (rc < 0) {
            tx->slot->dirty = true;
            tx->slot = NULL;
        }
        return rc;
    }
    int rc = acquire(s, write, &tx->slot, tx->err);
    if (rc < 0)
        return rc;
    rc = RUN0(tx, write ? CMS_SQL_BEGIN_WRITE : CMS_SQL_BEGIN_READ, NULL);
    if (rc < 0) {
        tx->slot->dirty = true;
        release(tx->slot);
        tx->slot = NULL;
    }
    return rc;
}

int store_end(store_tx_t *tx, int rc)
{
    if (tx->slot == NULL)
        return rc;
    if (rc == 0) {
        rc = RUN0(tx, CMS_SQL_COMMIT, NULL);
        if (rc < 0)
            RUN0(tx, CMS_SQL_ROLLBACK, NULL);
    } else {
        char keep[CMS_ERR_LEN];
        snprintf(keep, sizeof keep, "%s", tx->err);
        if (RUN0(tx, CMS_SQL_ROLLBACK, NULL) < 0)
            tx->slot->dirty = true;
        snprintf(tx->err, CMS_ERR_LEN, "%s", keep);
    }
    if (!tx->batched) /* a batch's connection goes back when the batch ends */
        release(tx->slot);
    tx->slot = NULL;
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Migrations
 * ------------------------------------------------------------------------------ */

int cms_store_migrate(cms_store_t *s, int *from, int *to, char err[CMS_ERR_LEN])
{
    int first = -1, cur = 0, rc;
    for (;;) {
        store_tx_t tx;
        cms_rows_t r = { 0 };
        if ((rc = store_begin(s, true, &tx, err)) < 0)
            return rc;
        /* The lock (PostgreSQL: an advisory transaction lock) makes a second node
         * wait here and then find the work done. */
        if ((rc = RUN0(&tx, CMS_SQL_MIGRATIONS_LOCK, NULL)) < 0 ||
            (rc = RUN0(&tx, CMS_SQL_MIGRATIONS_TABLE, NULL)) < 0 ||
            (rc = RUN0(&tx, CMS_SQL_MIGRATIONS_MAX, &r)) < 0)
            goto next;
        cur = (int)cms_rows_int(&r, 0, 0);
        if (first < 0)
            first = cur;
        if (cur >= s->be->nmigrations) {
            rc = 1; /* done: commit and stop */
            goto next;
        }
        rc = s->be->exec_script(tx.slot->conn, s->be->migrations[cur], tx.err);
        if (rc < 0) {
            store_fail(&tx, rc, "migration %d: %.200s", cur + 1, err ? err : tx.scratch);
            goto next;
        }
        rc = RUN(&tx, CMS_SQL_MIGRATIONS_ADD, NULL, V_INT(cur + 1), V_INT(cms_time_now()));
        if (rc == 0)
            cms_log(CMS_LOG_INFO, "store", "%s: applied migration %d", s->be->name, cur + 1);
    next:
        cms_rows_free(&r);
        int done = rc == 1;
        rc = store_end(&tx, done ? 0 : rc);
        if (rc < 0)
            return rc;
        if (done)
            break;
    }
    if (from)
        *from = first;
    if (to)
        *to = cur;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Changes and versions
 * ------------------------------------------------------------------------------ */

void cms_change_clear(cms_change_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->npaths; i++)
        free(c->paths[i]);
    free(c->paths);
    memset(c, 0, sizeof(*c));
}

void store_change_path(cms_change_t *c, const char *path)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->npaths; i++)
        if (strcmp(c->paths[i], path) == 0)
            return;
    c->paths = xrealloc(c->paths, (size_t)(c->npaths + 1) * sizeof(char *));
    c->paths[c->npaths++] = cms_strdup(path);
}

int store_bump_version(store_tx_t *tx, cms_change_t *c)
{
    cms_rows_t r;
    int rc = RUN0(tx, CMS_SQL_VERSION_BUMP, &r);
    if (rc == 0 && c) {
        c->visible = true;
        c->version = cms_rows_int(&r, 0, 0);
    }
    cms_rows_free(&r);
    return rc;
}

int store_read_int(cms_store_t *s, int stmt, int64_t *out)
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, NULL);
    if (rc < 0)
        return rc;
    if ((rc = RUN0(&tx, stmt, &r)) == 0)
        *out = cms_rows_int(&r, 0, 0);
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_content_version(cms_store_t *s, int64_t *out)
{
    return store_read_int(s, CMS_SQL_VERSION_GET, out);
}

char *store_ids_json(const int64_t *ids, int n)
{
    buf_t b = BUF_INIT;
    buf_putc(&b, '[');
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s%lld", i ? "," : "", (long long)ids[i]);
    buf_putc(&b, ']');
    return buf_take(&b);
}

/* ---------------------------------------------------------------------------------
 * Tags and authors
 * ------------------------------------------------------------------------------ */

void store_tag_from_row(const cms_rows_t *r, int i, proto_tag_t *t)
{
    t->id = cms_rows_int(r, i, TC_ID);
    t->slug = cms_rows_dup(r, i, TC_SLUG);
    t->name = cms_rows_dup(r, i, TC_NAME);
    t->description = cms_rows_dup(r, i, TC_DESCRIPTION);
    t->feature_image = cms_rows_dup(r, i, TC_FEATURE_IMAGE);
    t->meta_title = cms_rows_dup(r, i, TC_META_TITLE);
    t->meta_description = cms_rows_dup(r, i, TC_META_DESCRIPTION);
    t->internal = cms_rows_int(r, i, TC_INTERNAL) != 0;
    t->post_count = cms_rows_int(r, i, TC_COUNT);
}

void store_author_from_row(const cms_rows_t *r, int i, proto_author_t *a)
{
    a->id = cms_rows_int(r, i, AC_ID);
    a->slug = cms_rows_dup(r, i, AC_SLUG);
    a->name = cms_rows_dup(r, i, AC_NAME);
    a->bio = cms_rows_dup(r, i, AC_BIO);
    a->profile_image = cms_rows_dup(r, i, AC_PROFILE_IMAGE);
    a->website = cms_rows_dup(r, i, AC_WEBSITE);
    a->location = cms_rows_dup(r, i, AC_LOCATION);
    a->post_count = cms_rows_int(r, i, AC_COUNT);
}

int cms_tag_get(cms_store_t *s, const char *slug, bool include_internal, proto_tag_t *out,
                char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_TAG_BY_SLUG, &r, V_TEXT(slug))) < 0)
        goto out;
    if (r.nrows == 0 || (!include_internal && cms_rows_int(&r, 0, TC_INTERNAL))) {
        rc = store_fail(&tx, -ENOENT, "no tag '%s'", slug);
        goto out;
    }
    store_tag_from_row(&r, 0, out);
out:
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_tag_list(cms_store_t *s, bool include_internal, proto_tag_t **out, int *n,
                 char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    *out = NULL;
    *n = 0;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_TAG_LIST, &r, V_INT(include_internal))) < 0)
        goto out;
    *out = xcalloc((size_t)r.nrows, sizeof(proto_tag_t));
    for (int i = 0; i < r.nrows; i++)
        store_tag_from_row(&r, i, &(*out)[i]);
    *n = r.nrows;
out:
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

void cms_tags_free(proto_tag_t *v, int n)
{
    for (int i = 0; v && i < n; i++)
        proto_tag_clear(&v[i]);
    free(v);
}

int cms_tag_save(cms_store_t *s, proto_tag_t *t, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int64_t now = cms_time_now();
    char scratch[CMS_ERR_LEN];
    int rc = cms_tag_validate(t, err ? err : scratch);
    if (rc < 0)
        return rc;
    if ((rc = store_begin(s, true, &tx, err)) < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_TAG_BY_SLUG, &r, V_TEXT(t->slug))) < 0)
        goto out;
    if (r.nrows > 0) {
        t->id = cms_rows_int(&r, 0, TC_ID);
        rc = RUN(&tx, CMS_SQL_TAG_UPDATE, NULL, V_INT(t->id), V_TEXT(t->name),
                 V_TEXT(t->description), V_TEXT(t->feature_image), V_TEXT(t->meta_title),
                 V_TEXT(t->meta_description), V_INT(t->internal), V_INT(now));
    } else {
        cms_rows_free(&r);
        rc = RUN(&tx, CMS_SQL_TAG_INSERT, &r, V_TEXT(t->slug), V_TEXT(t->name),
                 V_TEXT(t->description), V_TEXT(t->feature_image), V_TEXT(t->meta_title),
                 V_TEXT(t->meta_description), V_INT(t->internal), V_INT(now));
        if (rc == 0)
            t->id = cms_rows_int(&r, 0, 0);
    }
    if (rc == 0)
        rc = store_bump_version(&tx, NULL);
out:
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_author_get(cms_store_t *s, const char *slug, proto_author_t *out,
                   char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_AUTHOR_BY_SLUG, &r, V_TEXT(slug))) < 0)
        goto out;
    if (r.nrows == 0) {
        rc = store_fail(&tx, -ENOENT, "no author '%s'", slug);
        goto out;
    }
    store_author_from_row(&r, 0, out);
out:
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_author_list(cms_store_t *s, proto_author_t **out, int *n, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    *out = NULL;
    *n = 0;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN0(&tx, CMS_SQL_AUTHOR_LIST, &r)) < 0)
        goto out;
    *out = xcalloc((size_t)r.nrows, sizeof(proto_author_t));
    for (int i = 0; i < r.nrows; i++)
        store_author_from_row(&r, i, &(*out)[i]);
    *n = r.nrows;
out:
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

void cms_authors_free(proto_author_t *v, int n)
{
    for (int i = 0; v && i < n; i++)
        proto_author_clear(&v[i]);
    free(v);
}

/* ---------------------------------------------------------------------------------
 * Users and API keys
 * ------------------------------------------------------------------------------ */

void cms_user_clear(cms_user_t *u)
{
    if (u == NULL)
        return;
    proto_author_clear(&u->profile);
    free(u->email);
    free(u->password_hash);
    memset(u, 0, sizeof(*u));
}

int cms_user_add(cms_store_t *s, cms_user_t *u, int64_t now, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    char scratch[CMS_ERR_LEN];
    char *e = err ? err : scratch;
    if (u->profile.name == NULL || !*u->profile.name) {
        snprintf(e, CMS_ERR_LEN, "name: required");
        return -EINVAL;
    }
    if (u->profile.slug == NULL)
        u->profile.slug = cms_slugify(u->profile.name);
    int rc = cms_author_validate(&u->profile, e);
    if (rc < 0)
        return rc;
    if (u->email && (strlen(u->email) > CMS_NAME_MAX || !strchr(u->email, '@') ||
                     !proto_utf8_valid(u->email, strlen(u->email)))) {
        snprintf(e, CMS_ERR_LEN, "email: '%.60s' is not an email address",
                 proto_utf8_valid(u->email, strlen(u->email)) ? u->email : "?");
        return -EINVAL;
    }
    if ((rc = store_begin(s, true, &tx, err)) < 0)
        return rc;
    rc = RUN(&tx, CMS_SQL_USER_INSERT, &r, V_TEXT(u->profile.slug), V_TEXT(u->profile.name),
             V_TEXT(u->email), V_TEXT(u->password_hash), V_INT(u->role),
             V_TEXT(u->profile.bio), V_TEXT(u->profile.profile_image),
             V_TEXT(u->profile.website), V_TEXT(u->profile.location), V_INT(now));
    if (rc == -EEXIST)
        store_fail(&tx, rc, "a user with slug '%s' or this email exists already",
                   u->profile.slug);
    else if (rc == 0)
        u->id = u->profile.id = cms_rows_int(&r, 0, 0);
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_user_by_email(cms_store_t *s, const char *email, cms_user_t *out,
                      char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_USER_BY_EMAIL, &r, V_TEXT(email))) < 0)
        goto out;
    if (r.nrows == 0) {
        rc = store_fail(&tx, -ENOENT, "no user with that email");
        goto out;
    }
    /* author columns, then email, password_hash, role */
    store_author_from_row(&r, 0, &out->profile);
    out->id = out->profile.id;
    out->email = cms_rows_dup(&r, 0, AC_COUNT + 1);
    out->password_hash = cms_rows_dup(&r, 0, AC_COUNT + 2);
    out->role = (cms_role_t)cms_rows_int(&r, 0, AC_COUNT + 3);
out:
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_user_count(cms_store_t *s, int64_t *out)
{
    return store_read_int(s, CMS_SQL_USER_COUNT, out);
}

/* A user from row i of CMS_SQL_USER_BY_* / USER_LIST: author columns, then the
 * count placeholder, email, password_hash, role. */
static void user_from_row(const cms_rows_t *r, int i, cms_user_t *out)
{
    store_author_from_row(r, i, &out->profile);
    out->id = out->profile.id;
    out->email = cms_rows_dup(r, i, AC_COUNT + 1);
    out->password_hash = cms_rows_dup(r, i, AC_COUNT + 2);
    out->role = (cms_role_t)cms_rows_int(r, i, AC_COUNT + 3);
}

int cms_user_get(cms_store_t *s, int64_t id, cms_user_t *out, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_USER_BY_ID, &r, V_INT(id))) == 0) {
        if (r.nrows == 0)
            rc = store_fail(&tx, -ENOENT, "no user %lld", (long long)id);
        else
            user_from_row(&r, 0, out);
    }
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_user_list(cms_store_t *s, cms_user_t **out, int *n, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    *out = NULL;
    *n = 0;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN0(&tx, CMS_SQL_USER_LIST, &r)) == 0) {
        *out = xcalloc((size_t)(r.nrows ? r.nrows : 1), sizeof(cms_user_t));
        for (int i = 0; i < r.nrows; i++)
            user_from_row(&r, i, &(*out)[i]);
        *n = r.nrows;
    }
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

void cms_users_free(cms_user_t *v, int n)
{
    for (int i = 0; v && i < n; i++)
        cms_user_clear(&v[i]);
    free(v);
}

int cms_user_set_role(cms_store_t *s, int64_t id, cms_role_t role, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    if (role < CMS_ROLE_CONTRIBUTOR || role > CMS_ROLE_OWNER) {
        if (err)
            snprintf(err, CMS_ERR_LEN, "role: not a role");
        return -EINVAL;
    }
    int rc = store_begin(s, true, &tx, err);
    if (rc < 0)
        return rc;
    rc = RUN(&tx, CMS_SQL_USER_SET_ROLE, &r, V_INT(id), V_INT(role), V_INT(cms_time_now()));
    if (rc == 0 && r.changes == 0)
        rc = store_fail(&tx, -ENOENT, "no user %lld", (long long)id);
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_apikey_get(cms_store_t *s, int64_t id, char **kind, char **secret_hash,
                   int64_t *user_id, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_APIKEY_BY_ID, &r, V_INT(id))) == 0) {
        if (r.nrows == 0) {
            rc = store_fail(&tx, -ENOENT, "no API key %lld", (long long)id);
        } else {
            *kind = cms_rows_dup(&r, 0, 0);
            *secret_hash = cms_rows_dup(&r, 0, 1);
            *user_id = cms_rows_int(&r, 0, 2);
        }
    }
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_apikey_add(cms_store_t *s, const char *name, const char *kind,
                   const char *secret_hash, int64_t user_id, int64_t now, int64_t *id,
                   char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    if (kind == NULL || (strcmp(kind, "content") != 0 && strcmp(kind, "admin") != 0)) {
        if (err)
            snprintf(err, CMS_ERR_LEN, "kind: must be content or admin");
        return -EINVAL;
    }
    int rc = store_begin(s, true, &tx, err);
    if (rc < 0)
        return rc;
    rc = RUN(&tx, CMS_SQL_APIKEY_INSERT, &r, V_TEXT(name), V_TEXT(kind), V_TEXT(secret_hash),
             user_id ? V_INT(user_id) : V_NULL, V_INT(now));
    if (rc == 0 && id)
        *id = cms_rows_int(&r, 0, 0);
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

/* ---------------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------------ */

static const char *const setting_keys[] = { "title",  "description",  "url",
                                            "timezone", "locale",     "logo",
                                            "accent_color", "posts_per_page", "navigation" };

static int parse_navigation(const char *json, proto_settings_t *out, char *err)
{
    json_error_t je;
    json_t *root = json_loads(json, 0, &je);
    int rc = -EINVAL;
    if (root == NULL || !json_is_array(root)) {
        snprintf(err, CMS_ERR_LEN, "navigation: not a JSON array of {label, url}");
        goto out;
    }
    size_t n = json_array_size(root);
    proto_nav_t *v = n ? xcalloc(n, sizeof(*v)) : NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(root, i);
        const char *l = json_string_value(json_object_get(it, "label"));
        const char *u = json_string_value(json_object_get(it, "url"));
        if (l == NULL || u == NULL) {
            for (size_t k = 0; k < i; k++) {
                free(v[k].label);
                free(v[k].url);
            }
            free(v);
            snprintf(err, CMS_ERR_LEN, "navigation[%zu]: needs label and url strings", i);
            goto out;
        }
        v[i].label = cms_strdup(l);
        v[i].url = cms_strdup(u);
    }
    if (out) {
        out->navigation = v;
        out->nnavigation = (int)n;
    } else {
        for (size_t k = 0; k < n; k++) {
            free(v[k].label);
            free(v[k].url);
        }
        free(v);
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int cms_settings_get(cms_store_t *s, proto_settings_t *out, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN0(&tx, CMS_SQL_SETTINGS_ALL, &r)) < 0)
        goto out;
    out->posts_per_page = 10;
    for (int i = 0; i < r.nrows; i++) {
        const char *k = cms_rows_str(&r, i, 0), *v = cms_rows_str(&r, i, 1);
        char **dst = NULL;
        if (k == NULL || v == NULL)
            continue;
        if (strcmp(k, "title") == 0)
            dst = &out->title;
        else if (strcmp(k, "description") == 0)
            dst = &out->description;
        else if (strcmp(k, "url") == 0)
            dst = &out->url;
        else if (strcmp(k, "timezone") == 0)
            dst = &out->timezone;
        else if (strcmp(k, "locale") == 0)
            dst = &out->locale;
        else if (strcmp(k, "logo") == 0)
            dst = &out->logo;
        else if (strcmp(k, "accent_color") == 0)
            dst = &out->accent_color;
        else if (strcmp(k, "posts_per_page") == 0)
            out->posts_per_page = atoi(v) > 0 ? atoi(v) : 10;
        else if (strcmp(k, "navigation") == 0)
            parse_navigation(v, out, tx.err);
        if (dst) {
            free(*dst);
            *dst = cms_strdup(v);
        }
    }
    if (out->title == NULL)
        out->title = cms_strdup("OneBlog");
    if (out->timezone == NULL)
        out->timezone = cms_strdup("UTC");
out:
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_settings_set(cms_store_t *s, const char *key, const char *value,
                     cms_change_t *chg, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    char scratch[CMS_ERR_LEN];
    char *e = err ? err : scratch;
    size_t k;
    for (k = 0; k < sizeof setting_keys / sizeof setting_keys[0]; k++)
        if (key && strcmp(key, setting_keys[k]) == 0)
            break;
    if (k == sizeof setting_keys / sizeof setting_keys[0]) {
        snprintf(e, CMS_ERR_LEN, "settings: unknown key '%.40s'", key ? key : "");
        return -EINVAL;
    }
    if (value == NULL || !proto_utf8_valid(value, strlen(value)) ||
        strlen(value) > CMS_BIO_MAX) {
        snprintf(e, CMS_ERR_LEN, "%s: not valid UTF-8 or longer than %d bytes", key,
                 CMS_BIO_MAX);
        return -EINVAL;
    }
    if (strcmp(key, "posts_per_page") == 0 && (atoi(value) < 1 || atoi(value) > 100)) {
        snprintf(e, CMS_ERR_LEN, "posts_per_page: must be 1..100");
        return -EINVAL;
    }
    if (strcmp(key, "navigation") == 0 && parse_navigation(value, NULL, e) < 0)
        return -EINVAL;
    int rc = store_begin(s, true, &tx, err);
    if (rc < 0)
        return rc;
    rc = RUN(&tx, CMS_SQL_SETTING_PUT, NULL, V_TEXT(key), V_TEXT(value));
    if (rc == 0 && (rc = store_bump_version(&tx, chg)) == 0)
        store_change_path(chg, "/");
    return store_end(&tx, rc);
}

/* ---------------------------------------------------------------------------------
 * Sitemap
 * ------------------------------------------------------------------------------ */

int cms_sitemap(cms_store_t *s, proto_sitemap_entry_t **out, int *n, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r[3] = { { 0 } };
    static const char *const kinds[] = { "post", "page" };
    *out = NULL;
    *n = 0;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN0(&tx, CMS_SQL_SITEMAP_POSTS, &r[0])) < 0 ||
        (rc = RUN0(&tx, CMS_SQL_SITEMAP_TAGS, &r[1])) < 0 ||
        (rc = RUN0(&tx, CMS_SQL_SITEMAP_AUTHORS, &r[2])) < 0)
        goto out;
    int total = r[0].nrows + r[1].nrows + r[2].nrows, k = 0;
    proto_sitemap_entry_t *v = xcalloc((size_t)total, sizeof(*v));
    /* posts: slug, type, lastmod; tags/authors: slug, lastmod */
    for (int i = 0; i < r[0].nrows; i++, k++) {
        v[k].path = xasprintf("/%s/", cms_rows_str(&r[0], i, 0));
        v[k].kind = kinds[cms_rows_int(&r[0], i, 1) == PROTO_PAGE];
        v[k].lastmod = cms_rows_int(&r[0], i, 2);
    }
    for (int i = 0; i < r[1].nrows; i++, k++) {
        v[k].path = xasprintf("/tag/%s/", cms_rows_str(&r[1], i, 0));
        v[k].kind = "tag";
        v[k].lastmod = cms_rows_int(&r[1], i, 1);
    }
    for (int i = 0; i < r[2].nrows; i++, k++) {
        v[k].path = xasprintf("/author/%s/", cms_rows_str(&r[2], i, 0));
        v[k].kind = "author";
        v[k].lastmod = cms_rows_int(&r[2], i, 1);
    }
    *out = v;
    *n = total;
out:
    for (int i = 0; i < 3; i++)
        cms_rows_free(&r[i]);
    return store_end(&tx, rc);
}

void cms_sitemap_free(proto_sitemap_entry_t *v, int n)
{
    for (int i = 0; v && i < n; i++)
        free(v[i].path);
    free(v);
}
