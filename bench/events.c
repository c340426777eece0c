/* events.c - bench-events: durable appends per second and per-append latency through
 * the `events` gen_server, on each store URL given, in one run:
 *
 *   bench-events NAME=URL [NAME=URL ...]
 *
 * For each URL: a node starts an events server on it, BENCH_APPENDERS processes
 * (default 1000) append the same page.view document (about 250 bytes) as fast as
 * replies come back, until BENCH_EVENTS (default 200000; BENCH_EVENTS_<NAME>
 * overrides) were acknowledged. Each append is a gen_server call that returns
 * only once its batch is durable (group commit). Prints `NAME_events_per_s`,
 * `NAME_append_p50_us`, `NAME_append_p99_us`, `NAME_events_per_batch`. bench/events.sh
 * adds the ratios.
 *
 * BENCH_FOLLOW=1 adds a follower, as the recs server's inside a node: a process
 * that waits on the server (events_wait) and reads every new record through its
 * own reader handle, after every commit (no pause). Prints `NAME_followed` (the
 * records it read). With the file log's direct appends its reads of the tail
 * come from the disk (the kernel drops the cache over a direct write).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "events/events_server.h"

static const char *cur_url;
static long target, started_n, done_n;
static int running, running_followers;
static uint32_t *lat_us;
static uint8_t *doc;
static size_t doc_len;
static double elapsed_s;
static uint64_t batches;
static int failed;
static bool follow;
static uint64_t followed; /* records read by the follower */

typedef struct read_job {
    ev_store_t *store;
    uint64_t from;
    size_t n;
    int rc;
} read_job_t;

static void do_follow_open(void *arg)
{
    read_job_t *j = arg;
    char err[EV_ERR_LEN];
    uint64_t last;
    j->rc = ev_store_open_at_end(cur_url, EV_OPEN_READ, &j->store, &last, err, sizeof err);
    if (j->rc < 0)
        fprintf(stderr, "bench-events: follower: %s\n", err);
}

static void do_follow_read(void *arg)
{
    read_job_t *j = arg;
    ev_list_t l = EV_LIST_INIT;
    j->rc = ev_store_read(j->store, j->from, 4096, &l);
    j->n = l.n;
    ev_list_free(&l);
}

static void do_follow_close(void *arg)
{
    ev_store_close(((read_job_t *)arg)->store);
}

static void follower(void *arg)
{
    (void)arg;
    read_job_t j = { 0 };
    uint64_t next = 1, last;
    if (cn_blocking(do_follow_open, &j) < 0 || j.rc < 0) {
        failed = 1;
        return;
    }
    while (running > 0 || next <= (uint64_t)done_n) {
        if (events_wait(cn_dest_name("events"), next - 1, 200, &last) < 0)
            continue;
        do {
            j.from = next;
            if (cn_blocking(do_follow_read, &j) < 0 || j.rc < 0) {
                fprintf(stderr, "bench-events: follower: read: %s\n", ev_store_errmsg(j.store));
                failed = 1;
                goto out;
            }
            next += j.n;
            followed += j.n;
        } while (j.n == 4096);
    }
out:
    cn_blocking(do_follow_close, &j);
    running_followers--;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void appender(void *arg)
{
    (void)arg;
    while (started_n < target) {
        long i = started_n++;
        uint64_t seq, t0 = now_us();
        int rc = events_append(cn_dest_name("events"), doc, doc_len, 60000, &seq);
        if (rc < 0) {
            fprintf(stderr, "bench-events: append: %s\n", cn_strerror(rc));
            failed = 1;
            break;
        }
        lat_us[i] = (uint32_t)(now_us() - t0);
        done_n++;
    }
    running--;
}

static uint64_t stat_batches(void)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t t;
    uint64_t v = 0;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "stats");
    if (cn_gen_call(cn_dest_name("events"), &x, 5000, &m, &t) < 0)
        return 0;
    int i = t.index, arity;
    ei_decode_tuple_header(t.buf, &i, &arity);
    ei_skip_term(t.buf, &i);
    ei_decode_map_header(t.buf, &i, &arity);
    for (int k = 0; k < arity; k++) {
        char a[64];
        unsigned long long n = 0;
        ei_decode_atom(t.buf, &i, a);
        ei_decode_ulonglong(t.buf, &i, &n);
        if (strcmp(a, "batches") == 0)
            v = n;
    }
    cn_msg_free(m);
    return v;
}

