/* vproc.c - bench-vproc: a call to an active virtual process against the same
 * call to a plain registered gen_server holding the same state, interleaved in
 * one run (make bench-vproc).
 *
 * Two nodes in this process (threads, distribution over loopback, static
 * cluster): B offers the `counter` vproc type and runs a `counter` gen_server;
 * A calls. Each round makes ROUND_CALLS calls of each kind, alternating which
 * goes first, after a warm-up that activates the key:
 *   local   on B: cn_vproc_call(counter, K, get) vs cn_gen_call(counter, get)
 *   remote  from A: the vproc call (routed to B) vs cn_gen_call({counter, B})
 * The store is the in-memory one: reads of an active key never touch a store,
 * so this measures the routing (one extra local hop and the key's canonical
 * encoding and hash). Prints the p50 of each kind per round and the median of
 * the per-round ratios:  vproc_local_p50_vs_gen_server, vproc_remote_p50_vs_gen_server.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/vproc.h"

#define ROUNDS 5
#define ROUND_CALLS 20000 /* local; remote rounds make a quarter of these */

static char name_a[64], name_b[64];
static atomic_int b_ready, a_done;

/* ---- the state, as a vproc type and as a gen_server ----------------------------- */

static int v_activate(void *ud, cn_term_t key, const void *saved, size_t len, void **state)
{
    (void)ud, (void)key, (void)saved, (void)len;
    *state = calloc(1, sizeof(long long));
    return *state ? 0 : -1;
}

static int v_call(void *state, cn_term_t req, ei_x_buff *reply)
{
    (void)req;
    ei_x_encode_longlong(reply, *(long long *)state);
    return CN_VPROC_READ;
}

static int v_save(void *state, ei_x_buff *out)
{
    return ei_x_encode_longlong(out, *(long long *)state);
}

static int g_init(void *arg, void **state)
{
    (void)arg;
    *state = calloc(1, sizeof(long long));
    return *state ? 0 : -1;
}

static int g_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)req, (void)from;
    ei_x_encode_longlong(reply, *(long long *)state);
    return CN_GS_CONTINUE;
}

static void g_terminate(void *state, cn_term_t reason)
{
    (void)reason;
    free(state);
}

static const cn_gen_server_t gs = { .init = g_init, .handle_call = g_call,
                                    .terminate = g_terminate };

/* ---- timing ---------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t lat[ROUND_CALLS];

/* p50 in ns of ROUND_CALLS calls of one kind. */
static uint64_t run_kind(bool vproc, const char *node)
{
    int calls = node ? ROUND_CALLS / 4 : ROUND_CALLS;
    ei_x_buff key;
    ei_x_new(&key);
    ei_x_encode_tuple_header(&key, 2);
    ei_x_encode_atom(&key, "reader_session");
    ei_x_encode_long(&key, 42);
    cn_term_t kt = { key.buff, 0, key.index };
    for (int i = 0; i < calls; i++) {
        ei_x_buff req;
        cn_x_new(&req);
        ei_x_encode_atom(&req, "get");
        cn_msg_t *m;
        cn_term_t r;
        uint64_t t0 = now_ns();
        int rc = vproc ? cn_vproc_call("counter", kt, &req, 5000, 0, &m, &r, NULL)
                       : cn_gen_call(node ? cn_dest_remote("counter", node) : cn_dest_name("counter"),
                                     &req, 5000, &m, &r);
        lat[i] = now_ns() - t0;
        if (rc < 0) {
            fprintf(stderr, "call failed: %s\n", cn_strerror(rc));
            exit(1);
        }
        cn_msg_free(m);
    }
    ei_x_free(&key);
    qsort(lat, (size_t)calls, sizeof(lat[0]), cmp_u64);
    return lat[calls / 2];
}

static void measure(const char *label, const char *node)
{
    double ratio[ROUNDS];
    run_kind(true, node); /* warm-up: activates the key, fills caches */
    run_kind(false, node);
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t v, g;
        if (r % 2) {
            g = run_kind(false, node);
            v = run_kind(true, node);
        } else {
            v = run_kind(true, node);
            g = run_kind(false, node);
        }
        ratio[r] = (double)v / (double)g;
        printf("round %d %s: vproc_p50_us %.1f gen_server_p50_us %.1f ratio %.2f\n", r, label,
               v / 1000.0, g / 1000.0, ratio[r]);
    }
    qsort(ratio, ROUNDS, sizeof(ratio[0]), cmp_d);
    printf("vproc_%s_p50_vs_gen_server: %.2f (rounds %.2f-%.2f)\n", label, ratio[ROUNDS / 2],
           ratio[0], ratio[ROUNDS - 1]);
    fflush(stdout);
}

/* ---- nodes ----------------------------------------------------------------------- */

static void b_main(void *arg)
{
    cn_node_t *n = arg;
    cn_vproc_type_t t = { .name = "counter", .activate = v_activate, .handle_call = v_call,
                          .save = v_save, .deactivate = free, .idle_ms = 600000 };
    cn_gen_server_opts_t o = { .name = "counter" };
    if (cn_vproc_register(&t) < 0 || cn_gen_server_start(n, &gs, NULL, &o, NULL) < 0) {
        fprintf(stderr, "B: start failed\n");
        exit(1);
    }
    measure("local", NULL);
    atomic_store(&b_ready, 1);
    while (!atomic_load(&a_done))
        cn_sleep(10);
    cn_node_stop(n);
}

static void a_main(void *arg)
{
    cn_node_t *n = arg;
    while (!atomic_load(&b_ready) || cn_cluster_members("vproc:counter", NULL, 0) < 1)
        cn_sleep(10);
    measure("remote", name_b);
    atomic_store(&a_done, 1);
    cn_node_stop(n);
}

static void *run(void *arg)
{
    cn_node_run(arg);
    return NULL;
}

static void quiet(void *ud, int level, const char *msg)
{
    (void)ud, (void)level, (void)msg;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(name_a, sizeof(name_a), "bva_%d@127.0.0.1", (int)getpid());
    snprintf(name_b, sizeof(name_b), "bvb_%d@127.0.0.1", (int)getpid());
    cn_dist_opts_t d = { .cookie = "bench", .epmd_less = true, .log = quiet };
    cn_node_t *a, *b;
    cn_node_opts_t oa = { .name = name_a }, ob = { .name = name_b };
    cn_vproc_store_t *s;
    if (cn_node_new(&oa, &a) < 0 || cn_node_new(&ob, &b) < 0 || cn_dist_start(a, &d) < 0 ||
        cn_dist_start(b, &d) < 0 || cn_vproc_store_mem_new(&s) < 0)
        return 1;
    cn_dist_set_peer_port(a, name_b, cn_dist_listen_port(b));
    cn_dist_set_peer_port(b, name_a, cn_dist_listen_port(a));
    char list[160];
    snprintf(list, sizeof(list), "%s,%s", name_a, name_b);
    cn_cluster_opts_t co = { .nodes = list, .poll_ms = 200, .log = quiet };
    cn_vproc_opts_t vo = { .store = s };
    if (cn_cluster_start(a, &co) < 0 || cn_cluster_start(b, &co) < 0 ||
        cn_vproc_start(b, &vo) < 0)
        return 1;
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    cn_spawn(a, a_main, a, &so, NULL);
    cn_spawn(b, b_main, b, &so, NULL);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run, a);
    pthread_create(&tb, NULL, run, b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cn_node_free(a);
    cn_node_free(b);
    cn_vproc_store_free(s);
    return 0;
}
