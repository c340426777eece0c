/* code_test.c - cnode/src/code.c and the sys protocol of gen_server.c: loading
 * modules from shared objects (and refusing bad ones), suspend/resume, upgrade
 * and downgrade under concurrent calls, a failing code_change, the `cn_code`
 * server. The modules are the files of tests/unit/cnode/modules/, built into
 * BUILD/lib/modules/test/ (found from this binary's path). */
#include "test.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnode/code.h"
#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/supervisor.h"

static char moddir[2048];

static void find_moddir(void)
{
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ASSERT(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0'; /* BUILD/tests/cnode */
    snprintf(moddir, sizeof moddir, "%s/../../lib/modules/test", exe);
    char *r = realpath(moddir, NULL);
    ASSERT_NOT_NULL(r);
    snprintf(moddir, sizeof moddir, "%s", r);
    free(r);
}

static const char *mod_path(const char *name)
{
    static char p[4][PATH_MAX];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s.so", moddir, name);
    return p[k];
}

static void run_node(cn_proc_fn fn, void *arg)
{
    cn_node_t *node;
    find_moddir();
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    ASSERT_EQ(cn_spawn(node, fn, arg, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    ASSERT_EQ(cn_node_process_count(node), 0);
    cn_node_free(node);
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
    char cmd[2 * PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    if (system(cmd) != 0)
        return -1;
    return chmod(to, mode);
}

/* ---------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------ */

static void expect_load_error(const char *path, int code, const char *text)
{
    const cn_module_t *m = NULL;
    char err[CN_CODE_ERR_LEN];
    int rc = cn_code_load(path, &m, err, sizeof err);
    if (rc != code || strstr(err, text) == NULL)
        test__fail(__FILE__, __LINE__, "load %s: rc %d (want %d), err '%s' (want '%s')", path,
                   rc, code, err, text);
}

static void main_load(void *arg)
{
    (void)arg;
    char tmp[] = "/tmp/code_test.XXXXXX", p[256];
    const cn_module_t *m1, *m2;
    char err[CN_CODE_ERR_LEN];
    ASSERT_NOT_NULL(mkdtemp(tmp));

    expect_load_error("counter_v1.so", -EINVAL, "not an absolute path");
    snprintf(p, sizeof p, "%s/missing.so", tmp);
    expect_load_error(p, -ENOENT, "No such file");
    /* not an ELF object */
    snprintf(p, sizeof p, "%s/text.so", tmp);
    FILE *f = fopen(p, "w");
    ASSERT_NOT_NULL(f);
    fputs("this is not a shared object\n", f);
    fclose(f);
    chmod(p, 0644);
    expect_load_error(p, -ENOEXEC, "text.so");
    /* writable by others: refused before anything of it is loaded */
    snprintf(p, sizeof p, "%s/ww.so", tmp);
    ASSERT_EQ(copy_file(mod_path("counter_v1"), p, 0666), 0);
    expect_load_error(p, -EPERM, "writable by group or others");
    /* in a directory others may write to */
    char wdir[64];
    snprintf(wdir, sizeof wdir, "%s/w", tmp);
    ASSERT_EQ(mkdir(wdir, 0777), 0);
    ASSERT_EQ(chmod(wdir, 0777), 0);
    snprintf(p, sizeof p, "%s/w/c.so", tmp);
    ASSERT_EQ(copy_file(mod_path("counter_v1"), p, 0644), 0);
    expect_load_error(p, -EPERM, "directory");
    /* loadable objects that are not good modules */
    expect_load_error(mod_path("nosym"), -ENOEXEC, "does not export cn_module_info");
    expect_load_error(mod_path("abi99"), -EINVAL, "module ABI 99");
    expect_load_error(mod_path("undef"), -ENOEXEC, "cn_no_such_function_anywhere");

    /* a good one; loading it again gives the same descriptor */
    ASSERT_EQ(cn_code_load(mod_path("counter_v1"), &m1, err, sizeof err), 0);
    ASSERT_STR_EQ(m1->name, "counter");
    ASSERT_STR_EQ(m1->vsn, "1");
    ASSERT_EQ(cn_code_load(mod_path("counter_v1"), &m2, err, sizeof err), 0);
    ASSERT_PTR_EQ(m1, m2);

    /* a file replaced in place under a loaded path is refused */
    snprintf(p, sizeof p, "%s/swap.so", tmp);
    ASSERT_EQ(copy_file(mod_path("counter_v1"), p, 0644), 0);
    ASSERT_EQ(cn_code_load(p, &m1, err, sizeof err), 0);
    char p2[256];
    snprintf(p2, sizeof p2, "%s/swap.new", tmp);
    ASSERT_EQ(copy_file(mod_path("counter_v2"), p2, 0644), 0);
    ASSERT_EQ(rename(p2, p), 0);
    expect_load_error(p, -ESTALE, "replaced since it was loaded");

    /* a code directory: files outside it are refused */
    cn_code_opts_t o = { .dir = tmp };
    ASSERT_EQ(cn_code_start(cn_node_self(), &o), 0);
    expect_load_error(mod_path("counter_v2"), -EPERM, "outside the code directory");
    ASSERT_EQ(cn_code_start(cn_node_self(), &o), -EEXIST);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("cn_code"), "normal", 1000), 0);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ASSERT_EQ(system(cmd), 0);
}

TEST(load_refuses_bad_files_and_reuses_loaded_ones)
{
    run_node(main_load, NULL);
}

/* ---------------------------------------------------------------------------------
 * Calls
 * ------------------------------------------------------------------------------ */

/* Call the counter: 0 and the version atom's digit and N, or the error. */
static int call_counter(const char *req, int64_t tmo, int *vsn, long *n)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    ei_x_encode_atom(&x, req);
    int rc = cn_gen_call(cn_dest_name("counter"), &x, tmo, &m, &r);
    if (rc < 0)
        return rc;
    int i = r.index, arity;
    char tag[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(m->buf, &i, &arity) < 0 || arity != 2 ||
        ei_decode_atom(m->buf, &i, tag) < 0 || ei_decode_long(m->buf, &i, n) < 0)
        rc = -EPROTO;
    else
        *vsn = tag[1] - '0';
    cn_msg_free(m);
    return rc;
}

typedef struct load {
    volatile bool stop;
    int ncallers, done;
    long ok, failed;
    long switches;        /* version changes seen by callers, summed */
    bool order_ok;        /* every caller saw 1, then 2, then 1 at most */
    int reached[3];       /* callers that have reached each stage (see caller) */
} load_t;

static void caller(void *arg)
{
    load_t *l = arg;
    int last = 0, stage = 0; /* stage: 0 before v2, 1 v2 seen, 2 back to v1 */
    while (!l->stop) {
        int v;
        long n;
        int rc = call_counter("incr", 5000, &v, &n);
        if (rc < 0) {
            l->failed++;
            continue;
        }
        l->ok++;
        if (last && v != last)
            l->switches++;
        if (v == 2 && stage == 0)
            l->reached[stage = 1]++;
        else if (v == 1 && stage == 1)
            l->reached[stage = 2]++;
        else if (v == 2 && stage == 2)
            l->order_ok = false;
        last = v;
        cn_yield();
    }
    l->done++;
}

static void start_counter(const char *file)
{
    const cn_module_t *m;
    char err[CN_CODE_ERR_LEN];
    ASSERT_EQ(cn_code_load(mod_path(file), &m, err, sizeof err), 0);
    cn_gen_server_opts_t go = { .name = "counter" };
    ASSERT_EQ(cn_gen_server_start_module(cn_node_self(), m, NULL, &go, NULL), 0);
}

static void main_upgrade(void *arg)
{
    (void)arg;
    /* Static, not on this process's stack: processes share stacks (proc.h). */
    static load_t l;
    l = (load_t){ .ncallers = 8, .order_ok = true };
    cn_code_result_t res;
    start_counter("counter_v1");
    for (int k = 0; k < l.ncallers; k++)
        ASSERT_EQ(cn_spawn(cn_node_self(), caller, &l, NULL, NULL), 0);
    /* Each step waits for the callers to have made calls (and every caller to
     * have seen the new version): a fixed 30 ms sleep could pass with the node's
     * thread off the CPU and leave a caller without a switch. */
    long ok0 = 0;
#define CALLS_MADE() WAIT_UNTIL(l.ok >= ok0 + 5 * l.ncallers, 20000, cn_sleep(5))
    ASSERT(CALLS_MADE());

    /* up: 1 -> 2 (another state layout) */
    ASSERT_EQ(cn_code_upgrade("counter", mod_path("counter_v2"), NULL, 10000, &res), 0);
    ASSERT_STR_EQ(res.old_vsn, "1");
    ASSERT_STR_EQ(res.new_vsn, "2");
    ASSERT(res.suspended_us > 0 && res.suspended_us < 10000000); /* within its limit */
    ASSERT_STR_EQ(cn_code_current("counter")->vsn, "2");
    ok0 = l.ok;
    ASSERT(WAIT_UNTIL(l.reached[1] == l.ncallers, 20000, cn_sleep(5)));
    ASSERT(CALLS_MADE());

    /* a failing code_change: version 2 keeps running, the reason comes back */
    ASSERT_EQ(cn_code_upgrade("counter", mod_path("counter_bad"), NULL, 10000, &res), -ECANCELED);
    if (strstr(res.err, "refused on purpose") == NULL || strstr(res.err, "2 keeps running") == NULL)
        test__fail(__FILE__, __LINE__, "unexpected reason: %s", res.err);
    /* another module's file: refused by name */
    ASSERT_EQ(cn_code_upgrade("counter", mod_path("other"), NULL, 10000, &res), -ECANCELED);
    ASSERT(strstr(res.err, "holds module 'other'") != NULL);
    /* no such server */
    ASSERT_EQ(cn_code_upgrade("nobody", mod_path("counter_v2"), NULL, 10000, &res), -ESRCH);
    /* the failed upgrades resumed the server: a call is answered (the callers'
     * retries would hide a server left suspended until the next upgrade; this
     * call would wait for ever, so any limit shows it - a generous one), by
     * version 2 */
    int v0;
    long n0;
    ASSERT_EQ(call_counter("get", 10000, &v0, &n0), 0);
    ASSERT_EQ(v0, 2);
    char mod[64], vsn[64];
    ASSERT_EQ(cn_code_which("counter", mod, sizeof mod, vsn, sizeof vsn, 1000), 0);
    ASSERT_STR_EQ(vsn, "2");
    ASSERT_STR_EQ(cn_code_current("counter")->vsn, "2");
    ok0 = l.ok;
    ASSERT(CALLS_MADE());

    /* down: 2 -> 1, the same way */
    ASSERT_EQ(cn_code_upgrade("counter", mod_path("counter_v1"), NULL, 10000, &res), 0);
    ASSERT_STR_EQ(res.old_vsn, "2");
    ASSERT_STR_EQ(res.new_vsn, "1");
    ok0 = l.ok;
    ASSERT(WAIT_UNTIL(l.reached[2] == l.ncallers, 20000, cn_sleep(5)));
    ASSERT(CALLS_MADE());
#undef CALLS_MADE

    l.stop = true;
    ASSERT(WAIT_UNTIL(l.done == l.ncallers, 20000, cn_sleep(5)));
    int v;
    long n;
    ASSERT_EQ(call_counter("get", 1000, &v, &n), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(l.failed, 0);
    /* every successful incr is in the count: the state went through 1 -> 2 -> 1 */
    ASSERT_EQ(n, l.ok);
    ASSERT(l.ok > 100);
    ASSERT(l.order_ok);
    ASSERT(l.switches >= l.ncallers); /* each caller saw at least one switch */
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("counter"), "normal", 1000), 0);
}

