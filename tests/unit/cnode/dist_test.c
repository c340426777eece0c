/* dist_test.c - unit tests of the distribution layer: the pure parsers and
 * builders (handshake.c, dist_frame.c, epmd.c, cookie.c), and two C nodes in one
 * process (one scheduler thread each) talking over loopback without EPMD:
 * gen_server call by {Name, Node}, remote monitors, links and exits across. */
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>

#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "dist_int.h"

/* ---- handshake messages ------------------------------------------------------ */

TEST(handshake_name_round_trip)
{
    uint8_t buf[HS_MAX];
    cn_hs_name_t nm;
    int n = cn__hs_build_name(buf, sizeof(buf), DF_OURS, 0xdeadbeef, "a@127.0.0.1");
    ASSERT_EQ(n, 15 + 11);
    ASSERT_EQ(cn__hs_parse_name(buf, (size_t)n, &nm), 0);
    ASSERT_EQ(nm.flags, DF_OURS);
    ASSERT_EQ(nm.creation, 0xdeadbeefu);
    ASSERT_STR_EQ(nm.name, "a@127.0.0.1");
    ASSERT(!(nm.flags & DF_PUBLISHED)); /* we are hidden */
    /* every truncation and a wrong tag are rejected */
    for (int k = 0; k < n; k++)
        ASSERT_EQ(cn__hs_parse_name(buf, (size_t)k, &nm), -EINVAL);
    buf[0] = 'n';
    ASSERT_EQ(cn__hs_parse_name(buf, (size_t)n, &nm), -EINVAL);
    /* a name without '@' is refused */
    n = cn__hs_build_name(buf, sizeof(buf), DF_OURS, 1, "nohost");
    ASSERT_EQ(cn__hs_parse_name(buf, (size_t)n, &nm), -EINVAL);
}

TEST(handshake_challenge_reply_ack)
{
    uint8_t buf[HS_MAX], d[16], d2[16];
    cn_hs_name_t ch;
    int n = cn__hs_build_challenge(buf, sizeof(buf), DF_MANDATORY, 77, 5, "b@h");
    ASSERT_EQ(cn__hs_parse_challenge(buf, (size_t)n, &ch), 0);
    ASSERT_EQ(ch.challenge, 77u);
    ASSERT_EQ(ch.creation, 5u);
    ASSERT_STR_EQ(ch.name, "b@h");
    ASSERT_EQ(cn__hs_parse_challenge(buf, (size_t)n - 1, &ch), -EINVAL);

    ASSERT_EQ(cn__hs_digest("sekrit", 3735928559u, d), 0);
    static const uint8_t want[16] = { 0x4e, 0x1a, 0x99, 0x9d, 0xa9, 0x24, 0x46, 0xbb,
                                      0xae, 0x09, 0x54, 0xf1, 0xb3, 0x2c, 0x41, 0xb0 };
    ASSERT_MEM_EQ(d, want, 16); /* MD5("sekrit" ++ "3735928559") */

    uint32_t c;
    n = cn__hs_build_reply(buf, sizeof(buf), 42, d);
    ASSERT_EQ(cn__hs_parse_reply(buf, (size_t)n, &c, d2), 0);
    ASSERT_EQ(c, 42u);
    ASSERT_MEM_EQ(d2, d, 16);
    n = cn__hs_build_ack(buf, sizeof(buf), d);
    ASSERT_EQ(cn__hs_parse_ack(buf, (size_t)n, d2), 0);
    ASSERT_EQ(cn__hs_parse_ack(buf, (size_t)n + 1, d2), -EINVAL);

    char st[32];
    n = cn__hs_build_status(buf, sizeof(buf), "ok_simultaneous");
    ASSERT_EQ(cn__hs_parse_status(buf, (size_t)n, st, sizeof(st)), 0);
    ASSERT_STR_EQ(st, "ok_simultaneous");
    ASSERT_EQ(cn__hs_parse_status(buf, 1, st, sizeof(st)), -EINVAL);
}

/* ---- frames ------------------------------------------------------------------ */

static int frame_send(ei_x_buff *x, const char *to_node)
{
    erlang_pid p = { .num = 5, .serial = 0, .creation = 9 };
    strcpy(p.node, to_node);
    ASSERT_EQ(cn__dist_frame_begin(x), 0);
    ei_x_encode_tuple_header(x, 3);
    ei_x_encode_long(x, DOP_SEND);
    ei_x_encode_atom(x, "");
    ei_x_encode_pid(x, &p);
    ei_x_encode_version(x);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "hello");
    ei_x_encode_binary(x, "abc", 3);
    cn__dist_frame_end(x, 0);
    return x->index;
}

