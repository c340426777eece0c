/* vproc_test.c - unit tests of virtual processes (cnode/src/vproc*.c): canonical
 * keys, rendezvous hashing (balance, and that only the keys of a node that
 * leaves or joins move), the in-memory store's version check, one node serving
 * a counter type (activation, idle deactivation, reactivation from the store,
 * a stale write reloaded and rerun), and three nodes in one process sharing a
 * store, one of which stops: every key still answers with its state.
 * The PostgreSQL store runs for real in tests/integ/vproc_netns.sh.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "test.h"

#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "cnode/vproc.h"
#include "vproc_counter.h"
#include "vproc_int.h"

/* ---- canonical keys -------------------------------------------------------------- */

static int canon_of(const char *buf, int len, ei_x_buff *out)
{
    (void)len;
    out->index = 0;
    int i = 0;
    return cn__vproc_key_canon(buf, &i, out);
}

TEST(key_canon_same_term_same_bytes)
{
    ei_x_buff a, b;
    ASSERT_EQ(ei_x_new(&a), 0);
    ASSERT_EQ(ei_x_new(&b), 0);
    /* Atom: ATOM_EXT (latin-1, as old erl wrote it) vs what libei writes. */
    static const char atom_ext[] = { 100, 0, 3, 'a', 'b', 'c' };
    ei_x_buff x;
    ei_x_new(&x);
    ei_x_encode_atom(&x, "abc");
    ASSERT_EQ(canon_of(atom_ext, sizeof(atom_ext), &a), 0);
    ASSERT_EQ(canon_of(x.buff, x.index, &b), 0);
    ASSERT_EQ(a.index, b.index);
    ASSERT_MEM_EQ(a.buff, b.buff, a.index);
    /* Integer 5: INTEGER_EXT vs SMALL_INTEGER_EXT; SMALL_BIG 5 too. */
    static const char int_ext[] = { 98, 0, 0, 0, 5 };
    static const char big_ext[] = { 110, 1, 0, 5 };
    x.index = 0;
    ei_x_encode_long(&x, 5);
    ASSERT_EQ(canon_of(int_ext, sizeof(int_ext), &a), 0);
    ASSERT_EQ(canon_of(x.buff, x.index, &b), 0);
    ASSERT_EQ(a.index, b.index);
    ASSERT_MEM_EQ(a.buff, b.buff, a.index);
    ASSERT_EQ(canon_of(big_ext, sizeof(big_ext), &a), 0);
    ASSERT_MEM_EQ(a.buff, b.buff, b.index);
    /* [1,2,3] as a list of integers vs as STRING_EXT, inside a tuple. */
    x.index = 0;
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "reader_session");
    ei_x_encode_list_header(&x, 3);
    for (int k = 1; k <= 3; k++)
        ei_x_encode_long(&x, k);
    ei_x_encode_empty_list(&x);
    ASSERT_EQ(canon_of(x.buff, x.index, &a), 0);
    x.index = 0;
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "reader_session");
    ei_x_encode_string_len(&x, "\1\2\3", 3);
    ASSERT_EQ(canon_of(x.buff, x.index, &b), 0);
    ASSERT_EQ(a.index, b.index);
    ASSERT_MEM_EQ(a.buff, b.buff, a.index);
    /* [1,2,0] with its 0 sent as a SMALL_BIG: the same string (vproc_key_fuzz
     * found it turning into one only on a second pass). */
    static const char big_list[] = { 108, 0, 0, 0, 3, 97, 1, 97, 2, 110, 3, 0, 0, 0, 0, 106 };
    ASSERT_EQ(canon_of(big_list, sizeof(big_list), &a), 0);
    x.index = 0;
    ei_x_encode_string_len(&x, "\1\2\0", 3);
    ASSERT_EQ(canon_of(x.buff, x.index, &b), 0);
    ASSERT_EQ(a.index, b.index);
    ASSERT_MEM_EQ(a.buff, b.buff, a.index);
    /* Different terms differ. */
    x.index = 0;
    ei_x_encode_binary(&x, "abc", 3);
    ASSERT_EQ(canon_of(x.buff, x.index, &b), 0);
    ASSERT(b.index != a.index || memcmp(a.buff, b.buff, (size_t)a.index) != 0);
    /* Refused: floats, pids, improper lists, too big. */
    x.index = 0;
    ei_x_encode_double(&x, 1.5);
    ASSERT_EQ(canon_of(x.buff, x.index, &a), -EINVAL);
    x.index = 0;
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_atom(&x, "a");
    ei_x_encode_atom(&x, "b");
    ASSERT_EQ(canon_of(x.buff, x.index, &a), -EINVAL);
    ASSERT_EQ(a.index, 0);
    static char big[2000];
    x.index = 0;
    ei_x_encode_binary(&x, big, sizeof(big));
    ASSERT_EQ(canon_of(x.buff, x.index, &a), -EINVAL);
    ei_x_free(&x);
    ei_x_free(&a);
    ei_x_free(&b);
}

/* ---- rendezvous ------------------------------------------------------------------ */

static uint64_t key_hash(int k)
{
    ei_x_buff x, c;
    ei_x_new(&x);
    ei_x_new(&c);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "reader_session");
    ei_x_encode_long(&x, k);
    int i = 0;
    cn__vproc_key_canon(x.buff, &i, &c);
    uint64_t h = cn__vproc_hash(c.buff, (size_t)c.index);
    ei_x_free(&x);
    ei_x_free(&c);
    return h;
}

#define NKEYS 10000

