/* events_contract.c - the store contract, run against any backend:
 *
 *   test-events_contract BASE_URL
 *
 * BASE_URL is file:DIR, postgres://... or mongodb://...; each test works on a fresh
 * log (file: a subdirectory; others: a table or collection named after the test
 * and the pid). Prints one line per test and "N passed, N failed". The same
 * assertions hold for every backend, except where the contract itself says
 * "file: one writer" (a second writer handle on a file log gets -EBUSY).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "events/store.h"

static const char *base_url;
static char cur_url[1024];
static int passed, failed;
static char failure[512];

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            snprintf(failure, sizeof failure, "line %d: %s", __LINE__, #cond);          \
            return -1;                                                                  \
        }                                                                               \
    } while (0)

#define CHECK_RC(expr, want)                                                            \
    do {                                                                                \
        int rc_ = (expr);                                                               \
        if (rc_ != (want)) {                                                            \
            snprintf(failure, sizeof failure, "line %d: %s = %d (%s), want %d",       \
                     __LINE__, #expr, rc_, strerror(-rc_), (want));                     \
            return -1;                                                                  \
        }                                                                               \
    } while (0)

static bool is_file(void)
{
    return strncmp(base_url, "file:", 5) == 0;
}

/* A fresh log for test `name`. */
static void make_url(const char *name)
{
    const char *q = strchr(base_url, '?');
    if (is_file()) {
        size_t n = q ? (size_t)(q - base_url) : strlen(base_url);
        snprintf(cur_url, sizeof cur_url, "%.*s/%s%s", (int)n, base_url, name, q ? q : "");
    } else {
        snprintf(cur_url, sizeof cur_url, "%s%ctable=c_%s_%d&collection=c_%s_%d", base_url,
                 q ? '&' : '?', name, (int)getpid(), name, (int)getpid());
    }
}

static ev_store_t *open_mode(int mode)
{
    ev_store_t *s = NULL;
    char err[EV_ERR_LEN];
    if (ev_store_open(cur_url, mode, &s, err, sizeof err) < 0) {
        fprintf(stderr, "open %s: %s\n", cur_url, err);
        return NULL;
    }
    return s;
}