TEST(frame_parse_send_and_reg_send)
{
    ei_x_buff x;
    int len = frame_send(&x, "me@host");
    uint32_t flen = (uint32_t)((uint8_t)x.buff[0] << 24 | (uint8_t)x.buff[1] << 16 |
                               (uint8_t)x.buff[2] << 8 | (uint8_t)x.buff[3]);
    ASSERT_EQ(flen, (uint32_t)len - 4);
    cn_dist_ctl_t c;
    ASSERT_EQ(cn__dist_parse_frame(x.buff + 4, len - 4, &c), 0);
    ASSERT_EQ(c.op, DOP_SEND);
    ASSERT_EQ(c.to.num, 5u);
    ASSERT_STR_EQ(c.to.node, "me@host");
    ASSERT_GT(c.payload_len, 0);
    ASSERT_EQ((uint8_t)x.buff[4 + c.payload_off], 131);
    /* every truncation is refused without reading past the end (ASan) */
    for (int k = 1; k < len - 4; k++) {
        char *cut = malloc((size_t)k);
        memcpy(cut, x.buff + 4, (size_t)k);
        ASSERT_LT(cn__dist_parse_frame(cut, k, &c), 0);
        free(cut);
    }
    ei_x_free(&x);

    /* REG_SEND_TT: trace token ignored, name kept */
    erlang_pid from = { .num = 1, .creation = 2 };
    strcpy(from.node, "x@y");
    cn__dist_frame_begin(&x);
    ei_x_encode_tuple_header(&x, 5);
    ei_x_encode_long(&x, DOP_REG_SEND_TT);
    ei_x_encode_pid(&x, &from);
    ei_x_encode_atom(&x, "");
    ei_x_encode_atom(&x, "echo");
    ei_x_encode_atom(&x, "token");
    ei_x_encode_version(&x);
    ei_x_encode_atom(&x, "msg");
    ASSERT_EQ(cn__dist_parse_frame(x.buff + 4, x.index - 4, &c), 0);
    ASSERT_EQ(c.op, DOP_REG_SEND);
    ASSERT(c.to_is_name);
    ASSERT_STR_EQ(c.name, "echo");
    ei_x_free(&x);
}