TEST(rendezvous_balance_and_minimal_moves)
{
    const char *four[] = { "a@10.0.0.1", "b@10.0.0.2", "c@10.0.0.3", "d@10.0.0.4" };
    static int own3[NKEYS], own2[NKEYS], own4[NKEYS];
    int count[4] = { 0 };
    for (int k = 0; k < NKEYS; k++) {
        uint64_t h = key_hash(k);
        own3[k] = cn__vproc_pick(h, four, 3);
        const char *ab[] = { four[0], four[1] };
        own2[k] = cn__vproc_pick(h, ab, 2);
        own4[k] = cn__vproc_pick(h, four, 4);
        count[own3[k]]++;
    }
    /* Balance over 3 nodes: each within 5% of a third. */
    for (int n = 0; n < 3; n++) {
        printf("node %d: %d keys\n", n, count[n]);
        ASSERT(count[n] > NKEYS / 3 * 95 / 100 && count[n] < NKEYS / 3 * 105 / 100);
    }
    int moved_remove = 0, moved_add = 0;
    for (int k = 0; k < NKEYS; k++) {
        /* c leaves: keys of a and b stay where they were. */
        if (own3[k] != 2)
            ASSERT_EQ(own2[k], own3[k]);
        else
            moved_remove++;
        /* d joins: a key moves only to d. */
        if (own4[k] != own3[k]) {
            ASSERT_EQ(own4[k], 3);
            moved_add++;
        }
    }
    ASSERT_EQ(moved_remove, count[2]);
    /* About a quarter of the keys go to the new node. */
    ASSERT(moved_add > NKEYS / 4 * 9 / 10 && moved_add < NKEYS / 4 * 11 / 10);
    ASSERT_EQ(cn__vproc_pick(1, four, 0), -1);
}

/* ---- the memory store -------------------------------------------------------------- */

TEST(mem_store_versions)
{
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_mem_new(&s), 0);
    ei_x_buff x;
    ei_x_new(&x);
    int64_t v = -1;
    ASSERT_EQ(s->ops->load(s, "t", "k1", 2, &x, &v), -ENOENT);
    ASSERT_EQ(s->ops->save(s, "t", "k1", 2, 0, "one", 3), 0);
    ASSERT_EQ(s->ops->save(s, "t", "k1", 2, 0, "two", 3), -ESTALE);
    ASSERT_EQ(s->ops->load(s, "t", "k1", 2, &x, &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(x.index, 3);
    ASSERT_MEM_EQ(x.buff, "one", 3);
    ASSERT_EQ(s->ops->save(s, "t", "k1", 2, 1, "three", 5), 0);
    ASSERT_EQ(s->ops->save(s, "t", "k1", 2, 1, "stale", 5), -ESTALE);
    x.index = 0;
    ASSERT_EQ(s->ops->load(s, "t", "k1", 2, &x, &v), 0);
    ASSERT_EQ(v, 2);
    ASSERT_MEM_EQ(x.buff, "three", 5);
    /* Same key bytes, another type: another row. */
    ASSERT_EQ(s->ops->load(s, "u", "k1", 2, &x, &v), -ENOENT);
    for (int i = 0; i < 1000; i++) {
        char k[16];
        int n = snprintf(k, sizeof(k), "key%d", i);
        ASSERT_EQ(s->ops->save(s, "t", k, (size_t)n, 0, k, (size_t)n), 0);
    }
    x.index = 0;
    ASSERT_EQ(s->ops->load(s, "t", "key777", 6, &x, &v), 0);
    ASSERT_MEM_EQ(x.buff, "key777", 6);
    ei_x_free(&x);
    cn_vproc_store_free(s);
}

/* ---- a counter type (vproc_counter.h) ----------------------------------------------- */

static atomic_int slow_calls_entered; /* {sleep, Ms} calls inside handle_call */
static const vc_opts_t counter_opts = { .sleep = true, .sleeps = &slow_calls_entered,
                                        .fail_666 = true };

static cn_vproc_type_t counter_type(int idle_ms)
{
    return vc_type("counter", idle_ms, &counter_opts);
}

static void encode_key(ei_x_buff *x, int k)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "c");
    ei_x_encode_long(x, k);
}

/* Calls must be answered: a generous limit, for ASan on a loaded machine. */
#define CCALL_TIMEOUT_MS 20000
static int64_t ccall_timeout_ms = CCALL_TIMEOUT_MS;

/* Call key k with an {Op, N} request (or the atom Op when n < 0); the reply as
 * a long long in *out (LLONG_MIN for `ok`). Returns cn_vproc_call's code, or
 * -EBADMSG for a reply of another shape. */
static int ccall(int k, const char *op, long long n, long long *out, char *node)
{
    ei_x_buff key, req;
    ei_x_new(&key);
    encode_key(&key, k);
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
    int rc = cn_vproc_call("counter", kt, &req, ccall_timeout_ms, 0, &m, &r, node);
    ei_x_free(&key);
    if (rc < 0)
        return rc;
    int i = r.index;
    if (cn_decode_atom_is(r.buf, &i, "ok"))
        *out = LLONG_MIN;
    else if (ei_decode_longlong(r.buf, &i, out) < 0)
        rc = -EBADMSG;
    cn_msg_free(m);
    return rc;
}

static cn_vproc_store_t *store_g;

