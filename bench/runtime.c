/* runtime.c - the libcnode half of `make bench-runtime` (bench/runtime.sh runs it
 * interleaved with bench/beam/runtime_bench.erl and prints the ratios).
 *
 *   bench-runtime spawn   spawn N processes blocked in receive: time, bytes each
 *   bench-runtime ring    10,000 processes pass a token 100 times round
 *   bench-runtime call    local gen_server call: p50/p99 with 1 caller, calls/s with 64
 *
 * Each kind does the same work as the Erlang version, and prints `name: value`
 * lines with the same names.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"

#define RING_SIZE 10000
#define RING_ROUNDS 100
#define CALL_WARMUP 10000
#define CALL_SAMPLES 100000
#define CALLERS 64
#define CALLS_EACH 10000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench-runtime: %s: %s\n", what, cn_strerror(rc));
    exit(1);
}

static void send_atom(cn_pid_t to, const char *atom)
{
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, atom);
    cn_send(to, &x);
}

/* ---- spawn ------------------------------------------------------------------------ */

static void idle(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m); /* stop */
    cn_msg_free(m);
}

static void bench_spawn(void *arg)
{
    (void)arg;
    const char *env = getenv("BENCH_N_SPAWN");
    long n = env ? atol(env) : 1000000;
    cn_node_t *node = cn_node_self();
    /* The pid array is part of the cost, as the BEAM side keeps a list of pids. */
    long rss0 = rss_bytes();
    uint64_t t0 = now_ns();
    cn_pid_t *pids = malloc((size_t)n * sizeof(*pids));
    for (long i = 0; i < n; i++) {
        int rc = cn_spawn(node, idle, NULL, NULL, &pids[i]);
        if (rc < 0)
            die("spawn", rc);
    }
    /* One yield: everything spawned before us runs to its receive first. */
    cn_yield();
    uint64_t t1 = now_ns();
    long rss1 = rss_bytes();
    fprintf(stderr, "cnode: spawned %ld processes in %.3f s, RSS %ld -> %ld MiB\n", n,
            (double)(t1 - t0) / 1e9, rss0 >> 20, rss1 >> 20);
    for (long i = 0; i < n; i++)
        send_atom(pids[i], "stop");
    free(pids);
    printf("spawn_1m_s: %.3f\n", (double)(t1 - t0) / 1e9);
    printf("bytes_per_process: %ld\n", (rss1 - rss0) / n);
}

/* ---- ring ------------------------------------------------------------------------- */

static cn_pid_t ring_main;

/* {token, K}: forward {token, K-1} to the next node, or tell main at 0. The
 * received buffer is re-encoded in place and sent on: the message moves, nothing
 * is allocated per hop. */
static void ring_node(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m); /* the next node's pid */
    int i = 1;
    cn_pid_t next;
    cn_decode_pid(m->buf, &i, &next);
    cn_msg_free(m);
    for (;;) {
        cn_receive(NULL, NULL, CN_INFINITY, &m);
        int arity;
        long k;
        i = 1;
        if (ei_decode_tuple_header(m->buf, &i, &arity) < 0) { /* stop */
            cn_msg_free(m);
            return;
        }
        cn_decode_atom_is(m->buf, &i, "token");
        ei_decode_long(m->buf, &i, &k);
        if (k == 0) {
            cn_msg_free(m);
            send_atom(ring_main, "ring_done");
            continue;
        }
        int len = 0;
        ei_encode_version(NULL, &len);
        ei_encode_tuple_header(NULL, &len, 2);
        ei_encode_atom(NULL, &len, "token");
        ei_encode_long(NULL, &len, k - 1);
        if (len <= m->cap) {
            m->len = 0;
            ei_encode_version(m->buf, &m->len);
            ei_encode_tuple_header(m->buf, &m->len, 2);
            ei_encode_atom(m->buf, &m->len, "token");
            ei_encode_long(m->buf, &m->len, k - 1);
            cn_send_msg(next, m);
        } else {
            cn_msg_free(m);
            ei_x_buff x;
            cn_x_new(&x);
            ei_x_encode_tuple_header(&x, 2);
            ei_x_encode_atom(&x, "token");
            ei_x_encode_long(&x, k - 1);
            cn_send(next, &x);
        }
    }
}

