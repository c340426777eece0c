/* gen_server_test.c - calls, casts, deferred replies, timeouts, noproc, stop. */
#include "test.h"

#include <errno.h>
#include <string.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"

static void run_node(cn_proc_fn fn, void *arg)
{
    cn_node_t *node;
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    ASSERT_EQ(cn_spawn(node, fn, arg, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    ASSERT_EQ(cn_node_process_count(node), 0);
    cn_node_free(node);
}

/* A counter server: {add, N} -> new total; get -> total; {later, Ms} replies after
 * Ms via a timer message; crash -> stops with reason `crashed`; cast {add, N}. */
typedef struct counter {
    long total;
    int terminated;
    cn_from_t pending;
    bool has_pending;
    long pending_big; /* > 0: the deferred reply is a binary of this many bytes */
} counter_t;

static int terminate_calls;
static char last_reason[64];

static int c_init(void *arg, void **state)
{
    long start = (long)arg;
    if (start < 0)
        return -EINVAL; /* init failure */
    counter_t *c = calloc(1, sizeof(*c));
    c->total = start;
    *state = c;
    return 0;
}

static int c_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    counter_t *c = state;
    int i = req.index, arity;
    long v;
    if (cn_decode_atom_is(req.buf, &i, "get")) {
        ei_x_encode_long(reply, c->total);
        return CN_GS_CONTINUE;
    }
    if (cn_decode_atom_is(req.buf, &i, "crash")) {
        cn_gen_server_set_reason("crashed");
        return CN_GS_STOP;
    }
    if (cn_decode_atom_is(req.buf, &i, "forge")) {
        /* Before the reply, {Tag', forged} for tags of the same shape and
         * length as the call's, one byte off: in the ref's last ID byte, in
         * its first, and in the creation (the node's, as a reply from another
         * call or a forged one could carry). The caller must take none. */
        int offs[] = { from->taglen - 1, from->taglen - 12, from->taglen - 13 };
        for (size_t k = 0; k < sizeof offs / sizeof *offs; k++) {
            ei_x_buff f;
            cn_x_new(&f);
            ei_x_encode_tuple_header(&f, 2);
            ei_x_append_buf(&f, from->tag, from->taglen);
            f.buff[f.index - from->taglen + offs[k]] ^= 1;
            ei_x_encode_atom(&f, "forged");
            cn_send(from->pid, &f);
        }
        ei_x_encode_atom(reply, "real");
        return CN_GS_CONTINUE;
    }
    if (cn_decode_atom_is(req.buf, &i, "stop_reply")) {
        ei_x_encode_atom(reply, "bye");
        return CN_GS_STOP;
    }
    if (ei_decode_tuple_header(req.buf, &i, &arity) == 0 && arity == 2) {
        int j = i, type, size;
        if (cn_decode_atom_is(req.buf, &j, "echo") && ei_get_type(req.buf, &j, &type, &size) == 0) {
            cn_term_t t = { req.buf, j, req.len };
            cn_x_append_term(reply, t); /* {echo, T} -> T */
            return CN_GS_CONTINUE;
        }
        if (cn_decode_atom_is(req.buf, &i, "add") && ei_decode_long(req.buf, &i, &v) == 0) {
            c->total += v;
            ei_x_encode_long(reply, c->total);
            return CN_GS_CONTINUE;
        }
        bool big = false;
        if ((cn_decode_atom_is(req.buf, &i, "later") ||
             (big = cn_decode_atom_is(req.buf, &i, "later_big"))) &&
            ei_decode_long(req.buf, &i, &v) == 0) {
            c->pending = *from;
            c->has_pending = true;
            c->pending_big = big ? v : 0;
            v = big ? 10 : v;
            ei_x_buff t;
            cn_x_new(&t);
            ei_x_encode_atom(&t, "tick");
            cn_send_after(v, cn_self(), &t, NULL);
            return CN_GS_NOREPLY;
        }
    }
    ei_x_encode_tuple_header(reply, 2);
    ei_x_encode_atom(reply, "error");
    ei_x_encode_atom(reply, "bad_request");
    return CN_GS_CONTINUE;
}

static int c_cast(void *state, cn_term_t req)
{
    counter_t *c = state;
    int i = req.index, arity;
    long v;
    if (ei_decode_tuple_header(req.buf, &i, &arity) == 0 && arity == 2 &&
        cn_decode_atom_is(req.buf, &i, "add") && ei_decode_long(req.buf, &i, &v) == 0)
        c->total += v;
    return CN_GS_CONTINUE;
}

static int c_info(void *state, cn_term_t msg)
{
    counter_t *c = state;
    int i = msg.index;
    if (cn_decode_atom_is(msg.buf, &i, "tick") && c->has_pending) {
        ei_x_buff r;
        if (c->pending_big > 0) {
            /* A buffer with no room for the envelope, exactly the size of
             * its term (as a caller's own malloc'd buffer may be; cn_x_new_size
             * leaves libei's 100 spare bytes, room enough for a local tag):
             * cn_gen_reply makes a second one (otherwise it builds {Tag,
             * Reply} in place). */
            char *bin = calloc(1, (size_t)c->pending_big);
            size_t n = 1 + 5 + (size_t)c->pending_big;
            r.buff = malloc(n);
            r.buffsz = (int)n;
            r.index = 0;
            ei_encode_version(r.buff, &r.index);
            ei_encode_binary(r.buff, &r.index, bin, c->pending_big);
            free(bin);
        } else {
            cn_x_new(&r);
            ei_x_encode_atom(&r, "late_ok");
        }
        cn_gen_reply(&c->pending, &r);
        c->has_pending = false;
    }
    return CN_GS_CONTINUE;
}

static void c_terminate(void *state, cn_term_t reason)
{
    terminate_calls++;
    cn_term_print(reason, last_reason, sizeof(last_reason));
    free(state);
}

static int c_code_change(const char *old_vsn, void **state, cn_term_t extra, char *err,
                         size_t errlen)
{
    (void)old_vsn;
    (void)err;
    (void)errlen;
    counter_t *c = *state;
    long v;
    int i = extra.index;
    if (ei_decode_long(extra.buf, &i, &v) < 0)
        return -EINVAL;
    c->total = v;
    return 0;
}

static const cn_gen_server_t counter_cb = {
    .init = c_init,
    .handle_call = c_call,
    .handle_cast = c_cast,
    .handle_info = c_info,
    .terminate = c_terminate,
    .code_change = c_code_change,
};

static long call_long(cn_dest_t d, ei_x_buff *req, int64_t tmo, int *rc_out)
{
    cn_msg_t *m;
    cn_term_t r;
    long v = -999;
    int rc = cn_gen_call(d, req, tmo, &m, &r);
    *rc_out = rc;
    if (rc == 0) {
        int i = r.index;
        ASSERT_EQ(ei_decode_long(r.buf, &i, &v), 0);
        cn_msg_free(m);
    } else {
        cn_msg_free(m);
    }
    return v;
}

static ei_x_buff req_add(long n)
{
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "add");
    ei_x_encode_long(&x, n);
    return x;
}

