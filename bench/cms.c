/* cms.c - the C halves of `make bench-cms` (bench/cms.sh runs them interleaved with
 * bench/beam/cms_bench.erl and prints the ratios).
 *
 *   bench-cms gen TARGET N          N published posts (3 tags of 20, 1 author of 4,
 *                                   ~2 KiB of Markdown each) through the store API;
 *                                   TARGET is a data directory or a postgres:// URL
 *   bench-cms direct-sqlite DIR     the CMS's read queries straight on SQLite
 *   bench-cms direct-pg URL         the same straight over libpq
 *   bench-cms cnode-client NODE     {get_post, Slug} and {list_posts, #{page => P}}
 *                                   as gen_server calls to {cms, NODE} over the
 *                                   distribution
 *
 * "The same queries" are the statements the CMS runs for one request, taken from
 * its own SQL files (cms/store_*_sql.h), in one read transaction as the CMS does:
 *   get_post    POST_BY_SLUG, POST_TAGS, POST_AUTHORS
 *   list_posts  SETTINGS_ALL (posts per page), POST_COUNT, POST_LIST, POST_TAGS,
 *               POST_AUTHORS
 * Direct clients prepare every statement once per connection, read every column
 * of every row (without copying), and run 64 threads with a connection each.
 *
 * Every client prints, on stdout only:
 *   get_p50_us, list_p50_us            one caller, sequential calls
 *   get_calls_per_s_64, list_calls_per_s_64   64 concurrent callers
 * Slugs are bench-post-0000 .. bench-post-NNNN, drawn at random per call; list
 * pages cycle through 1..10.
 *
 * Environment: BENCH_CMS_SAMPLES (sequential calls per request kind, 2000; a tenth
 * as many again to warm up), BENCH_CMS_CALLS (calls per concurrent caller, 100),
 * BENCH_CMS_POSTS (posts to draw slugs from, 1000).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "cms/cms.h"
#include "cms/util.h"
#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"

/* The CMS's own SQL: both files define the same helper macros. */
#include "cms/store_sqlite_sql.h"
#undef POST_COLS
#undef TAG_COLS
#undef AUTHOR_COLS
#undef TAG_COUNT
#undef AUTHOR_COUNT
#undef LIST_WHERE
#undef STAFF_WHERE
#undef SEARCH_WHERE
#include "cms/store_pg_sql.h"

#define CALLERS 64
#define LIST_PAGES 10

static long samples_n = 2000;
static long calls_each = 100;
static int nposts = 1000;

enum { OP_GET = 0, OP_LIST = 1 };
static const char *const op_names[] = { "get", "list" };

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static _Noreturn void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-cms: %s: %s\n", what, why);
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_p50(const char *op, uint64_t *lat, long n)
{
    qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
    printf("%s_p50_us: %.1f\n", op, (double)lat[(n * 50 + 99) / 100 - 1] / 1000.0);
}

/* xorshift64: a cheap per-caller random slug. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void slug_of(int i, char out[32])
{
    snprintf(out, 32, "bench-post-%04d", i);
}

/* ---------------------------------------------------------------------------------
 * gen: content through the store API
 * ------------------------------------------------------------------------------ */

static const char *gen_target;
static int gen_status;