/* An event: type, actor, ts; data.n = n. Caller frees. */
static ev_slice_t mk(const char *type, const char *actor, int64_t ts, int n)
{
    ev_event_t *ev;
    bson_t b;
    ev_event_new(type, &ev);
    if (actor)
        ev_event_set_actor(ev, actor);
    if (ts)
        ev_event_set_ts_ms(ev, ts);
    if (n == 7)
        ev_event_set_trace(ev, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb");
    BSON_APPEND_INT32(ev_event_data(ev), "n", n);
    ev_event_encode(ev, &b);
    uint8_t *p = xmalloc(b.len);
    memcpy(p, bson_get_data(&b), b.len);
    ev_slice_t sl = { p, b.len };
    bson_destroy(&b);
    ev_event_free(ev);
    return sl;
}

/* Append events n0..n0+k-1 (types alternate, actor a<n%5>, ts 1e12 + n*1000) in
 * one call. */
static int append_range(ev_store_t *s, int n0, int k, uint64_t *first)
{
    ev_slice_t *sl = xmalloc((size_t)k * sizeof *sl);
    char actor[16];
    for (int i = 0; i < k; i++) {
        int n = n0 + i;
        snprintf(actor, sizeof actor, "a%d", n % 5);
        sl[i] = mk(n % 2 ? "page.view" : "recs.click", actor, 1000000000000 + n * 1000, n);
    }
    int rc = ev_store_append(s, sl, (size_t)k, first);
    for (int i = 0; i < k; i++)
        free((void *)sl[i].data);
    free(sl);
    return rc;
}

static int data_n(const ev_slice_t *sl)
{
    bson_t b;
    bson_iter_t it;
    if (!bson_init_static(&b, sl->data, sl->len) || !bson_iter_init(&it, &b) ||
        !bson_iter_find_descendant(&it, "data.n", &it))
        return -1;
    return bson_iter_int32(&it);
}

/* ---------------------------------------------------------------------------------
 * The contract
 * ------------------------------------------------------------------------------ */

static int t_empty(void)
{
    ev_store_t *s = open_mode(EV_OPEN_WRITE);
    ev_list_t l = EV_LIST_INIT;
    uint64_t last = 99;
    CHECK(s);
    CHECK_RC(ev_store_last_seq(s, &last), 0);
    CHECK(last == 0);
    CHECK_RC(ev_store_read(s, 1, 10, &l), 0);
    CHECK(l.n == 0);
    ev_verify_stats_t st;
    CHECK_RC(ev_store_verify(s, NULL, NULL, &st), 0);
    CHECK(st.records == 0);
    ev_list_free(&l);
    ev_store_close(s);
    return 0;
}

static int t_append_read_chain(void)
{
    ev_store_t *s = open_mode(EV_OPEN_WRITE);
    ev_list_t l = EV_LIST_INIT;
    uint64_t first, last;
    CHECK(s);
    CHECK_RC(append_range(s, 0, 1, &first), 0);
    CHECK(first == 1);
    CHECK_RC(append_range(s, 1, 50, &first), 0);
    CHECK(first == 2);
    CHECK_RC(ev_store_last_seq(s, &last), 0);
    CHECK(last == 51);
    CHECK_RC(ev_store_read(s, 1, 1000, &l), 0);
    CHECK(l.n == 51);
    ev_chain_t c;
    ev_chain_init(&c);
    for (size_t i = 0; i < l.n; i++) {
        ev_slice_t sl = ev_list_get(&l, i);
        ev_record_t r;
        CHECK_RC(ev_record_parse(sl.data, sl.len, &r), 0);
        CHECK(r.seq == i + 1);
        CHECK_RC(ev_chain_next(&c, &r), 0);
        CHECK(data_n(&sl) == (int)i);
    }
    /* From the middle, bounded. */
    ev_list_clear(&l);
    CHECK_RC(ev_store_read(s, 20, 5, &l), 0);
    CHECK(l.n == 5);
    ev_slice_t sl = ev_list_get(&l, 0);
    CHECK(data_n(&sl) == 19);
    /* Past the end. */
    ev_list_clear(&l);
    CHECK_RC(ev_store_read(s, 52, 5, &l), 0);
    CHECK(l.n == 0);
    ev_list_free(&l);
    ev_store_close(s);

    /* Persistent; a reopened writer continues the chain. */
    s = open_mode(EV_OPEN_WRITE);
    CHECK(s);
    CHECK_RC(append_range(s, 51, 3, &first), 0);
    CHECK(first == 52);
    ev_verify_stats_t st;
    CHECK_RC(ev_store_verify(s, NULL, NULL, &st), 0);
    CHECK(st.records == 54 && st.last_seq == 54);
    ev_store_close(s);
    return 0;
}

static int t_refuses_bad_input(void)
{
    ev_store_t *s = open_mode(EV_OPEN_WRITE), *r;
    uint64_t first;
    CHECK(s);
    bson_t b = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&b, "type", "page.view");
    ev_slice_t sl = { bson_get_data(&b), b.len };
    CHECK_RC(ev_store_append(s, &sl, 1, &first), -EINVAL);
    bson_destroy(&b);
    CHECK_RC(append_range(s, 0, 1, &first), 0);
    r = open_mode(EV_OPEN_READ);
    CHECK(r);
    CHECK_RC(append_range(r, 0, 1, &first), -EPERM);
    ev_store_close(r);
    ev_store_close(s);
    return 0;
}

static int t_query(void)
{
    ev_store_t *s = open_mode(EV_OPEN_WRITE);
    ev_list_t l = EV_LIST_INIT;
    uint64_t first;
    CHECK(s);
    CHECK_RC(append_range(s, 0, 100, &first), 0);
    ev_query_t q = { 0 };
    q.type = "page.view";
    CHECK_RC(ev_store_query(s, &q, &l), 0);
    CHECK(l.n == 50);
    ev_list_clear(&l);

    ev_query_t qa = { 0 };
    qa.actor = "a3";
    qa.type = "recs.click";
    CHECK_RC(ev_store_query(s, &qa, &l), 0);
    CHECK(l.n == 10); /* n % 5 == 3 and n even: 8, 18, ... 98 */
    ev_slice_t sl = ev_list_get(&l, 0);
    CHECK(data_n(&sl) == 8);
    ev_list_clear(&l);

    ev_query_t qt = { 0 };
    qt.from_ts_ms = 1000000000000 + 10 * 1000;
    qt.to_ts_ms = 1000000000000 + 20 * 1000;
    CHECK_RC(ev_store_query(s, &qt, &l), 0);
    CHECK(l.n == 10);
    sl = ev_list_get(&l, 0);
    CHECK(data_n(&sl) == 10);
    ev_list_clear(&l);

    ev_query_t qr = { 0 };
    qr.trace_id = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    CHECK_RC(ev_store_query(s, &qr, &l), 0);
    CHECK(l.n == 1);
    ev_record_t r;
    sl = ev_list_get(&l, 0);
    CHECK_RC(ev_record_parse(sl.data, sl.len, &r), 0);
    char id[EV_ID_LEN + 1];
    memcpy(id, r.id, sizeof id);
    ev_list_clear(&l);

    ev_query_t qi = { 0 };
    qi.id = id;
    CHECK_RC(ev_store_query(s, &qi, &l), 0);
    CHECK(l.n == 1);
    ev_list_clear(&l);

    ev_query_t ql = { 0 };
    ql.from_seq = 90;
    ql.limit = 4;
    CHECK_RC(ev_store_query(s, &ql, &l), 0);
    CHECK(l.n == 4);
    sl = ev_list_get(&l, 0);
    CHECK_RC(ev_record_parse(sl.data, sl.len, &r), 0);
    CHECK(r.seq == 90);
    ev_list_free(&l);
    ev_store_close(s);
    return 0;
}