static ei_x_buff req_atom(const char *a)
{
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, a);
    return x;
}

static void main_basic(void *arg)
{
    (void)arg;
    cn_pid_t pid;
    cn_gen_server_opts_t o = { .name = "counter" };
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)10L, &o, &pid), 0);
    int rc;
    ei_x_buff x = req_add(5);
    ASSERT_EQ(call_long(cn_dest_name("counter"), &x, 1000, &rc), 15);
    ASSERT_EQ(rc, 0);
    ASSERT_NULL(x.buff); /* consumed */
    x = req_add(1);
    ASSERT_EQ(call_long(cn_dest_pid(pid), &x, 1000, &rc), 16);
    x = req_add(1);
    ASSERT_EQ(call_long(cn_dest_remote("counter", cn_node_name(cn_node_self())), &x, 1000, &rc),
              17);
    /* casts are asynchronous but ordered before a later call */
    for (int k = 0; k < 10; k++) {
        x = req_add(2);
        ASSERT_EQ(cn_gen_cast(cn_dest_name("counter"), &x), 0);
    }
    x = req_atom("get");
    ASSERT_EQ(call_long(cn_dest_name("counter"), &x, 1000, &rc), 37);

    /* a bad request gets {error, bad_request} and harms nothing */
    cn_msg_t *m;
    cn_term_t r;
    x = req_atom("nonsense");
    ASSERT_EQ(cn_gen_call(cn_dest_name("counter"), &x, 1000, &m, &r), 0);
    char text[64];
    cn_term_print(r, text, sizeof(text));
    ASSERT_STR_EQ(text, "{error, bad_request}");
    cn_msg_free(m);

    /* deferred reply */
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "later");
    ei_x_encode_long(&x, 20);
    ASSERT_EQ(cn_gen_call(cn_dest_name("counter"), &x, 1000, &m, &r), 0);
    cn_term_print(r, text, sizeof(text));
    ASSERT_STR_EQ(text, "late_ok");
    cn_msg_free(m);
    /* deferred replies too large for their buffer's room, then a small one
     * again (the noreply calls' buffers are reused: see handle_call_msg) */
    for (long size = 100; size <= 100000; size *= 10) {
        cn_x_new(&x);
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, "later_big");
        ei_x_encode_long(&x, size);
        ASSERT_EQ(cn_gen_call(cn_dest_name("counter"), &x, 1000, &m, &r), 0);
        int ri = r.index, type, bsize;
        ASSERT_EQ(ei_get_type(r.buf, &ri, &type, &bsize), 0);
        ASSERT_EQ(type, ERL_BINARY_EXT);
        ASSERT_EQ(bsize, size);
        cn_msg_free(m);
    }
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "later");
    ei_x_encode_long(&x, 1);
    ASSERT_EQ(cn_gen_call(cn_dest_name("counter"), &x, 1000, &m, &r), 0);
    cn_term_print(r, text, sizeof(text));
    ASSERT_STR_EQ(text, "late_ok");
    cn_msg_free(m);

    /* code change replaces the state through the callback */
    ei_x_buff extra;
    cn_x_new(&extra);
    ei_x_encode_long(&extra, 1000);
    ASSERT_EQ(cn_gen_server_code_change(cn_dest_name("counter"), &extra, 1000), 0);
    x = req_atom("get");
    ASSERT_EQ(call_long(cn_dest_name("counter"), &x, 1000, &rc), 1000);
    cn_x_new(&extra);
    ei_x_encode_atom(&extra, "not_a_number");
    ASSERT_EQ(cn_gen_server_code_change(cn_dest_name("counter"), &extra, 1000), -EINVAL);

    /* stop runs terminate with the reason */
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("counter"), "shutdown", 1000), 0);
    ASSERT_EQ(terminate_calls, 1);
    ASSERT_STR_EQ(last_reason, "shutdown");
    ASSERT(!cn_is_alive(pid));
}

