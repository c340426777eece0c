/* events_server_test.c - events/events_server.c: appends through the gen_server,
 * group commit, waiters, casts, errors, restart, telemetry. */
#include "test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/telemetry.h"
#include "events/events_server.h"

static char dir[64];
static char url[256];

static void setup(const char *opts)
{
    strcpy(dir, "/tmp/ev_server_test.XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(dir));
    snprintf(url, sizeof url, "file:%s%s%s", dir, opts ? "?" : "", opts ? opts : "");
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ASSERT_EQ(system(cmd), 0);
}

static void run_node(cn_proc_fn fn)
{
    cn_node_t *node;
    cn_node_opts_t o = { .name = "evtest@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&o, &node), 0);
    ASSERT_EQ(cn_spawn(node, fn, NULL, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    cn_node_free(node);
}

static uint64_t append_one(const char *type, int *rc)
{
    ev_event_t *ev;
    uint64_t seq = 0;
    ASSERT_EQ(ev_event_new(type, &ev), 0);
    ev_event_set_actor(ev, "reader-1");
    *rc = events_append_event(cn_dest_name("events"), ev, 10000, &seq);
    ev_event_free(ev);
    return seq;
}

static void start_server(void)
{
    events_server_opts_t o = { .url = url };
    char err[EV_ERR_LEN];
    cn_pid_t pid;
    int rc = events_server_start(cn_node_self(), &o, &pid, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "start: %s\n", err);
    ASSERT_EQ(rc, 0);
}

/* ---------------------------------------------------------------------------------
 * Many appenders: every seq once, fewer batches than events.
 * ------------------------------------------------------------------------------ */

#define APPENDERS 50
#define PER_APPENDER 20
static uint8_t seen[APPENDERS * PER_APPENDER + 1];
static int finished;

static void appender(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_APPENDER; i++) {
        int rc;
        uint64_t seq = append_one("page.view", &rc);
        ASSERT_EQ(rc, 0);
        ASSERT(seq >= 1 && seq <= APPENDERS * PER_APPENDER);
        ASSERT_EQ(seen[seq], 0);
        seen[seq] = 1;
    }
    finished++;
}

static uint64_t stat_of(const char *key)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t t;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "stats");
    ASSERT_EQ(cn_gen_call(cn_dest_name("events"), &x, 5000, &m, &t), 0);
    int i = t.index, arity;
    ASSERT_EQ(ei_decode_tuple_header(t.buf, &i, &arity), 0);
    ASSERT(cn_decode_atom_is(t.buf, &i, "ok"));
    ASSERT_EQ(ei_decode_map_header(t.buf, &i, &arity), 0);
    uint64_t v = UINT64_MAX;
    for (int k = 0; k < arity; k++) {
        char a[64];
        unsigned long long n;
        ASSERT_EQ(ei_decode_atom(t.buf, &i, a), 0);
        ASSERT_EQ(ei_decode_ulonglong(t.buf, &i, &n), 0);
        if (strcmp(a, key) == 0)
            v = n;
    }
    cn_msg_free(m);
    return v;
}

static void main_many(void *arg)
{
    (void)arg;
    start_server();
    for (int i = 0; i < APPENDERS; i++)
        ASSERT_EQ(cn_spawn(cn_node_self(), appender, NULL, NULL, NULL), 0);
    while (finished < APPENDERS)
        cn_sleep(5);
    ASSERT_EQ(stat_of("appended"), (uint64_t)APPENDERS * PER_APPENDER);
    uint64_t batches = stat_of("batches");
    ASSERT_LT(batches, (uint64_t)APPENDERS * PER_APPENDER); /* group commit happened */
    uint64_t last;
    ASSERT_EQ(events_last_seq(cn_dest_name("events"), 5000, &last), 0);
    ASSERT_EQ(last, (uint64_t)APPENDERS * PER_APPENDER);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("events"), "shutdown", 5000), 0);
}

TEST(many_appenders_group_commit)
{
    setup(NULL);
    run_node(main_many);
    for (int i = 1; i <= APPENDERS * PER_APPENDER; i++)
        ASSERT_EQ(seen[i], 1);
    /* Everything is in the log, chained. */
    ev_store_t *s;
    char err[EV_ERR_LEN];
    ASSERT_EQ(ev_store_open(url, EV_OPEN_READ, &s, err, sizeof err), 0);
    ev_verify_stats_t st;
    ASSERT_EQ(ev_store_verify(s, NULL, NULL, &st), 0);
    ASSERT_EQ(st.records, (uint64_t)APPENDERS * PER_APPENDER);
    ev_store_close(s);
    teardown();
}

