/* vproc_node.c - a node for the virtual-process integration test
 * (test-vproc_node): it offers the `session` vproc type backed by PostgreSQL,
 * or drives calls to it.
 *
 * Distribution and cluster settings come from the environment like every
 * binary (ONEBLOG_NODE, ONEBLOG_COOKIE, ONEBLOG_NET_TICKTIME, ONEBLOG_CLUSTER_*),
 * plus:
 *   VPROC_DATABASE_URL  libpq conninfo of the store (required to offer)
 *   VPROC_OFFER=1       offer `session`, the tests' counter (vproc_counter.h):
 *                       state = one integer; requests get,
 *                       {set, N} (-> ok), {add, N} (-> new value)
 *   VPROC_IDLE_MS       the type's idle time (60000)
 *   VPROC_DRIVE=N       drive N keys {reader_session, K}, K = 0..N-1:
 *     VPROC_EXPECT=M    first wait until M nodes offer `session`
 *     VPROC_CONC=C      callers at once (32)
 *     VPROC_GO=PATH     after the set phase, each time PATH.1, PATH.2, ...
 *                       appears, run verify phase 1, 2, ...
 *
 * SIGTERM: leave gracefully (cn_vproc_leave), wait for the activations to end,
 * print "left active=N" and exit.
 *
 * Output lines the shell test greps for:
 *   stats active=A activations=B idle=I moved=M calls=C writes=W conflicts=X
 *         redirects=R forwards=F errors=E          (offering nodes, on change)
 *   set done ms=T fail=F by=NODE:COUNT,...           (driver)
 *   verify P ok=O bad=B err=E ms=T by=NODE:COUNT,... (driver; ms from the moment
 *                       the go file was seen to the last key's answer)
 * The set phase writes 7*K+1 to key K; verify checks every key's value.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/vproc.h"

#include "../../unit/cnode/vproc_counter.h"

/* ---- driver ------------------------------------------------------------------------ */

#define MAX_NODES 8

typedef struct tally {
    char node[MAX_NODES][CN_VPROC_NODE_MAX];
    int count[MAX_NODES];
    int n;
} tally_t;

static void tally_add(tally_t *t, const char *node)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->node[i], node) == 0) {
            t->count[i]++;
            return;
        }
    if (t->n < MAX_NODES) {
        snprintf(t->node[t->n], CN_VPROC_NODE_MAX, "%s", node);
        t->count[t->n++] = 1;
    }
}

static void tally_print(const tally_t *t)
{
    printf(" by=");
    for (int i = 0; i < t->n; i++)
        printf("%s%s:%d", i ? "," : "", t->node[i], t->count[i]);
    printf("\n");
}

typedef struct job {
    int phase;          /* 0: set, else verify */
    int nkeys, conc, worker;
    cn_pid_t parent;
    int ok, bad, err;
    tally_t by;
} job_t;

static int call_key(int k, const char *op, long long n, long long *out, char *node)
{
    ei_x_buff key, req;
    ei_x_new(&key);
    ei_x_encode_tuple_header(&key, 2);
    ei_x_encode_atom(&key, "reader_session");
    ei_x_encode_long(&key, k);
    cn_x_new(&req);
    if (n < 0) {
        ei_x_encode_atom(&req, op);
    } else {
        ei_x_encode_tuple_header(&req, 2);
        ei_x_encode_atom(&req, op);
        ei_x_encode_longlong(&req, n);
    }
    cn_term_t kt = { key.buff, 0, key.index };
    cn_msg_t *m;
    cn_term_t r;
    /* Sets and gets are idempotent: retry even when a node was lost mid-call. */
    int rc = cn_vproc_call("session", kt, &req, 10000, CN_VPROC_RETRY_UNKNOWN, &m, &r, node);
    ei_x_free(&key);
    if (rc < 0)
        return rc;
    int i = r.index;
    if (cn_decode_atom_is(r.buf, &i, "ok"))
        *out = -1;
    else if (ei_decode_longlong(r.buf, &i, out) < 0)
        rc = -EBADMSG;
    cn_msg_free(m);
    return rc;
}

static void worker(void *arg)
{
    job_t *j = arg;
    char node[CN_VPROC_NODE_MAX];
    for (int k = j->worker; k < j->nkeys; k += j->conc) {
        long long v;
        long long want = 7LL * k + 1;
        int rc = j->phase == 0 ? call_key(k, "set", want, &v, node)
                               : call_key(k, "get", -1, &v, node);
        if (rc < 0) {
            j->err++;
            if (j->err <= 3)
                printf("key %d: %s\n", k, cn_strerror(rc));
        } else if (j->phase == 0 ? v != -1 : v != want) {
            j->bad++;
            if (j->bad <= 3)
                printf("key %d: got %lld, want %lld, from %s\n", k, v, want, node);
        } else {
            j->ok++;
            tally_add(&j->by, node);
        }
    }
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "done");
    cn_send(j->parent, &x);
}

