/* proc_test.c - processes, mailboxes, receive, timers, links, monitors, exits. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode_int.h"

/* Run fn as the only initial process of a fresh node; return when all exited. */
static void run_node(cn_proc_fn fn, void *arg)
{
    cn_node_t *node;
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    ASSERT_EQ(cn_spawn(node, fn, arg, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    ASSERT_EQ(cn_node_process_count(node), 0);
    cn_node_free(node);
}

static void send_atom(cn_pid_t to, const char *atom)
{
    ei_x_buff x;
    ASSERT_EQ(cn_x_new(&x), 0);
    ASSERT_EQ(ei_x_encode_atom(&x, atom), 0);
    cn_send(to, &x);
}

static void send_long(cn_pid_t to, long v)
{
    ei_x_buff x;
    ASSERT_EQ(cn_x_new(&x), 0);
    ASSERT_EQ(ei_x_encode_long(&x, v), 0);
    ASSERT_EQ(cn_send(to, &x), 0);
}

static long msg_long(const cn_msg_t *m)
{
    int i = 1;
    long v = -1;
    ASSERT_EQ(ei_decode_long(m->buf, &i, &v), 0);
    return v;
}

static bool msg_is_atom(const cn_msg_t *m, const char *atom)
{
    int i = 1;
    return cn_decode_atom_is(m->buf, &i, atom);
}

/* Decode {Tag, ...}: returns the arity and leaves *tag set. */
static int msg_tuple_tag(const cn_msg_t *m, char *tag)
{
    int i = 1, arity;
    if (ei_decode_tuple_header(m->buf, &i, &arity) < 0)
        return -1;
    if (ei_decode_atom(m->buf, &i, tag) < 0)
        return -1;
    return arity;
}

/* ---------------------------------------------------------------------------------
 * spawn, self, send, receive
 * ------------------------------------------------------------------------------ */

static int order_log[8];
static int order_n;

static void child_echo(void *arg)
{
    cn_pid_t parent = *(cn_pid_t *)arg;
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, CN_INFINITY, &m), 0);
    ASSERT_EQ(cn_send_msg(parent, m), 0);
}

static void main_send_receive(void *arg)
{
    (void)arg;
    static cn_pid_t me;
    me = cn_self();
    ASSERT_NE(me.num, 0);
    cn_pid_t child;
    ASSERT_EQ(cn_spawn(cn_node_self(), child_echo, &me, NULL, &child), 0);
    ASSERT(cn_is_alive(child));
    ASSERT(!cn_pid_eq(child, me));
    send_long(child, 42);
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 5000, &m), 0);
    ASSERT_EQ(msg_long(m), 42);
    cn_msg_free(m);
    order_log[order_n++] = 1;
}

TEST(spawn_send_receive)
{
    run_node(main_send_receive, NULL);
    ASSERT_EQ(order_n, 1);
}

static bool match_even(const cn_msg_t *m, void *arg)
{
    (void)arg;
    return msg_long(m) % 2 == 0;
}

static void main_selective(void *arg)
{
    (void)arg;
    cn_pid_t me = cn_self();
    for (long i = 1; i <= 6; i++)
        send_long(me, i);
    cn_msg_t *m;
    /* even ones first, in order; odd ones stay in order */
    for (long want = 2; want <= 6; want += 2) {
        ASSERT_EQ(cn_receive(match_even, NULL, 0, &m), 0);
        ASSERT_EQ(msg_long(m), want);
        cn_msg_free(m);
    }
    ASSERT_EQ(cn_receive(match_even, NULL, 0, &m), -ETIMEDOUT);
    ASSERT_EQ(cn_mbox_len(), 3);
    for (long want = 1; want <= 5; want += 2) {
        ASSERT_EQ(cn_receive(NULL, NULL, 0, &m), 0);
        ASSERT_EQ(msg_long(m), want);
        cn_msg_free(m);
    }
    ASSERT_EQ(cn_mbox_len(), 0);
}

TEST(selective_receive_keeps_order)
{
    run_node(main_selective, NULL);
}

static void sender_later(void *arg)
{
    cn_pid_t to = *(cn_pid_t *)arg;
    cn_sleep(30);
    send_long(to, 7); /* odd: does not match */
    cn_sleep(30);
    send_long(to, 8);
}

static void main_receive_waits(void *arg)
{
    (void)arg;
    static cn_pid_t me;
    me = cn_self();
    ASSERT_EQ(cn_spawn(cn_node_self(), sender_later, &me, NULL, NULL), 0);
    uint64_t t0 = cn__clock_ms();
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(match_even, NULL, 5000, &m), 0);
    ASSERT_EQ(msg_long(m), 8);
    ASSERT_GE(cn__clock_ms() - t0, 50);
    cn_msg_free(m);
    ASSERT_EQ(cn_receive(NULL, NULL, 0, &m), 0);
    ASSERT_EQ(msg_long(m), 7);
    cn_msg_free(m);
}

TEST(receive_parks_until_a_match_arrives)
{
    run_node(main_receive_waits, NULL);
}

static void main_timeout(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    uint64_t t0 = cn__clock_ms();
    ASSERT_EQ(cn_receive(NULL, NULL, 50, &m), -ETIMEDOUT);
    ASSERT_NULL(m);
    uint64_t dt = cn__clock_ms() - t0;
    ASSERT_GE(dt, 50);
    /* It ends: a loose bound (a loaded machine under ASan is no place to time
     * things), which still catches a limit read in seconds. */
    ASSERT_LT(dt, 30000);
    /* a message that does not match does not end the wait early */
    send_long(cn_self(), 1);
    t0 = cn__clock_ms();
    ASSERT_EQ(cn_receive(match_even, NULL, 40, &m), -ETIMEDOUT);
    ASSERT_GE(cn__clock_ms() - t0, 40);
    ASSERT_EQ(cn_mbox_len(), 1);
    ASSERT_EQ(cn_receive(NULL, NULL, 0, &m), 0);
    cn_msg_free(m);
}

TEST(receive_timeout_fires)
{
    run_node(main_timeout, NULL);
}

static void main_send_dead(void *arg)
{
    (void)arg;
    cn_pid_t stale = cn_self();
    stale.serial += 1; /* same slot, another generation: never alive */
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "hello");
    ASSERT_EQ(cn_send(stale, &x), -ESRCH);
    ASSERT_NULL(x.buff);
    cn_x_new(&x);
    ei_x_encode_atom(&x, "hello");
    ASSERT_EQ(cn_send_name("nobody", &x), -ESRCH);
    cn_pid_t remote = cn_self();
    remote.node = 5;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "hello");
    ASSERT_EQ(cn_send(remote, &x), -EHOSTUNREACH);
}