static void main_interval(void *arg)
{
    (void)arg;
    start_server();
    for (int i = 0; i < APPENDERS; i++)
        ASSERT_EQ(cn_spawn(cn_node_self(), appender, NULL, NULL, NULL), 0);
    while (finished < APPENDERS)
        cn_sleep(5);
    ASSERT_EQ(stat_of("appended"), (uint64_t)APPENDERS * PER_APPENDER);
    cn_node_stop(cn_node_self());
}

TEST(interval_fsync_policy)
{
    setup("fsync=2ms");
    run_node(main_interval);
    teardown();
}

/* ---------------------------------------------------------------------------------
 * Where appends run: a lone caller's on the scheduler's thread, else the pool
 * ------------------------------------------------------------------------------ */

static int inline_max_us;

static void plain_appender(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_APPENDER; i++) {
        int rc;
        append_one("page.view", &rc);
        ASSERT_EQ(rc, 0);
    }
    finished++;
}

static void main_inline(void *arg)
{
    (void)arg;
    events_server_opts_t o = { .url = url, .inline_max_us = inline_max_us };
    char err[EV_ERR_LEN];
    cn_pid_t pid;
    ASSERT_EQ(events_server_start(cn_node_self(), &o, &pid, err, sizeof err), 0);
    for (int i = 1; i <= 5; i++) {
        int rc;
        ASSERT_EQ(append_one("page.view", &rc), (uint64_t)i);
        ASSERT_EQ(rc, 0);
    }
    ASSERT_EQ(stat_of("appended"), 5u);
    ASSERT_EQ(stat_of("batches"), 5u);
    uint64_t inl = stat_of("inline");
    if (inline_max_us > 1)
        ASSERT_EQ(inl, 5u); /* alone on the node, appends within the bound */
    else if (inline_max_us < 0)
        ASSERT_EQ(inl, 0u); /* turned off */
    else
        ASSERT_EQ(inl, 1u); /* the first took longer than 8 us: the pool from then on */
    /* Under load (many callers at once) the pool keeps working on one batch while
     * the next gathers. */
    uint64_t b0 = stat_of("batches"), i0 = stat_of("inline");
    finished = 0;
    for (int i = 0; i < APPENDERS; i++)
        ASSERT_EQ(cn_spawn(cn_node_self(), plain_appender, NULL, NULL, NULL), 0);
    while (finished < APPENDERS)
        cn_sleep(5);
    ASSERT_EQ(stat_of("appended"), 5u + APPENDERS * PER_APPENDER);
    ASSERT_LT(stat_of("inline") - i0, stat_of("batches") - b0);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("events"), "shutdown", 5000), 0);
}

TEST(lone_appends_run_inline_when_the_node_is_idle)
{
    /* 10 s: whatever the disk does here; then off; then 1 us, which an eighth of
     * any append exceeds (so the first one sends the next ones to the pool). */
    int limits[] = { 10000000, -1, 1 };
    for (int k = 0; k < 3; k++) {
        setup(k == 0 ? "fsync=2ms" : NULL);
        inline_max_us = limits[k];
        run_node(main_inline);
        teardown();
    }
}

/* ---------------------------------------------------------------------------------
 * Waiters, casts, bad input, a second writer
 * ------------------------------------------------------------------------------ */

static uint64_t woke_with;

static void follower(void *arg)
{
    (void)arg;
    uint64_t last = 0;
    ASSERT_EQ(events_wait(cn_dest_name("events"), 1, 30000, &last), 0);
    woke_with = last;
}