static void gen_proc(void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    cms_store_t *s = NULL;
    int rc;
    if ((rc = cms_store_open(gen_target, 0, &s, err)) < 0 ||
        (rc = cms_store_migrate(s, NULL, NULL, err)) < 0)
        goto out;
    for (int a = 0; a < 4; a++) {
        cms_user_t u = { 0 };
        u.profile.name = xasprintf("Bench Author %d", a);
        u.profile.slug = xasprintf("bench-author-%d", a);
        u.profile.bio = xstrdup("Writes benchmark posts.");
        u.role = CMS_ROLE_AUTHOR;
        rc = cms_user_add(s, &u, 1700000000, err);
        cms_user_clear(&u);
        if (rc < 0)
            goto out;
    }
    /* ~2 KiB of Markdown: a few paragraphs, a list and some code. */
    buf_t md = BUF_INIT;
    for (int k = 0; k < 6; k++)
        buf_printf(&md, "Paragraph %d of a benchmark post: the quick brown fox jumps over "
                        "the lazy dog, *again* and **again**, with a [link](/about/) and "
                        "`inline code` for good measure.\n\n", k);
    buf_puts(&md, "- one\n- two\n- three\n\n```c\nint main(void) { return 0; }\n```\n");
    for (int i = 0; i < nposts; i++) {
        proto_post_t p = { 0 };
        char slug[32];
        slug_of(i, slug);
        p.type = PROTO_POST;
        p.status = PROTO_PUBLISHED;
        p.title = xasprintf("Benchmark post number %d", i);
        p.slug = xstrdup(slug);
        p.markdown = xstrndup(md.data, md.len);
        p.custom_excerpt = i % 3 == 0 ? xstrdup("A hand-written excerpt.") : NULL;
        p.featured = i % 10 == 0;
        p.published_at = 1600000000 + (int64_t)i * 3600;
        p.ntags = 3;
        p.tags = xcalloc(3, sizeof(proto_tag_t));
        for (int t = 0; t < 3; t++) {
            p.tags[t].slug = xasprintf("tag-%d", (i + t * 7) % 20);
            p.tags[t].name = xasprintf("Tag %d", (i + t * 7) % 20);
        }
        p.nauthors = 1;
        p.authors = xcalloc(1, sizeof(proto_author_t));
        p.authors[0].slug = xasprintf("bench-author-%d", i % 4);
        cms_save_opts_t o = { .role = CMS_ROLE_EDITOR, .now = 1700000000 };
        rc = cms_post_save(s, &p, &o, NULL, err);
        proto_post_clear(&p);
        if (rc < 0) {
            buf_free(&md);
            goto out;
        }
    }
    buf_free(&md);
    printf("posts: %d\n", nposts);
out:
    if (rc < 0) {
        fprintf(stderr, "bench-cms: gen: %s\n", err);
        gen_status = 1;
    }
    cms_store_close(s);
    cn_node_stop(cn_node_self());
}

static int gen(const char *target)
{
    cn_node_t *node;
    cn_node_opts_t o = { .name = "benchgen@127.0.0.1" };
    gen_target = target;
    if (cn_node_new(&o, &node) < 0)
        die("gen", "node");
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK }; /* the store's rule */
    cn_spawn(node, gen_proc, NULL, &own, NULL);
    cn_node_run(node);
    cn_node_free(node);
    return gen_status;
}

/* ---------------------------------------------------------------------------------
 * Direct clients: one connection per thread, the CMS's statements
 * ------------------------------------------------------------------------------ */

typedef struct direct direct_t;
typedef struct direct_ops {
    void *(*open)(const char *target);
    /* Run one request; returns bytes read (so the work cannot be optimised away). */
    size_t (*run)(void *conn, int op, int arg);
    void (*close)(void *conn);
} direct_ops_t;

typedef struct dthread {
    const direct_ops_t *ops;
    void *conn;
    int op;
    uint64_t seed;
    size_t bytes;
    pthread_barrier_t *go;
} dthread_t;

static int pick_arg(int op, uint64_t *seed, long i)
{
    return op == OP_GET ? (int)(rnd(seed) % (uint64_t)nposts) : (int)(i % LIST_PAGES) + 1;
}

static void *dthread_main(void *arg)
{
    dthread_t *t = arg;
    pthread_barrier_wait(t->go);
    for (long i = 0; i < calls_each; i++)
        t->bytes += t->ops->run(t->conn, t->op, pick_arg(t->op, &t->seed, i));
    return NULL;
}

static int direct(const direct_ops_t *ops, const char *target)
{
    dthread_t th[CALLERS];
    pthread_t tid[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        th[i] = (dthread_t){ .ops = ops, .seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) };
        th[i].conn = ops->open(target);
    }
    size_t bytes = 0;
    for (int op = OP_GET; op <= OP_LIST; op++) {
        uint64_t seed = 42, *lat = malloc((size_t)samples_n * sizeof(*lat));
        for (long i = 0; i < samples_n / 10; i++)
            bytes += ops->run(th[0].conn, op, pick_arg(op, &seed, i));
        for (long i = 0; i < samples_n; i++) {
            uint64_t t0 = now_ns();
            bytes += ops->run(th[0].conn, op, pick_arg(op, &seed, i));
            lat[i] = now_ns() - t0;
        }
        print_p50(op_names[op], lat, samples_n);
        free(lat);
    }
    for (int op = OP_GET; op <= OP_LIST; op++) {
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, CALLERS + 1);
        for (int i = 0; i < CALLERS; i++) {
            th[i].op = op;
            th[i].go = &go;
            pthread_create(&tid[i], NULL, dthread_main, &th[i]);
        }
        pthread_barrier_wait(&go);
        uint64_t t0 = now_ns();
        for (int i = 0; i < CALLERS; i++)
            pthread_join(tid[i], NULL);
        uint64_t t = now_ns() - t0;
        pthread_barrier_destroy(&go);
        printf("%s_calls_per_s_64: %.0f\n", op_names[op],
               (double)CALLERS * (double)calls_each / ((double)t / 1e9));
    }
    for (int i = 0; i < CALLERS; i++) {
        bytes += th[i].bytes;
        ops->close(th[i].conn);
    }
    fprintf(stderr, "bench-cms: direct: %zu bytes read\n", bytes);
    return 0;
}