TEST(send_to_dead_or_unknown_is_a_defined_error)
{
    run_node(main_send_dead, NULL);
}

static void idle_receiver(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m);
    cn_msg_free(m);
}

static void main_full_mailbox(void *arg)
{
    (void)arg;
    cn_spawn_opts_t o = { .max_mailbox = 3 };
    cn_pid_t p;
    ASSERT_EQ(cn_spawn(cn_node_self(), idle_receiver, NULL, &o, &p), 0);
    /* it has not run yet: its mailbox fills */
    send_long(p, 1);
    send_long(p, 2);
    send_long(p, 3);
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_long(&x, 4);
    ASSERT_EQ(cn_send(p, &x), -ENOBUFS);
}

TEST(full_mailbox_policy)
{
    run_node(main_full_mailbox, NULL);
}

/* ---------------------------------------------------------------------------------
 * registry
 * ------------------------------------------------------------------------------ */

static void main_registry(void *arg)
{
    (void)arg;
    cn_pid_t me = cn_self(), out;
    ASSERT_EQ(cn_whereis("svc", &out), -ENOENT);
    ASSERT_EQ(cn_register("svc", me), 0);
    ASSERT_EQ(cn_whereis("svc", &out), 0);
    ASSERT(cn_pid_eq(out, me));
    ASSERT_EQ(cn_register("svc", me), -EEXIST);
    ASSERT_EQ(cn_register("other", me), -EBUSY);
    ASSERT_EQ(cn_register("", me), -EINVAL);
    cn_pid_t child;
    ASSERT_EQ(cn_spawn(cn_node_self(), idle_receiver, NULL, NULL, &child), 0);
    ASSERT_EQ(cn_register("svc", child), -EEXIST);
    ASSERT_EQ(cn_register("child", child), 0);
    /* a name goes with its process */
    send_atom(child, "bye");
    cn_sleep(10);
    ASSERT(!cn_is_alive(child));
    ASSERT_EQ(cn_whereis("child", &out), -ENOENT);
    cn_pid_t dead = child;
    ASSERT_EQ(cn_register("child", dead), -ESRCH);
    ASSERT_EQ(cn_unregister("svc"), 0);
    ASSERT_EQ(cn_unregister("svc"), -ENOENT);
    /* many names, to grow the table */
    char name[32];
    for (int i = 0; i < 200; i++) {
        cn_pid_t p;
        ASSERT_EQ(cn_spawn(cn_node_self(), idle_receiver, NULL, NULL, &p), 0);
        snprintf(name, sizeof(name), "n%d", i);
        ASSERT_EQ(cn_register(name, p), 0);
    }
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        ASSERT_EQ(cn_whereis(name, &out), 0);
        ei_x_buff x;
        cn_x_new(&x);
        ei_x_encode_atom(&x, "stop");
        ASSERT_EQ(cn_send_name(name, &x), 0);
    }
}

TEST(registry_register_whereis_unregister)
{
    run_node(main_registry, NULL);
}

/* ---------------------------------------------------------------------------------
 * timers
 * ------------------------------------------------------------------------------ */

static void main_timers(void *arg)
{
    (void)arg;
    cn_pid_t me = cn_self();
    cn_timer_ref_t t1, t2;
    ei_x_buff x;
    /* t0 before the timers are set: taken after, a preemption in between (under
     * ASan on a loaded machine) made the 20 ms timer look early. */
    uint64_t t0 = cn__clock_ms();
    cn_x_new(&x);
    ei_x_encode_long(&x, 1);
    ASSERT_EQ(cn_send_after(1000, me, &x, &t1), 0);
    cn_x_new(&x);
    ei_x_encode_long(&x, 2);
    ASSERT_EQ(cn_send_after(20, me, &x, &t2), 0);
    ASSERT_NE(t1, t2);
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 10000, &m), 0);
    ASSERT_EQ(msg_long(m), 2);
    ASSERT_GE(cn__clock_ms() - t0, 19);
    cn_msg_free(m);
    ASSERT_EQ(cn_cancel_timer(t2), -ENOENT); /* fired */
    /* t1 is due 1 s after it was set (60 ms could pass before the cancel on a
     * loaded machine); waiting past its due time shows it was cancelled. */
    int64_t left = cn_cancel_timer(t1);
    ASSERT_GE(left, 0);
    ASSERT_LE(left, 1000);
    ASSERT_EQ(cn_cancel_timer(t1), -ENOENT);
    ASSERT_EQ(cn_receive(NULL, NULL, left + 100, &m), -ETIMEDOUT);
    ASSERT_EQ(cn_cancel_timer(0), -ENOENT);

    /* a timer aimed at a process that exits is dropped with it */
    cn_pid_t child;
    ASSERT_EQ(cn_spawn(cn_node_self(), idle_receiver, NULL, NULL, &child), 0);
    cn_x_new(&x);
    ei_x_encode_long(&x, 3);
    cn_timer_ref_t t3;
    ASSERT_EQ(cn_send_after(1000, child, &x, &t3), 0);
    send_atom(child, "go");
    cn_sleep(5);
    ASSERT(!cn_is_alive(child));
    ASSERT_EQ(cn_cancel_timer(t3), -ENOENT);
    /* and to a dead one, refused */
    cn_x_new(&x);
    ei_x_encode_long(&x, 4);
    ASSERT_EQ(cn_send_after(10, child, &x, &t3), -ESRCH);
    ASSERT_EQ(t3, 0);
}

TEST(send_after_and_cancel)
{
    run_node(main_timers, NULL);
}

static void main_many_timers(void *arg)
{
    (void)arg;
    /* 1,000 timers armed in random-ish order arrive sorted by the due time the
     * node gave each (read from its timer through the handle: a due time computed
     * by the test beside the call would be off whenever the thread is preempted
     * between the two clock reads, as happens under ASan on a loaded machine). */
    static uint64_t due_of[1000];
    cn_node_t *n = cn_node_self();
    cn_pid_t me = cn_self();
    for (long i = 0; i < 1000; i++) {
        long delay = (i * 7919) % 1000 / 20;
        ei_x_buff x;
        cn_x_new(&x);
        ei_x_encode_long(&x, i);
        cn_timer_ref_t ref;
        ASSERT_EQ(cn_send_after(delay, me, &x, &ref), 0);
        uint32_t slot = (uint32_t)ref;
        ASSERT(slot < n->ntslots && n->tslots[slot] != NULL);
        due_of[i] = n->tslots[slot]->due;
    }
    uint64_t prev_due = 0;
    for (int i = 0; i < 1000; i++) {
        cn_msg_t *m;
        ASSERT_EQ(cn_receive(NULL, NULL, 5000, &m), 0);
        long ix = msg_long(m);
        ASSERT(ix >= 0 && ix < 1000);
        ASSERT_GE(due_of[ix], prev_due);
        prev_due = due_of[ix];
        ASSERT_GE(cn__clock_ms(), due_of[ix]);
        cn_msg_free(m);
    }
}