TEST(upgrade_and_downgrade_under_calls_lose_nothing)
{
    run_node(main_upgrade, NULL);
}

/* ---------------------------------------------------------------------------------
 * Suspend and resume
 * ------------------------------------------------------------------------------ */

typedef struct one_call {
    const char *req;
    int rc, vsn;
    long n;
    bool done;
} one_call_t;

static void one_caller(void *arg)
{
    one_call_t *c = arg;
    c->rc = call_counter(c->req, 20000, &c->vsn, &c->n);
    c->done = true;
}

static bool suspender_done;

static void suspender(void *arg)
{
    (void)arg;
    ASSERT_EQ(cn_gen_server_suspend(cn_dest_name("counter"), 10000), 0);
    suspender_done = true;
    /* exits without resuming */
}

static void main_suspend(void *arg)
{
    (void)arg;
    cn_code_result_t res;
    start_counter("counter_v1");

    /* Suspended: a call waits in the mailbox; system messages still work. */
    ASSERT_EQ(cn_gen_server_suspend(cn_dest_name("counter"), 1000), 0);
    static one_call_t c, c2; /* not on the (shared) stack */
    c = (one_call_t){ .req = "incr" };
    ASSERT_EQ(cn_spawn(cn_node_self(), one_caller, &c, NULL, NULL), 0);
    cn_sleep(100);
    ASSERT(!c.done);
    char mod[64], vsn[64];
    ASSERT_EQ(cn_code_which("counter", mod, sizeof mod, vsn, sizeof vsn, 1000), 0);
    ASSERT_STR_EQ(mod, "counter");
    ASSERT_STR_EQ(vsn, "1");
    /* The upgrade while the call waits: it is served after, by the new code. */
    ASSERT_EQ(cn_code_upgrade("counter", mod_path("counter_v2"), NULL, 10000, &res), 0);
    ASSERT(WAIT_UNTIL(c.done, 20000, cn_sleep(5)));
    ASSERT_EQ(c.rc, 0);
    ASSERT_EQ(c.vsn, 2);
    ASSERT_EQ(c.n, 1);

    /* A suspender that exits without resuming: the server resumes by itself. */
    ASSERT_EQ(cn_spawn(cn_node_self(), suspender, NULL, NULL, NULL), 0);
    /* (waited for: after a fixed sleep the call below could still come first
     * and test nothing) */
    ASSERT(WAIT_UNTIL(suspender_done, 20000, cn_sleep(5)));
    c2 = (one_call_t){ .req = "get" };
    ASSERT_EQ(cn_spawn(cn_node_self(), one_caller, &c2, NULL, NULL), 0);
    ASSERT(WAIT_UNTIL(c2.done, 20000, cn_sleep(5)));
    ASSERT_EQ(c2.rc, 0);

    /* resume of a running server is a no-op; sys:change_code keeps the code */
    ASSERT_EQ(cn_gen_server_resume(cn_dest_name("counter"), 1000), 0);
    ASSERT_EQ(cn_gen_server_code_change(cn_dest_name("counter"), NULL, 1000), 0);
    ASSERT_EQ(cn_code_which("counter", mod, sizeof mod, vsn, sizeof vsn, 1000), 0);
    ASSERT_STR_EQ(vsn, "2");
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("counter"), "normal", 1000), 0);

    /* a server without a module is not upgradable */
    static const cn_gen_server_t plain = { 0 };
    cn_gen_server_opts_t go = { .name = "counter" };
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &plain, NULL, &go, NULL), 0);
    ASSERT_EQ(cn_code_upgrade("counter", mod_path("counter_v2"), NULL, 10000, &res), -ECANCELED);
    ASSERT(strstr(res.err, "not started from a module") != NULL);
    ASSERT_EQ(cn_code_which("counter", mod, sizeof mod, vsn, sizeof vsn, 1000), -EINVAL);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("counter"), "normal", 1000), 0);
}