/* ---- SQLite --------------------------------------------------------------------- */

typedef struct sq {
    sqlite3 *db;
    sqlite3_stmt *st[CMS_SQL__COUNT];
} sq_t;

static sqlite3_stmt *sq_stmt(sq_t *c, int n)
{
    if (c->st[n] == NULL &&
        sqlite3_prepare_v3(c->db, sqlite_sql[n], -1, SQLITE_PREPARE_PERSISTENT, &c->st[n],
                           NULL) != SQLITE_OK)
        die("sqlite prepare", sqlite3_errmsg(c->db));
    return c->st[n];
}

static void *sq_open(const char *dir)
{
    char path[4096];
    sq_t *c = calloc(1, sizeof(*c));
    snprintf(path, sizeof path, "%s/oneblog.db", dir);
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        die("sqlite open", sqlite3_errmsg(c->db));
    sqlite3_busy_timeout(c->db, 5000);
    return c;
}

static void sq_close(void *conn)
{
    sq_t *c = conn;
    for (int i = 0; i < CMS_SQL__COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

/* Step through every row, touching every column; ids of column 0 go to ids. */
static size_t sq_rows(sq_t *c, sqlite3_stmt *st, int64_t *ids, int *nids)
{
    size_t bytes = 0;
    int rc, nc = sqlite3_column_count(st);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int k = 0; k < nc; k++) {
            if (sqlite3_column_text(st, k))
                bytes += (size_t)sqlite3_column_bytes(st, k);
        }
        if (ids)
            ids[(*nids)++] = sqlite3_column_int64(st, 0);
    }
    if (rc != SQLITE_DONE)
        die("sqlite step", sqlite3_errmsg(c->db));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return bytes;
}

static void sq_exec(sq_t *c, const char *sql)
{
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die("sqlite", sqlite3_errmsg(c->db));
}

static void ids_json(const int64_t *ids, int n, char *out, size_t cap)
{
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? "," : "", (long long)ids[i]);
    snprintf(out + k, cap - k, "]");
}

static size_t sq_run(void *conn, int op, int arg)
{
    sq_t *c = conn;
    int64_t ids[100];
    int nids = 0;
    size_t bytes = 0;
    char json[2048], slug[32];
    sqlite3_stmt *st;
    sq_exec(c, "BEGIN");
    if (op == OP_GET) {
        slug_of(arg, slug);
        st = sq_stmt(c, CMS_SQL_POST_BY_SLUG);
        sqlite3_bind_int(st, 1, PROTO_POST);
        sqlite3_bind_text(st, 2, slug, -1, SQLITE_STATIC);
        bytes += sq_rows(c, st, ids, &nids);
    } else {
        int per = 10;
        st = sq_stmt(c, CMS_SQL_SETTINGS_ALL);
        while (sqlite3_step(st) == SQLITE_ROW)
            if (strcmp((const char *)sqlite3_column_text(st, 0), "posts_per_page") == 0)
                per = atoi((const char *)sqlite3_column_text(st, 1));
        sqlite3_reset(st);
        for (int s = 0; s < 2; s++) {
            st = sq_stmt(c, s == 0 ? CMS_SQL_POST_COUNT : CMS_SQL_POST_LIST);
            sqlite3_bind_int(st, 1, PROTO_POST);
            sqlite3_bind_int(st, 2, PROTO_PUBLISHED);
            for (int k = 3; k <= 5; k++)
                sqlite3_bind_null(st, k);
            if (s == 1) {
                sqlite3_bind_int(st, 6, per);
                sqlite3_bind_int(st, 7, (arg - 1) * per);
            }
            bytes += sq_rows(c, st, s == 1 ? ids : NULL, &nids);
        }
    }
    ids_json(ids, nids, json, sizeof json);
    for (int s = 0; s < 2; s++) {
        st = sq_stmt(c, s == 0 ? CMS_SQL_POST_TAGS : CMS_SQL_POST_AUTHORS);
        sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
        bytes += sq_rows(c, st, NULL, NULL);
    }
    sq_exec(c, "COMMIT");
    return bytes;
}

