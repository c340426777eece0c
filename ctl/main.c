/* main.c - oneblog-ctl: operator commands against a running cluster.
 *
 *   oneblog-ctl canary status             every client node's canary report
 *   oneblog-ctl canary promote [VERSION]  make VERSION (default: the one canary
 *                                         version in sight) the stable one
 *   oneblog-ctl canary abort [VERSION]    roll VERSION (default: every canary) back
 *   oneblog-ctl upgrade NODE NAME FILE.so hot upgrade (or downgrade) of the server
 *                                         registered as NAME on NODE to the module
 *                                         in FILE.so (docs/hot-upgrade.md)
 *   oneblog-ctl which NODE NAME           the module and version NAME runs
 *   oneblog-ctl modules NODE              the module files NODE has loaded
 *
 * oneblog-ctl is a short-lived hidden node. It reads the same environment as the
 * services (ONEBLOG_COOKIE / ONEBLOG_COOKIE_FILE, ONEBLOG_CLUSTER_* discovery,
 * ERL_EPMD_PORT), plus ONEBLOG_CTL_NODE (its own name, default
 * ctl<pid>@127.0.0.1) and ONEBLOG_CTL_WAIT_MS (how long to wait for the cluster,
 * default 3000). It joins the cluster, finds every member of service `canary`
 * (one per client node, client/canary.c), calls each, prints the replies and
 * exits: 0 when every node answered {ok, _}, 1 otherwise, 2 for usage.
 * upgrade, which and modules call the `cn_code` server of one node (cnode/code.h)
 * by name, without waiting for the cluster. FILE.so is a path on NODE's machine;
 * a relative one is made absolute against the current directory here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"

#define MAX_NODES 64
#define CALL_TIMEOUT_MS 5000
#define UPGRADE_TIMEOUT_MS 120000 /* suspend + code_change + resume, each up to 30 s */

typedef struct ctl {
    const char *cmd;     /* status | promote | abort | upgrade | which | modules */
    const char *version; /* NULL: the default */
    const char *node;    /* upgrade, which, modules: the target node */
    const char *name;    /* upgrade, which: the registered server */
    char path[4096];     /* upgrade: the module file, absolute */
    int wait_ms;
    int status;          /* exit status */
} ctl_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: oneblog-ctl canary status\n"
               "       oneblog-ctl canary promote [VERSION]\n"
               "       oneblog-ctl canary abort [VERSION]\n"
               "       oneblog-ctl upgrade NODE NAME FILE.so\n"
               "       oneblog-ctl which NODE NAME\n"
               "       oneblog-ctl modules NODE\n"
               "The cluster is found as the services find it (ONEBLOG_CLUSTER_*, the\n"
               "cookie); see docs/operations.md.\n");
}

/* The library's log lines: errors only (a CLI stays quiet; its own exit
 * closes connections, which the library reports as warnings). */
static void on_lib_log(void *ud, int level, const char *msg)
{
    (void)ud;
    if (level <= CN_LOG_ERROR)
        fprintf(stderr, "oneblog-ctl: %s\n", msg);
}

/* Wait until every node the discovery lists is connected and the registries
 * have exchanged members (a short settle after the last change), or the
 * deadline. Returns the number of `canary` members. */
static int wait_cluster(int wait_ms)
{
    char (*names)[CN_CLUSTER_NAME_MAX] = calloc(MAX_NODES, CN_CLUSTER_NAME_MAX);
    bool up[MAX_NODES];
    uint64_t deadline = cn_now_ms() + (uint64_t)wait_ms, stable_since = 0;
    int last = -1, n = 0;
    while (names && cn_now_ms() < deadline) {
        int listed = cn_cluster_nodes(names, up, MAX_NODES), nup = 0;
        for (int i = 0; i < listed && i < MAX_NODES; i++)
            nup += up[i];
        n = cn_cluster_members("canary", NULL, 0);
        int sig = n * 1000 + nup;
        if (sig != last) {
            last = sig;
            stable_since = cn_now_ms();
        }
        /* Everyone listed is up and nothing changed for 300 ms: done. */
        if (listed > 0 && nup == listed && cn_now_ms() - stable_since >= 300)
            break;
        cn_sleep(50);
    }
    free(names);
    return n < 0 ? 0 : n;
}