TEST(frame_parse_rejects_malformed)
{
    cn_dist_ctl_t c;
    ASSERT_EQ(cn__dist_parse_frame("", 0, &c), 1); /* a tick */
    /* a list claiming 2^32-1 elements in 10 bytes */
    static const char huge_list[] = { 112, (char)131, 108, (char)0xff, (char)0xff,
                                      (char)0xff, (char)0xff, 106 };
    ASSERT_EQ(cn__dist_parse_frame(huge_list, sizeof(huge_list), &c), -EINVAL);
    /* a binary longer than the frame */
    static const char big_bin[] = { 112, (char)131, 109, 0x7f, 0, 0, 0, 1 };
    ASSERT_EQ(cn__dist_parse_frame(big_bin, sizeof(big_bin), &c), -EINVAL);
    /* an atom cache reference (we never ask for the cache) */
    static const char cache[] = { 112, (char)131, 82, 0 };
    ASSERT_EQ(cn__dist_parse_frame(cache, sizeof(cache), &c), -EINVAL);
    /* wrong pass-through byte */
    static const char nopt[] = { 68, (char)131, 106 };
    ASSERT_EQ(cn__dist_parse_frame(nopt, sizeof(nopt), &c), -EINVAL);
    /* a SEND without its message */
    ei_x_buff x;
    cn__dist_frame_begin(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_long(&x, DOP_SEND);
    ei_x_encode_atom(&x, "");
    erlang_pid p = { .num = 1, .creation = 1 };
    strcpy(p.node, "a@b");
    ei_x_encode_pid(&x, &p);
    ASSERT_EQ(cn__dist_parse_frame(x.buff + 4, x.index - 4, &c), -EINVAL);
    ei_x_free(&x);
    /* an unknown operation is well-formed but not ours */
    cn__dist_frame_begin(&x);
    ei_x_encode_tuple_header(&x, 1);
    ei_x_encode_long(&x, 99);
    ASSERT_EQ(cn__dist_parse_frame(x.buff + 4, x.index - 4, &c), -ENOTSUP);
    ei_x_free(&x);
    /* deeply nested tuples do not overflow anything */
    int depth = 100000;
    char *deep = malloc((size_t)depth * 2 + 3);
    deep[0] = 112;
    deep[1] = (char)131;
    for (int i = 0; i < depth; i++) {
        deep[2 + 2 * i] = 104;
        deep[3 + 2 * i] = 1;
    }
    deep[2 + 2 * depth] = 106;
    ASSERT_LT(cn__dist_parse_frame(deep, depth * 2 + 3, &c), 0);
    free(deep);
}

/* ---- EPMD and cookies -------------------------------------------------------- */

TEST(epmd_messages)
{
    static const uint8_t alive2[] = { 120, 0x12, 0x34, 72, 0, 0, 6, 0, 6, 0, 3, 'a', 'b',
                                      'c', 0, 0 };
    cn_epmd_req_t r;
    ASSERT_EQ(cn__epmd_parse_req(alive2, sizeof(alive2), &r), 0);
    ASSERT_EQ(r.op, EPMD_ALIVE2_REQ);
    ASSERT_EQ(r.port, 0x1234);
    ASSERT_STR_EQ(r.name, "abc");
    ASSERT_EQ(cn__epmd_parse_req(alive2, sizeof(alive2) - 1, &r), -EINVAL);
    static const uint8_t pp[] = { 122, 'n', 'o', 'd', 'e' };
    ASSERT_EQ(cn__epmd_parse_req(pp, sizeof(pp), &r), 0);
    ASSERT_STR_EQ(r.name, "node");
    static const uint8_t resp[] = { 119, 0, 0x10, 0x00, 72, 0, 0, 6, 0, 5, 0, 1, 'x', 0, 0 };
    int port, hi, lo;
    ASSERT_EQ(cn__epmd_parse_port2(resp, sizeof(resp), &port, &hi, &lo), 0);
    ASSERT_EQ(port, 4096);
    ASSERT_EQ(hi, 6);
    static const uint8_t nf[] = { 119, 1 };
    ASSERT_EQ(cn__epmd_parse_port2(nf, sizeof(nf), &port, &hi, &lo), -ENOENT);
    uint32_t cr;
    static const uint8_t ax[] = { 118, 0, 0, 0, 1, 2 };
    ASSERT_EQ(cn__epmd_parse_alive2(ax, sizeof(ax), &cr), 0);
    ASSERT_EQ(cr, 258u);
    static const uint8_t taken[] = { 118, 1 };
    ASSERT_EQ(cn__epmd_parse_alive2(taken, sizeof(taken), &cr), -EADDRINUSE);
}

static void idle_fn(void *arg)
{
    (void)arg;
}

TEST(cookies_parse_and_file_mode)
{
    cn_cookies_t c = { NULL, 0 };
    ASSERT_EQ(cn__cookies_parse(" new , old\r\n\nolder\n", &c), 0);
    ASSERT_EQ(c.n, 3);
    ASSERT_STR_EQ(c.v[0], "new");
    ASSERT_STR_EQ(c.v[1], "old");
    ASSERT_STR_EQ(c.v[2], "older");
    ASSERT_EQ(cn__cookies_parse(" ,\n", &c), -ENOENT);
    ASSERT_EQ(c.n, 3); /* kept on failure */
    cn__cookies_free(&c);

    char path[] = "/tmp/cookie-test-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "abc\ndef\n", 8), 8);
    close(fd);
    char err[256];
    unsetenv("ONEBLOG_COOKIE");
    chmod(path, 0644);
    ASSERT_EQ(cn__cookies_load(NULL, path, &c, err, sizeof(err)), -EACCES);
    ASSERT(strstr(err, "owner only") != NULL);
    chmod(path, 0600);
    ASSERT_EQ(cn__cookies_load(NULL, path, &c, err, sizeof(err)), 0);
    ASSERT_EQ(c.n, 2);
    ASSERT_STR_EQ(c.v[1], "def");
    /* the environment beats the file, an explicit option beats both */
    setenv("ONEBLOG_COOKIE", "envc", 1);
    ASSERT_EQ(cn__cookies_load(NULL, path, &c, err, sizeof(err)), 0);
    ASSERT_STR_EQ(c.v[0], "envc");
    ASSERT_EQ(cn__cookies_load("opt1,opt2", path, &c, err, sizeof(err)), 0);
    ASSERT_STR_EQ(c.v[0], "opt1");
    unsetenv("ONEBLOG_COOKIE");
    cn__cookies_free(&c);
    unlink(path);

    /* a missing default ~/.erlang.cookie is created, owner-only, as erl does */
    char home[] = "/tmp/cookie-home-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(home));
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    unsetenv("ONEBLOG_COOKIE_FILE");
    ASSERT_EQ(cn__cookies_load(NULL, NULL, &c, err, sizeof(err)), 0);
    ASSERT_EQ(c.n, 1);
    ASSERT_EQ(strlen(c.v[0]), 20u);
    char made[300];
    snprintf(made, sizeof(made), "%s/.erlang.cookie", home);
    struct stat st;
    ASSERT_EQ(stat(made, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0400u);
    cn_cookies_t again = { NULL, 0 };
    ASSERT_EQ(cn__cookies_load(NULL, NULL, &again, err, sizeof(err)), 0);
    ASSERT_STR_EQ(again.v[0], c.v[0]); /* created once, then read */
    cn__cookies_free(&c);
    cn__cookies_free(&again);
    unlink(made);
    rmdir(home);
    if (old_home) {
        setenv("HOME", old_home, 1);
        free(old_home);
    }
}

TEST(pid_of_our_name_with_old_creation_is_not_ours)
{
    cn_node_t *n;
    cn_node_opts_t o = { .name = "me@127.0.0.1", .creation = 7 };
    ASSERT_EQ(cn_node_new(&o, &n), 0);
    cn_node_t *prev = cn__cur_node;
    cn__cur_node = n;
    erlang_pid ep = { .num = 1, .serial = 0, .creation = 7 };
    strcpy(ep.node, "me@127.0.0.1");
    ei_x_buff x;
    ei_x_new(&x);
    ei_x_encode_pid(&x, &ep);
    ep.creation = 6; /* an earlier incarnation of this node */
    ei_x_encode_pid(&x, &ep);
    strcpy(ep.node, "other@127.0.0.1");
    ei_x_encode_pid(&x, &ep);
    int i = 0;
    cn_pid_t now, old, other;
    ASSERT_EQ(cn_decode_pid(x.buff, &i, &now), 0);
    ASSERT_EQ(cn_decode_pid(x.buff, &i, &old), 0);
    ASSERT_EQ(cn_decode_pid(x.buff, &i, &other), 0);
    ASSERT_EQ(now.node, 0u);       /* ours: local */
    ASSERT_EQ(old.node, 0u);       /* our name: local, but a dead incarnation */
    ASSERT_EQ(old.creation, 6u);
    ASSERT_NE(other.node, 0u);     /* another node: remote */
    cn_pid_t live;
    ASSERT_EQ(cn_spawn(n, idle_fn, NULL, NULL, &live), 0);
    ASSERT_EQ(live.num, 1u);
    ASSERT(cn_pid_eq(live, now));  /* the current-creation pid is that process */
    ASSERT(!cn_is_alive(old));     /* the old one is not */
    ei_x_buff m;
    cn_x_new(&m);
    ei_x_encode_atom(&m, "x");
    ASSERT_EQ(cn_send(old, &m), -ESRCH); /* dropped, not misdelivered */
    ei_x_free(&x);
    cn__cur_node = prev;
    cn_node_free(n);
}

/* ---- two C nodes in one process ---------------------------------------------- */

typedef struct pair {
    cn_node_t *a, *b;
    char aname[64], bname[64];
    int result;        /* set by the B-side test process */
    int logs_refused;  /* "bad cookie" lines seen by A */
    int a_ready;       /* A's set-up process has registered its names */
} pair_t;

/* A runs on its own thread and registers its names from a process there, which
 * may run after B's first message lands (then a call is -ESRCH, a send to a name
 * is dropped): the B side waits for A's set-up first (20 s at most). */
static void a_is_ready(pair_t *p)
{
    __atomic_store_n(&p->a_ready, 1, __ATOMIC_RELEASE);
}

static void wait_a_ready(pair_t *p)
{
    (void)WAIT_UNTIL(__atomic_load_n(&p->a_ready, __ATOMIC_ACQUIRE), 20000, cn_sleep(5));
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

static const cn_gen_server_t echo_cb = { .handle_call = echo_call };

static void sitter(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m);
    cn_msg_free(m);
    cn_exit("bye");
}

/* A's thread: run it, then free it there (its sockets close, B sees nodedown). */
static void *run_node(void *arg)
{
    cn_node_run(arg);
    cn_node_free(arg);
    return NULL;
}

/* On A: stop A's scheduler when any message arrives (B's last step). */
static void stopper(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m);
    cn_msg_free(m);
    cn_node_stop(cn_node_self());
}

static void on_log(void *ud, int level, const char *msg)
{
    pair_t *p = ud;
    (void)level;
    if (strstr(msg, "bad cookie"))
        __atomic_add_fetch(&p->logs_refused, 1, __ATOMIC_SEQ_CST);
}

static bool match_any(const cn_msg_t *m, void *arg)
{
    (void)m;
    (void)arg;
    return true;
}

/* {nodedown, Node}, from cn_monitor_node. */
static bool match_nodedown(const cn_msg_t *m, void *arg)
{
    int i = 1, arity;
    (void)arg;
    return ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity == 2 &&
           cn_decode_atom_is(m->buf, &i, "nodedown");
}

/* B's test process: everything that crosses to A. Sets p->result to the step
 * that failed (0 = all good). */
static void b_main(void *arg)
{
    pair_t *p = arg;
    int step = 1;
    cn_msg_t *m;
    cn_term_t reply;
    ei_x_buff x;
    char text[256];
    wait_a_ready(p);

    /* 1. call {echo, A} */
    cn_x_new(&x);
    ei_x_encode_atom(&x, "hi");
    if (cn_gen_call(cn_dest_remote("echo", p->aname), &x, 20000, &m, &reply) != 0)
        goto out;
    cn_term_print(reply, text, sizeof(text));
    cn_msg_free(m);
    if (strcmp(text, "{echo, hi}") != 0)
        goto out;
    step++;
    if (!cn_dist_is_connected(p->aname))
        goto out;

    /* 2. a missing name there: -ESRCH */
    step++;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "hi");
    if (cn_gen_call(cn_dest_remote("nosuch", p->aname), &x, 20000, &m, &reply) != -ESRCH)
        goto out;

    /* 3. get a pid of A (the sitter registered there), monitor and link it, make
     *    it exit: DOWN with its reason, and an EXIT signal (we trap) */
    step++;
    cn_trap_exit(true);
    cn_ref_t ref;
    if (cn_monitor_name_at("sitter", p->aname, &ref) != 0)
        goto out;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "go");
    if (cn_send_name_at("sitter", p->aname, &x) != 0)
        goto out;
    if (cn_receive(match_any, NULL, 20000, &m) != 0)
        goto out;
    cn_term_print(cn_msg_term(m), text, sizeof(text));
    cn_msg_free(m);
    if (strstr(text, "'DOWN'") == NULL || strstr(text, "bye") == NULL ||
        strstr(text, "sitter") == NULL)
        goto out;

    /* 4. monitor A, ask it to stop: {nodedown, A} when its sockets close */
    step++;
    if (cn_monitor_node(p->aname, true) != 0)
        goto out;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "stop");
    cn_send_name_at("stopper", p->aname, &x);
    if (cn_receive(match_any, NULL, 20000, &m) != 0)
        goto out;
    cn_term_print(cn_msg_term(m), text, sizeof(text));
    cn_msg_free(m);
    if (strstr(text, "nodedown") == NULL)
        goto out;
    step = 0;