TEST(suspend_queues_calls_and_an_upgrade_serves_them_with_new_code)
{
    run_node(main_suspend, NULL);
}

/* ---------------------------------------------------------------------------------
 * A supervisor restart keeps the upgraded version
 * ------------------------------------------------------------------------------ */

/* The child's start function, as a service writes it: the node's current module
 * of the name, else the configured file. */
static int start_counter_child(void *arg, cn_pid_t *out)
{
    (void)arg;
    const cn_module_t *m = cn_code_current("counter");
    char err[CN_CODE_ERR_LEN];
    int rc;
    if (m == NULL && ((rc = cn_code_load(mod_path("counter_v1"), &m, err, sizeof err)) < 0 ||
                      (rc = cn_code_set_current(m)) < 0))
        return rc;
    cn_gen_server_opts_t go = { .name = "counter", .link = true };
    return cn_gen_server_start_module(cn_node_self(), m, NULL, &go, out);
}

static void main_restart(void *arg)
{
    (void)arg;
    cn_code_result_t res;
    cn_child_spec_t child = { .id = "counter", .start = start_counter_child, .shutdown_ms = 1000 };
    cn_sup_flags_t flags = { .strategy = CN_ONE_FOR_ONE, .intensity = 5, .period_s = 10 };
    cn_pid_t sup, before, after;
    char mod[64], vsn[64];
    int v;
    long n;
    ASSERT_EQ(cn_supervisor_start(cn_node_self(), &flags, &child, 1, NULL, &sup), 0);
    ASSERT_EQ(call_counter("incr", 1000, &v, &n), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(cn_code_upgrade("counter", mod_path("counter_v2"), NULL, 10000, &res), 0);
    ASSERT_EQ(cn_whereis("counter", &before), 0);
    /* the server dies; its supervisor starts it again, with version 2 */
    ASSERT_EQ(cn_exit_pid(before, "kill"), 0);
    after = before;
    WAIT_UNTIL(cn_whereis("counter", &after) == 0 && !cn_pid_eq(after, before), 20000,
               cn_sleep(5));
    ASSERT(!cn_pid_eq(after, before));
    ASSERT_EQ(cn_code_which("counter", mod, sizeof mod, vsn, sizeof vsn, 1000), 0);
    ASSERT_STR_EQ(vsn, "2");
    ASSERT_EQ(call_counter("incr", 1000, &v, &n), 0);
    ASSERT_EQ(v, 2);
    ASSERT_EQ(n, 1); /* a restart starts from init, as ever */
    ASSERT_EQ(cn_gen_server_stop(cn_dest_pid(sup), "shutdown", 2000), 0);
}

TEST(a_supervisor_restart_keeps_the_upgraded_version)
{
    run_node(main_restart, NULL);
}

/* ---------------------------------------------------------------------------------
 * The cn_code server
 * ------------------------------------------------------------------------------ */

/* A reply as text: tuples {a,b}, lists [a,b], atoms, numbers, binaries as their
 * bytes (cn_term_print shows binaries as #Bin<...>). */
static void flatten(const char *buf, int *i, char *out, size_t outlen)
{
    int type, size, arity;
    size_t n = strlen(out);
    char *o = out + n;
    size_t left = outlen - n;
    ei_get_type(buf, i, &type, &size);
    if (type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT || type == ERL_LIST_EXT ||
        type == ERL_NIL_EXT) {
        bool tuple = type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT;
        if (tuple)
            ei_decode_tuple_header(buf, i, &arity);
        else
            ei_decode_list_header(buf, i, &arity);
        snprintf(o, left, "%c", tuple ? '{' : '[');
        for (int k = 0; k < arity; k++) {
            if (k)
                strncat(out, ",", outlen - strlen(out) - 1);
            flatten(buf, i, out, outlen);
        }
        if (!tuple && arity > 0)
            ei_skip_term(buf, i); /* the tail [] */
        strncat(out, tuple ? "}" : "]", outlen - strlen(out) - 1);
    } else if (type == ERL_BINARY_EXT && (size_t)size < left) {
        long len;
        ei_decode_binary(buf, i, o, &len);
        o[len] = '\0';
    } else if (type == ERL_SMALL_INTEGER_EXT || type == ERL_INTEGER_EXT) {
        long v;
        ei_decode_long(buf, i, &v);
        snprintf(o, left, "%ld", v);
    } else {
        char a[MAXATOMLEN_UTF8];
        if (ei_decode_atom(buf, i, a) == 0)
            snprintf(o, left, "%s", a);
        else
            ei_skip_term(buf, i);
    }
}

static int code_call(const char *tag, const char *a, const char *b, char *out, int outlen)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    if (b) {
        ei_x_encode_tuple_header(&x, 3);
        ei_x_encode_atom(&x, tag);
        ei_x_encode_binary(&x, a, (long)strlen(a));
        ei_x_encode_binary(&x, b, (long)strlen(b));
    } else if (a) {
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, tag);
        ei_x_encode_binary(&x, a, (long)strlen(a));
    } else {
        ei_x_encode_atom(&x, tag);
    }
    int rc = cn_gen_call(cn_dest_name("cn_code"), &x, 5000, &m, &r);
    if (rc < 0)
        return rc;
    int i = r.index;
    out[0] = '\0';
    flatten(m->buf, &i, out, (size_t)outlen);
    cn_msg_free(m);
    return 0;
}