static void main_proc(void *arg)
{
    int appenders = *(int *)arg;
    events_server_opts_t o = { .url = cur_url };
    char err[EV_ERR_LEN];
    cn_pid_t pid;

    if (events_server_start(cn_node_self(), &o, &pid, err, sizeof err) < 0) {
        fprintf(stderr, "bench-events: %s: %s\n", cur_url, err);
        failed = 1;
        return;
    }
    uint64_t t0 = now_us();
    running = appenders;
    if (follow) {
        running_followers = 1;
        cn_spawn(cn_node_self(), follower, NULL, NULL, NULL);
    }
    for (int i = 0; i < appenders; i++)
        cn_spawn(cn_node_self(), appender, NULL, NULL, NULL);
    while (running > 0)
        cn_sleep(2);
    elapsed_s = (double)(now_us() - t0) / 1e6;
    while (running_followers > 0)
        cn_sleep(2);
    batches = stat_batches();
    cn_gen_server_stop(cn_dest_name("events"), "shutdown", 10000);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int appenders = getenv("BENCH_APPENDERS") ? atoi(getenv("BENCH_APPENDERS")) : 1000;
    ev_event_t *ev;
    bson_t b;

    if (argc < 2) {
        fprintf(stderr, "usage: %s NAME=URL...\n", argv[0]);
        return 2;
    }
    ev_event_new("page.view", &ev);
    ev_event_set_actor(ev, "r-0123456789abcdef");
    ev_event_set_trace(ev, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    ev_event_set_node(ev, "client@127.0.0.1");
    ev_event_set_app_version(ev, "1.0.0");
    BSON_APPEND_UTF8(ev_event_data(ev), "post", "how-we-built-an-event-log-in-c");
    BSON_APPEND_UTF8(ev_event_data(ev), "referrer", "https://example.org/");
    ev_event_encode(ev, &b);
    doc_len = b.len;
    doc = malloc(doc_len);
    memcpy(doc, bson_get_data(&b), doc_len);
    bson_destroy(&b);
    ev_event_free(ev);
    printf("events_doc_bytes: %zu\nevents_appenders: %d\n", doc_len, appenders);
    follow = getenv("BENCH_FOLLOW") && atoi(getenv("BENCH_FOLLOW"));

    for (int a = 1; a < argc; a++) {
        char name[64], env[96];
        const char *eq = strchr(argv[a], '=');
        if (eq == NULL || eq == argv[a] || (size_t)(eq - argv[a]) >= sizeof name)
            return 2;
        snprintf(name, sizeof name, "%.*s", (int)(eq - argv[a]), argv[a]);
        cur_url = eq + 1;
        snprintf(env, sizeof env, "BENCH_EVENTS_%s", name);
        for (char *c = env; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        target = getenv(env) ? atol(getenv(env))
                             : getenv("BENCH_EVENTS") ? atol(getenv("BENCH_EVENTS")) : 200000;
        started_n = done_n = 0;
        followed = 0;
        lat_us = calloc((size_t)target, sizeof *lat_us);

        cn_node_t *node;
        cn_node_opts_t no = { .name = "bench_events@127.0.0.1" };
        if (cn_node_new(&no, &node) < 0)
            return 1;
        cn_spawn(node, main_proc, &appenders, NULL, NULL);
        cn_node_run(node);
        cn_node_free(node);
        if (failed)
            return 1;
        qsort(lat_us, (size_t)done_n, sizeof *lat_us, cmp_u32);
        printf("%s_events: %ld\n", name, done_n);
        printf("%s_events_per_s: %.0f\n", name, (double)done_n / elapsed_s);
        printf("%s_append_p50_us: %u\n", name, lat_us[done_n / 2]);
        printf("%s_append_p99_us: %u\n", name, lat_us[(size_t)((double)done_n * 0.99)]);
        printf("%s_events_per_batch: %.1f\n", name, batches ? (double)done_n / (double)batches : 0);
        if (follow)
            printf("%s_followed: %llu\n", name, (unsigned long long)followed);
        fflush(stdout);
        free(lat_us);
    }
    free(doc);
    return 0;
}