out:
    p->result = step;
    cn_node_stop(cn_node_self());
}

static void a_setup(void *arg)
{
    cn_gen_server_opts_t go = { .name = "echo" };
    cn_gen_server_start(cn_node_self(), &echo_cb, NULL, &go, NULL);
    cn_pid_t s;
    cn_spawn(cn_node_self(), sitter, NULL, NULL, &s);
    cn_register("sitter", s);
    cn_spawn(cn_node_self(), stopper, NULL, NULL, &s);
    cn_register("stopper", s);
    a_is_ready(arg);
}

TEST(two_nodes_call_monitor_link)
{
    pair_t p = { 0 };
    snprintf(p.aname, sizeof(p.aname), "a%d@127.0.0.1", getpid());
    snprintf(p.bname, sizeof(p.bname), "b%d@127.0.0.1", getpid());
    cn_node_opts_t oa = { .name = p.aname }, ob = { .name = p.bname };
    ASSERT_EQ(cn_node_new(&oa, &p.a), 0);
    ASSERT_EQ(cn_node_new(&ob, &p.b), 0);
    cn_dist_opts_t d = { .cookie = "unit", .epmd_less = true, .log = on_log, .log_ud = &p };
    ASSERT_EQ(cn_dist_start(p.a, &d), 0);
    ASSERT_EQ(cn_dist_start(p.a, &d), -EALREADY);
    ASSERT_EQ(cn_dist_start(p.b, &d), 0);
    ASSERT_EQ(cn_dist_set_peer_port(p.b, p.aname, cn_dist_listen_port(p.a)), 0);
    cn_spawn(p.a, a_setup, &p, NULL, NULL);
    cn_spawn(p.b, b_main, &p, NULL, NULL);
    pthread_t ta;
    pthread_create(&ta, NULL, run_node, p.a);
    /* B runs here until its test process stops it or the nodedown arrives */
    cn_node_run(p.b);
    pthread_join(ta, NULL);
    ASSERT_EQ(p.result, 0);
    cn_node_free(p.b);
}