static void bench_ring(void *arg)
{
    (void)arg;
    cn_node_t *node = cn_node_self();
    static cn_pid_t ring[RING_SIZE];
    ring_main = cn_self();
    for (int i = 0; i < RING_SIZE; i++) {
        int rc = cn_spawn(node, ring_node, NULL, NULL, &ring[i]);
        if (rc < 0)
            die("spawn", rc);
    }
    for (int i = 0; i < RING_SIZE; i++) {
        ei_x_buff x;
        cn_x_new(&x);
        cn_x_encode_pid(&x, ring[(i + 1) % RING_SIZE]);
        cn_send(ring[i], &x);
    }
    long msgs = (long)RING_SIZE * RING_ROUNDS;
    uint64_t t0 = now_ns();
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "token");
    ei_x_encode_long(&x, msgs - 1); /* this send is message number 1 */
    cn_send(ring[0], &x);
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m);
    uint64_t t = now_ns() - t0;
    cn_msg_free(m);
    for (int i = 0; i < RING_SIZE; i++)
        send_atom(ring[i], "stop");
    fprintf(stderr, "cnode ring: %d processes x %d rounds = %ld messages in %.3f s\n",
            RING_SIZE, RING_ROUNDS, msgs, (double)t / 1e9);
    printf("ring_msgs_per_s: %.0f\n", (double)msgs / ((double)t / 1e9));
}

/* ---- call ------------------------------------------------------------------------- */

static int echo_init(void *arg, void **state)
{
    *state = arg;
    return 0;
}

static int echo_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)state;
    (void)from;
    ei_x_encode_tuple_header(reply, 2);
    ei_x_encode_atom(reply, "echo");
    cn_x_append_term(reply, req);
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t echo_cb = { .init = echo_init, .handle_call = echo_call };

static cn_pid_t srv;
static cn_pid_t call_main;

static void one_call(void)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "ping");
    int rc = cn_gen_call(cn_dest_pid(srv), &x, 5000, &m, &r);
    if (rc < 0)
        die("call", rc);
    cn_msg_free(m);
}

static void caller(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m); /* go */
    cn_msg_free(m);
    for (int i = 0; i < CALLS_EACH; i++)
        one_call();
    send_atom(call_main, "done");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void bench_call(void *arg)
{
    (void)arg;
    cn_node_t *node = cn_node_self();
    int rc = cn_gen_server_start(node, &echo_cb, NULL, NULL, &srv);
    if (rc < 0)
        die("start", rc);
    call_main = cn_self();
    for (int i = 0; i < CALL_WARMUP; i++)
        one_call();
    uint64_t *lat = malloc(CALL_SAMPLES * sizeof(*lat));
    for (int i = 0; i < CALL_SAMPLES; i++) {
        uint64_t t0 = now_ns();
        one_call();
        lat[i] = now_ns() - t0;
    }
    qsort(lat, CALL_SAMPLES, sizeof(*lat), cmp_u64);
    /* nearest rank, as the Erlang side computes it */
    double p50 = (double)lat[(CALL_SAMPLES * 50 + 99) / 100 - 1] / 1000.0;
    double p99 = (double)lat[(CALL_SAMPLES * 99 + 99) / 100 - 1] / 1000.0;
    free(lat);

    cn_pid_t callers[CALLERS];
    for (int i = 0; i < CALLERS; i++)
        if ((rc = cn_spawn(node, caller, NULL, NULL, &callers[i])) < 0)
            die("spawn", rc);
    uint64_t t0 = now_ns();
    for (int i = 0; i < CALLERS; i++)
        send_atom(callers[i], "go");
    for (int i = 0; i < CALLERS; i++) {
        cn_msg_t *m;
        cn_receive(NULL, NULL, CN_INFINITY, &m);
        cn_msg_free(m);
    }
    uint64_t t = now_ns() - t0;
    cn_gen_server_stop(cn_dest_pid(srv), "normal", 5000);
    printf("local_call_p50_us: %.3f\n", p50);
    printf("local_call_p99_us: %.3f\n", p99);
    printf("local_calls_per_s_64: %.0f\n", (double)CALLERS * CALLS_EACH / ((double)t / 1e9));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench-runtime spawn|ring|call\n");
        return 2;
    }
    cn_proc_fn fn = strcmp(argv[1], "spawn") == 0  ? bench_spawn
                    : strcmp(argv[1], "ring") == 0 ? bench_ring
                    : strcmp(argv[1], "call") == 0 ? bench_call
                                                   : NULL;
    if (fn == NULL) {
        fprintf(stderr, "bench-runtime: unknown kind '%s'\n", argv[1]);
        return 2;
    }
    cn_node_t *node;
    int rc = cn_node_new(NULL, &node);
    if (rc < 0)
        die("node", rc);
    cn_spawn(node, fn, NULL, NULL, NULL);
    rc = cn_node_run(node);
    cn_node_free(node);
    return rc < 0;
}