static const direct_ops_t sqlite_ops = { sq_open, sq_run, sq_close };

/* ---- PostgreSQL ----------------------------------------------------------------- */

static const int pg_used[] = { CMS_SQL_POST_BY_SLUG, CMS_SQL_SETTINGS_ALL, CMS_SQL_POST_COUNT,
                               CMS_SQL_POST_LIST, CMS_SQL_POST_TAGS, CMS_SQL_POST_AUTHORS };

static void *pgc_open(const char *url)
{
    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK)
        die("postgres connect", PQerrorMessage(pg));
    for (size_t i = 0; i < sizeof pg_used / sizeof pg_used[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", pg_used[i]);
        PGresult *r = PQprepare(pg, name, pg_sql[pg_used[i]], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            die("postgres prepare", PQerrorMessage(pg));
        PQclear(r);
    }
    return pg;
}

static void pgc_close(void *conn)
{
    PQfinish(conn);
}

static size_t pg_rows(PGconn *pg, int stmt, int n, const char *const *v, int64_t *ids,
                      int *nids)
{
    char name[16];
    size_t bytes = 0;
    snprintf(name, sizeof name, "s%d", stmt);
    PGresult *r = PQexecPrepared(pg, name, n, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die("postgres", PQerrorMessage(pg));
    int nr = PQntuples(r), nc = PQnfields(r);
    for (int i = 0; i < nr; i++) {
        for (int k = 0; k < nc; k++)
            bytes += (size_t)PQgetlength(r, i, k);
        if (ids)
            ids[(*nids)++] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    }
    PQclear(r);
    return bytes;
}

static void pg_simple(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("postgres", PQerrorMessage(pg));
    PQclear(r);
}

static size_t pgc_run(void *conn, int op, int arg)
{
    PGconn *pg = conn;
    int64_t ids[100];
    int nids = 0;
    size_t bytes = 0;
    char json[2048], slug[32], a1[16], a2[16], per_s[16] = "10", off[16];
    pg_simple(pg, pg_sql[CMS_SQL_BEGIN_READ]);
    if (op == OP_GET) {
        slug_of(arg, slug);
        snprintf(a1, sizeof a1, "%d", PROTO_POST);
        const char *v[] = { a1, slug };
        bytes += pg_rows(pg, CMS_SQL_POST_BY_SLUG, 2, v, ids, &nids);
    } else {
        char name[16];
        snprintf(name, sizeof name, "s%d", CMS_SQL_SETTINGS_ALL);
        PGresult *r = PQexecPrepared(pg, name, 0, NULL, NULL, NULL, 0);
        for (int i = 0; i < PQntuples(r); i++)
            if (strcmp(PQgetvalue(r, i, 0), "posts_per_page") == 0)
                snprintf(per_s, sizeof per_s, "%s", PQgetvalue(r, i, 1));
        PQclear(r);
        snprintf(a1, sizeof a1, "%d", PROTO_POST);
        snprintf(a2, sizeof a2, "%d", PROTO_PUBLISHED);
        snprintf(off, sizeof off, "%d", (arg - 1) * atoi(per_s));
        const char *v[] = { a1, a2, NULL, NULL, NULL, per_s, off };
        bytes += pg_rows(pg, CMS_SQL_POST_COUNT, 5, v, NULL, NULL);
        bytes += pg_rows(pg, CMS_SQL_POST_LIST, 7, v, ids, &nids);
    }
    ids_json(ids, nids, json, sizeof json);
    const char *v[] = { json };
    bytes += pg_rows(pg, CMS_SQL_POST_TAGS, 1, v, NULL, NULL);
    bytes += pg_rows(pg, CMS_SQL_POST_AUTHORS, 1, v, NULL, NULL);
    pg_simple(pg, "COMMIT");
    return bytes;
}

static const direct_ops_t pg_ops = { pgc_open, pgc_run, pgc_close };

/* ---------------------------------------------------------------------------------
 * Through the CMS: a libcnode node calling {cms, NODE}
 * ------------------------------------------------------------------------------ */

static const char *cms_node;
static cn_pid_t client_main;

static void one_call(int op, int arg)
{
    proto_req_t q;
    memset(&q, 0, sizeof q);
    if (op == OP_GET) {
        q.kind = PROTO_REQ_GET_POST;
        slug_of(arg, q.slug);
    } else {
        q.kind = PROTO_REQ_LIST_POSTS;
        proto_list_opts_init(&q.opts);
        q.opts.page = arg;
    }
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    char reason[64];
    cn_x_new(&x);
    proto_req_encode(&x, &q);
    int rc = cn_gen_call(cn_dest_remote("cms", cms_node), &x, 30000, &m, &r);
    if (rc < 0)
        die("call", cn_strerror(rc));
    int i = r.index;
    if (proto_decode_reply(r.buf, &i, reason, sizeof reason) != PROTO_OK)
        die("call", "the reply is not {ok, _}");
    cn_msg_free(m);
}

static void send_atom(cn_pid_t to, const char *atom)
{
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, atom);
    cn_send(to, &x);
}

typedef struct caller_arg {
    int op;
    uint64_t seed;
} caller_arg_t;

static void caller(void *arg)
{
    caller_arg_t *a = arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m); /* go */
    cn_msg_free(m);
    for (long i = 0; i < calls_each; i++)
        one_call(a->op, pick_arg(a->op, &a->seed, i));
    send_atom(client_main, "done");
}