TEST(wrong_cookie_is_refused_and_logged)
{
    pair_t p = { 0 };
    snprintf(p.aname, sizeof(p.aname), "a%d@127.0.0.1", getpid());
    snprintf(p.bname, sizeof(p.bname), "b%d@127.0.0.1", getpid());
    cn_node_opts_t oa = { .name = p.aname }, ob = { .name = p.bname };
    ASSERT_EQ(cn_node_new(&oa, &p.a), 0);
    ASSERT_EQ(cn_node_new(&ob, &p.b), 0);
    cn_dist_opts_t da = { .cookie = "right,older", .epmd_less = true, .log = on_log, .log_ud = &p };
    cn_dist_opts_t db = { .cookie = "wrong", .epmd_less = true, .log = on_log, .log_ud = &p };
    ASSERT_EQ(cn_dist_start(p.a, &da), 0);
    ASSERT_EQ(cn_dist_start(p.b, &db), 0);
    ASSERT_EQ(cn_dist_set_peer_port(p.b, p.aname, cn_dist_listen_port(p.a)), 0);
    cn_spawn(p.a, a_setup, &p, NULL, NULL);
    cn_spawn(p.b, b_main, &p, NULL, NULL);
    pthread_t ta;
    pthread_create(&ta, NULL, run_node, p.a);
    cn_node_run(p.b); /* b_main fails at step 1 and stops B */
    ASSERT_EQ(p.result, 1);
    ASSERT_GE(__atomic_load_n(&p.logs_refused, __ATOMIC_SEQ_CST), 1);
    cn_node_t *a = p.a;
    /* A still serves: B2 with the second cookie of A's set gets through, and
     * stops A at its end. */
    cn_node_t *b2;
    cn_node_opts_t ob2 = { .name = "b2@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&ob2, &b2), 0);
    cn_dist_opts_t d2 = { .cookie = "older", .epmd_less = true, .log = on_log, .log_ud = &p };
    ASSERT_EQ(cn_dist_start(b2, &d2), 0);
    ASSERT_EQ(cn_dist_set_peer_port(b2, p.aname, cn_dist_listen_port(a)), 0);
    p.result = -1;
    snprintf(p.bname, sizeof(p.bname), "b2@127.0.0.1");
    cn_spawn(b2, b_main, &p, NULL, NULL);
    cn_node_run(b2);
    pthread_join(ta, NULL);
    ASSERT_EQ(p.result, 0); /* the second cookie of A's set works; A still serves */
    cn_node_free(p.b);
    cn_node_free(b2);
}

/* ---- simultaneous connect; links and monitors see noconnection ---------------- */

typedef struct sim {
    cn_node_t *node;
    const char *peer;   /* the other node's name */
    int ok;             /* calls that succeeded */
    cn_node_t *other;
} sim_t;

/* Sides that have made all their calls: a node stops only once both have,
 * since the other may still be calling over the connection (a sleep here let A
 * stop while a B starved of CPU under load had calls left to make). */
static int sim_finished;

/* Each node calls the other's echo at the same moment, many times over: the
 * first calls race two connection attempts, which the name rule settles. */
static void sim_main(void *arg)
{
    sim_t *s = arg;
    for (int i = 0; i < 20; i++) {
        ei_x_buff x;
        cn_msg_t *m;
        cn_term_t reply;
        cn_x_new(&x);
        ei_x_encode_long(&x, i);
        if (cn_gen_call(cn_dest_remote("echo", s->peer), &x, 20000, &m, &reply) == 0)
            s->ok++;
        cn_msg_free(m);
    }
    __atomic_add_fetch(&sim_finished, 1, __ATOMIC_SEQ_CST);
    (void)WAIT_UNTIL(__atomic_load_n(&sim_finished, __ATOMIC_SEQ_CST) == 2, 30000, cn_sleep(5));
    cn_node_stop(cn_node_self());
}

static void *run_only(void *arg)
{
    cn_node_run(arg);
    return NULL;
}

TEST(simultaneous_connect)
{
    sim_t a = { 0 }, b = { 0 };
    char an[64], bn[64];
    snprintf(an, sizeof(an), "sa%d@127.0.0.1", getpid());
    snprintf(bn, sizeof(bn), "sb%d@127.0.0.1", getpid());
    cn_node_opts_t oa = { .name = an }, ob = { .name = bn };
    ASSERT_EQ(cn_node_new(&oa, &a.node), 0);
    ASSERT_EQ(cn_node_new(&ob, &b.node), 0);
    /* Default logger (stderr, shown if the test fails); with ONEBLOG_DIST_DEBUG=1
     * it shows the simultaneous-connect decisions, one per side. */
    cn_dist_opts_t d = { .cookie = "sim", .epmd_less = true };
    ASSERT_EQ(cn_dist_start(a.node, &d), 0);
    ASSERT_EQ(cn_dist_start(b.node, &d), 0);
    ASSERT_EQ(cn_dist_set_peer_port(a.node, bn, cn_dist_listen_port(b.node)), 0);
    ASSERT_EQ(cn_dist_set_peer_port(b.node, an, cn_dist_listen_port(a.node)), 0);
    cn_gen_server_opts_t go = { .name = "echo" };
    ASSERT_EQ(cn_gen_server_start(a.node, &echo_cb, NULL, &go, NULL), 0);
    ASSERT_EQ(cn_gen_server_start(b.node, &echo_cb, NULL, &go, NULL), 0);
    a.peer = bn;
    b.peer = an;
    cn_spawn(a.node, sim_main, &a, NULL, NULL);
    cn_spawn(b.node, sim_main, &b, NULL, NULL);
    pthread_t ta;
    pthread_create(&ta, NULL, run_only, a.node);
    cn_node_run(b.node);
    pthread_join(ta, NULL);
    ASSERT_EQ(a.ok, 20);
    ASSERT_EQ(b.ok, 20);
    cn_node_free(a.node);
    cn_node_free(b.node);
}

/* On A: link to the pid in the first message, tell it so, then wait forever. */
static void link_back(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_pid_t pid;
    cn_receive(NULL, NULL, CN_INFINITY, &m);
    int i = 1;
    if (cn_decode_pid(m->buf, &i, &pid) == 0 && cn_link(pid) == 0) {
        ei_x_buff x;
        cn_x_new(&x);
        ei_x_encode_atom(&x, "linked");
        cn_send(pid, &x);
    }
    cn_msg_free(m);
    cn_receive(NULL, NULL, CN_INFINITY, &m);
}

static void noconn_a_setup(void *arg)
{
    cn_pid_t s;
    cn_spawn(cn_node_self(), link_back, NULL, NULL, &s);
    cn_register("link_back", s);
    cn_spawn(cn_node_self(), stopper, NULL, NULL, &s);
    cn_register("stopper", s);
    a_is_ready(arg);
}

/* On B: be linked from A, monitor a process of A by name and the node; stop A:
 * the link gives {'EXIT', _, noconnection}, the monitor a DOWN noconnection and
 * the node monitor {nodedown, A}. */
static void noconn_b(void *arg)
{
    pair_t *p = arg;
    int step = 1, seen = 0;
    ei_x_buff x;
    cn_trap_exit(true);
    wait_a_ready(p);
    cn_x_new(&x);
    cn_x_encode_pid(&x, cn_self());
    if (cn_send_name_at("link_back", p->aname, &x) != 0)
        goto out;
    step++;
    cn_ref_t ref;
    if (cn_monitor_name_at("link_back", p->aname, &ref) != 0 ||
        cn_monitor_node(p->aname, true) != 0)
        goto out;
    /* The link is made once link_back says so; the MONITOR_P went out after the
     * message that asked for it, on the same connection, so it is there too. */
    cn_msg_t *lm;
    int li = 1;
    if (cn_receive(match_any, NULL, 20000, &lm) != 0)
        goto out;
    bool linked = cn_decode_atom_is(lm->buf, &li, "linked");
    cn_msg_free(lm);
    if (!linked)
        goto out;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "stop");
    cn_send_name_at("stopper", p->aname, &x);
    step++;
    while (seen != 7) {
        cn_msg_t *m;
        char text[256];
        if (cn_receive(match_any, NULL, 20000, &m) != 0)
            goto out;
        cn_term_print(cn_msg_term(m), text, sizeof(text));
        cn_msg_free(m);
        if (strncmp(text, "{'EXIT'", 7) == 0 && strstr(text, "noconnection"))
            seen |= 1;
        else if (strncmp(text, "{'DOWN'", 7) == 0 && strstr(text, "noconnection") &&
                 strstr(text, "link_back"))
            seen |= 2;
        else if (strncmp(text, "{nodedown", 9) == 0)
            seen |= 4;
    }
    step = 0;
out:
    p->result = step;
    cn_node_stop(cn_node_self());
}

