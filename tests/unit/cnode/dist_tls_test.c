/* dist_tls_test.c - TLS for distribution connections (dist_tls.c): loading and
 * checking the certificate, key and CA (each failure names the file and says
 * why), reloads that swap the context or keep the old one, and two C nodes in
 * one process (one scheduler thread each) calling over TLS, or refusing a
 * certificate from another CA. Certificates are made by the openssl CLI in a
 * temp dir, one per test (each test runs in its own child). */
#include "test.h"

#include <pthread.h>

#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "dist_int.h"

/* ---- a CA, another CA, node certificates ---------------------------------------- */

static char dir[64];

static void pki_cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (dir[0] && system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* Makes ca, other (CAs), a, b (from ca), x (from other), both.pem (the two
 * CAs) and bad.pem (not PEM), with a script in the dir (no nested quoting). */
static int pki(void)
{
    snprintf(dir, sizeof(dir), "/tmp/dist-tls-test.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    atexit(pki_cleanup);
    char script[128], cmd[256];
    snprintf(script, sizeof(script), "%s/make.sh", dir);
    FILE *f = fopen(script, "w");
    if (f == NULL)
        return -1;
    fputs("set -e; cd \"$(dirname \"$0\")\"\n"
          "ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n"
          "    -days 1 -keyout $1.key -out $1.pem -subj /CN=$1; }\n"
          "cert() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n"
          "    -keyout $1.key -out $1.csr -subj /CN=$1\n"
          "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial \\\n"
          "    -days 1 -out $1.pem; }\n"
          "ca ca; ca other; cert a ca; cert b ca; cert x other\n"
          "cat ca.pem other.pem > both.pem; echo garbage > bad.pem\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "sh '%s' >/dev/null 2>&1", script);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *path(const char *name)
{
    static char buf[8][128];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof(buf[0]), "%s/%s", dir, name);
    return b;
}

static int copy(const char *from, const char *to)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", path(from), path(to));
    return system(cmd);
}

/* ---- loading and reloading --------------------------------------------------- */

TEST(files_are_checked_at_load)
{
    ASSERT_EQ(pki(), 0);
    cn_dist_tls_t *t = NULL;
    char err[600];

    ASSERT_EQ(cn__tls_new(NULL, path("a.key"), path("ca.pem"), &t, err, sizeof(err)),
              -EINVAL);
    ASSERT(strstr(err, "ONEBLOG_DIST_TLS_CERT") != NULL);
    ASSERT_EQ(cn__tls_new(path("nosuch.pem"), path("a.key"), path("ca.pem"), &t, err,
                          sizeof(err)), -ENOENT);
    ASSERT(strstr(err, "nosuch.pem: No such file") != NULL);
    ASSERT_EQ(cn__tls_new(path("bad.pem"), path("a.key"), path("ca.pem"), &t, err,
                          sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "TLS certificate") && strstr(err, "no start line"));
    ASSERT_EQ(cn__tls_new(path("a.pem"), path("b.key"), path("ca.pem"), &t, err,
                          sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "b.key does not match certificate") != NULL);
    ASSERT_EQ(cn__tls_new(path("a.pem"), path("a.key"), path("bad.pem"), &t, err,
                          sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "TLS CA") != NULL);
    ASSERT_EQ(cn__tls_new(path("x.pem"), path("x.key"), path("ca.pem"), &t, err,
                          sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "does not verify against the CA") != NULL);
    ASSERT(t == NULL);

    ASSERT_EQ(cn__tls_new(path("a.pem"), path("a.key"), path("ca.pem"), &t, err,
                          sizeof(err)), 0);
    char what[600];
    cn__tls_describe(t, what, sizeof(what));
    ASSERT(strstr(what, "/CN=a, valid until ") != NULL);
    /* A certificate from the other CA is fine against a file holding both. */
    cn_dist_tls_t *t2 = NULL;
    ASSERT_EQ(cn__tls_new(path("x.pem"), path("x.key"), path("both.pem"), &t2, err,
                          sizeof(err)), 0);
    cn__tls_free(t2);
    cn__tls_free(t);
    cn__tls_free(NULL);
}

TEST(reload_swaps_or_keeps_the_old_context)
{
    ASSERT_EQ(pki(), 0);
    ASSERT_EQ(copy("a.pem", "live.pem"), 0);
    ASSERT_EQ(copy("a.key", "live.key"), 0);
    cn_dist_tls_t *t = NULL;
    char err[600], what[600];
    ASSERT_EQ(cn__tls_new(path("live.pem"), path("live.key"), path("ca.pem"), &t, err,
                          sizeof(err)), 0);

    ASSERT_EQ(copy("b.pem", "live.pem"), 0);
    ASSERT_EQ(copy("b.key", "live.key"), 0);
    ASSERT_EQ(cn__tls_reload(t, err, sizeof(err)), 0);
    cn__tls_describe(t, what, sizeof(what));
    ASSERT(strstr(what, "/CN=b,") != NULL);

    /* A half-done replacement (new certificate, old key) and a broken file are
     * refused; the context in use stays. */
    ASSERT_EQ(copy("a.pem", "live.pem"), 0);
    ASSERT_EQ(cn__tls_reload(t, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "does not match") != NULL);
    ASSERT_EQ(copy("bad.pem", "live.pem"), 0);
    ASSERT_EQ(cn__tls_reload(t, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "no start line") != NULL);
    cn__tls_describe(t, what, sizeof(what));
    ASSERT(strstr(what, "/CN=b,") != NULL);
    cn__tls_free(t);
}

/* ---- two nodes over TLS ------------------------------------------------------- */

typedef struct pair {
    char aname[64], bname[64];
    cn_node_t *a, *b;
    int result;       /* B's call: 0 {echo, hi}; else the error */
    int tls13;        /* "TLSv1.3" connection lines seen */
    int refused;      /* "peer certificate refused" lines seen */
    int a_ready;      /* A's set-up process has registered its names */
    int b_done;       /* B's test process has finished */
} pair_t;

static void on_log(void *ud, int level, const char *msg)
{
    pair_t *p = ud;
    (void)level;
    if (strstr(msg, ": TLSv1.3 "))
        __atomic_add_fetch(&p->tls13, 1, __ATOMIC_SEQ_CST);
    if (strstr(msg, "peer certificate refused"))
        __atomic_add_fetch(&p->refused, 1, __ATOMIC_SEQ_CST);
}

static int echo_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)state, (void)from;
    ei_x_encode_tuple_header(reply, 2);
    ei_x_encode_atom(reply, "echo");
    cn_x_append_term(reply, req);
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t echo_cb = { .handle_call = echo_call };

/* On A: stop A at the first message, or once B has finished without sending
 * one (it could not reach us). Not after a fixed time: a loaded machine under
 * ASan can take seconds over B's first TLS connection, and A gone early fails it. */
static void stopper(void *arg)
{
    pair_t *p = arg;
    cn_msg_t *m = NULL;
    while (!__atomic_load_n(&p->b_done, __ATOMIC_ACQUIRE) &&
           cn_receive(NULL, NULL, 10, &m) != 0)
        ;
    cn_msg_free(m);
    cn_node_stop(cn_node_self());
}

static void a_setup(void *arg)
{
    pair_t *p = arg;
    cn_gen_server_opts_t go = { .name = "echo" };
    cn_gen_server_start(cn_node_self(), &echo_cb, NULL, &go, NULL);
    cn_pid_t s;
    cn_spawn(cn_node_self(), stopper, p, NULL, &s);
    cn_register("stopper", s);
    __atomic_store_n(&p->a_ready, 1, __ATOMIC_RELEASE);
}

static void b_main(void *arg)
{
    pair_t *p = arg;
    ei_x_buff x;
    cn_msg_t *m = NULL;
    cn_term_t reply;
    char text[128];
    /* A registers `echo` and `stopper` from a process on its own thread, which
     * may run after our first message lands there (then a call is -ESRCH, the
     * stop is dropped): wait for A's set-up first. */
    (void)WAIT_UNTIL(__atomic_load_n(&p->a_ready, __ATOMIC_ACQUIRE), 20000, cn_sleep(5));
    cn_x_new(&x);
    ei_x_encode_atom(&x, "hi");
    int rc = cn_gen_call(cn_dest_remote("echo", p->aname), &x, 20000, &m, &reply);
    if (rc == 0) {
        cn_term_print(reply, text, sizeof(text));
        rc = strcmp(text, "{echo, hi}") == 0 ? 0 : -EPROTO;
        /* Stop A and wait until its connection is gone (the stop message is
         * on the wire by then). */
        cn_msg_free(m);
        m = NULL;
        cn_monitor_node(p->aname, true);
        cn_x_new(&x);
        ei_x_encode_atom(&x, "stop");
        cn_send_name_at("stopper", p->aname, &x);
        cn_receive(NULL, NULL, 30000, &m);
    }
    cn_msg_free(m);
    p->result = rc;
    __atomic_store_n(&p->b_done, 1, __ATOMIC_RELEASE);
    cn_node_stop(cn_node_self());
}

static void *run_node(void *arg)
{
    cn_node_run(arg);
    cn_node_free(arg);
    return NULL;
}

/* A with certificate a; B with certificate bcert, trusting bca. */
static void run_pair(pair_t *p, const char *bcert, const char *bkey, const char *bca)
{
    snprintf(p->aname, sizeof(p->aname), "a%d@127.0.0.1", getpid());
    snprintf(p->bname, sizeof(p->bname), "b%d@127.0.0.1", getpid());
    cn_node_opts_t oa = { .name = p->aname }, ob = { .name = p->bname };
    ASSERT_EQ(cn_node_new(&oa, &p->a), 0);
    ASSERT_EQ(cn_node_new(&ob, &p->b), 0);
    cn_dist_opts_t da = { .cookie = "unit", .epmd_less = true, .log = on_log, .log_ud = p,
                          .tls = true, .tls_cert = path("a.pem"), .tls_key = path("a.key"),
                          .tls_ca = path("ca.pem") };
    cn_dist_opts_t db = da;
    db.tls_cert = bcert;
    db.tls_key = bkey;
    db.tls_ca = bca;
    ASSERT_EQ(cn_dist_start(p->a, &da), 0);
    ASSERT_EQ(cn_dist_start(p->b, &db), 0);
    ASSERT_EQ(cn_dist_set_peer_port(p->b, p->aname, cn_dist_listen_port(p->a)), 0);
    cn_spawn(p->a, a_setup, p, NULL, NULL);
    cn_spawn(p->b, b_main, p, NULL, NULL);
    pthread_t ta;
    pthread_create(&ta, NULL, run_node, p->a);
    cn_node_run(p->b);
    pthread_join(ta, NULL);
    cn_node_free(p->b);
}

TEST(two_nodes_call_over_tls)
{
    ASSERT_EQ(pki(), 0);
    pair_t p = { 0 };
    run_pair(&p, path("b.pem"), path("b.key"), path("ca.pem"));
    ASSERT_EQ(p.result, 0);
    ASSERT_EQ(__atomic_load_n(&p.tls13, __ATOMIC_SEQ_CST), 2); /* each side logs it */
    ASSERT_EQ(__atomic_load_n(&p.refused, __ATOMIC_SEQ_CST), 0);
}

TEST(certificate_from_another_ca_is_refused)
{
    ASSERT_EQ(pki(), 0);
    pair_t p = { 0 };
    run_pair(&p, path("x.pem"), path("x.key"), path("both.pem"));
    ASSERT_LT(p.result, 0);
    ASSERT_EQ(__atomic_load_n(&p.tls13, __ATOMIC_SEQ_CST), 0);
    ASSERT_GE(__atomic_load_n(&p.refused, __ATOMIC_SEQ_CST), 1); /* A refused x */
}