TEST(many_timers_fire_in_order)
{
    run_node(main_many_timers, NULL);
}

/* ---------------------------------------------------------------------------------
 * links, monitors, exits
 * ------------------------------------------------------------------------------ */

static void crasher(void *arg)
{
    (void)arg;
    cn_sleep(5);
    cn_exit("boom");
}

static void linked_waiter(void *arg)
{
    (void)arg;
    cn_spawn_opts_t o = { .flags = CN_SPAWN_LINK };
    ASSERT_EQ(cn_spawn(cn_node_self(), crasher, NULL, &o, NULL), 0);
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m); /* killed while parked here */
    ASSERT(0);
}

static int hook_ran;
static void on_hook(void *arg)
{
    hook_ran += (int)(long)arg;
}

static void main_links(void *arg)
{
    (void)arg;
    /* crash -> linked non-trapping process dies -> our monitor sees it */
    cn_pid_t w;
    cn_ref_t mref;
    cn_spawn_opts_t o = { .flags = CN_SPAWN_MONITOR, .mref = &mref };
    ASSERT_EQ(cn_spawn(cn_node_self(), linked_waiter, NULL, &o, &w), 0);
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 2000, &m), 0);
    char tag[MAXATOMLEN_UTF8];
    ASSERT_EQ(msg_tuple_tag(m, tag), 5);
    ASSERT_STR_EQ(tag, "DOWN");
    int i = 1, arity;
    cn_ref_t r;
    cn_pid_t who;
    ei_decode_tuple_header(m->buf, &i, &arity);
    ei_skip_term(m->buf, &i);
    ASSERT_EQ(cn_decode_ref(m->buf, &i, &r), 0);
    ASSERT(cn_ref_eq(&r, &mref));
    ASSERT(cn_decode_atom_is(m->buf, &i, "process"));
    ASSERT_EQ(cn_decode_pid(m->buf, &i, &who), 0);
    ASSERT(cn_pid_eq(who, w));
    ASSERT(cn_decode_atom_is(m->buf, &i, "boom"));
    cn_msg_free(m);
}

TEST(exit_propagates_through_links_and_monitors_see_it)
{
    run_node(main_links, NULL);
}

static void main_trap(void *arg)
{
    (void)arg;
    ASSERT_EQ(cn_trap_exit(true), false);
    cn_spawn_opts_t o = { .flags = CN_SPAWN_LINK };
    cn_pid_t c;
    ASSERT_EQ(cn_spawn(cn_node_self(), crasher, NULL, &o, &c), 0);
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 2000, &m), 0);
    int i = 1, arity;
    ASSERT_EQ(ei_decode_tuple_header(m->buf, &i, &arity), 0);
    ASSERT_EQ(arity, 3);
    ASSERT(cn_decode_atom_is(m->buf, &i, "EXIT"));
    cn_pid_t from;
    ASSERT_EQ(cn_decode_pid(m->buf, &i, &from), 0);
    ASSERT(cn_pid_eq(from, c));
    ASSERT(cn_decode_atom_is(m->buf, &i, "boom"));
    cn_msg_free(m);

    /* a normal exit of a linked process is a message too, when trapping */
    ASSERT_EQ(cn_spawn(cn_node_self(), idle_receiver, NULL, &o, &c), 0);
    send_atom(c, "x");
    ASSERT_EQ(cn_receive(NULL, NULL, 2000, &m), 0);
    i = 1;
    ei_decode_tuple_header(m->buf, &i, &arity);
    ASSERT(cn_decode_atom_is(m->buf, &i, "EXIT"));
    ei_skip_term(m->buf, &i);
    ASSERT(cn_decode_atom_is(m->buf, &i, "normal"));
    cn_msg_free(m);

    /* kill cannot be trapped by the victim; its links see `killed` */
    ASSERT_EQ(cn_spawn(cn_node_self(), idle_receiver, NULL, &o, &c), 0);
    ASSERT_EQ(cn_exit_pid(c, "kill"), 0);
    ASSERT_EQ(cn_receive(NULL, NULL, 2000, &m), 0);
    i = 1;
    ei_decode_tuple_header(m->buf, &i, &arity);
    ASSERT(cn_decode_atom_is(m->buf, &i, "EXIT"));
    ei_skip_term(m->buf, &i);
    ASSERT(cn_decode_atom_is(m->buf, &i, "killed"));
    cn_msg_free(m);
    ASSERT(!cn_is_alive(c));

    /* linking to a dead process: -ESRCH and an EXIT noproc message */
    ASSERT_EQ(cn_link(c), -ESRCH);
    ASSERT_EQ(cn_receive(NULL, NULL, 0, &m), 0);
    i = 1;
    ei_decode_tuple_header(m->buf, &i, &arity);
    ASSERT(cn_decode_atom_is(m->buf, &i, "EXIT"));
    ei_skip_term(m->buf, &i);
    ASSERT(cn_decode_atom_is(m->buf, &i, "noproc"));
    cn_msg_free(m);
    ASSERT_EQ(cn_exit_pid(c, "kill"), -ESRCH);
}

TEST(trap_exit_turns_signals_into_messages)
{
    run_node(main_trap, NULL);
}

static void normal_exit_ignored_child(void *arg)
{
    int *flag = arg;
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, CN_INFINITY, &m), 0);
    cn_msg_free(m);
    *flag = 1; /* still alive after the exit(normal) signal */
}

static void main_exit_normal(void *arg)
{
    (void)arg;
    static int flag;
    cn_pid_t c;
    ASSERT_EQ(cn_spawn(cn_node_self(), normal_exit_ignored_child, &flag, NULL, &c), 0);
    ASSERT_EQ(cn_exit_pid(c, "normal"), 0);
    cn_sleep(5);
    ASSERT(cn_is_alive(c));
    send_atom(c, "go");
    cn_sleep(5);
    ASSERT_EQ(flag, 1);
    /* any other reason kills a non-trapping process */
    ASSERT_EQ(cn_spawn(cn_node_self(), normal_exit_ignored_child, &flag, NULL, &c), 0);
    flag = 0;
    ASSERT_EQ(cn_exit_pid(c, "shutdown"), 0);
    cn_sleep(5);
    ASSERT(!cn_is_alive(c));
    ASSERT_EQ(flag, 0);
}

