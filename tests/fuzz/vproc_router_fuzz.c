/* vproc_router_fuzz.c - libFuzzer target for what a node's `vproc` process and
 * its activations decode from their mailboxes (cnode/src/vproc.c): calls in
 * both forms ({'$gen_call', From, {'$vp', Type, Key, Req, Hops}} and Erlang's
 * {call, Type, Key, Req}, possibly inside a trace wrapper), the activations'
 * notes ('$vp_idle', '$vp_gone'), '$vp_leave', and anything else a remote node
 * may send to the registered name. The input is one External Term Format term
 * (no version byte); as on the wire it first goes through the distribution's
 * bounds-checked walk (as the message of a SEND frame, cn__dist_parse_frame),
 * and only an accepted term is delivered. Each input runs on a fresh node
 * (fuzz@127.0.0.1, creation 1234) with a memory store and a `counter` type: a
 * driver process (<fuzz@127.0.0.1.1.0>, the pid the seeds use as From) sends
 * the term to `vproc`, then makes one ordinary call, which must be answered.
 * What is checked: no crash, no sanitizer report, no hang, and the node still
 * serving after any input. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/proc.h"
#include "cnode/vproc.h"
#include "send_frame.h"
#include "../unit/cnode/vproc_counter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *msg_buf; /* the accepted frame, and the message's span in it */
static int msg_off, msg_len;
static cn_vproc_store_t *store;

static void driver(void *arg)
{
    (void)arg;
    cn_vproc_type_t t = vc_type("counter", 50, NULL);
    if (cn_vproc_register(&t) < 0)
        abort();
    ei_x_buff x;
    if (cn_x_new(&x) < 0 || ei_x_append_buf(&x, msg_buf + msg_off, msg_len) < 0)
        abort();
    cn_send_name("vproc", &x);
    /* Any input: the next call to a key is still answered. */
    char key[32];
    int ki = 0;
    ei_encode_tuple_header(key, &ki, 2);
    ei_encode_atom(key, &ki, "c");
    ei_encode_long(key, &ki, 1);
    ei_x_buff req;
    if (cn_x_new(&req) < 0 || ei_x_encode_atom(&req, "get") < 0)
        abort();
    cn_msg_t *m;
    cn_term_t r;
    int rc = cn_vproc_call("counter", (cn_term_t){ key, 0, ki }, &req, 5000, 0, &m, &r, NULL);
    if (rc < 0) {
        fprintf(stderr, "the node stopped serving: %s\n", cn_strerror(rc));
        abort();
    }
    cn_msg_free(m);
    cn_vproc_leave();
    cn_sleep(5); /* the activations end */
    cn_node_stop(cn_node_self());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    ei_x_buff f;
    if (!fuzz_send_frame(data, size, &f, &msg_off, &msg_len))
        return 0;
    msg_buf = f.buff;

    if (store == NULL && cn_vproc_store_mem_new(&store) < 0)
        abort();
    cn_node_opts_t o = { .name = "fuzz@127.0.0.1", .creation = 1234, .pool_threads = 1 };
    cn_node_t *node;
    if (cn_node_new(&o, &node) < 0)
        abort();
    /* The driver first, so that it is <fuzz@127.0.0.1.1.0>; then `vproc`. */
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    cn_vproc_opts_t vo = { .store = store };
    if (cn_spawn(node, driver, NULL, &own, NULL) < 0 || cn_vproc_start(node, &vo) < 0)
        abort();
    cn_node_run(node);
    cn_node_free(node);
    ei_x_free(&f);
    return 0;
}