TEST(call_cast_deferred_reply_code_change_stop)
{
    run_node(main_basic, NULL);
}

/* A call's envelope goes in front of the request in the request's buffer when
 * it has the room, in a new buffer when not, and through the general path for
 * node names too long for either: requests of every size up to 300 bytes in
 * buffers of their exact size (libei's 100 spare bytes), on nodes whose names
 * make an envelope of ~90, ~150 and ~500 bytes, come back whole. */
static void main_envelope(void *arg)
{
    (void)arg;
    cn_pid_t pid;
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L, NULL, &pid), 0);
    static char bin[300];
    for (size_t k = 0; k < sizeof bin; k++)
        bin[k] = (char)(k * 7);
    for (long size = 0; size <= 300; size += size < 8 ? 1 : 23) {
        ei_x_buff x;
        ASSERT_EQ(cn_x_new_size(&x, 1 + 2 + 6 + 5 + (size_t)size), 0);
        char *b0 = x.buff;
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, "echo");
        ei_x_encode_binary(&x, bin, size);
        ASSERT(x.buff == b0); /* exact: libei did not grow it */
        cn_msg_t *m;
        cn_term_t r;
        ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 5000, &m, &r), 0);
        ASSERT_NULL(x.buff);
        static char back[300];
        long got = -1;
        int i = r.index;
        ASSERT_EQ(ei_decode_binary(r.buf, &i, back, &got), 0);
        ASSERT_EQ(got, size);
        ASSERT(memcmp(back, bin, (size_t)size) == 0);
        cn_msg_free(m);
    }
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(pid), "normal", 1000), 0);
}

/* The reply is matched by the bytes of the tag the call sent: replies whose
 * tags differ from it in one byte of the ref (IDs, creation) are not the
 * call's, and stay in the mailbox. */