TEST(exit_signal_normal_is_ignored_others_kill)
{
    run_node(main_exit_normal, NULL);
}

static void monitored_then_crash(void *arg)
{
    (void)arg;
    cn_on_exit(on_hook, (void *)1L);
    long h = cn_on_exit(on_hook, (void *)100L);
    cn_on_exit_cancel(h);
    cn_sleep(5);
    cn_exit("crash");
}

static void monitor_only_parent(void *arg)
{
    (void)arg;
    cn_pid_t c;
    cn_ref_t ref;
    ASSERT_EQ(cn_spawn(cn_node_self(), monitored_then_crash, NULL, NULL, &c), 0);
    ASSERT_EQ(cn_monitor(c, &ref), 0);
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 2000, &m), 0); /* DOWN, and we are alive */
    char tag[MAXATOMLEN_UTF8];
    ASSERT_EQ(msg_tuple_tag(m, tag), 5);
    ASSERT_STR_EQ(tag, "DOWN");
    cn_msg_free(m);
    ASSERT_EQ(hook_ran, 1);
    ASSERT_EQ(cn_demonitor(&ref, 0), -ENOENT);

    /* monitor of a dead pid: DOWN noproc at once */
    ASSERT_EQ(cn_monitor(c, &ref), 0);
    ASSERT_EQ(cn_receive(NULL, NULL, 0, &m), 0);
    int i = 1, arity;
    ei_decode_tuple_header(m->buf, &i, &arity);
    ei_skip_term(m->buf, &i);
    ei_skip_term(m->buf, &i);
    ei_skip_term(m->buf, &i);
    ei_skip_term(m->buf, &i);
    ASSERT(cn_decode_atom_is(m->buf, &i, "noproc"));
    cn_msg_free(m);

    /* demonitor: no DOWN later */
    ASSERT_EQ(cn_spawn(cn_node_self(), crasher, NULL, NULL, &c), 0);
    ASSERT_EQ(cn_monitor(c, &ref), 0);
    ASSERT_EQ(cn_demonitor(&ref, 0), 0);
    ASSERT_EQ(cn_receive(NULL, NULL, 50, &m), -ETIMEDOUT);

    /* demonitor with flush removes a DOWN already delivered */
    ASSERT_EQ(cn_spawn(cn_node_self(), crasher, NULL, NULL, &c), 0);
    ASSERT_EQ(cn_monitor(c, &ref), 0);
    cn_sleep(50);
    ASSERT_EQ(cn_mbox_len(), 1);
    ASSERT_EQ(cn_demonitor(&ref, CN_DEMONITOR_FLUSH), -ENOENT);
    ASSERT_EQ(cn_mbox_len(), 0);
}

TEST(monitors_do_not_propagate_exits)
{
    run_node(monitor_only_parent, NULL);
}

/* ThreadSanitizer tracks each process as a fiber and allows about 8,000. */
#if defined(__SANITIZE_THREAD__)
#define NPAIRS 2000
#define CHAIN 4000L
#else
#define NPAIRS 50000
#define CHAIN 20000L
#endif

/* A chain of linked processes dies iteratively. */
static void chain_link(void *arg)
{
    long left = (long)arg;
    if (left > 0) {
        cn_spawn_opts_t o = { .flags = CN_SPAWN_LINK };
        ASSERT_EQ(cn_spawn(cn_node_self(), chain_link, (void *)(left - 1), &o, NULL), 0);
    } else {
        cn_sleep(10);
        cn_exit("end_of_chain");
    }
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m);
}

static void main_chain(void *arg)
{
    (void)arg;
    cn_pid_t head;
    cn_ref_t ref;
    cn_spawn_opts_t o = { .flags = CN_SPAWN_MONITOR, .mref = &ref };
    ASSERT_EQ(cn_spawn(cn_node_self(), chain_link, (void *)CHAIN, &o, &head), 0);
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 20000, &m), 0);
    int i = 1, arity;
    ei_decode_tuple_header(m->buf, &i, &arity);
    for (int k = 0; k < 4; k++)
        ei_skip_term(m->buf, &i);
    ASSERT(cn_decode_atom_is(m->buf, &i, "end_of_chain"));
    cn_msg_free(m);
    ASSERT_EQ(cn_node_process_count(cn_node_self()), 1);
}

TEST(long_link_chain_dies_without_recursion)
{
    run_node(main_chain, NULL);
}

/* ---------------------------------------------------------------------------------
 * 100,000 processes exchanging messages
 * ------------------------------------------------------------------------------ */


static void pinger(void *arg)
{
    cn_pid_t collector = *(cn_pid_t *)arg;
    cn_msg_t *m;
    /* receive the partner's pid, ping it 3 times, wait for 3 pongs */
    ASSERT_EQ(cn_receive(NULL, NULL, CN_INFINITY, &m), 0);
    int i = 1;
    cn_pid_t partner;
    ASSERT_EQ(cn_decode_pid(m->buf, &i, &partner), 0);
    cn_msg_free(m);
    for (int k = 0; k < 3; k++) {
        ei_x_buff x;
        cn_x_new(&x);
        ei_x_encode_tuple_header(&x, 2);
        cn_x_encode_pid(&x, cn_self());
        ei_x_encode_long(&x, k);
        ASSERT_EQ(cn_send(partner, &x), 0);
        ASSERT_EQ(cn_receive(NULL, NULL, CN_INFINITY, &m), 0);
        ASSERT_EQ(msg_long(m), k + 100);
        cn_msg_free(m);
    }
    send_atom(collector, "done");
}

static void ponger(void *arg)
{
    (void)arg;
    for (int k = 0; k < 3; k++) {
        cn_msg_t *m;
        ASSERT_EQ(cn_receive(NULL, NULL, CN_INFINITY, &m), 0);
        int i = 1, arity;
        cn_pid_t from;
        long v;
        ASSERT_EQ(ei_decode_tuple_header(m->buf, &i, &arity), 0);
        ASSERT_EQ(cn_decode_pid(m->buf, &i, &from), 0);
        ASSERT_EQ(ei_decode_long(m->buf, &i, &v), 0);
        cn_msg_free(m);
        send_long(from, v + 100);
    }
}

