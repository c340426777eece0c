/* echo.c - the smallest useful libcnode program: a gen_server registered as `echo`
 * that answers a call `Term` with `{echo, Term}`.
 *
 *   build/bin/cnode-echo                 serve until interrupted
 *   build/bin/cnode-echo --self-test     call itself once and print the reply
 *
 * Read it top to bottom: the callbacks, then main(), which makes a node, starts
 * distribution, starts the server under a supervisor and runs the scheduler. The
 * node is named by $ONEBLOG_NODE or --name (default echo@127.0.0.1) and takes its
 * cookie from $ONEBLOG_COOKIE, --cookie or ~/.erlang.cookie (see cnode/dist.h),
 * so remote callers reach the same server, e.g. from erl:
 *   gen_server:call({echo, 'echo@127.0.0.1'}, hello)  ->  {echo, hello}
 * With --self-test, distribution is optional: if it cannot start (no cookie),
 * the local call still runs.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/supervisor.h"

/* ---- the server ----------------------------------------------------------------- */

/* The echo server keeps no state. */
static int echo_init(void *arg, void **state)
{
    *state = arg;
    return 0;
}

/* handle_call: `reply` already holds "{Tag, " - append the reply term. */
static int echo_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)state;
    (void)from;
    if (ei_x_encode_tuple_header(reply, 2) < 0 || ei_x_encode_atom(reply, "echo") < 0 ||
        cn_x_append_term(reply, req) < 0)
        return CN_GS_STOP; /* out of memory: let the supervisor restart us */
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t echo_server = {
    .init = echo_init,
    .handle_call = echo_call,
};

/* Child start function for the supervisor: a linked, registered echo server. */
static int start_echo(void *arg, cn_pid_t *out)
{
    cn_gen_server_opts_t o = { .name = "echo", .link = true };
    return cn_gen_server_start(cn_node_self(), &echo_server, arg, &o, out);
}

/* ---- an optional self-test: call the server like a client would ---------------- */

static void self_test(void *arg)
{
    int *status = arg;
    ei_x_buff req;
    cn_msg_t *msg;
    cn_term_t reply;
    char text[256];

    cn_sleep(10); /* let the supervisor start `echo` */
    cn_x_new(&req);
    ei_x_encode_atom(&req, "hello");
    int rc = cn_gen_call(cn_dest_name("echo"), &req, 5000, &msg, &reply);
    if (rc < 0) {
        fprintf(stderr, "cnode-echo: call failed: %s\n", cn_strerror(rc));
        *status = 1;
    } else {
        cn_term_print(reply, text, sizeof(text));
        printf("%s\n", text);
        cn_msg_free(msg);
    }
    cn_node_stop(cn_node_self());
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    cn_dist_opts_t dopts;
    cn_node_t *node;
    int status = 0, rc;
    bool testing = argc > 1 && strcmp(argv[1], "--self-test") == 0;

    if (cn_dist_opts_from_env(&dopts, argc, argv) < 0) {
        fprintf(stderr, "cnode-echo: bad number in the distribution options\n");
        return 2;
    }
    cn_node_opts_t opts = { .name = dopts.node_name ? dopts.node_name : "echo@127.0.0.1" };
    if ((rc = cn_node_new(&opts, &node)) < 0) {
        fprintf(stderr, "cnode-echo: bad node name '%s': %s\n", opts.name, cn_strerror(rc));
        return 2;
    }
    if ((rc = cn_dist_start(node, &dopts)) < 0) {
        fprintf(stderr, "cnode-echo: distribution: %s\n", cn_strerror(rc));
        if (!testing) {
            cn_node_free(node);
            return 1;
        }
    }

    cn_child_spec_t children[] = {
        { .id = "echo", .start = start_echo, .shutdown_ms = 5000 },
    };
    cn_sup_flags_t flags = { .strategy = CN_ONE_FOR_ONE, .intensity = 10, .period_s = 5 };
    if ((rc = cn_supervisor_start(node, &flags, children, 1, NULL, NULL)) < 0) {
        fprintf(stderr, "cnode-echo: supervisor: %s\n", cn_strerror(rc));
        return 1;
    }
    if (testing)
        cn_spawn(node, self_test, &status, NULL, NULL);
    else
        fprintf(stderr, "cnode-echo: node %s serving `echo`\n", cn_node_name(node));

    rc = cn_node_run(node);
    cn_node_free(node);
    return rc < 0 ? 1 : status;
}