static void single_proc(void *arg)
{
    (void)arg;
    cn_vproc_type_t t = counter_type(200);
    ASSERT_EQ(cn_vproc_register(&t), 0);
    ASSERT_EQ(cn_vproc_register(&t), -EEXIST);
    cn_vproc_type_t bad = t;
    bad.save = NULL;
    bad.name = "other";
    ASSERT_EQ(cn_vproc_register(&bad), -EINVAL);
    long long v;
    char node[CN_VPROC_NODE_MAX];
    for (int i = 1; i <= 3; i++) {
        ASSERT_EQ(ccall(1, "add", 5, &v, node), 0);
        ASSERT_EQ(v, 5 * i);
    }
    ASSERT_STR_EQ(node, cn_node_name(cn_node_self()));
    ASSERT_EQ(ccall(2, "get", -1, &v, NULL), 0);
    ASSERT_EQ(v, 0);
    cn_vproc_stats_t st;
    ASSERT_EQ(cn_vproc_stats(&st), 0);
    ASSERT_EQ(st.active, 2);
    ASSERT_EQ(st.activations, 2);
    ASSERT_EQ(st.writes, 3);
    /* A bad request answers {error, Code}; the vproc lives on. */
    ASSERT_EQ(ccall(1, "nonsense", -1, &v, NULL), -EBADMSG);

    /* Idle: both end 200 ms after their last call - waited for, since under
     * load a fixed 600 ms did not always see both deactivations through; the
     * next call loads key 1 from the store. */
    ASSERT(WAIT_UNTIL(cn_vproc_stats(&st) == 0 && st.active == 0 && st.idle_stops >= 2, 20000,
                      cn_sleep(10)));
    ASSERT_EQ(st.idle_stops, 2);
    ASSERT_EQ(ccall(1, "get", -1, &v, NULL), 0);
    ASSERT_EQ(v, 15);
    ASSERT_EQ(cn_vproc_stats(&st), 0);
    ASSERT_EQ(st.activations, 3);

    /* Another writer (another node's activation, say) saves version 4 behind
     * this activation's back: its next write is refused, reloaded, rerun. */
    ei_x_buff key, canon, val;
    ei_x_new(&key);
    ei_x_new(&canon);
    ei_x_new(&val);
    encode_key(&key, 1);
    int i = 0;
    ASSERT_EQ(cn__vproc_key_canon(key.buff, &i, &canon), 0);
    ei_x_encode_longlong(&val, 100);
    ASSERT_EQ(store_g->ops->save(store_g, "counter", canon.buff, (size_t)canon.index, 3,
                                 val.buff, (size_t)val.index), 0);
    ASSERT_EQ(ccall(1, "add", 1, &v, NULL), 0);
    ASSERT_EQ(v, 101);
    ASSERT_EQ(cn_vproc_stats(&st), 0);
    ASSERT_EQ(st.conflicts, 1);
    ASSERT_EQ(ccall(1, "get", -1, &v, NULL), 0);
    ASSERT_EQ(v, 101);
    ei_x_free(&key);
    ei_x_free(&canon);
    ei_x_free(&val);

    /* A state that cannot be saved: {error, save}, and the activation ends so
     * that nothing in memory is ahead of the store. */
    ASSERT_EQ(ccall(1, "set", 666, &v, NULL), -EBADMSG);
    ASSERT_EQ(ccall(1, "get", -1, &v, NULL), 0);
    ASSERT_EQ(v, 101);
    ASSERT_EQ(cn_vproc_stats(&st), 0);
    ASSERT_EQ(st.activations, 4);
    ASSERT_EQ(st.store_errors, 0);

    /* No such type here (and no cluster): -ENOENT once the timeout passes. */
    ei_x_buff k2, req;
    ei_x_new(&k2);
    ei_x_encode_atom(&k2, "x");
    cn_x_new(&req);
    ei_x_encode_atom(&req, "get");
    cn_term_t kt = { k2.buff, 0, k2.index };
    cn_msg_t *m;
    cn_term_t r;
    ASSERT_EQ(cn_vproc_call("nope", kt, &req, 50, 0, &m, &r, NULL), -ENOENT);
    /* A key that is not a key. */
    cn_x_new(&req);
    ei_x_encode_atom(&req, "get");
    k2.index = 0;
    ei_x_encode_double(&k2, 2.5);
    kt.len = k2.index;
    ASSERT_EQ(cn_vproc_call("counter", kt, &req, 50, 0, &m, &r, NULL), -EINVAL);
    ei_x_free(&k2);

    /* Leaving ends every activation. */
    ASSERT_EQ(cn_vproc_leave(), 0);
    ASSERT(WAIT_UNTIL(cn_vproc_stats(&st) == 0 && st.active == 0, 20000, cn_sleep(10)));
    cn_node_stop(cn_node_self());
}

/* One node named `name` that runs fn(arg) in a process (own stack) until the
 * node stops, then is freed; with a store, `vproc` is started on it first. */
static void run_node(const char *name, cn_vproc_store_t *store, cn_proc_fn fn, void *arg)
{
    cn_node_t *n;
    cn_node_opts_t o = { .name = name };
    ASSERT_EQ(cn_node_new(&o, &n), 0);
    if (store) {
        cn_vproc_opts_t vo = { .store = store };
        ASSERT_EQ(cn_vproc_start(n, &vo), 0);
    }
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    ASSERT_EQ(cn_spawn(n, fn, arg, &so, NULL), 0);
    ASSERT_EQ(cn_node_run(n), 0);
    cn_node_free(n);
}