static void main_many(void *arg)
{
    (void)arg;
    static cn_pid_t me;
    me = cn_self();
    for (int k = 0; k < NPAIRS; k++) {
        cn_pid_t a, b;
        ASSERT_EQ(cn_spawn(cn_node_self(), pinger, &me, NULL, &a), 0);
        ASSERT_EQ(cn_spawn(cn_node_self(), ponger, NULL, NULL, &b), 0);
        ei_x_buff x;
        cn_x_new(&x);
        cn_x_encode_pid(&x, b);
        ASSERT_EQ(cn_send(a, &x), 0);
    }
    ASSERT_EQ(cn_node_process_count(cn_node_self()), 2 * NPAIRS + 1);
    for (int k = 0; k < NPAIRS; k++) {
        cn_msg_t *m;
        ASSERT_EQ(cn_receive(NULL, NULL, 30000, &m), 0);
        ASSERT(msg_is_atom(m, "done"));
        cn_msg_free(m);
    }
}

TEST(hundred_thousand_processes_exchange_messages)
{
    run_node(main_many, NULL);
}

/* ---------------------------------------------------------------------------------
 * own stacks, deep stacks, yield
 * ------------------------------------------------------------------------------ */

static long deep(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    if (depth == 0) {
        cn_yield(); /* park with a deep stack: it is saved and restored */
        return pad[0];
    }
    return deep(depth - 1) + pad[0];
}

static void deep_proc(void *arg)
{
    long *out = arg;
    *out = deep(200); /* ~100 KiB of frames */
}

static void main_stacks(void *arg)
{
    (void)arg;
    static long r1, r2, r3;
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    ASSERT_EQ(cn_spawn(cn_node_self(), deep_proc, &r1, NULL, NULL), 0);
    ASSERT_EQ(cn_spawn(cn_node_self(), deep_proc, &r2, &own, NULL), 0);
    ASSERT_EQ(cn_spawn(cn_node_self(), deep_proc, &r3, NULL, NULL), 0);
    cn_sleep(20);
    long want = 0;
    for (int d = 0; d <= 200; d++)
        want += (char)d;
    ASSERT_EQ(r1, want);
    ASSERT_EQ(r2, want);
    ASSERT_EQ(r3, want);
}

TEST(deep_stacks_survive_switches)
{
    run_node(main_stacks, NULL);
}

/* ---------------------------------------------------------------------------------
 * fds and blocking work
 * ------------------------------------------------------------------------------ */

static void fd_reader(void *arg)
{
    int fd = *(int *)arg;
    char buf[16];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) < 0 && errno == EAGAIN)
        ASSERT_EQ(cn_wait_fd(fd, CN_READABLE, 2000), CN_READABLE);
    ASSERT_EQ(n, 5);
    ASSERT_MEM_EQ(buf, "hello", 5);
    /* nothing more: a wait times out */
    ASSERT_EQ(read(fd, buf, sizeof(buf)), -1);
    ASSERT_EQ(cn_wait_fd(fd, CN_READABLE, 30), -ETIMEDOUT);
    /* closed under us by another process */
    ASSERT_EQ(cn_wait_fd(fd, CN_READABLE, 5000), -EBADF);
}

static void main_fds(void *arg)
{
    (void)arg;
    static int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_EQ(cn_spawn(cn_node_self(), fd_reader, &sv[0], NULL, NULL), 0);
    cn_sleep(20);
    ASSERT_EQ(write(sv[1], "hello", 5), 5);
    cn_sleep(100);
    ASSERT_EQ(cn_fd_close(sv[0]), 0);
    cn_sleep(10);
    ASSERT_EQ(cn_wait_fd(sv[0], CN_READABLE, 10), -EBADF);
    ASSERT_EQ(cn_wait_fd(-1, CN_READABLE, 10), -EBADF);
    ASSERT_EQ(cn_wait_fd(sv[1], 0, 10), -EINVAL);
    ASSERT_EQ(cn_wait_fd(sv[1], CN_WRITABLE, 1000), CN_WRITABLE);
    close(sv[1]);
    /* a regular file cannot be polled */
    int fd = open("/proc/self/status", O_RDONLY | O_NONBLOCK);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cn_wait_fd(fd, CN_READABLE, 10), -EPERM);
    close(fd);
}

TEST(wait_on_file_descriptors)
{
    run_node(main_fds, NULL);
}

struct work {
    int in;
    int out;
};

static void slow_square(void *arg)
{
    struct work *w = arg;
    usleep(20000);
    w->out = w->in * w->in;
}

static int ticks;

static void ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++) {
        cn_sleep(2);
        ticks++;
    }
}

static void blocker(void *arg)
{
    int *result = arg;
    struct work w = { 7, 0 }; /* on the (pinned) stack */
    ASSERT_EQ(cn_blocking(slow_square, &w), 0);
    *result = w.out;
}

static void main_blocking(void *arg)
{
    (void)arg;
    static int r[4];
    ASSERT_EQ(cn_spawn(cn_node_self(), ticker, NULL, NULL, NULL), 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(cn_spawn(cn_node_self(), blocker, &r[i], NULL, NULL), 0);
    cn_sleep(200);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(r[i], 49);
    /* the scheduler kept running other processes meanwhile */
    ASSERT_EQ(ticks, 10);
}

TEST(blocking_work_runs_on_the_pool)
{
    run_node(main_blocking, NULL);
}

static void blocker_killed(void *arg)
{
    (void)arg;
    struct work w = { 3, 0 };
    cn_blocking(slow_square, &w);
    ASSERT(0); /* killed meanwhile: must not come back */
}

static void main_kill_blocking(void *arg)
{
    (void)arg;
    cn_pid_t c;
    cn_ref_t ref;
    cn_spawn_opts_t o = { .flags = CN_SPAWN_MONITOR, .mref = &ref };
    ASSERT_EQ(cn_spawn(cn_node_self(), blocker_killed, NULL, &o, &c), 0);
    cn_sleep(5);
    ASSERT_EQ(cn_exit_pid(c, "kill"), 0);
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 2000, &m), 0);
    int i = 1, arity;
    ei_decode_tuple_header(m->buf, &i, &arity);
    for (int k = 0; k < 4; k++)
        ei_skip_term(m->buf, &i);
    ASSERT(cn_decode_atom_is(m->buf, &i, "killed"));
    cn_msg_free(m);
}

TEST(kill_during_blocking_work_waits_for_it)
{
    run_node(main_kill_blocking, NULL);
}

