/* supervisor_test.c - strategies, restart types, intensity, shutdown order,
 * dynamic children, and a child that crashes 1,000 times with memory flat. */
#include "test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/supervisor.h"

static void run_node(cn_proc_fn fn, void *arg)
{
    cn_node_t *node;
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    ASSERT_EQ(cn_spawn(node, fn, arg, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    ASSERT_EQ(cn_node_process_count(node), 0);
    cn_node_free(node);
}

/* A worker gen_server registered under its id; `crash` stops it with reason
 * `crashed`, `quit` stops it normally. Records start and terminate order. */
static char events[4096];

static void log_event(char sign, const char *id)
{
    char line[128];
    snprintf(line, sizeof(line), "%c%s ", sign, id);
    strncat(events, line, sizeof(events) - strlen(events) - 1);
}

static int w_init(void *arg, void **state)
{
    const char *id = arg;
    if (strcmp(id, "fails") == 0)
        return -EIO;
    log_event('+', id);
    *state = arg;
    return 0;
}

static int w_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)from;
    (void)state;
    int i = req.index;
    if (cn_decode_atom_is(req.buf, &i, "crash")) {
        cn_gen_server_set_reason("crashed");
        return CN_GS_STOP;
    }
    if (cn_decode_atom_is(req.buf, &i, "quit"))
        return CN_GS_STOP;
    ei_x_encode_atom(reply, "pong");
    return CN_GS_CONTINUE;
}

static void w_terminate(void *state, cn_term_t reason)
{
    (void)reason;
    log_event('-', state);
}

static const cn_gen_server_t worker_cb = {
    .init = w_init,
    .handle_call = w_call,
    .terminate = w_terminate,
};

static int start_worker(void *arg, cn_pid_t *out)
{
    cn_gen_server_opts_t o = { .name = arg, .link = true, .trap_exit = true };
    return cn_gen_server_start(cn_node_self(), &worker_cb, arg, &o, out);
}

static void crash(const char *name)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "crash");
    cn_gen_call(cn_dest_name(name), &x, 1000, &m, &r);
    cn_msg_free(m);
}

static void quit(const char *name)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "quit");
    cn_gen_call(cn_dest_name(name), &x, 1000, &m, &r);
    cn_msg_free(m);
}

/* The pid registered as name once there is one other than old: a restart
 * happens in the supervisor's process after the call that made the child exit
 * has returned, so the test waits for it (10 s at most: under ASan on a loaded
 * machine a fixed sleep was sometimes too short). */
static cn_pid_t new_pid_of(const char *name, cn_pid_t old)
{
    cn_pid_t p = { 0, 0, 0, 0 };
    WAIT_UNTIL(cn_whereis(name, &p) == 0 && !cn_pid_eq(p, old), 10000, cn_sleep(1));
    return p;
}

static cn_pid_t pid_of(const char *name)
{
    return new_pid_of(name, (cn_pid_t){ 0, 0, 0, 0 });
}

/* The supervisor's answer for child id, once it is `want` (and for a running
 * child, a pid other than old): see new_pid_of. */
static int which_child_becomes(cn_pid_t sup, const char *id, int want, cn_pid_t old)
{
    cn_pid_t out = old;
    int rc = 1;
    WAIT_UNTIL((rc = cn_supervisor_which_child(cn_dest_pid(sup), id, &out)) == want &&
                   (want != 0 || !cn_pid_eq(out, old)),
               10000, cn_sleep(1));
    return rc == 0 && cn_pid_eq(out, old) ? -EALREADY : rc;
}

#define SPEC(name, how) \
    { .id = name, .start = start_worker, .arg = name, .restart = how, .shutdown_ms = 1000 }