TEST(one_node_activate_idle_reactivate_conflict)
{
    cn_node_t *n;
    cn_node_opts_t o = { .name = "vp1@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&o, &n), 0);
    ASSERT_EQ(cn_vproc_store_mem_new(&store_g), 0);
    cn_vproc_opts_t vo = { .store = NULL };
    ASSERT_EQ(cn_vproc_start(n, &vo), -EINVAL);
    vo.store = store_g;
    ASSERT_EQ(cn_vproc_start(n, &vo), 0);
    ASSERT_EQ(cn_vproc_start(n, &vo), -EALREADY);
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    ASSERT_EQ(cn_spawn(n, single_proc, NULL, &so, NULL), 0);
    ASSERT_EQ(cn_node_run(n), 0);
    cn_node_free(n);
    cn_vproc_store_free(store_g);
}

/* Malformed calls to the `vproc` process (as any Erlang node may send them)
 * are answered with a clear {error, Reason}, or dropped when they carry no
 * From to answer; the node serves the next good call. */
static void expect_vp_error(void (*enc)(ei_x_buff *), const char *reason, long code)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    enc(&x);
    ASSERT_EQ(cn_gen_call(cn_dest_name("vproc"), &x, 1000, &m, &r), 0);
    int i = r.index, arity;
    char a[MAXATOMLEN_UTF8];
    long v;
    ASSERT_EQ(ei_decode_tuple_header(r.buf, &i, &arity), 0);
    ASSERT_EQ(arity, 2);
    ASSERT_EQ(ei_decode_atom(r.buf, &i, a), 0);
    ASSERT_STR_EQ(a, "error");
    if (reason) {
        ASSERT_EQ(ei_decode_atom(r.buf, &i, a), 0);
        ASSERT_STR_EQ(a, reason);
    } else {
        ASSERT_EQ(ei_decode_long(r.buf, &i, &v), 0);
        ASSERT_EQ(v, code);
    }
    cn_msg_free(m);
}

static void enc_garbage(ei_x_buff *x)
{
    ei_x_encode_atom(x, "garbage");
}

static void enc_float_key(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 4);
    ei_x_encode_atom(x, "call");
    ei_x_encode_atom(x, "counter");
    ei_x_encode_double(x, 1.5);
    ei_x_encode_atom(x, "get");
}

static void enc_no_type(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 4);
    ei_x_encode_atom(x, "call");
    ei_x_encode_atom(x, "nosuch");
    ei_x_encode_atom(x, "k");
    ei_x_encode_atom(x, "get");
}

static void enc_type_not_atom(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 4);
    ei_x_encode_atom(x, "call");
    ei_x_encode_binary(x, "counter", 7);
    ei_x_encode_atom(x, "k");
    ei_x_encode_atom(x, "get");
}

static void enc_negative_hops(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 5);
    ei_x_encode_atom(x, "$vp");
    ei_x_encode_atom(x, "counter");
    encode_key(x, 1);
    ei_x_encode_atom(x, "get");
    ei_x_encode_long(x, -1);
}

static void enc_bad_request(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 4);
    ei_x_encode_atom(x, "call");
    ei_x_encode_atom(x, "counter");
    encode_key(x, 1);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "add");
    ei_x_encode_binary(x, "x", 1);
}

static void bad_input_proc(void *arg)
{
    (void)arg;
    cn_vproc_type_t t = counter_type(60000);
    ASSERT_EQ(cn_vproc_register(&t), 0);
    long long v;
    ASSERT_EQ(ccall(1, "add", 2, &v, NULL), 0);
    expect_vp_error(enc_garbage, "badarg", 0);
    expect_vp_error(enc_float_key, "badkey", 0);
    expect_vp_error(enc_no_type, "notype", 0);
    expect_vp_error(enc_type_not_atom, "badarg", 0);
    expect_vp_error(enc_negative_hops, "badarg", 0);
    expect_vp_error(enc_bad_request, NULL, -EINVAL); /* handle_call's code */
    /* Messages with no From, and notes of no activation: dropped. */
    static const char *junk[] = { "$gen_call", "$vp_gone", "$vp_idle" };
    for (int k = 0; k < 3; k++) {
        ei_x_buff x;
        cn_x_new(&x);
        ei_x_encode_tuple_header(&x, 3);
        ei_x_encode_atom(&x, junk[k]);
        ei_x_encode_atom(&x, "nofrom");
        ei_x_encode_long(&x, 7);
        ASSERT_EQ(cn_send_name("vproc", &x), 0);
    }
    ASSERT_EQ(ccall(1, "add", 1, &v, NULL), 0);
    ASSERT_EQ(v, 3);
    cn_node_stop(cn_node_self());
}

TEST(malformed_calls_get_clear_errors)
{
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_mem_new(&s), 0);
    run_node("vpbad@127.0.0.1", s, bad_input_proc, NULL);
    cn_vproc_store_free(s);
}

/* A node stopped while a caller waits in cn_vproc_call and the activation
 * is parked in its handle_call: both are killed, and what their call owned
 * (the caller's key and request; the activation's message and reply) is freed
 * by exit hooks (LeakSanitizer in the ASan build reports it otherwise). */
static void slow_caller(void *arg)
{
    (void)arg;
    /* The key in static memory (ccall's ei_x_buff would be this test's own
     * leak when the process is killed): only the library's buffers are live. */
    static char key[32];
    int ki = 0;
    ei_encode_tuple_header(key, &ki, 2);
    ei_encode_atom(key, &ki, "c");
    ei_encode_long(key, &ki, 3);
    ei_x_buff req;
    cn_x_new(&req);
    ei_x_encode_tuple_header(&req, 2);
    ei_x_encode_atom(&req, "sleep");
    ei_x_encode_longlong(&req, 600000);
    cn_msg_t *m;
    cn_term_t r;
    cn_vproc_call("counter", (cn_term_t){ key, 0, ki }, &req, 300000, 0, &m, &r, NULL);
    ASSERT(!"the node stops before the call returns");
}

static void kill_mid_call_proc(void *arg)
{
    (void)arg;
    cn_vproc_type_t t = counter_type(60000);
    ASSERT_EQ(cn_vproc_register(&t), 0);
    ASSERT_EQ(cn_spawn(cn_node_self(), slow_caller, NULL, NULL, NULL), 0);
    /* Stop once the activation has entered the slow handle_call (it says so):
     * a fixed sleep could stop the node before, and test nothing. */
    ASSERT(WAIT_UNTIL(atomic_load(&slow_calls_entered) == 1, 20000, cn_sleep(5)));
    cn_vproc_stats_t st;
    ASSERT_EQ(cn_vproc_stats(&st), 0);
    ASSERT_EQ(st.active, 1);
    ASSERT_EQ(st.calls, 0);
    cn_node_stop(cn_node_self());
}