static void main_server(void *arg)
{
    (void)arg;
    char out[1024];
    ASSERT_EQ(cn_code_start(cn_node_self(), NULL), 0);
    start_counter("counter_v1");
    ASSERT_EQ(code_call("upgrade", "counter", mod_path("counter_v2"), out, sizeof out), 0);
    ASSERT(strncmp(out, "{ok,1,2,", 8) == 0);
    ASSERT_EQ(code_call("which", "counter", NULL, out, sizeof out), 0);
    ASSERT_STR_EQ(out, "{ok,counter,2}");
    ASSERT_EQ(code_call("upgrade", "counter", mod_path("counter_bad"), out, sizeof out), 0);
    ASSERT(strstr(out, "{error,code_change 2 -> 3 failed, 2 keeps running") == out);
    ASSERT_EQ(code_call("upgrade", "counter", "relative.so", out, sizeof out), 0);
    ASSERT(strstr(out, "not an absolute path") != NULL);
    ASSERT_EQ(code_call("which", "nobody", NULL, out, sizeof out), 0);
    ASSERT(strstr(out, "no such registered process") != NULL);
    ASSERT_EQ(code_call("modules", NULL, NULL, out, sizeof out), 0);
    ASSERT(strstr(out, "{counter,1,") != NULL);
    ASSERT(strstr(out, "{counter,3,") != NULL);
    ASSERT_EQ(code_call("bogus", NULL, NULL, out, sizeof out), 0);
    ASSERT(strstr(out, "unknown request") != NULL);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("counter"), "normal", 1000), 0);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("cn_code"), "normal", 1000), 0);
}