static void main_misc(void *arg)
{
    (void)arg;
    int rc;
    start_server();
    ASSERT_EQ(append_one("page.view", &rc), 1u);
    ASSERT_EQ(rc, 0);

    /* A waiter parks until a commit passes its seq; nothing polls. */
    ASSERT_EQ(cn_spawn(cn_node_self(), follower, NULL, NULL, NULL), 0);
    cn_sleep(20);
    ASSERT_EQ(woke_with, 0u);
    ASSERT_EQ(append_one("recs.click", &rc), 2u);
    for (int i = 0; i < 2000 && woke_with == 0; i++)
        cn_sleep(5);
    ASSERT_EQ(woke_with, 2u);
    uint64_t last;
    ASSERT_EQ(events_wait(cn_dest_name("events"), 2, 30, &last), -ETIMEDOUT);

    /* Not an event. */
    uint8_t junk[] = { 5, 0, 0, 0, 0 };
    ASSERT_EQ(events_append(cn_dest_name("events"), junk, sizeof junk, 5000, &last), -EINVAL);

    /* A cast batch from "another node". */
    ev_event_t *ev;
    bson_t b[3];
    ev_slice_t sl[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(ev_event_new("page.view", &ev), 0);
        ev_event_encode(ev, &b[i]);
        sl[i] = (ev_slice_t){ bson_get_data(&b[i]), b[i].len };
        ev_event_free(ev);
    }
    ASSERT_EQ(events_cast_batch(cn_dest_name("events"), sl, 3), 0);
    ASSERT_EQ(events_wait(cn_dest_name("events"), 4, 10000, &last), 0);
    ASSERT_EQ(last, 5u);
    for (int i = 0; i < 3; i++)
        bson_destroy(&b[i]);

    /* The log has one writer: a second server on it fails with a clear error. */
    events_server_opts_t o = { .url = url, .name = "events2" };
    char err[EV_ERR_LEN];
    cn_pid_t pid;
    ASSERT_EQ(events_server_start(cn_node_self(), &o, &pid, err, sizeof err), -EBUSY);
    ASSERT_NOT_NULL(strstr(err, "another writer"));

    /* Stop and start again: the seqs continue. */
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("events"), "shutdown", 5000), 0);
    start_server();
    ASSERT_EQ(append_one("page.view", &rc), 6u);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("events"), "shutdown", 5000), 0);
}

TEST(waiters_casts_errors_restart)
{
    setup(NULL);
    run_node(main_misc);
    teardown();
}

/* ---------------------------------------------------------------------------------
 * Telemetry: metrics of the appends, and an "events append" span in the caller's
 * trace (counted in the exporter's queue: it exports to nowhere, late).
 * ------------------------------------------------------------------------------ */

static void main_telemetry(void *arg)
{
    (void)arg;
    cn_telemetry_opts_t to = { .endpoint = "http://127.0.0.1:1/v1/traces",
                               .sampler = CN_SAMPLER_ALWAYS_ON, .ratio = 1,
                               .delay_ms = 3600000, .max_attempts = 1,
                               .export_timeout_ms = 200 };
    ASSERT_EQ(cn_telemetry_start(cn_node_self(), &to), 0);
    start_server();
    int rc;
    /* Outside any trace: metrics, no span of the append (a local call outside a
     * trace is not traced at all). */
    ASSERT_EQ(append_one("page.view", &rc), 1u);
    ASSERT_EQ(rc, 0);
    uint32_t queued;
    cn_trace_stats(cn_node_self(), NULL, NULL, NULL, &queued);
    ASSERT_EQ(queued, 0u);
    /* In a trace: the call's client and server spans, the append's, the root. */
    cn_span_t *root = cn_span_start("reader", CN_SPAN_INTERNAL);
    ASSERT_NOT_NULL(root);
    ASSERT_EQ(append_one("page.view", &rc), 2u);
    cn_span_end(root);
    cn_trace_stats(cn_node_self(), NULL, NULL, NULL, &queued);
    ASSERT_EQ(queued, 4u);

    cn_metric_t *n = cn_metric_counter(NULL, "events_appends_total", NULL, "outcome");
    ASSERT_EQ(cn_metric_value(n, (const char *[]){ "ok" }), 2.0);
    cn_metric_t *bs = cn_metric_histogram(NULL, "events_append_batch_size", NULL, NULL, NULL, 0);
    ASSERT_EQ(cn_metric_value(bs, NULL), 2.0); /* two batches (count) */
    cn_metric_t *fs = cn_metric_histogram(NULL, "events_fsync_seconds", NULL, NULL, NULL, 0);
    ASSERT_EQ(cn_metric_value(fs, NULL), 2.0); /* fsync=always: one per batch */
    char *text;
    size_t len;
    ASSERT_EQ(cn_metrics_format(NULL, &text, &len), 0);
    ASSERT_NOT_NULL(strstr(text, "events_fsync_seconds_count 2"));
    ASSERT_NOT_NULL(strstr(text, "events_append_seconds_count 2"));
    free(text);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("events"), "shutdown", 5000), 0);
    cn_telemetry_stop(cn_node_self(), 2000);
}

TEST(telemetry_metrics_and_append_span)
{
    setup(NULL);
    run_node(main_telemetry);
    teardown();
}