static void client_proc(void *arg)
{
    (void)arg;
    cn_node_t *node = cn_node_self();
    client_main = cn_self();
    int rc = cn_dist_connect(cms_node, 10000);
    if (rc < 0)
        die("connect", cn_strerror(rc));
    for (int op = OP_GET; op <= OP_LIST; op++) {
        uint64_t seed = 42, *lat = malloc((size_t)samples_n * sizeof(*lat));
        for (long i = 0; i < samples_n / 10; i++)
            one_call(op, pick_arg(op, &seed, i));
        for (long i = 0; i < samples_n; i++) {
            uint64_t t0 = now_ns();
            one_call(op, pick_arg(op, &seed, i));
            lat[i] = now_ns() - t0;
        }
        print_p50(op_names[op], lat, samples_n);
        free(lat);
    }
    static caller_arg_t args[CALLERS]; /* not on a stack: callers outlive no one */
    for (int op = OP_GET; op <= OP_LIST; op++) {
        cn_pid_t callers[CALLERS];
        for (int i = 0; i < CALLERS; i++) {
            args[i] = (caller_arg_t){ op, 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) };
            if ((rc = cn_spawn(node, caller, &args[i], NULL, &callers[i])) < 0)
                die("spawn", cn_strerror(rc));
        }
        uint64_t t0 = now_ns();
        for (int i = 0; i < CALLERS; i++)
            send_atom(callers[i], "go");
        for (int i = 0; i < CALLERS; i++) {
            cn_msg_t *m;
            cn_receive(NULL, NULL, CN_INFINITY, &m);
            cn_msg_free(m);
        }
        uint64_t t = now_ns() - t0;
        printf("%s_calls_per_s_64: %.0f\n", op_names[op],
               (double)CALLERS * (double)calls_each / ((double)t / 1e9));
    }
    fflush(stdout);
    cn_node_stop(node);
}

static int cnode_client(int argc, char **argv)
{
    cn_dist_opts_t d;
    cn_dist_opts_from_env(&d, argc, argv);
    cn_node_opts_t o = { .name = d.node_name ? d.node_name : "cmsbench@127.0.0.1" };
    cn_node_t *node;
    int rc;
    if ((rc = cn_node_new(&o, &node)) < 0)
        die("node", cn_strerror(rc));
    if ((rc = cn_dist_start(node, &d)) < 0)
        die("dist", cn_strerror(rc));
    cms_node = argv[2];
    cn_spawn(node, client_proc, NULL, NULL, NULL);
    rc = cn_node_run(node);
    cn_node_free(node);
    return rc < 0;
}

int main(int argc, char **argv)
{
    const char *v;
    (void)sqlite_migrations;
    (void)pg_migrations;
    if ((v = getenv("BENCH_CMS_SAMPLES")) && atol(v) >= 10)
        samples_n = atol(v);
    if ((v = getenv("BENCH_CMS_CALLS")) && atol(v) > 0)
        calls_each = atol(v);
    if ((v = getenv("BENCH_CMS_POSTS")) && atoi(v) > 0)
        nposts = atoi(v);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "gen") == 0) {
        nposts = atoi(argv[3]);
        return gen(argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "direct-sqlite") == 0)
        return direct(&sqlite_ops, argv[2]);
    if (argc == 3 && strcmp(argv[1], "direct-pg") == 0)
        return direct(&pg_ops, argv[2]);
    if (argc >= 3 && strcmp(argv[1], "cnode-client") == 0)
        return cnode_client(argc, argv);
    fprintf(stderr, "usage: bench-cms gen TARGET N | direct-sqlite DIR | direct-pg URL | "
                    "cnode-client NODE\n");
    return 2;
}