static void main_strategies(void *arg)
{
    int strategy = (int)(long)arg;
    cn_child_spec_t kids[] = { SPEC("a", CN_PERMANENT), SPEC("b", CN_PERMANENT),
                               SPEC("c", CN_PERMANENT) };
    cn_sup_flags_t f = { .strategy = strategy, .intensity = 5, .period_s = 5 };
    cn_pid_t sup;
    events[0] = '\0';
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &f, kids, 3,
                                  &(cn_gen_server_opts_t){ .name = "sup" }, &sup),
              0);
    ASSERT_STR_EQ(events, "+a +b +c ");
    cn_pid_t a = pid_of("a"), b = pid_of("b"), c = pid_of("c");
    const char *want = strategy == CN_ONE_FOR_ONE   ? "-b +b "
                       : strategy == CN_ONE_FOR_ALL ? "-b -c -a +a +b +c "
                                                    : "-b -c +b +c ";
    events[0] = '\0';
    crash("b");
    /* The supervisor has done its restarts once as many events as expected are
     * logged (then the order is checked); a new b is registered after its "+b". */
    WAIT_UNTIL(strlen(events) >= strlen(want), 10000, cn_sleep(1));
    ASSERT_STR_EQ(events, want);
    cn_pid_t b2 = new_pid_of("b", b), a2 = pid_of("a"), c2 = pid_of("c");
    ASSERT(!cn_pid_eq(b, b2));
    if (strategy == CN_ONE_FOR_ONE) {
        ASSERT(cn_pid_eq(a, a2));
        ASSERT(cn_pid_eq(c, c2));
    } else if (strategy == CN_ONE_FOR_ALL) {
        ASSERT(!cn_pid_eq(a, a2));
        ASSERT(!cn_pid_eq(c, c2));
    } else {
        ASSERT(cn_pid_eq(a, a2));
        ASSERT(!cn_pid_eq(c, c2));
    }
    /* ordered shutdown: reverse start order */
    events[0] = '\0';
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(sup), "shutdown", 5000), 0);
    ASSERT_STR_EQ(events, "-c -b -a ");
    ASSERT(!cn_is_alive(a2));
}

TEST(one_for_one)
{
    run_node(main_strategies, (void *)(long)CN_ONE_FOR_ONE);
}

TEST(one_for_all)
{
    run_node(main_strategies, (void *)(long)CN_ONE_FOR_ALL);
}

TEST(rest_for_one)
{
    run_node(main_strategies, (void *)(long)CN_REST_FOR_ONE);
}

static void main_restart_types(void *arg)
{
    (void)arg;
    cn_child_spec_t kids[] = { SPEC("p", CN_PERMANENT), SPEC("t", CN_TRANSIENT),
                               SPEC("tmp", CN_TEMPORARY) };
    cn_sup_flags_t f = { .intensity = 10, .period_s = 5 };
    cn_pid_t sup;
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &f, kids, 3, NULL, &sup), 0);
    /* permanent: back (another pid) even after a normal exit */
    cn_pid_t old = pid_of("p");
    quit("p");
    ASSERT_EQ(which_child_becomes(sup, "p", 0, old), 0);
    /* transient: not after normal, yes after a crash */
    old = pid_of("t");
    crash("t");
    ASSERT_EQ(which_child_becomes(sup, "t", 0, old), 0);
    old = pid_of("t");
    quit("t");
    ASSERT_EQ(which_child_becomes(sup, "t", -ESRCH, old), -ESRCH);
    /* temporary: never, and its spec goes */
    crash("tmp");
    ASSERT_EQ(which_child_becomes(sup, "tmp", -ENOENT, old), -ENOENT);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(sup), "shutdown", 5000), 0);
}

TEST(permanent_transient_temporary)
{
    run_node(main_restart_types, NULL);
}

/* The supervisor's parent sees it stop when the intensity is exceeded. */
static void main_intensity(void *arg)
{
    (void)arg;
    cn_trap_exit(true);
    cn_child_spec_t kids[] = { SPEC("w", CN_PERMANENT) };
    cn_sup_flags_t f = { .intensity = 3, .period_s = 10 };
    cn_pid_t sup;
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &f, kids, 1,
                                  &(cn_gen_server_opts_t){ .link = true }, &sup),
              0);
    /* Each crash waits for the restart before the next: a crash sent to a w
     * not yet back would find no one, and leave the count short. */
    cn_pid_t w0 = pid_of("w");
    for (int k = 0; k < 3; k++) {
        crash("w");
        cn_pid_t w1 = new_pid_of("w", w0);
        ASSERT(!cn_pid_eq(w1, w0));
        w0 = w1;
        ASSERT(cn_is_alive(sup));
    }
    crash("w"); /* the 4th restart within 10 s is one too many */
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 10000, &m), 0);
    char text[128];
    cn_term_print(cn_msg_term(m), text, sizeof(text));
    cn_msg_free(m);
    ASSERT(strstr(text, "'EXIT'") != NULL);
    ASSERT(strstr(text, "shutdown") != NULL);
    ASSERT(!cn_is_alive(sup));
    cn_pid_t w;
    ASSERT_EQ(cn_whereis("w", &w), -ENOENT);
}