TEST(killed_mid_call_caller_and_activation_free_their_call)
{
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_mem_new(&s), 0);
    run_node("vpkc@127.0.0.1", s, kill_mid_call_proc, NULL);
    cn_vproc_store_free(s);
}

/* ---- three nodes, one stops ------------------------------------------------------------- */

#define NK3 300

typedef struct tnode {
    cn_node_t *node;
    char name[64];
    atomic_int stop;
    int result;
} tnode_t;

static tnode_t tn[3];
static atomic_int phase3;
/* Nodes that have seen all three members: node 2 stops only once each has, or a
 * node on a slow thread would wait for a third member that already left. */
static atomic_int meshed3;

static void quiet(void *ud, int level, const char *msg)
{
    (void)ud, (void)level, (void)msg;
}

static void node3_proc(void *arg)
{
    tnode_t *t = arg;
    cn_vproc_type_t ty = counter_type(60000);
    ASSERT_EQ(cn_vproc_register(&ty), 0);
    WAIT_UNTIL(cn_cluster_members("vproc:counter", NULL, 0) >= 3, 30000, cn_sleep(10));
    ASSERT_EQ(cn_cluster_members("vproc:counter", NULL, 0), 3);
    atomic_fetch_add(&meshed3, 1);
    if (t != &tn[0]) {
        while (!atomic_load(&t->stop))
            cn_sleep(10);
        t->result = 1;
        cn_node_stop(t->node);
        return;
    }
    /* Node 0 sets every key through the cluster and counts where each lives. */
    int per[3] = { 0 };
    char node[CN_VPROC_NODE_MAX];
    long long v;
    for (int k = 0; k < NK3; k++) {
        ASSERT_EQ(ccall(k, "set", 1000 + k, &v, node), 0);
        ASSERT_EQ(v, LLONG_MIN);
        char owner[CN_VPROC_NODE_MAX];
        ei_x_buff key;
        ei_x_new(&key);
        encode_key(&key, k);
        cn_term_t kt = { key.buff, 0, key.index };
        ASSERT_EQ(cn_vproc_owner("counter", kt, owner), 0);
        ei_x_free(&key);
        ASSERT_STR_EQ(node, owner);
        ASSERT_EQ(ccall(k, "node", -1, &v, NULL), -EBADMSG); /* an atom: not a number */
        for (int i = 0; i < 3; i++)
            per[i] += strcmp(node, tn[i].name) == 0;
    }
    printf("keys per node: %d %d %d\n", per[0], per[1], per[2]);
    for (int i = 0; i < 3; i++)
        ASSERT(per[i] > NK3 / 6);

    /* Two activations of one key at once (as while views differ): a key owned
     * by node 1 is also served by node 2, which accepts a call with Hops = 2
     * whatever its view says. Alternating adds through both: every add lands on
     * the previous one's result (a stale save is refused, reloaded, rerun), so
     * the replies count up by one and none is lost. */
    int k1 = -1;
    for (int k = 0; k < NK3 && k1 < 0; k++) {
        char owner[CN_VPROC_NODE_MAX];
        ei_x_buff key;
        ei_x_new(&key);
        encode_key(&key, k);
        cn_term_t kt = { key.buff, 0, key.index };
        ASSERT_EQ(cn_vproc_owner("counter", kt, owner), 0);
        ei_x_free(&key);
        if (strcmp(owner, tn[1].name) == 0)
            k1 = k;
    }
    ASSERT(k1 >= 0);
    for (int i = 1; i <= 40; i++) {
        ASSERT_EQ(ccall(k1, "add", 1, &v, NULL), 0);
        ASSERT_EQ(v, 1000 + k1 + 2 * i - 1);
        ei_x_buff req;
        cn_x_new(&req);
        ei_x_encode_tuple_header(&req, 5);
        ei_x_encode_atom(&req, "$vp");
        ei_x_encode_atom(&req, "counter");
        encode_key(&req, k1);
        ei_x_encode_tuple_header(&req, 2);
        ei_x_encode_atom(&req, "add");
        ei_x_encode_long(&req, 1);
        ei_x_encode_long(&req, 2);
        cn_msg_t *m;
        cn_term_t r;
        ASSERT_EQ(cn_gen_call(cn_dest_remote("vproc", tn[2].name), &req, CCALL_TIMEOUT_MS, &m,
                              &r),
                  0);
        int ri = r.index;
        ASSERT_EQ(ei_decode_longlong(r.buf, &ri, &v), 0);
        ASSERT_EQ(v, 1000 + k1 + 2 * i);
        cn_msg_free(m);
    }
    ASSERT_EQ(ccall(k1, "set", 1000 + k1, &v, NULL), 0); /* back, for the check below */
    ASSERT(WAIT_UNTIL(atomic_load(&meshed3) == 3, 30000, cn_sleep(10)));
    /* Node 2 stops; once the registry has dropped it, every key answers with
     * its value, node 2's keys activated on 0 or 1 from the store. */
    atomic_store(&phase3, 1);
    WAIT_UNTIL(cn_cluster_members("vproc:counter", NULL, 0) == 2, 30000, cn_sleep(10));
    ASSERT_EQ(cn_cluster_members("vproc:counter", NULL, 0), 2);
    for (int k = 0; k < NK3; k++) {
        ASSERT_EQ(ccall(k, "get", -1, &v, node), 0);
        ASSERT_EQ(v, 1000 + k);
        ASSERT(strcmp(node, tn[2].name) != 0);
    }
    t->result = 1;
    atomic_store(&phase3, 2);
    cn_node_stop(t->node);
}

