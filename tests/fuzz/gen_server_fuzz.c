/* gen_server_fuzz.c - libFuzzer target for what a gen_server decodes from its
 * mailbox: calls, casts, and the system messages of OTP's sys protocol and of
 * hot upgrades (suspend, resume, get_state, get_status, change_code, terminate,
 * '$cn_change_module', '$cn_which'; cnode/src/gen_server.c). The input is one
 * External Term Format term (no version byte); as on the wire it first goes
 * through the distribution's bounds-checked walk (as the message of a SEND
 * frame, cn__dist_parse_frame), and only an accepted term is delivered. Each
 * input runs on a fresh node: a driver process (pid <fuzz@127.0.0.1.1.0>,
 * creation 1234, the pid the seeds use as From) starts a module-backed server
 * (linked, trapping exits), sends it the term, then a sys `resume` (answered
 * after the term was handled, whatever it did), and stops it. What is checked:
 * no crash, no sanitizer report, no hang (a suspended server is resumed). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/code.h"
#include "cnode/gen_server.h"
#include "cnode/proc.h"
#include "send_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *msg_buf; /* the accepted frame, and the message's span in it */
static int msg_off, msg_len;

static int f_init(void *arg, void **state)
{
    (void)arg;
    *state = NULL;
    return 0;
}

static int f_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)state;
    (void)from;
    int i = req.index;
    if (cn_decode_atom_is(req.buf, &i, "noreply"))
        return CN_GS_NOREPLY;
    ei_x_encode_atom(reply, "ok");
    return CN_GS_CONTINUE;
}

/* Fails for an Extra that is not an integer: both outcomes get exercised. */
static int f_code_change(const char *old_vsn, void **state, cn_term_t extra, char *err,
                         size_t errlen)
{
    (void)state;
    long v;
    int i = extra.index;
    if (ei_decode_long(extra.buf, &i, &v) == 0)
        return 0;
    snprintf(err, errlen, "from '%s': extra is not an integer", old_vsn);
    return -EINVAL;
}

static int f_format_state(void *state, ei_x_buff *out)
{
    (void)state;
    return ei_x_encode_atom(out, "fuzz_state") < 0 ? -ENOMEM : 0;
}

static const cn_gen_server_t cb = {
    .init = f_init,
    .handle_call = f_call,
    .code_change = f_code_change,
    .format_state = f_format_state,
};
static const cn_module_t mod = { CN_MODULE_ABI, sizeof(cn_module_t), "fuzz", "1", &cb };

static void driver(void *arg)
{
    (void)arg;
    cn_pid_t gs;
    cn_trap_exit(true);
    cn_gen_server_opts_t go = { .name = "gs", .link = true, .trap_exit = true };
    if (cn_gen_server_start_module(cn_node_self(), &mod, NULL, &go, &gs) < 0)
        abort();
    ei_x_buff x;
    if (cn_x_new(&x) < 0 || ei_x_append_buf(&x, msg_buf + msg_off, msg_len) < 0)
        abort();
    cn_send(gs, &x);
    /* Handled after the fuzzed message, suspended or not (or -ESRCH if it made
     * the server stop). */
    cn_gen_server_resume(cn_dest_pid(gs), 5000);
    if (cn_is_alive(gs))
        cn_gen_server_stop(cn_dest_pid(gs), "normal", 5000);
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

    cn_node_opts_t o = { .name = "fuzz@127.0.0.1", .creation = 1234, .pool_threads = 1 };
    cn_node_t *node;
    if (cn_node_new(&o, &node) < 0)
        abort();
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    if (cn_spawn(node, driver, NULL, &own, NULL) < 0)
        abort();
    cn_node_run(node);
    cn_node_free(node);
    ei_x_free(&f);
    return 0;
}
