/* counter_common.h - the test modules' counter server (included by counter_v1.c,
 * counter_v2.c, counter_bad.c, other.c with COUNTER_VSN/COUNTER_NAME set): `incr`
 * adds one and `get` reads, both answering {VsnAtom, N}; state layouts differ
 * between versions 1 and 2 so code_change really converts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/code.h"

/* Version 1's state. */
typedef struct st1 {
    int layout; /* 1 */
    long n;
} st1_t;

/* Version 2's state: a wider layout, the count moved. */
typedef struct st2 {
    int layout; /* 2 */
    long calls; /* calls handled by version 2 */
    long n;
} st2_t;

static int ct_init(void *arg, void **state)
{
    (void)arg;
#if COUNTER_LAYOUT == 1
    st1_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->layout = 1;
#else
    st2_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->layout = 2;
#endif
    *state = s;
    return 0;
}

static long *count_of(void *state)
{
#if COUNTER_LAYOUT == 1
    return &((st1_t *)state)->n;
#else
    ((st2_t *)state)->calls++;
    return &((st2_t *)state)->n;
#endif
}

static int ct_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)from;
    int i = req.index;
    long *n = count_of(state);
    if (cn_decode_atom_is(req.buf, &i, "incr"))
        ++*n;
    ei_x_encode_tuple_header(reply, 2);
    ei_x_encode_atom(reply, "v" COUNTER_VSN);
    ei_x_encode_long(reply, *n);
    return CN_GS_CONTINUE;
}

static void ct_terminate(void *state, cn_term_t reason)
{
    (void)reason;
    free(state);
}

/* Convert whatever layout we are given into ours; refuse unknown ones. */
static int ct_code_change(const char *old_vsn, void **state, cn_term_t extra, char *err,
                          size_t errlen)
{
    (void)extra;
#ifdef COUNTER_REFUSE
    (void)state;
    snprintf(err, errlen, "counter %s cannot take over from %s: refused on purpose", COUNTER_VSN,
             old_vsn);
    return -ECANCELED;
#else
    int layout = *(int *)*state;
    long n;
    if (layout == 1)
        n = ((st1_t *)*state)->n;
    else if (layout == 2)
        n = ((st2_t *)*state)->n;
    else {
        snprintf(err, errlen, "unknown state layout %d from %s", layout, old_vsn);
        return -EINVAL;
    }
    if (layout == COUNTER_LAYOUT)
        return 0;
    void *fresh;
    if (ct_init(NULL, &fresh) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
#if COUNTER_LAYOUT == 1
    ((st1_t *)fresh)->n = n;
#else
    ((st2_t *)fresh)->n = n;
#endif
    free(*state);
    *state = fresh;
    return 0;
#endif
}

static const cn_gen_server_t cb = {
    .init = ct_init,
    .handle_call = ct_call,
    .terminate = ct_terminate,
    .code_change = ct_code_change,
};

static const cn_module_t mod = { CN_MODULE_ABI, sizeof(cn_module_t), COUNTER_NAME, COUNTER_VSN,
                                 &cb };
CN_MODULE_DEFINE(mod)