TEST(intensity_exceeded_stops_the_supervisor)
{
    run_node(main_intensity, NULL);
}

/* Nested: a child supervisor's failure is handled by the parent supervisor. */
static cn_child_spec_t inner_kids[] = { SPEC("leaf", CN_PERMANENT) };

static int start_inner(void *arg, cn_pid_t *out)
{
    (void)arg;
    cn_sup_flags_t f = { .intensity = 0, .period_s = 5 };
    return cn_supervisor_start(cn_node_self(), &f, inner_kids, 1,
                               &(cn_gen_server_opts_t){ .name = "inner", .link = true }, out);
}

static void main_nested(void *arg)
{
    (void)arg;
    cn_child_spec_t kids[] = {
        { .id = "inner", .start = start_inner, .type = CN_SUPERVISOR, .shutdown_ms = CN_INFINITY },
    };
    cn_sup_flags_t f = { .intensity = 5, .period_s = 5 };
    cn_pid_t top;
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &f, kids, 1, NULL, &top), 0);
    cn_pid_t inner1 = pid_of("inner");
    crash("leaf"); /* inner has intensity 0: it stops, top restarts it */
    cn_pid_t inner2 = new_pid_of("inner", inner1);
    ASSERT(!cn_pid_eq(inner1, inner2));
    ASSERT(cn_is_alive(inner2));
    ASSERT(cn_is_alive(pid_of("leaf")));
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(top), "shutdown", 5000), 0);
    ASSERT(!cn_is_alive(inner2));
}

TEST(nested_supervisors)
{
    run_node(main_nested, NULL);
}

static void main_dynamic(void *arg)
{
    (void)arg;
    cn_sup_flags_t f = { .intensity = 5, .period_s = 5 };
    cn_pid_t sup, d;
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &f, NULL, 0,
                                  &(cn_gen_server_opts_t){ .name = "dsup" }, &sup),
              0);
    cn_child_spec_t s = SPEC("dyn", CN_PERMANENT);
    ASSERT_EQ(cn_supervisor_start_child(cn_dest_name("dsup"), &s, &d), 0);
    ASSERT(cn_pid_eq(d, pid_of("dyn")));
    ASSERT_EQ(cn_supervisor_start_child(cn_dest_name("dsup"), &s, &d), -EEXIST);
    cn_child_spec_t bad = { .id = "fails", .start = start_worker, .arg = "fails" };
    ASSERT_EQ(cn_supervisor_start_child(cn_dest_name("dsup"), &bad, &d), -EIO);
    ASSERT_EQ(cn_supervisor_delete_child(cn_dest_name("dsup"), "dyn"), -EBUSY);
    ASSERT_EQ(cn_supervisor_restart_child(cn_dest_name("dsup"), "dyn", &d), -EALREADY);
    ASSERT_EQ(cn_supervisor_terminate_child(cn_dest_name("dsup"), "dyn"), 0);
    ASSERT_EQ(cn_supervisor_which_child(cn_dest_name("dsup"), "dyn", &d), -ESRCH);
    ASSERT_EQ(cn_supervisor_restart_child(cn_dest_name("dsup"), "dyn", &d), 0);
    ASSERT(cn_is_alive(d));
    ASSERT_EQ(cn_supervisor_terminate_child(cn_dest_name("dsup"), "dyn"), 0);
    ASSERT_EQ(cn_supervisor_delete_child(cn_dest_name("dsup"), "dyn"), 0);
    ASSERT_EQ(cn_supervisor_delete_child(cn_dest_name("dsup"), "dyn"), -ENOENT);

    /* which_children / count_children, as OTP's supervisor module asks them */
    ASSERT_EQ(cn_supervisor_start_child(cn_dest_name("dsup"), &s, &d), 0);
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    char text[256];
    cn_x_new(&x);
    ei_x_encode_atom(&x, "count_children");
    ASSERT_EQ(cn_gen_call(cn_dest_name("dsup"), &x, 1000, &m, &r), 0);
    cn_term_print(r, text, sizeof(text));
    ASSERT_STR_EQ(text, "[{specs, 1}, {active, 1}, {supervisors, 0}, {workers, 1}]");
    cn_msg_free(m);
    cn_x_new(&x);
    ei_x_encode_atom(&x, "which_children");
    ASSERT_EQ(cn_gen_call(cn_dest_name("dsup"), &x, 1000, &m, &r), 0);
    cn_term_print(r, text, sizeof(text));
    char want[128];
    snprintf(want, sizeof(want), "[{dyn, <cnode@localhost.%u.%u>, worker, [cnode]}]", d.num,
             d.serial);
    ASSERT_STR_EQ(text, want);
    cn_msg_free(m);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("dsup"), "shutdown", 5000), 0);
}