static void run_phase(int phase, int nkeys, int conc)
{
    static job_t jobs[256];
    if (conc > 256)
        conc = 256;
    uint64_t t0 = cn_now_ms();
    for (int w = 0; w < conc; w++) {
        job_t *j = &jobs[w];
        memset(j, 0, sizeof(*j));
        j->phase = phase;
        j->nkeys = nkeys;
        j->conc = conc;
        j->worker = w;
        j->parent = cn_self();
        cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK, .stack_size = 128 << 10 };
        cn_spawn(cn_node_self(), worker, j, &so, NULL);
    }
    for (int w = 0; w < conc; w++) {
        cn_msg_t *m;
        cn_receive(NULL, NULL, CN_INFINITY, &m);
        cn_msg_free(m);
    }
    uint64_t ms = cn_now_ms() - t0;
    tally_t by = { 0 };
    int ok = 0, bad = 0, err = 0;
    for (int w = 0; w < conc; w++) {
        ok += jobs[w].ok;
        bad += jobs[w].bad;
        err += jobs[w].err;
        for (int i = 0; i < jobs[w].by.n; i++)
            for (int c = 0; c < jobs[w].by.count[i]; c++)
                tally_add(&by, jobs[w].by.node[i]);
    }
    if (phase == 0)
        printf("set done ms=%llu ok=%d fail=%d", (unsigned long long)ms, ok, bad + err);
    else
        printf("verify %d ok=%d bad=%d err=%d ms=%llu", phase, ok, bad, err,
               (unsigned long long)ms);
    tally_print(&by);
}

static void driver(void)
{
    int nkeys = atoi(getenv("VPROC_DRIVE"));
    int expect = getenv("VPROC_EXPECT") ? atoi(getenv("VPROC_EXPECT")) : 1;
    int conc = getenv("VPROC_CONC") ? atoi(getenv("VPROC_CONC")) : 32;
    const char *go = getenv("VPROC_GO");
    while (cn_cluster_members("vproc:session", NULL, 0) < expect)
        cn_sleep(20);
    printf("driver sees %d nodes\n", expect);
    run_phase(0, nkeys, conc);
    for (int phase = 1; go; phase++) {
        char path[512];
        snprintf(path, sizeof(path), "%s.%d", go, phase);
        while (access(path, F_OK) != 0)
            cn_sleep(2);
        run_phase(phase, nkeys, conc);
    }
    cn_node_stop(cn_node_self());
}

/* ---- SIGTERM: a graceful leave --------------------------------------------------------- */

static int sigfd = -1;

static void on_sigterm(void *arg)
{
    (void)arg;
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        cn_wait_fd(sigfd, CN_READABLE, CN_INFINITY);
    printf("leaving\n");
    cn_vproc_leave();
    cn_vproc_stats_t s = { 0 };
    for (int i = 0; i < 500; i++) {
        if (cn_vproc_stats(&s) == 0 && s.active == 0)
            break;
        cn_sleep(10);
    }
    printf("left active=%llu\n", (unsigned long long)s.active);
    cn_node_stop(cn_node_self());
}

/* ---- main ---------------------------------------------------------------------------- */

static void main_proc(void *arg)
{
    (void)arg;
    if (getenv("VPROC_OFFER") && atoi(getenv("VPROC_OFFER"))) {
        /* The session is the tests' counter (vproc_counter.h) under another name. */
        cn_vproc_type_t t = vc_type("session",
                                    getenv("VPROC_IDLE_MS") ? atoi(getenv("VPROC_IDLE_MS"))
                                                            : 60000,
                                    NULL);
        int rc = cn_vproc_register(&t);
        printf("offering session: %s\n", rc ? cn_strerror(rc) : "ok");
    }
    if (getenv("VPROC_DRIVE")) {
        driver();
        return;
    }
    char last[512] = "";
    for (;;) {
        cn_vproc_stats_t s;
        if (cn_vproc_stats(&s) == 0) {
            char line[512];
            snprintf(line, sizeof(line),
                     "stats active=%llu activations=%llu idle=%llu moved=%llu calls=%llu "
                     "writes=%llu conflicts=%llu redirects=%llu forwards=%llu errors=%llu",
                     (unsigned long long)s.active, (unsigned long long)s.activations,
                     (unsigned long long)s.idle_stops, (unsigned long long)s.moved_stops,
                     (unsigned long long)s.calls, (unsigned long long)s.writes,
                     (unsigned long long)s.conflicts, (unsigned long long)s.redirects,
                     (unsigned long long)s.forwards, (unsigned long long)s.store_errors);
            if (strcmp(line, last) != 0) {
                printf("%s\n", line);
                strcpy(last, line);
            }
        }
        cn_sleep(100);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    cn_dist_opts_t d;
    cn_cluster_opts_t co;
    if (cn_dist_opts_from_env(&d, argc, argv) < 0 || cn_cluster_opts_from_env(&co) < 0) {
        fprintf(stderr, "bad options\n");
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    cn_node_opts_t no = { .name = d.node_name };
    cn_node_t *node;
    cn_vproc_store_t *store = NULL;
    const char *db = getenv("VPROC_DATABASE_URL");
    int rc;
    if ((rc = cn_node_new(&no, &node)) < 0 || (rc = cn_dist_start(node, &d)) < 0 ||
        (rc = cn_cluster_start(node, &co)) < 0) {
        fprintf(stderr, "start failed: %s\n", cn_strerror(rc));
        return 1;
    }
    if (db) {
        cn_vproc_opts_t vo = { 0 };
        if ((rc = cn_vproc_store_pg_new(db, 8, &store)) < 0 ||
            (vo.store = store, rc = cn_vproc_start(node, &vo)) < 0) {
            fprintf(stderr, "vproc start failed: %s\n", cn_strerror(rc));
            return 1;
        }
    }
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK, .stack_size = 256 << 10 };
    cn_spawn(node, main_proc, NULL, &so, NULL);
    if (sigfd >= 0 && db)
        cn_spawn(node, on_sigterm, NULL, &so, NULL);
    rc = cn_node_run(node);
    cn_node_free(node);
    cn_vproc_store_free(store);
    return rc < 0 ? 1 : 0;
}