static void run(void *arg)
{
    ctl_t *c = arg;
    c->status = 1;
    int n = wait_cluster(c->wait_ms);
    cn_cluster_member_t *m = calloc(MAX_NODES, sizeof(*m));
    if (m == NULL)
        goto out;
    n = cn_cluster_members("canary", m, MAX_NODES);
    if (n <= 0) {
        fprintf(stderr, "oneblog-ctl: no client node (service `canary`) found in the cluster\n");
        goto out;
    }
    if (n > MAX_NODES)
        n = MAX_NODES;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        ei_x_buff x;
        if (cn_x_new(&x) < 0)
            goto out;
        if (c->version) {
            ei_x_encode_tuple_header(&x, 2);
            ei_x_encode_atom(&x, c->cmd);
            ei_x_encode_binary(&x, c->version, (long)strlen(c->version));
        } else {
            ei_x_encode_atom(&x, c->cmd);
        }
        cn_msg_t *msg = NULL;
        cn_term_t rep;
        int rc = cn_gen_call(cn_dest_pid(m[i].pid), &x, CALL_TIMEOUT_MS, &msg, &rep);
        char tag[MAXATOMLEN_UTF8] = "";
        char *text = NULL;
        int idx = rep.index, arity, type, size;
        long len;
        if (rc == 0 && ei_decode_tuple_header(rep.buf, &idx, &arity) == 0 && arity == 2 &&
            ei_decode_atom(rep.buf, &idx, tag) == 0 && ei_get_type(rep.buf, &idx, &type, &size) == 0 &&
            type == ERL_BINARY_EXT && (text = malloc((size_t)size + 1)) != NULL &&
            ei_decode_binary(rep.buf, &idx, text, &len) == 0) {
            text[len] = '\0';
            if (strcmp(tag, "ok") == 0) {
                fputs(text, stdout);
            } else {
                fprintf(stderr, "%s: %s\n", m[i].node, text);
                failed++;
            }
        } else {
            fprintf(stderr, "%s: %s\n", m[i].node, rc < 0 ? cn_strerror(rc) : "unexpected reply");
            failed++;
        }
        free(text);
        cn_msg_free(msg);
    }
    fflush(stdout);
    c->status = failed ? 1 : 0;
out:
    free(m);
    cn_node_stop(cn_node_self());
}

/* Append a binary (a C string) to x. */
static void enc_text(ei_x_buff *x, const char *s)
{
    ei_x_encode_binary(x, s, (long)strlen(s));
}

/* A binary of a reply as a malloc'd string ("" if not a binary). */
static char *dec_text(const char *buf, int *i)
{
    int type, size;
    long len = 0;
    char *t = NULL;
    if (ei_get_type(buf, i, &type, &size) == 0 && type == ERL_BINARY_EXT &&
        (t = malloc((size_t)size + 1)) != NULL && ei_decode_binary(buf, i, t, &len) == 0) {
        t[len] = '\0';
        return t;
    }
    free(t);
    ei_skip_term(buf, i);
    return calloc(1, 1);
}

/* upgrade | which | modules: one call to {cn_code, NODE}. */
static void run_code(void *arg)
{
    ctl_t *c = arg;
    ei_x_buff x;
    cn_msg_t *msg = NULL;
    cn_term_t rep;
    c->status = 1;
    if (cn_x_new(&x) < 0)
        goto out;
    if (strcmp(c->cmd, "upgrade") == 0) {
        ei_x_encode_tuple_header(&x, 3);
        ei_x_encode_atom(&x, "upgrade");
        enc_text(&x, c->name);
        enc_text(&x, c->path);
    } else if (strcmp(c->cmd, "which") == 0) {
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, "which");
        enc_text(&x, c->name);
    } else {
        ei_x_encode_atom(&x, "modules");
    }
    int rc = cn_gen_call(cn_dest_remote("cn_code", c->node), &x, UPGRADE_TIMEOUT_MS, &msg, &rep);
    if (rc < 0) {
        fprintf(stderr, "oneblog-ctl: %s: %s%s\n", c->node,
                rc == -ESRCH || rc == -ECONNABORTED ? "no code server (cn_code) on the node, or "
                                                      "it went down: "
                                                    : "",
                cn_strerror(rc));
        goto out;
    }
    int i = rep.index, arity, n;
    char tag[MAXATOMLEN_UTF8] = "";
    if (ei_decode_tuple_header(rep.buf, &i, &arity) < 0 || ei_decode_atom(rep.buf, &i, tag) < 0) {
        fprintf(stderr, "oneblog-ctl: %s: unexpected reply\n", c->node);
        goto out;
    }
    if (strcmp(tag, "ok") != 0) {
        char *why = dec_text(rep.buf, &i);
        fprintf(stderr, "oneblog-ctl: %s: %s%s%s\n", c->node, c->name ? c->name : "",
                c->name ? ": " : "", why);
        free(why);
        goto out;
    }
    if (strcmp(c->cmd, "modules") == 0) {
        if (ei_decode_list_header(rep.buf, &i, &n) < 0)
            goto out;
        for (int k = 0; k < n; k++) {
            ei_decode_tuple_header(rep.buf, &i, &arity);
            char *mod = dec_text(rep.buf, &i), *vsn = dec_text(rep.buf, &i),
                 *path = dec_text(rep.buf, &i);
            printf("%s %s %s\n", mod, vsn, path);
            free(mod);
            free(vsn);
            free(path);
        }
    } else {
        char *a = dec_text(rep.buf, &i), *b = dec_text(rep.buf, &i);
        long long us = 0;
        if (strcmp(c->cmd, "upgrade") == 0 && arity == 4)
            ei_decode_longlong(rep.buf, &i, &us);
        if (strcmp(c->cmd, "upgrade") == 0)
            printf("%s: %s upgraded %s -> %s (suspended %.1f ms)\n", c->node, c->name, a, b,
                   (double)us / 1000.0);
        else
            printf("%s: %s runs module %s version %s\n", c->node, c->name, a, b);
        free(a);
        free(b);
    }
    fflush(stdout);
    c->status = 0;