static void main_forged(void *arg)
{
    (void)arg;
    cn_pid_t pid;
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L, NULL, &pid), 0);
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "forge");
    cn_msg_t *m;
    cn_term_t r;
    ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 5000, &m, &r), 0);
    char text[64];
    cn_term_print(r, text, sizeof(text));
    ASSERT_STR_EQ(text, "real");
    cn_msg_free(m);
    int left = 0;
    while (cn_receive(NULL, NULL, 0, &m) == 0) {
        int i = 1, arity;
        ASSERT_EQ(ei_decode_tuple_header(m->buf, &i, &arity), 0);
        ASSERT_EQ(arity, 2);
        ei_skip_term(m->buf, &i);
        ASSERT(cn_decode_atom_is(m->buf, &i, "forged"));
        cn_msg_free(m);
        left++;
    }
    ASSERT_EQ(left, 3);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(pid), "normal", 1000), 0);
}

TEST(call_takes_no_reply_with_another_tag)
{
    run_node(main_forged, NULL);
}

TEST(call_envelope_in_place_new_buffer_or_long_names)
{
    static char long_name[240];
    memset(long_name, 'n', sizeof long_name - 1);
    memcpy(long_name + 200, "@127.0.0.1", 11);
    const char *names[] = { NULL, "a-node-with-a-longer-name@127.0.0.1", long_name };
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        cn_node_t *node;
        cn_node_opts_t o = { .name = names[k] };
        ASSERT_EQ(cn_node_new(&o, &node), 0);
        ASSERT_EQ(cn_spawn(node, main_envelope, NULL, NULL, NULL), 0);
        ASSERT_EQ(cn_node_run(node), 0);
        cn_node_free(node);
    }
}

static void main_errors(void *arg)
{
    (void)arg;
    int rc;
    cn_msg_t *m;
    cn_term_t r;
    char text0[64];
    /* missing name: noproc at once, not when the call's limit passes (which is
     * long, so that a loaded machine is never mistaken for a wait) */
    ei_x_buff x = req_atom("get");
    uint64_t t0 = cn_now_ms();
    ASSERT_EQ(cn_gen_call(cn_dest_name("nobody"), &x, 30000, &m, &r), -ESRCH);
    ASSERT_NULL(x.buff);
    /* dead pid: noproc at once (through the monitor) */
    cn_pid_t pid;
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L, NULL, &pid), 0);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(pid), "normal", 1000), 0);
    x = req_atom("get");
    ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 30000, &m, &r), -ESRCH);
    ASSERT_LT(cn_now_ms() - t0, 30000);
    /* remote node: not connected */
    x = req_atom("get");
    ASSERT_EQ(cn_gen_call(cn_dest_remote("x", "other@host"), &x, 100, &m, &r), -EHOSTUNREACH);

    /* A request that is not a version byte and a term - made with ei_x_new
     * (no version byte), or empty - is refused, not sent with its first byte
     * taken for the version; the buffer is consumed all the same. */
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L, NULL, &pid), 0);
    ASSERT_EQ(ei_x_new(&x), 0);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "add");
    ei_x_encode_long(&x, 5);
    ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 1000, &m, &r), -EINVAL);
    ASSERT_NULL(x.buff);
    ASSERT_EQ(ei_x_new(&x), 0);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "add");
    ei_x_encode_long(&x, 5);
    ASSERT_EQ(cn_gen_cast(cn_dest_pid(pid), &x), -EINVAL);
    ASSERT_NULL(x.buff);
    ASSERT_EQ(cn_x_new(&x), 0);
    ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 1000, &m, &r), -EINVAL);
    ASSERT_NULL(x.buff);
    x = req_atom("get");
    ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 1000, &m, &r), 0);
    cn_term_print(r, text0, sizeof(text0));
    ASSERT_STR_EQ(text0, "0"); /* no {add, 5} got through */
    cn_msg_free(m);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(pid), "normal", 1000), 0);

    /* server dies during the call: -ECONNABORTED with the reason */
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L, NULL, &pid), 0);
    x = req_atom("crash");
    ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 1000, &m, &r), -ECONNABORTED);
    char text[64];
    cn_term_print(r, text, sizeof(text));
    ASSERT_STR_EQ(text, "crashed");
    cn_msg_free(m);
    ASSERT_STR_EQ(last_reason, "crashed");

    /* a reply with stop reaches the caller before the exit */
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L, NULL, &pid), 0);
    x = req_atom("stop_reply");
    ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 1000, &m, &r), 0);
    cn_term_print(r, text, sizeof(text));
    ASSERT_STR_EQ(text, "bye");
    cn_msg_free(m);

    /* timeout; the late reply is dropped, not left in the mailbox */
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L, NULL, &pid), 0);
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "later");
    ei_x_encode_long(&x, 50);
    t0 = cn_now_ms();
    ASSERT_EQ(cn_gen_call(cn_dest_pid(pid), &x, 10, &m, &r), -ETIMEDOUT);
    ASSERT_GE(cn_now_ms() - t0, 10);
    cn_sleep(100);
    ASSERT_EQ(cn_mbox_len(), 0);
    x = req_atom("get");
    ASSERT_EQ(call_long(cn_dest_pid(pid), &x, 1000, &rc), 0);

    /* init failure: start returns its code, the caller survives */
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)-1L,
                                  &(cn_gen_server_opts_t){ .link = true }, &pid),
              -EINVAL);
    /* name taken */
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L,
                                  &(cn_gen_server_opts_t){ .name = "c1" }, NULL),
              0);
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L,
                                  &(cn_gen_server_opts_t){ .name = "c1" }, NULL),
              -EEXIST);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("c1"), "normal", 1000), 0);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("c1"), "normal", 1000), -ESRCH);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(pid), "normal", 1000), 0); /* the slow one */

    /* a killed server still frees its state (terminate from the exit hook) */
    int before = terminate_calls;
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L, NULL, &pid), 0);
    ASSERT_EQ(cn_exit_pid(pid, "kill"), 0);
    WAIT_UNTIL(terminate_calls == before + 1, 10000, cn_sleep(1));
    ASSERT_EQ(terminate_calls, before + 1);
    ASSERT_STR_EQ(last_reason, "killed");
    cn_gen_server_stop(cn_dest_pid(pid), "normal", 1000);
    ei_x_buff extra;
    cn_x_new(&extra);
    ei_x_encode_long(&extra, 1);
    ASSERT_EQ(cn_gen_server_code_change(cn_dest_pid(pid), &extra, 100), -ESRCH);
}