/* Regression: a process whose blocking call completed, but which found its shared
 * stack pinned by another process's blocking call when it came to run, must still
 * return from cn_blocking() when that pin goes (it used to park forever). */
static volatile int short_done;
static int pin_order[2];
static int npin_order;

static void short_job(void *arg)
{
    (void)arg;
    usleep(5000);
    __atomic_store_n(&short_done, 1, __ATOMIC_SEQ_CST);
}

static void long_job(void *arg)
{
    (void)arg;
    usleep(30000);
}

static void pin_yielder(void *arg)
{
    cn_pid_t parent = *(cn_pid_t *)arg;
    /* Runs on the same shared stack as pin_short; waits while that one's call runs,
     * then takes the stack itself with a longer call. */
    while (!__atomic_load_n(&short_done, __ATOMIC_SEQ_CST))
        cn_yield();
    cn_blocking(long_job, NULL);
    pin_order[npin_order++] = 2;
    send_atom(parent, "yielder");
}

static void pin_short(void *arg)
{
    cn_pid_t parent = *(cn_pid_t *)arg;
    cn_blocking(short_job, NULL);
    pin_order[npin_order++] = 1;
    send_atom(parent, "short");
}

static void main_pin_handover(void *arg)
{
    (void)arg;
    static cn_pid_t me;
    me = cn_self();
    ASSERT_EQ(cn_spawn(cn_node_self(), pin_yielder, &me, NULL, NULL), 0);
    ASSERT_EQ(cn_spawn(cn_node_self(), pin_short, &me, NULL, NULL), 0);
    for (int k = 0; k < 2; k++) {
        cn_msg_t *m;
        ASSERT_EQ(cn_receive(NULL, NULL, 5000, &m), 0);
        cn_msg_free(m);
    }
    ASSERT_EQ(npin_order, 2);
}

TEST(blocking_call_survives_a_stack_pinned_by_another)
{
    run_node(main_pin_handover, NULL);
}

/* cn_blocking_short: on the scheduler's own thread when the node is idle, on the
 * pool when anything else is waiting to run. */
typedef struct where {
    pthread_t thread; /* where the job ran */
    int in, out;
} where_t;

static void where_job(void *arg)
{
    where_t *w = arg;
    w->thread = pthread_self();
    w->out = w->in * w->in;
}

static void spin_yielder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        cn_yield();
}

static void long_blocker(void *arg)
{
    (void)arg;
    cn_blocking(long_job, NULL);
}

static void main_blocking_short(void *arg)
{
    (void)arg;
    pthread_t sched = pthread_self();
    where_t w = { .in = 6 };
    /* Alone on the node: runs here. */
    ASSERT_EQ(cn_blocking_short(where_job, &w), 1);
    ASSERT_EQ(w.out, 36);
    ASSERT(pthread_equal(w.thread, sched));
    /* Another process runnable: the pool. */
    ASSERT_EQ(cn_spawn(cn_node_self(), spin_yielder, NULL, NULL, NULL), 0);
    w = (where_t){ .in = 7 };
    ASSERT_EQ(cn_blocking_short(where_job, &w), 0);
    ASSERT_EQ(w.out, 49);
    ASSERT(!pthread_equal(w.thread, sched));
    cn_sleep(1); /* the yielder ends */
    /* Another pool job in flight (its completion would wait behind ours): the pool. */
    ASSERT_EQ(cn_spawn(cn_node_self(), long_blocker, NULL, NULL, NULL), 0);
    cn_yield(); /* the blocker hands its job to the pool */
    w = (where_t){ .in = 8 };
    ASSERT_EQ(cn_blocking_short(where_job, &w), 0);
    ASSERT_EQ(w.out, 64);
    ASSERT(!pthread_equal(w.thread, sched));
    ASSERT_EQ(cn_blocking_short(NULL, NULL), -EINVAL);
}

TEST(blocking_short_runs_inline_only_when_the_node_is_idle)
{
    run_node(main_blocking_short, NULL);
    where_t w = { .in = 2 };
    ASSERT_EQ(cn_blocking_short(where_job, &w), -EINVAL); /* not in a process */
}

/* cn_fd_forget: a forgotten fd can be closed by its owner and the number reused. */
static void main_fd_forget(void *arg)
{
    (void)arg;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_EQ(cn_wait_fd(sv[0], CN_WRITABLE, 1000), CN_WRITABLE);
    ASSERT_EQ(cn_fd_forget(sv[0]), 0);
    ASSERT_EQ(cn_fd_forget(sv[0]), -ENOENT);
    int num = sv[0];
    close(sv[0]); /* the "library" closes it */
    close(sv[1]);
    /* a new socket gets the same number and works with the poller */
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_EQ(sv[0], num);
    ASSERT_EQ(write(sv[1], "x", 1), 1);
    ASSERT_EQ(cn_wait_fd(sv[0], CN_READABLE, 1000), CN_READABLE);
    cn_fd_close(sv[0]);
    close(sv[1]);
}

TEST(fd_forget_then_reuse_the_number)
{
    run_node(main_fd_forget, NULL);
}

/* ---------------------------------------------------------------------------------
 * out of memory
 * ------------------------------------------------------------------------------ */

static void nop_proc(void *arg)
{
    (void)arg;
}

static void main_oom(void *arg)
{
    (void)arg;
    /* fail each allocation of spawn+link+monitor in turn: always a clean error */
    for (long k = 1; k <= 6; k++) {
        cn_ref_t ref;
        cn_spawn_opts_t o = { .flags = CN_SPAWN_LINK | CN_SPAWN_MONITOR, .mref = &ref };
        size_t before = cn_node_process_count(cn_node_self());
        cn__alloc_fail_at(k);
        int rc = cn_spawn(cn_node_self(), nop_proc, NULL, &o, NULL);
        cn__alloc_fail_at(0);
        if (rc == 0) {
            ASSERT_EQ(cn_node_process_count(cn_node_self()), before + 1);
            cn_sleep(1);
            cn_msg_t *m;
            ASSERT_EQ(cn_receive(NULL, NULL, 1000, &m), 0); /* DOWN */
            cn_msg_free(m);
        } else {
            ASSERT_EQ(rc, -ENOMEM);
            ASSERT_EQ(cn_node_process_count(cn_node_self()), before);
        }
    }
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "a");
    cn__alloc_fail_at(1);
    ASSERT_EQ(cn_send(cn_self(), &x), -ENOMEM);
    cn__alloc_fail_at(1);
    ASSERT_EQ(cn_register("zz", cn_self()), -ENOMEM);
    cn__alloc_fail_at(0);
    ASSERT_EQ(cn_whereis("zz", &(cn_pid_t){ 0 }), -ENOENT);
}