TEST(connection_loss_gives_noconnection)
{
    pair_t p = { 0 };
    snprintf(p.aname, sizeof(p.aname), "na%d@127.0.0.1", getpid());
    snprintf(p.bname, sizeof(p.bname), "nb%d@127.0.0.1", getpid());
    cn_node_opts_t oa = { .name = p.aname }, ob = { .name = p.bname };
    ASSERT_EQ(cn_node_new(&oa, &p.a), 0);
    ASSERT_EQ(cn_node_new(&ob, &p.b), 0);
    cn_dist_opts_t d = { .cookie = "nc", .epmd_less = true, .log = on_log, .log_ud = &p };
    ASSERT_EQ(cn_dist_start(p.a, &d), 0);
    ASSERT_EQ(cn_dist_start(p.b, &d), 0);
    ASSERT_EQ(cn_dist_set_peer_port(p.b, p.aname, cn_dist_listen_port(p.a)), 0);
    cn_spawn(p.a, noconn_a_setup, &p, NULL, NULL);
    cn_spawn(p.b, noconn_b, &p, NULL, NULL);
    pthread_t ta;
    pthread_create(&ta, NULL, run_node, p.a); /* frees A when it stops */
    cn_node_run(p.b);
    pthread_join(ta, NULL);
    ASSERT_EQ(p.result, 0);
    cn_node_free(p.b);
}