static void *run3(void *arg)
{
    tnode_t *t = arg;
    cn_node_run(t->node);
    cn_node_free(t->node);
    return NULL;
}

TEST(three_nodes_one_stops_every_key_keeps_its_state)
{
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_mem_new(&s), 0);
    cn_dist_opts_t d = { .cookie = "vp", .epmd_less = true, .log = quiet };
    for (int i = 0; i < 3; i++) {
        snprintf(tn[i].name, sizeof(tn[i].name), "v%d_%d@127.0.0.1", i, (int)getpid());
        cn_node_opts_t o = { .name = tn[i].name };
        ASSERT_EQ(cn_node_new(&o, &tn[i].node), 0);
        ASSERT_EQ(cn_dist_start(tn[i].node, &d), 0);
    }
    char list[256];
    snprintf(list, sizeof(list), "%s,%s,%s", tn[0].name, tn[1].name, tn[2].name);
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 3; k++)
            if (k != i)
                ASSERT_EQ(cn_dist_set_peer_port(tn[i].node, tn[k].name,
                                                cn_dist_listen_port(tn[k].node)), 0);
        cn_cluster_opts_t co = { .nodes = list, .poll_ms = 200, .backoff_min_ms = 50,
                                 .backoff_max_ms = 200, .log = quiet };
        ASSERT_EQ(cn_cluster_start(tn[i].node, &co), 0);
        cn_vproc_opts_t vo = { .store = s, .check_ms = 20 };
        ASSERT_EQ(cn_vproc_start(tn[i].node, &vo), 0);
        cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
        ASSERT_EQ(cn_spawn(tn[i].node, node3_proc, &tn[i], &so, NULL), 0);
    }
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, run3, &tn[i]);
    ASSERT(WAIT_UNTIL(atomic_load(&phase3) >= 1, 45000, usleep(10000)));
    ASSERT_EQ(atomic_load(&phase3), 1);
    atomic_store(&tn[2].stop, 1);
    pthread_join(th[2], NULL);
    pthread_join(th[0], NULL);
    atomic_store(&tn[1].stop, 1);
    pthread_join(th[1], NULL);
    ASSERT_EQ(tn[0].result, 1);
    ASSERT_EQ(tn[1].result, 1);
    cn_vproc_store_free(s);
}
TEST_TIMEOUT(three_nodes_one_stops_every_key_keeps_its_state, 60);

/* ---- the PostgreSQL store (run by tests/integ/vproc_store_pg.sh, which starts a
 * real PostgreSQL and sets VPROC_TEST_DATABASE_URL; skipped without it) ---------- */

#include <libpq-fe.h>

static const char *pg_url(void)
{
    const char *u = getenv("VPROC_TEST_DATABASE_URL");
    if (u == NULL || *u == '\0')
        printf("skipped: VPROC_TEST_DATABASE_URL is not set\n");
    return u && *u ? u : NULL;
}

/* Run SQL on a blocking connection of the test's own (not through the store). */
static void pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        printf("%s: %s\n", sql, PQresultErrorMessage(r));
    ASSERT(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    PQclear(r);
}

typedef struct pg_job {
    cn_vproc_store_t *s;
    int key;
    int rc;
    atomic_int *done;
} pg_job_t;

static void pg_first_use(void *arg)
{
    pg_job_t *j = arg;
    char k[16];
    int n = snprintf(k, sizeof(k), "first%d", j->key);
    j->rc = j->s->ops->save(j->s, "t", k, (size_t)n, 0, k, (size_t)n);
    atomic_fetch_add(j->done, 1);
}