typedef struct late {
    ev_store_t *w;
    int rc;
} late_t;

static void *late_append(void *arg)
{
    late_t *lt = arg;
    uint64_t first;
    usleep(100 * 1000);
    lt->rc = append_range(lt->w, 0, 1, &first);
    return NULL;
}

static int t_follow(void)
{
    ev_store_t *w = open_mode(EV_OPEN_WRITE), *r = NULL;
    uint64_t first;
    CHECK(w);
    CHECK_RC(append_range(w, 0, 2, &first), 0);
    r = open_mode(EV_OPEN_READ);
    CHECK(r);
    CHECK_RC(ev_store_wait(r, 1, 0), 0);
    CHECK_RC(ev_store_wait(r, 2, 50), -ETIMEDOUT);
    late_t lt = { w, -1 };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, late_append, &lt) == 0);
    int rc = ev_store_wait(r, 2, 30000);
    pthread_join(t, NULL);
    CHECK_RC(rc, 0);
    CHECK_RC(lt.rc, 0);
    ev_list_t l = EV_LIST_INIT;
    CHECK_RC(ev_store_read(r, 3, 10, &l), 0);
    CHECK(l.n == 1);
    ev_list_free(&l);
    ev_store_close(r);
    ev_store_close(w);
    return 0;
}

/* Two writer handles appending at once (two nodes writing directly): seqs stay
 * unique and gapless, the chain intact. The file log has one writer by design. */
typedef struct racer {
    int rc;
    int base;
} racer_t;

static void *race(void *arg)
{
    racer_t *ra = arg;
    ev_store_t *s = open_mode(EV_OPEN_WRITE);
    uint64_t first;
    if (s == NULL) {
        ra->rc = -ECONNREFUSED;
        return NULL;
    }
    for (int i = 0; i < 20 && ra->rc == 0; i++)
        ra->rc = append_range(s, ra->base + i * 5, 5, &first);
    ev_store_close(s);
    return NULL;
}

static int t_two_writers(void)
{
    if (is_file()) {
        ev_store_t *a = open_mode(EV_OPEN_WRITE), *b = NULL;
        char err[EV_ERR_LEN];
        CHECK(a);
        CHECK_RC(ev_store_open(cur_url, EV_OPEN_WRITE, &b, err, sizeof err), -EBUSY);
        ev_store_close(a);
        return 0;
    }
    ev_store_t *s = open_mode(EV_OPEN_WRITE); /* creates the table first */
    CHECK(s);
    racer_t r1 = { 0, 0 }, r2 = { 0, 1000 };
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, race, &r1) == 0);
    CHECK(pthread_create(&t2, NULL, race, &r2) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_RC(r1.rc, 0);
    CHECK_RC(r2.rc, 0);
    ev_verify_stats_t st;
    CHECK_RC(ev_store_verify(s, NULL, NULL, &st), 0);
    CHECK(st.records == 200 && st.last_seq == 200);
    ev_store_close(s);
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Runner
 * ------------------------------------------------------------------------------ */

static void run(const char *name, int (*fn)(void))
{
    make_url(name);
    failure[0] = '\0';
    if (fn() == 0) {
        passed++;
        printf("ok   contract %s\n", name);
    } else {
        failed++;
        printf("FAIL contract %s: %s\n", name, failure);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
        return 2;
    }
    base_url = argv[1];
    run("empty", t_empty);
    run("append_read_chain", t_append_read_chain);
    run("refuses_bad_input", t_refuses_bad_input);
    run("query", t_query);
    run("follow", t_follow);
    run("two_writers", t_two_writers);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