/* ---- back-pressure: senders park at the queue limit and are woken ------------- */

#define BP_SENDERS 4
#define BP_MSGS 40
#define BP_BYTES (16 << 10)

/* On A: take {ReportPid, Sender, Seq, Binary} until all have come; every
 * sender's sequence must arrive complete and in order. Reports ok/bad. */
static void bp_sink(void *arg)
{
    (void)arg;
    long next[BP_SENDERS] = { 0 };
    bool ok = true;
    cn_pid_t report = { 0, 0, 0, 0 };
    for (int total = 0; total < BP_SENDERS * BP_MSGS; total++) {
        cn_msg_t *m;
        if (cn_receive(NULL, NULL, 30000, &m) < 0) {
            ok = false;
            break;
        }
        int i = 1, arity;
        long ix = -1, seq = -1;
        if (ei_decode_tuple_header(m->buf, &i, &arity) < 0 || arity != 4 ||
            cn_decode_pid(m->buf, &i, &report) < 0 || ei_decode_long(m->buf, &i, &ix) < 0 ||
            ei_decode_long(m->buf, &i, &seq) < 0 || ix < 0 || ix >= BP_SENDERS ||
            seq != next[ix])
            ok = false;
        else
            next[ix]++;
        cn_msg_free(m);
    }
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, ok ? "ok" : "bad");
    cn_send(report, &x);
}

static void bp_a_setup(void *arg)
{
    cn_pid_t s;
    cn_spawn(cn_node_self(), bp_sink, NULL, NULL, &s);
    cn_register("sink", s);
    cn_spawn(cn_node_self(), stopper, NULL, NULL, &s);
    cn_register("stopper", s);
    a_is_ready(arg);
}