static void pg_proc(void *arg)
{
    const char *url = arg;
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_pg_new(url, 16, &s), 0);

    /* 16 processes open 16 connections at once on a database without the
     * table: every one creates it if missing, none fails. */
    static pg_job_t jobs[16];
    atomic_int done = 0;
    for (int i = 0; i < 16; i++) {
        jobs[i] = (pg_job_t){ .s = s, .key = i, .rc = 1, .done = &done };
        ASSERT_EQ(cn_spawn(cn_node_self(), pg_first_use, &jobs[i], NULL, NULL), 0);
    }
    ASSERT(WAIT_UNTIL(atomic_load(&done) == 16, 30000, cn_sleep(10)));
    for (int i = 0; i < 16; i++)
        ASSERT_EQ(jobs[i].rc, 0);

    /* Versions: the same contract as the memory store; bytes with NULs. */
    ei_x_buff x;
    ei_x_new(&x);
    int64_t v = -1;
    ASSERT_EQ(s->ops->load(s, "t", "k\0z", 3, &x, &v), -ENOENT);
    ASSERT_EQ(s->ops->save(s, "t", "k\0z", 3, 0, "o\0e", 3), 0);
    ASSERT_EQ(s->ops->save(s, "t", "k\0z", 3, 0, "two", 3), -ESTALE);
    ASSERT_EQ(s->ops->load(s, "t", "k\0z", 3, &x, &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(x.index, 3);
    ASSERT_MEM_EQ(x.buff, "o\0e", 3);
    ASSERT_EQ(s->ops->save(s, "t", "k\0z", 3, 1, "three", 5), 0);
    ASSERT_EQ(s->ops->save(s, "t", "k\0z", 3, 1, "stale", 5), -ESTALE);
    ASSERT_EQ(s->ops->save(s, "t", "k\0z", 3, 7, "ahead", 5), -ESTALE);
    x.index = 0;
    ASSERT_EQ(s->ops->load(s, "t", "k\0z", 3, &x, &v), 0);
    ASSERT_EQ(v, 2);
    ASSERT_MEM_EQ(x.buff, "three", 5);
    ASSERT_EQ(s->ops->load(s, "u", "k\0z", 3, &x, &v), -ENOENT);
    /* An empty state is a state. */
    ASSERT_EQ(s->ops->save(s, "t", "empty", 5, 0, NULL, 0), 0);
    x.index = 0;
    ASSERT_EQ(s->ops->load(s, "t", "empty", 5, &x, &v), 0);
    ASSERT_EQ(x.index, 0);
    ASSERT_EQ(v, 1);
    ei_x_free(&x);
    cn_vproc_store_free(s);

    /* Nobody listens there: -EIO, not a wait for ever (the bound is loose on
     * purpose: a loaded machine under ASan is slow, and timing is not the point). */
    ASSERT_EQ(cn_vproc_store_pg_new("host=127.0.0.1 port=1 connect_timeout=2", 1, &s), 0);
    ei_x_new(&x);
    uint64_t t0 = cn_now_ms();
    ASSERT_EQ(s->ops->load(s, "t", "k", 1, &x, &v), -EIO);
    ASSERT_LT(cn_now_ms() - t0, 30000);
    ei_x_free(&x);
    cn_vproc_store_free(s);
    cn_node_stop(cn_node_self());
}

TEST(pg_store_versions_first_use_unreachable)
{
    const char *url = pg_url();
    if (url == NULL)
        return;
    PGconn *c = PQconnectdb(url);
    ASSERT_EQ(PQstatus(c), CONNECTION_OK);
    pg_exec(c, "DROP TABLE IF EXISTS cn_vproc_state");
    PQfinish(c);
    run_node("vpg@127.0.0.1", NULL, pg_proc, (void *)url);
}

/* A holder killed while its statement waits (here on a table lock) closes the
 * connection from its exit hook; the next user of the pool gets a working one. */
static PGconn *locker;

static void lock_table(void *arg)
{
    (void)arg;
    pg_exec(locker, "BEGIN");
    pg_exec(locker, "LOCK TABLE cn_vproc_state IN ACCESS EXCLUSIVE MODE");
}

static void unlock_table(void *arg)
{
    (void)arg;
    pg_exec(locker, "ROLLBACK");
}

/* Sessions of the server waiting for a lock, asked on the locker's connection:
 * how a test knows that a statement it started is parked behind the lock. */
static int lock_waiters_n;

static void count_lock_waiters(void *arg)
{
    (void)arg;
    PGresult *r = PQexec(locker, "SELECT count(*) FROM pg_locks WHERE NOT granted");
    lock_waiters_n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
}

static int lock_waiters(void)
{
    return cn_blocking(count_lock_waiters, NULL) < 0 ? -1 : lock_waiters_n;
}

static void free_x(void *arg)
{
    ei_x_free(arg);
}

static void pg_blocked_load(void *arg)
{
    cn_vproc_store_t *s = arg;
    ei_x_buff x;
    ei_x_new(&x);
    cn_on_exit(free_x, &x); /* x lives on this own stack */
    int64_t v;
    s->ops->load(s, "t", "k", 1, &x, &v);
    ASSERT(!"the load should have blocked until the kill");
}

static void pg_kill_proc(void *arg)
{
    const char *url = arg;
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_pg_new(url, 1, &s), 0);
    ASSERT_EQ(s->ops->save(s, "t", "k", 1, 0, "v1", 2), 0); /* connection open */
    ASSERT_EQ(cn_blocking(lock_table, NULL), 0);
    cn_pid_t p;
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    ASSERT_EQ(cn_spawn(cn_node_self(), pg_blocked_load, s, &so, &p), 0);
    /* Kill it once its load waits on the lock (the server says so): after a
     * fixed sleep it could still be short of holding the connection. */
    ASSERT(WAIT_UNTIL(lock_waiters() > 0, 20000, cn_sleep(10)));
    ASSERT(cn_is_alive(p));
    ASSERT_EQ(cn_exit_pid(p, "kill"), 0);
    ASSERT(WAIT_UNTIL(!cn_is_alive(p), 10000, cn_sleep(5)));
    ASSERT_EQ(cn_blocking(unlock_table, NULL), 0);
    /* The pool's only connection was the killed holder's: reopened. */
    ei_x_buff x;
    ei_x_new(&x);
    int64_t v;
    ASSERT_EQ(s->ops->load(s, "t", "k", 1, &x, &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_MEM_EQ(x.buff, "v1", 2);
    ei_x_free(&x);
    cn_vproc_store_free(s);
    cn_node_stop(cn_node_self());
}

TEST(pg_store_killed_holder_closes_its_connection)
{
    const char *url = pg_url();
    if (url == NULL)
        return;
    locker = PQconnectdb(url);
    ASSERT_EQ(PQstatus(locker), CONNECTION_OK);
    pg_exec(locker, "DROP TABLE IF EXISTS cn_vproc_state");
    run_node("vpk@127.0.0.1", NULL, pg_kill_proc, (void *)pg_url());
    PQfinish(locker);
}

/* The whole path on PostgreSQL: activation and writes through the real store,
 * and a row deleted behind an active activation's back (as an operator
 * expiring old states would): its next write is refused, it reloads the empty
 * state and reruns, so the delete is not undone. */
static PGconn *admin;

static void delete_rows(void *arg)
{
    (void)arg;
    pg_exec(admin, "DELETE FROM cn_vproc_state WHERE type = 'counter'");
}

static void pg_vproc_proc(void *arg)
{
    (void)arg;
    cn_vproc_type_t t = counter_type(60000);
    ASSERT_EQ(cn_vproc_register(&t), 0);
    long long v;
    ASSERT_EQ(ccall(7, "add", 5, &v, NULL), 0);
    ASSERT_EQ(v, 5);
    ASSERT_EQ(ccall(7, "add", 2, &v, NULL), 0);
    ASSERT_EQ(v, 7);
    ASSERT_EQ(cn_blocking(delete_rows, NULL), 0);
    ASSERT_EQ(ccall(7, "get", -1, &v, NULL), 0);
    ASSERT_EQ(v, 7); /* a stale read, as documented */
    ASSERT_EQ(ccall(7, "add", 1, &v, NULL), 0);
    ASSERT_EQ(v, 1);
    cn_vproc_stats_t st;
    ASSERT_EQ(cn_vproc_stats(&st), 0);
    ASSERT_EQ(st.conflicts, 1);
    ASSERT_EQ(st.writes, 3);
    ASSERT_EQ(cn_vproc_leave(), 0);
    ASSERT(WAIT_UNTIL(cn_vproc_stats(&st) == 0 && st.active == 0, 20000, cn_sleep(10)));
    cn_node_stop(cn_node_self());
}

TEST(pg_vproc_delete_behind_an_activation)
{
    const char *url = pg_url();
    if (url == NULL)
        return;
    admin = PQconnectdb(url);
    ASSERT_EQ(PQstatus(admin), CONNECTION_OK);
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_pg_new(url, 2, &s), 0);
    run_node("vpd@127.0.0.1", s, pg_vproc_proc, NULL);
    cn_vproc_store_free(s);
    PQfinish(admin);
}

/* An activation killed while parked in the store (the node stops during a
 * write held up by a table lock) frees what its call owned - the message, the
 * reply and the state's bytes - through its exit hook (LeakSanitizer in the
 * ASan build reports them otherwise). */
static int killed_call_rc;

static void pg_write_caller(void *arg)
{
    (void)arg;
    long long v;
    ccall_timeout_ms = 300;
    killed_call_rc = ccall(9, "add", 1, &v, NULL);
    ccall_timeout_ms = CCALL_TIMEOUT_MS;
}

static void pg_kill_mid_save_proc(void *arg)
{
    (void)arg;
    cn_vproc_type_t t = counter_type(60000);
    ASSERT_EQ(cn_vproc_register(&t), 0);
    long long v;
    ASSERT_EQ(ccall(9, "add", 1, &v, NULL), 0); /* the row and a connection exist */
    ASSERT_EQ(cn_blocking(lock_table, NULL), 0);
    killed_call_rc = 1;
    ASSERT_EQ(cn_spawn(cn_node_self(), pg_write_caller, NULL, NULL, NULL), 0);
    /* The caller gives up after its timeout; the activation stays parked in its
     * UPDATE behind the lock until the node stops and kills it. */
    ASSERT(WAIT_UNTIL(killed_call_rc != 1, 30000, cn_sleep(10)));
    ASSERT(WAIT_UNTIL(lock_waiters() > 0, 20000, cn_sleep(10))); /* the UPDATE */
    cn_vproc_stats_t st;
    ASSERT_EQ(cn_vproc_stats(&st), 0);
    ASSERT_EQ(st.writes, 1);
    ASSERT_EQ(st.active, 1);
    cn_node_stop(cn_node_self());
}

TEST(pg_vproc_killed_mid_save_frees_its_call)
{
    const char *url = pg_url();
    if (url == NULL)
        return;
    locker = PQconnectdb(url);
    ASSERT_EQ(PQstatus(locker), CONNECTION_OK);
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_pg_new(url, 2, &s), 0);
    run_node("vpm@127.0.0.1", s, pg_kill_mid_save_proc, NULL);
    ASSERT_EQ(killed_call_rc, -ETIMEDOUT);
    unlock_table(NULL);
    cn_vproc_store_free(s);
    PQfinish(locker);
}