/* A node stopped while processes wait in receives with timeouts and own message
 * timers: freeing it must take each wake timer out of the heap before freeing
 * it (ASan caught a use-after-free here when the ctl tool exited mid-wait). */
static void parked_with_timers(void *arg)
{
    (void)arg;
    ei_x_buff x;
    ASSERT_EQ(cn_x_new(&x), 0);
    ASSERT_EQ(ei_x_encode_atom(&x, "late"), 0);
    ASSERT_EQ(cn_send_after(60000 + (uint32_t)cn_self().num, cn_self(), &x, NULL), 0);
    cn_msg_t *m;
    cn_receive(NULL, NULL, 50000 - (int)cn_self().num * 7, &m);
}

static void stop_soon(void *arg)
{
    cn_msg_t *m;
    ASSERT_EQ(cn_receive(NULL, NULL, 20, &m), -ETIMEDOUT);
    cn_node_stop((cn_node_t *)arg);
}

TEST(node_freed_with_processes_parked_on_timers)
{
    cn_node_t *node;
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    for (int i = 0; i < 40; i++)
        ASSERT_EQ(cn_spawn(node, parked_with_timers, NULL, NULL, NULL), 0);
    ASSERT_EQ(cn_spawn(node, stop_soon, node, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    ASSERT_EQ(cn_node_process_count(node), 40);
    cn_node_free(node);
}

TEST(x_reserve_makes_room_once_and_keeps_the_term)
{
    ei_x_buff x;
    ASSERT_EQ(cn_x_new(&x), 0);
    ASSERT_EQ(ei_x_encode_atom(&x, "keep"), 0);
    int at = x.index;
    ASSERT_EQ(cn_x_reserve(&x, 100000), 0);
    ASSERT_GE(x.buffsz, at + 100000);
    char *b = x.buff;
    ASSERT_EQ(cn_x_reserve(&x, 50000), 0); /* already there: nothing moves */
    ASSERT(x.buff == b);
    static char big[99000];
    memset(big, 7, sizeof big);
    ASSERT_EQ(ei_x_encode_binary(&x, big, sizeof big), 0);
    ASSERT(x.buff == b); /* the encode needed no growth */
    int i = 1;
    ASSERT(cn_decode_atom_is(x.buff, &i, "keep"));
    ASSERT_EQ(cn_x_reserve(&x, (size_t)INT_MAX), -ENOMEM);
    /* A size whose sum with the index and libei's slack wraps around. */
    ASSERT_EQ(cn_x_reserve(&x, SIZE_MAX - 10), -ENOMEM);
    ei_x_free(&x);
}

TEST(x_new_size_holds_a_term_of_that_size_without_growing)
{
    ei_x_buff x;
    static char bin[300];
    ASSERT_EQ(cn_x_new_size(&x, 1 + 2 + 8 + 5 + sizeof bin), 0);
    char *b = x.buff;
    ASSERT_EQ(x.index, 1); /* the version byte */
    ASSERT_EQ(ei_x_encode_tuple_header(&x, 2), 0);
    ASSERT_EQ(ei_x_encode_atom(&x, "append"), 0);
    ASSERT_EQ(ei_x_encode_binary(&x, bin, sizeof bin), 0);
    ASSERT(x.buff == b); /* libei did not grow it */
    int i = 0, v, arity;
    ASSERT_EQ(ei_decode_version(x.buff, &i, &v), 0);
    ASSERT_EQ(ei_decode_tuple_header(x.buff, &i, &arity), 0);
    ASSERT(cn_decode_atom_is(x.buff, &i, "append"));
    ei_x_free(&x);
    ASSERT_EQ(cn_x_new_size(&x, (size_t)INT_MAX), -ENOMEM);
    ASSERT(x.buff == NULL);
}

/* cn_x_encode_atom/pid/ref write what libei's ei_x_encode_* write, byte for
 * byte (in one pass of the encoder instead of two). */
TEST(x_encode_atom_pid_ref_match_libei)
{
    ei_x_buff a, b;
    static char long_atom[300];
    memset(long_atom, 'a', sizeof long_atom - 1);
    ASSERT_EQ(cn_x_new(&a), 0);
    ASSERT_EQ(cn_x_new(&b), 0);
    const char *atoms[] = { "ok", "$gen_call", "", "caf\xe9", long_atom + 45 /* 254 */ };
    for (size_t k = 0; k < sizeof atoms / sizeof *atoms; k++) {
        ASSERT_EQ(cn_x_encode_atom(&a, atoms[k]), 0);
        ASSERT_EQ(ei_x_encode_atom(&b, atoms[k]), 0);
    }
    /* Longer than an atom may be: refused, as ei_x_encode_atom does. */
    ASSERT(ei_x_encode_atom(&b, long_atom) < 0);
    ASSERT_EQ(cn_x_encode_atom(&a, long_atom), -EINVAL);
    ASSERT_EQ(a.index, b.index);
    ASSERT(memcmp(a.buff, b.buff, (size_t)a.index) == 0);
    ei_x_free(&a);
    ei_x_free(&b);
}

static void main_encode_pid_ref(void *arg)
{
    (void)arg;
    ei_x_buff a, b;
    cn_ref_t ref = cn_make_ref();
    ASSERT_EQ(cn_x_new(&a), 0);
    ASSERT_EQ(cn_x_new(&b), 0);
    for (int k = 0; k < 40; k++) { /* past the first allocation: growth too */
        ASSERT_EQ(cn_x_encode_pid(&a, cn_self()), 0);
        ASSERT_EQ(cn_x_encode_ref(&a, &ref), 0);
    }
    erlang_pid ep;
    erlang_ref er;
    int i = 1, j = 1;
    ASSERT_EQ(ei_decode_pid(a.buff, &i, &ep), 0);
    ASSERT_EQ(ei_decode_ref(a.buff, &i, &er), 0);
    for (int k = 0; k < 40; k++) {
        ASSERT_EQ(ei_x_encode_pid(&b, &ep), 0);
        ASSERT_EQ(ei_x_encode_ref(&b, &er), 0);
    }
    ASSERT_EQ(a.index, b.index);
    ASSERT(memcmp(a.buff, b.buff, (size_t)a.index) == 0);
    cn_pid_t pid;
    cn_ref_t back;
    ASSERT_EQ(cn_decode_pid(a.buff, &j, &pid), 0);
    ASSERT(cn_pid_eq(pid, cn_self()));
    ASSERT_EQ(cn_decode_ref(a.buff, &j, &back), 0);
    ASSERT(cn_ref_eq(&back, &ref));
    ei_x_free(&a);
    ei_x_free(&b);
}

TEST(x_encode_pid_ref_match_libei)
{
    run_node(main_encode_pid_ref, NULL);
}

/* A pid or a ref whose node name libei refuses (not UTF-8, or longer than an
 * atom may be) is -EINVAL, what the caller gave, not -ENOMEM; an atom too long
 * is -EINVAL too (x_encode_atom_pid_ref_match_libei). The buffer's term is
 * kept as it was. */
static void main_encode_refused(void *arg)
{
    (void)arg;
    static char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 3] = '@';
    const char *names[] = { "bad\xff@host", long_name };
    ei_x_buff x;
    ASSERT_EQ(cn_x_new(&x), 0);
    ASSERT_EQ(ei_x_encode_tuple_header(&x, 2), 0);
    int at = x.index;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        uint32_t ix;
        ASSERT_EQ(cn__node_name_index(cn_node_self(), names[k], &ix), 0);
        cn_pid_t pid = cn_self();
        cn_ref_t ref = cn_make_ref();
        pid.node = ref.node = ix;
        ASSERT_EQ(cn_x_encode_pid(&x, pid), -EINVAL);
        ASSERT_EQ(x.index, at);
        ASSERT_EQ(cn_x_encode_ref(&x, &ref), -EINVAL);
        ASSERT_EQ(x.index, at);
    }
    ei_x_free(&x);
}