typedef struct bp_sender {
    pair_t *p;
    cn_pid_t report;
    long ix;
} bp_sender_t;

static void bp_send(void *arg)
{
    bp_sender_t *s = arg;
    static char bin[BP_BYTES];
    for (long seq = 0; seq < BP_MSGS; seq++) {
        ei_x_buff x;
        cn_x_new(&x);
        ei_x_encode_tuple_header(&x, 4);
        cn_x_encode_pid(&x, s->report);
        ei_x_encode_long(&x, s->ix);
        ei_x_encode_long(&x, seq);
        ei_x_encode_binary(&x, bin, sizeof(bin));
        cn_send_name_at("sink", s->p->aname, &x);
    }
}

static void bp_main(void *arg)
{
    pair_t *p = arg;
    static bp_sender_t senders[BP_SENDERS];
    p->result = 1;
    wait_a_ready(p);
    if (cn_dist_connect(p->aname, 20000) != 0)
        goto out;
    p->result = 2;
    for (long i = 0; i < BP_SENDERS; i++) {
        senders[i] = (bp_sender_t){ p, cn_self(), i };
        cn_spawn(cn_node_self(), bp_send, &senders[i], NULL, NULL);
    }
    cn_msg_t *m;
    if (cn_receive(NULL, NULL, 30000, &m) != 0)
        goto out;
    int i = 1;
    if (cn_decode_atom_is(m->buf, &i, "ok"))
        p->result = 0;
    cn_msg_free(m);
out:;
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "stop");
    /* Stop A, and stop B only once A's connection is gone: the stop message is
     * on the wire by then (a 100 ms sleep was not always enough under load, and
     * A left running hangs the test). */
    cn_monitor_node(p->aname, true);
    cn_send_name_at("stopper", p->aname, &x);
    cn_msg_t *down;
    if (cn_receive(match_nodedown, NULL, 30000, &down) == 0)
        cn_msg_free(down);
    cn_node_stop(cn_node_self());
}

TEST(senders_wait_at_the_queue_limit_and_lose_nothing)
{
    pair_t p = { 0 };
    snprintf(p.aname, sizeof(p.aname), "bpa%d@127.0.0.1", getpid());
    snprintf(p.bname, sizeof(p.bname), "bpb%d@127.0.0.1", getpid());
    cn_node_opts_t oa = { .name = p.aname }, ob = { .name = p.bname };
    ASSERT_EQ(cn_node_new(&oa, &p.a), 0);
    ASSERT_EQ(cn_node_new(&ob, &p.b), 0);
    cn_dist_opts_t da = { .cookie = "bp", .epmd_less = true, .log = on_log, .log_ud = &p };
    /* B's queue holds 64 KiB: four senders of 16 KiB messages keep hitting it. */
    cn_dist_opts_t db = da;
    db.max_queue_bytes = 64 << 10;
    ASSERT_EQ(cn_dist_start(p.a, &da), 0);
    ASSERT_EQ(cn_dist_start(p.b, &db), 0);
    ASSERT_EQ(cn_dist_set_peer_port(p.b, p.aname, cn_dist_listen_port(p.a)), 0);
    cn_spawn(p.a, bp_a_setup, &p, NULL, NULL);
    cn_spawn(p.b, bp_main, &p, NULL, NULL);
    pthread_t ta;
    pthread_create(&ta, NULL, run_node, p.a); /* frees A when it stops */
    cn_node_run(p.b);
    pthread_join(ta, NULL);
    ASSERT_EQ(p.result, 0);
    cn_node_free(p.b);
}

/* A node listening on any free port never takes the port EPMD is to use (the
 * kernel's pick could be it: then no EPMD can start there). Made certain in a
 * network namespace of the test's own whose ephemeral range is two ports, so
 * the kernel's first pick is one of the two EPMD ports tried (40001 on Linux 6:
 * bind(0) starts at an odd offset). */
TEST(the_dist_listener_never_takes_the_epmd_port)
{
    if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "note: needs root and a network namespace: not run\n");
        return;
    }
    ASSERT_EQ(system("ip link set lo up"), 0);
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "w");
    ASSERT_NOT_NULL(f);
    ASSERT(fputs("40000 40001\n", f) >= 0);
    ASSERT_EQ(fclose(f), 0);
    for (int epmd = 40000; epmd <= 40001; epmd++) {
        char name[64];
        cn_node_t *n;
        snprintf(name, sizeof name, "p%d@127.0.0.1", epmd);
        cn_node_opts_t o = { .name = name };
        ASSERT_EQ(cn_node_new(&o, &n), 0);
        cn_dist_opts_t d = { .cookie = "unit", .epmd_port = epmd, .no_builtin_epmd = true };
        ASSERT_EQ(cn_dist_start(n, &d), 0);
        int port = cn_dist_listen_port(n);
        ASSERT(port == 40000 || port == 40001);
        ASSERT_NE(port, epmd);
        cn_node_free(n);
    }
}
