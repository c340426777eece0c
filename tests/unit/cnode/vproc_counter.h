/* vproc_counter.h - the counter, the virtual-process type the vproc tests call:
 * tests/unit/cnode/vproc_test.c, tests/integ/c/vproc_node.c (as `session`)
 * and tests/fuzz/vproc_router_fuzz.c. A header, not a .c: each includer is a
 * binary of its own, built by a rule of its own (as tests/fuzz/send_frame.h).
 *
 * The state is one integer, saved as an ei long long. Requests:
 *   get          -> Value                (a read)
 *   node         -> this node's name     (a read)
 *   {add, N}     -> Value + N            (a write)
 *   {set, N}     -> ok                   (a write)
 *   {sleep, Ms}  -> Value, after Ms ms   (a read that parks inside handle_call;
 *                                         only with vc_opts_t.sleep: a fuzzer
 *                                         must not be able to hang the node)
 * Anything else is -EINVAL.
 */
#ifndef ONEBLOG_TESTS_VPROC_COUNTER_H
#define ONEBLOG_TESTS_VPROC_COUNTER_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/term.h"
#include "cnode/vproc.h"

/* What a test adds to the plain counter; the type's ud, borrowed for as long as
 * the type is registered. */
typedef struct vc_opts {
    bool sleep;                /* accept {sleep, Ms} */
    atomic_int *sleeps;        /* counted as each {sleep, Ms} starts; NULL: not */
    bool fail_666;             /* a state of 666 cannot be saved (-EIO) */
} vc_opts_t;

typedef struct vc_counter {
    long long value;
    const vc_opts_t *o;        /* never NULL */
} vc_counter_t;

static int vc_activate(void *ud, cn_term_t key, const void *saved, size_t len, void **state)
{
    static const vc_opts_t plain = { 0 };
    (void)key;
    vc_counter_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->o = ud ? ud : &plain;
    int i = 0;
    if (saved && (ei_decode_longlong(saved, &i, &c->value) < 0 || (size_t)i != len)) {
        free(c);
        return -EINVAL;
    }
    *state = c;
    return 0;
}

static int vc_call(void *state, cn_term_t req, ei_x_buff *reply)
{
    vc_counter_t *c = state;
    int i = req.index, arity;
    char op[MAXATOMLEN_UTF8];
    long long n;
    if (cn_decode_atom_is(req.buf, &i, "get"))
        return ei_x_encode_longlong(reply, c->value) < 0 ? -ENOMEM : CN_VPROC_READ;
    if (cn_decode_atom_is(req.buf, &i, "node"))
        return ei_x_encode_atom(reply, cn_node_name(cn_node_self())) < 0 ? -ENOMEM
                                                                          : CN_VPROC_READ;
    if (ei_decode_tuple_header(req.buf, &i, &arity) < 0 || arity != 2 ||
        ei_decode_atom(req.buf, &i, op) < 0 || ei_decode_longlong(req.buf, &i, &n) < 0)
        return -EINVAL;
    if (strcmp(op, "add") == 0) {
        c->value += n;
        return ei_x_encode_longlong(reply, c->value) < 0 ? -ENOMEM : CN_VPROC_WRITE;
    }
    if (strcmp(op, "set") == 0) {
        c->value = n;
        return ei_x_encode_atom(reply, "ok") < 0 ? -ENOMEM : CN_VPROC_WRITE;
    }
    if (strcmp(op, "sleep") == 0 && c->o->sleep) {
        if (c->o->sleeps)
            atomic_fetch_add(c->o->sleeps, 1);
        cn_sleep(n);
        return ei_x_encode_longlong(reply, c->value) < 0 ? -ENOMEM : CN_VPROC_READ;
    }
    return -EINVAL;
}

static int vc_save(void *state, ei_x_buff *out)
{
    vc_counter_t *c = state;
    if (c->o->fail_666 && c->value == 666)
        return -EIO;
    return ei_x_encode_longlong(out, c->value) < 0 ? -ENOMEM : 0;
}

static void vc_deactivate(void *state)
{
    free(state);
}

/* The type, named `name` (a literal: registration copies it), deactivated after
 * idle_ms; o may be NULL (the plain counter). */
static cn_vproc_type_t vc_type(const char *name, int idle_ms, const vc_opts_t *o)
{
    cn_vproc_type_t t = { .name = name, .idle_ms = idle_ms, .ud = (void *)o,
                          .activate = vc_activate, .handle_call = vc_call,
                          .save = vc_save, .deactivate = vc_deactivate };
    return t;
}

#endif