TEST(code_server_answers_upgrade_which_modules)
{
    run_node(main_server, NULL);
}

/* ---------------------------------------------------------------------------------
 * A suspend that times out does not leave the server suspended
 * ------------------------------------------------------------------------------ */

/* A server whose calls take 1 s: busy well past an upgrade's 100 ms suspend
 * timeout, even if the test's thread is off the CPU for a while in between. */
static int slow_calls_entered;

static int slow_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)state, (void)req, (void)from;
    slow_calls_entered++;
    cn_sleep(1000);
    ei_x_encode_atom(reply, "slow");
    return CN_GS_CONTINUE;
}

static void slow_caller(void *arg)
{
    one_call_t *c = arg;
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "work");
    c->rc = cn_gen_call(cn_dest_name("slow"), &x, 20000, &m, &r);
    if (c->rc == 0)
        cn_msg_free(m);
    c->done = true;
}

static void main_suspend_timeout(void *arg)
{
    (void)arg;
    static const cn_gen_server_t slow = { .handle_call = slow_call };
    static one_call_t busy, after; /* not on the (shared) stack */
    cn_gen_server_opts_t go = { .name = "slow" };
    cn_code_result_t res;
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &slow, NULL, &go, NULL), 0);
    busy = (one_call_t){ .req = "work" };
    ASSERT_EQ(cn_spawn(cn_node_self(), slow_caller, &busy, NULL, NULL), 0);
    /* the server is inside the slow call (it says so) */
    ASSERT(WAIT_UNTIL(slow_calls_entered == 1, 20000, cn_sleep(1)));
    ASSERT_EQ(cn_code_upgrade("slow", mod_path("counter_v2"), NULL, 100, &res), -ETIMEDOUT);
    ASSERT(strstr(res.err, "suspending 'slow'") != NULL);
    /* The server takes the late suspend when the slow call ends; the upgrade
     * must not leave it suspended (we are alive: no DOWN would resume it). */
    after = (one_call_t){ .req = "work" };
    ASSERT_EQ(cn_spawn(cn_node_self(), slow_caller, &after, NULL, NULL), 0);
    WAIT_UNTIL(after.done, 20000, cn_sleep(5));
    ASSERT(busy.done);
    ASSERT_EQ(busy.rc, 0);
    ASSERT(after.done);
    ASSERT_EQ(after.rc, 0);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("slow"), "normal", 1000), 0);
}

TEST(a_suspend_that_times_out_leaves_the_server_running)
{
    run_node(main_suspend_timeout, NULL);
}