/* A node freed without ever running: its router never ran, and its state is
 * still released (LeakSanitizer in the ASan build reports it otherwise). */
TEST(vproc_state_freed_when_the_router_never_runs)
{
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_mem_new(&s), 0);
    cn_node_t *n;
    cn_node_opts_t o = { .name = "vpnr@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&o, &n), 0);
    cn_vproc_opts_t vo = { .store = s };
    ASSERT_EQ(cn_vproc_start(n, &vo), 0);
    cn_node_free(n);
    cn_vproc_store_free(s);
}

/* A PostgreSQL store has no lock: the first node that uses it owns it, and
 * another node's load or save is refused before it touches the pool (no
 * server needed: nothing listens on port 1, the first node gets -EIO). */
static int pg_xdev_rc;

static void pg_xdev_proc(void *arg)
{
    cn_vproc_store_t *s = arg;
    ei_x_buff x;
    int64_t v;
    ei_x_new(&x);
    pg_xdev_rc = s->ops->load(s, "t", "k", 1, &x, &v);
    ei_x_free(&x);
}

TEST(pg_store_belongs_to_one_node)
{
    cn_vproc_store_t *s;
    ASSERT_EQ(cn_vproc_store_pg_new("host=127.0.0.1 port=1 connect_timeout=2", 1, &s), 0);
    const char *names[2] = { "vpx1@127.0.0.1", "vpx2@127.0.0.1" };
    int want[2] = { -EIO, -EXDEV };
    cn_node_t *n[2]; /* both alive until the end: distinct nodes */
    for (int k = 0; k < 2; k++) {
        cn_node_opts_t o = { .name = names[k] };
        ASSERT_EQ(cn_node_new(&o, &n[k]), 0);
    }
    for (int k = 0; k < 2; k++) {
        pg_xdev_rc = 1;
        ASSERT_EQ(cn_spawn(n[k], pg_xdev_proc, s, NULL, NULL), 0);
        ASSERT_EQ(cn_node_run(n[k]), 0);
        ASSERT_EQ(pg_xdev_rc, want[k]);
    }
    for (int k = 0; k < 2; k++)
        cn_node_free(n[k]);
    cn_vproc_store_free(s);
}