out:
    cn_msg_free(msg);
    cn_node_stop(cn_node_self());
}

/* Parse a node command into c; false on a usage error. */
static bool parse_code_cmd(int argc, char **argv, ctl_t *c)
{
    const char *cmd = argv[1];
    if (strcmp(cmd, "upgrade") == 0 && argc == 5) {
        c->node = argv[2];
        c->name = argv[3];
        if (argv[4][0] == '/') {
            snprintf(c->path, sizeof c->path, "%s", argv[4]);
        } else {
            char cwd[2048];
            if (getcwd(cwd, sizeof cwd) == NULL)
                return false;
            snprintf(c->path, sizeof c->path, "%s/%s", cwd, argv[4]);
        }
    } else if (strcmp(cmd, "which") == 0 && argc == 4) {
        c->node = argv[2];
        c->name = argv[3];
    } else if (strcmp(cmd, "modules") == 0 && argc == 3) {
        c->node = argv[2];
    } else {
        return false;
    }
    c->cmd = cmd;
    return true;
}

int main(int argc, char **argv)
{
    static ctl_t c; /* path[] is large; and not on a process stack */
    bool code_cmd = argc >= 2 && (strcmp(argv[1], "upgrade") == 0 ||
                                  strcmp(argv[1], "which") == 0 ||
                                  strcmp(argv[1], "modules") == 0);
    if (code_cmd && !parse_code_cmd(argc, argv, &c)) {
        usage(stderr);
        return 2;
    }
    if (!code_cmd && (argc < 3 || strcmp(argv[1], "canary") != 0 ||
                      (strcmp(argv[2], "status") != 0 && strcmp(argv[2], "promote") != 0 &&
                       strcmp(argv[2], "abort") != 0) ||
                      argc > 4 || (argc == 4 && strcmp(argv[2], "status") == 0))) {
        bool help = argc == 2 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0);
        usage(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    if (!code_cmd) {
        c.cmd = argv[2];
        c.version = argc == 4 ? argv[3] : NULL;
    }
    c.wait_ms = 3000;
    const char *w = getenv("ONEBLOG_CTL_WAIT_MS");
    if (w && *w)
        c.wait_ms = atoi(w);
    char name[128];
    const char *env_name = getenv("ONEBLOG_CTL_NODE");
    if (env_name && *env_name)
        snprintf(name, sizeof name, "%s", env_name);
    else
        snprintf(name, sizeof name, "ctl%ld@127.0.0.1", (long)getpid());

    cn_node_t *node = NULL;
    cn_node_opts_t no = { .name = name };
    int rc = cn_node_new(&no, &node);
    if (rc < 0) {
        fprintf(stderr, "oneblog-ctl: node %s: %s\n", name, cn_strerror(rc));
        return 1;
    }
    cn_dist_opts_t d;
    cn_dist_opts_from_env(&d, 0, NULL);
    d.node_name = name;
    d.no_builtin_epmd = true; /* a CLI must not become the host's EPMD */
    d.sighup_reload = false;
    d.log = on_lib_log;
    cn_cluster_opts_t co;
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    rc = cn_dist_start(node, &d);
    if (rc == 0 && code_cmd) /* one node, by name: no cluster needed */
        rc = cn_spawn(node, run_code, &c, &own, NULL);
    else if (rc == 0 && (rc = cn_cluster_opts_from_env(&co)) == 0 &&
             (co.log = on_lib_log, rc = cn_cluster_start(node, &co)) == 0)
        rc = cn_spawn(node, run, &c, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "oneblog-ctl: %s\n", cn_strerror(rc));
        cn_node_free(node);
        return 1;
    }
    c.status = 1;
    cn_node_run(node);
    cn_node_free(node);
    return c.status;
}