TEST(dynamic_children)
{
    run_node(main_dynamic, NULL);
}

static void main_failing_start(void *arg)
{
    (void)arg;
    cn_child_spec_t kids[] = { SPEC("ok1", CN_PERMANENT),
                               { .id = "fails", .start = start_worker, .arg = "fails" },
                               SPEC("never", CN_PERMANENT) };
    cn_sup_flags_t f = { .intensity = 5, .period_s = 5 };
    events[0] = '\0';
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &f, kids, 3, NULL, NULL), -EIO);
    ASSERT_STR_EQ(events, "+ok1 -ok1 ");
    cn_pid_t p;
    ASSERT_EQ(cn_whereis("ok1", &p), -ENOENT);
    /* bad arguments */
    cn_child_spec_t dup[] = { SPEC("x", CN_PERMANENT), SPEC("x", CN_PERMANENT) };
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &f, dup, 2, NULL, NULL), -EEXIST);
    cn_sup_flags_t badf = { .strategy = 99 };
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &badf, dup, 1, NULL, NULL), -EINVAL);
}

TEST(start_fails_cleanly_when_a_child_fails)
{
    run_node(main_failing_start, NULL);
}

/* A child that crashes 1,000 times: the node stays up and memory stays flat. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static void crashy(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m);
    cn_msg_free(m);
    cn_exit("boom");
}

static int start_crashy(void *arg, cn_pid_t *out)
{
    (void)arg;
    cn_spawn_opts_t o = { .flags = CN_SPAWN_LINK };
    int rc = cn_spawn(cn_node_self(), crashy, NULL, &o, out);
    if (rc == 0)
        cn_register("crashy", *out);
    return rc;
}

static void main_thousand_crashes(void *arg)
{
    (void)arg;
    cn_child_spec_t kids[] = { { .id = "crashy", .start = start_crashy, .shutdown_ms = 100 } };
    cn_sup_flags_t f = { .intensity = 100000, .period_s = 1 };
    cn_pid_t sup;
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &f, kids, 1, NULL, &sup), 0);
    long rss_after_100 = 0;
    int restarts = 0;
    cn_pid_t prev = pid_of("crashy");
    for (int k = 0; k < 1000; k++) {
        ei_x_buff x;
        cn_x_new(&x);
        ei_x_encode_atom(&x, "die");
        ASSERT_EQ(cn_send_name("crashy", &x), 0);
        cn_pid_t now;
        /* wait for the replacement */
        for (int w = 0; w < 1000; w++) {
            cn_yield();
            if (cn_whereis("crashy", &now) == 0 && !cn_pid_eq(now, prev))
                break;
        }
        ASSERT(!cn_pid_eq(now, prev));
        prev = now;
        restarts++;
        if (k == 100)
            rss_after_100 = rss_kb();
    }
    ASSERT_EQ(restarts, 1000);
    ASSERT(cn_is_alive(sup));
    long grew = rss_kb() - rss_after_100;
    fprintf(stderr, "rss growth over 900 restarts: %ld kB\n", grew);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* (the sanitizers' allocators keep freed memory on purpose: no check there) */
    ASSERT_LT(grew, 512); /* flat: well under 1 KiB per restart */
#endif
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(sup), "shutdown", 5000), 0);
}

TEST(child_crashes_a_thousand_times_memory_flat)
{
    run_node(main_thousand_crashes, NULL);
}