TEST(x_encode_refused_input_is_einval)
{
    run_node(main_encode_refused, NULL);
}

/* cn_decode_atom_is compares ASCII atoms in place, in each of the four atom
 * encodings, and leaves anything else to libei. */
TEST(decode_atom_is_matches_every_atom_encoding)
{
    static const char small_utf8[] = { ERL_SMALL_ATOM_UTF8_EXT, 2, 'o', 'k' };
    static const char small_latin1[] = { ERL_SMALL_ATOM_EXT, 2, 'o', 'k' };
    static const char utf8[] = { ERL_ATOM_UTF8_EXT, 0, 2, 'o', 'k' };
    static const char latin1[] = { ERL_ATOM_EXT, 0, 2, 'o', 'k' };
    const char *bufs[] = { small_utf8, small_latin1, utf8, latin1 };
    const int lens[] = { 4, 4, 5, 5 };
    for (int k = 0; k < 4; k++) {
        int i = 0;
        ASSERT(!cn_decode_atom_is(bufs[k], &i, "o"));
        ASSERT(!cn_decode_atom_is(bufs[k], &i, "okk"));
        ASSERT(!cn_decode_atom_is(bufs[k], &i, "no"));
        ASSERT_EQ(i, 0); /* no match: the index stays */
        ASSERT(cn_decode_atom_is(bufs[k], &i, "ok"));
        ASSERT_EQ(i, lens[k]);
    }
    /* Not an atom: the binary <<"ok">>. */
    static const char bin[] = { ERL_BINARY_EXT, 0, 0, 0, 2, 'o', 'k' };
    int i = 0;
    ASSERT(!cn_decode_atom_is(bin, &i, "ok"));
    ASSERT_EQ(i, 0);
    /* A non-ASCII atom: 'é' is one byte in Latin-1, two in UTF-8; the caller
     * names it in Latin-1 (as ei_decode_atom decodes), and both encodings
     * match through libei. */
    static const char e_latin1[] = { ERL_SMALL_ATOM_EXT, 1, (char)0xe9 };
    static const char e_utf8[] = { ERL_SMALL_ATOM_UTF8_EXT, 2, (char)0xc3, (char)0xa9 };
    i = 0;
    ASSERT(cn_decode_atom_is(e_latin1, &i, "\xe9"));
    ASSERT_EQ(i, 3);
    i = 0;
    ASSERT(cn_decode_atom_is(e_utf8, &i, "\xe9"));
    ASSERT_EQ(i, 4);
    i = 0;
    ASSERT(!cn_decode_atom_is(e_utf8, &i, "e"));
    ASSERT(!cn_decode_atom_is(e_utf8, &i, "\xc3\xa9"));
    ASSERT_EQ(i, 0);
}

/* An atom may hold NUL bytes (list_to_atom([$o, $k, 0]) on a BEAM peer): 'ok\0'
 * is not 'ok', and the comparison reads no further than the name's NUL. The
 * names are heap copies of their exact size, so that ASan sees a read past
 * one; the longer buffer has a second NUL after the name, where a read past
 * it would find a match. */
TEST(decode_atom_is_refuses_an_atom_with_a_nul)
{
    static const char ok_nul[] = { ERL_SMALL_ATOM_UTF8_EXT, 3, 'o', 'k', 0 };
    static const char ok_nul_latin1[] = { ERL_ATOM_EXT, 0, 3, 'o', 'k', 0 };
    static const char e_nul[] = { ERL_SMALL_ATOM_UTF8_EXT, 3, (char)0xc3, (char)0xa9, 0 };
    char *ok = strdup("ok"), *e = strdup("\xe9");
    char padded[4] = "ok"; /* "ok", NUL, NUL */
    ASSERT(ok != NULL && e != NULL);
    int i = 0;
    ASSERT(!cn_decode_atom_is(ok_nul, &i, ok));
    ASSERT(!cn_decode_atom_is(ok_nul, &i, padded));
    ASSERT(!cn_decode_atom_is(ok_nul_latin1, &i, padded));
    ASSERT(!cn_decode_atom_is(e_nul, &i, e)); /* through libei */
    ASSERT_EQ(i, 0);
    free(ok);
    free(e);
}

TEST(out_of_memory_returns_errors)
{
    run_node(main_oom, NULL);
}

TEST(node_new_rejects_bad_names)
{
    cn_node_t *n;
    cn_node_opts_t o = { .name = "nohost" };
    ASSERT_EQ(cn_node_new(&o, &n), -EINVAL);
    o.name = "a@b@c";
    ASSERT_EQ(cn_node_new(&o, &n), -EINVAL);
    o.name = "@host";
    ASSERT_EQ(cn_node_new(&o, &n), -EINVAL);
    o.name = "ok@127.0.0.1";
    ASSERT_EQ(cn_node_new(&o, &n), 0);
    ASSERT_STR_EQ(cn_node_name(n), "ok@127.0.0.1");
    cn_node_free(n);
}