TEST(call_errors_noproc_timeout_exit_init_failure)
{
    run_node(main_errors, NULL);
}

/* 64 callers against one server. */
static int callers_done;

static void caller(void *arg)
{
    (void)arg;
    int rc;
    for (int k = 0; k < 500; k++) {
        ei_x_buff x = req_add(1);
        call_long(cn_dest_name("counter"), &x, 5000, &rc);
        ASSERT_EQ(rc, 0);
    }
    callers_done++;
}

static void main_many_callers(void *arg)
{
    (void)arg;
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &counter_cb, (void *)0L,
                                  &(cn_gen_server_opts_t){ .name = "counter" }, NULL),
              0);
    for (int k = 0; k < 64; k++)
        ASSERT_EQ(cn_spawn(cn_node_self(), caller, NULL, NULL, NULL), 0);
    while (callers_done < 64)
        cn_sleep(5);
    int rc;
    ei_x_buff x = req_atom("get");
    ASSERT_EQ(call_long(cn_dest_name("counter"), &x, 1000, &rc), 64 * 500);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("counter"), "normal", 1000), 0);
}

TEST(sixty_four_concurrent_callers)
{
    run_node(main_many_callers, NULL);
}

/* Started from outside any process (before cn_node_run). */
static void stopper(void *arg)
{
    (void)arg;
    int rc;
    cn_sleep(5);
    ei_x_buff x = req_atom("get");
    ASSERT_EQ(call_long(cn_dest_name("boot"), &x, 1000, &rc), 3);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("boot"), "normal", 1000), 0);
}

TEST(start_before_run)
{
    cn_node_t *node;
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    ASSERT_EQ(cn_gen_server_start(node, &counter_cb, (void *)3L,
                                  &(cn_gen_server_opts_t){ .name = "boot" }, NULL),
              0);
    ASSERT_EQ(cn_gen_server_start(node, &counter_cb, (void *)3L,
                                  &(cn_gen_server_opts_t){ .link = true }, NULL),
              -EINVAL);
    ASSERT_EQ(cn_spawn(node, stopper, NULL, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    cn_node_free(node);
}
