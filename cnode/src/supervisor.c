/* supervisor.c - the supervisor behaviour, written as gen_server callbacks.
 *
 * State: the children in start order and the times of recent restarts. EXIT
 * messages from children arrive through handle_info (the server traps exits);
 * requests arrive as calls whose shapes follow OTP's supervisor module
 * (which_children, count_children, {terminate_child, Id}, ...) so erl tools work,
 * plus '$cn_*' requests for what only C callers can ask (a child spec holds C
 * function pointers, so it is sent by value and only to a local supervisor).
 */
#include "cnode/supervisor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnode_int.h"

typedef struct child {
    cn_child_spec_t spec; /* spec.id points at id */
    char *id;
    cn_pid_t pid;
    bool running;
} child_t;

typedef struct sup {
    cn_sup_flags_t flags;
    child_t *children;
    int n, cap;
    uint64_t *restarts; /* ms times of recent restarts, oldest first */
    int nrestarts, caprestarts;
    bool async_start;   /* nobody waits for init: init frees on failure */
} sup_t;

static void child_clear(child_t *c)
{
    cn__free(c->id);
    c->id = NULL;
}

static int spec_copy(child_t *c, const cn_child_spec_t *spec)
{
    if (spec->id == NULL || spec->start == NULL || strlen(spec->id) == 0 ||
        strlen(spec->id) >= MAXATOMLEN)
        return -EINVAL;
    memset(c, 0, sizeof(*c));
    c->id = strdup(spec->id);
    if (c->id == NULL)
        return -ENOMEM;
    c->spec = *spec;
    c->spec.id = c->id;
    if (c->spec.restart == 0)
        c->spec.restart = CN_PERMANENT;
    if (c->spec.type == 0)
        c->spec.type = CN_WORKER;
    return 0;
}

static child_t *find_id(sup_t *s, const char *id)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->children[i].id, id) == 0)
            return &s->children[i];
    return NULL;
}

static int add_child(sup_t *s, const cn_child_spec_t *spec, child_t **out)
{
    if (find_id(s, spec->id ? spec->id : ""))
        return -EEXIST;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 8;
        child_t *c = cn__realloc(s->children, (size_t)cap * sizeof(*c));
        if (c == NULL)
            return -ENOMEM;
        s->children = c;
        s->cap = cap;
    }
    int rc = spec_copy(&s->children[s->n], spec);
    if (rc < 0)
        return rc;
    *out = &s->children[s->n++];
    return 0;
}

static void remove_child(sup_t *s, child_t *c)
{
    int i = (int)(c - s->children);
    child_clear(c);
    memmove(&s->children[i], &s->children[i + 1], (size_t)(s->n - i - 1) * sizeof(*c));
    s->n--;
}

static int start_child(child_t *c)
{
    cn_pid_t pid;
    int rc = c->spec.start(c->spec.arg, &pid);
    if (rc < 0)
        return rc;
    c->pid = pid;
    c->running = true;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Shutting children down
 * ------------------------------------------------------------------------------ */

static bool match_exit_from(const cn_msg_t *m, void *arg)
{
    const cn_pid_t *pid = arg;
    int i = 1, arity;
    cn_pid_t from;
    return ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity == 3 &&
           cn_decode_atom_is(m->buf, &i, "EXIT") && cn_decode_pid(m->buf, &i, &from) == 0 &&
           cn_pid_eq(from, *pid);
}

static void shutdown_child(child_t *c)
{
    if (!c->running)
        return;
    c->running = false;
    if (cn_pid_is_nil(cn_self())) {
        /* Running from an exit hook (the supervisor was killed): no waiting is
         * possible; the link carries the kill to the child. */
        return;
    }
    cn_mark_t mark = cn_mbox_mark();
    cn_ref_t mref;
    if (cn_monitor(c->pid, &mref) < 0) {
        cn_exit_pid(c->pid, "kill");
        return;
    }
    cn_unlink(c->pid);
    cn_msg_t *m;
    while (cn_receive(match_exit_from, &c->pid, 0, &m) == 0)
        cn_msg_free(m);
    if (c->spec.shutdown_ms == CN_BRUTAL_KILL) {
        cn_exit_pid(c->pid, "kill");
    } else {
        cn_exit_pid(c->pid, "shutdown");
        if (cn_receive_mark(mark, cn__match_down, &mref, c->spec.shutdown_ms, &m) == 0) {
            cn_msg_free(m);
            return;
        }
        cn_exit_pid(c->pid, "kill");
    }
    if (cn_receive_mark(mark, cn__match_down, &mref, CN_INFINITY, &m) == 0)
        cn_msg_free(m);
}

/* Shut down children [from, n) in reverse order. */
static void shutdown_from(sup_t *s, int from)
{
    for (int i = s->n - 1; i >= from; i--)
        shutdown_child(&s->children[i]);
}

/* ---------------------------------------------------------------------------------
 * Restarts
 * ------------------------------------------------------------------------------ */

/* Record a restart; false if that exceeds the intensity. */
static bool restart_allowed(sup_t *s)
{
    uint64_t now = cn_now_ms();
    uint64_t period = (uint64_t)(s->flags.period_s > 0 ? s->flags.period_s : 5) * 1000u;
    int keep = 0;
    for (int i = 0; i < s->nrestarts; i++)
        if (now - s->restarts[i] < period)
            s->restarts[keep++] = s->restarts[i];
    s->nrestarts = keep;
    if (s->nrestarts == s->caprestarts) {
        int cap = s->caprestarts ? s->caprestarts * 2 : 8;
        uint64_t *r = cn__realloc(s->restarts, (size_t)cap * sizeof(*r));
        if (r == NULL)
            return false;
        s->restarts = r;
        s->caprestarts = cap;
    }
    s->restarts[s->nrestarts++] = now;
    return s->nrestarts <= s->flags.intensity;
}

static bool reason_is_normal(cn_term_t reason)
{
    int i = reason.index, arity;
    if (cn_decode_atom_is(reason.buf, &i, "normal") || cn_decode_atom_is(reason.buf, &i, "shutdown"))
        return true;
    return ei_decode_tuple_header(reason.buf, &i, &arity) == 0 && arity == 2 &&
           cn_decode_atom_is(reason.buf, &i, "shutdown");
}

/* Restart children [from, n) in order (those not running). Returns 0, or -1 if the
 * intensity was exceeded while retrying failed starts. */
static int restart_from(sup_t *s, int from)
{
    for (int i = from; i < s->n; i++) {
        child_t *c = &s->children[i];
        if (c->running)
            continue;
        while (start_child(c) < 0) {
            if (!restart_allowed(s))
                return -1;
        }
    }
    return 0;
}

static int on_child_exit(sup_t *s, child_t *c, cn_term_t reason)
{
    c->running = false;
    bool restart = c->spec.restart == CN_PERMANENT ||
                   (c->spec.restart == CN_TRANSIENT && !reason_is_normal(reason));
    if (!restart) {
        if (c->spec.restart == CN_TEMPORARY)
            remove_child(s, c);
        return CN_GS_CONTINUE;
    }
    if (!restart_allowed(s)) {
        cn_gen_server_set_reason("shutdown");
        return CN_GS_STOP; /* terminate() shuts the rest down */
    }
    int i = (int)(c - s->children);
    int from = i;
    switch (s->flags.strategy) {
    case CN_ONE_FOR_ALL:
        from = 0;
        shutdown_from(s, 0);
        break;
    case CN_REST_FOR_ONE:
        shutdown_from(s, i + 1);
        break;
    default:
        if (start_child(c) == 0)
            return CN_GS_CONTINUE;
        break;
    }
    if (restart_from(s, from) < 0) {
        cn_gen_server_set_reason("shutdown");
        return CN_GS_STOP;
    }
    return CN_GS_CONTINUE;
}

/* ---------------------------------------------------------------------------------
 * Callbacks
 * ------------------------------------------------------------------------------ */

static void sup_free(sup_t *s)
{
    for (int i = 0; i < s->n; i++)
        child_clear(&s->children[i]);
    cn__free(s->children);
    cn__free(s->restarts);
    cn__free(s);
}

static int sup_init(void *arg, void **state)
{
    sup_t *s = arg;
    for (int i = 0; i < s->n; i++) {
        int rc = start_child(&s->children[i]);
        if (rc < 0) {
            shutdown_from(s, 0);
            if (s->async_start)
                sup_free(s);
            return rc;
        }
    }
    *state = s;
    return 0;
}

static int sup_info(void *state, cn_term_t msg)
{
    sup_t *s = state;
    int i = msg.index, arity;
    cn_pid_t from;
    if (ei_decode_tuple_header(msg.buf, &i, &arity) < 0 || arity != 3 ||
        !cn_decode_atom_is(msg.buf, &i, "EXIT") || cn_decode_pid(msg.buf, &i, &from) < 0)
        return CN_GS_CONTINUE;
    for (int k = 0; k < s->n; k++) {
        child_t *c = &s->children[k];
        if (c->running && cn_pid_eq(c->pid, from))
            return on_child_exit(s, c, (cn_term_t){ msg.buf, i, msg.len });
    }
    return CN_GS_CONTINUE;
}

static void sup_terminate(void *state, cn_term_t reason)
{
    (void)reason;
    sup_t *s = state;
    shutdown_from(s, 0);
    sup_free(s);
}

static void encode_error(ei_x_buff *x, const char *what)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "error");
    ei_x_encode_atom(x, what);
}

/* The reply to start_child and restart_child: {ok, Pid} or {error, Code}. */
static void encode_started(ei_x_buff *x, int rc, const child_t *c)
{
    ei_x_encode_tuple_header(x, 2);
    if (rc < 0) {
        ei_x_encode_atom(x, "error");
        ei_x_encode_long(x, rc);
    } else {
        ei_x_encode_atom(x, "ok");
        cn_x_encode_pid(x, c->pid);
    }
}

static void encode_pid_or_undefined(ei_x_buff *x, const child_t *c)
{
    if (c->running)
        cn_x_encode_pid(x, c->pid);
    else
        ei_x_encode_atom(x, "undefined");
}

static int sup_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *r)
{
    (void)from;
    sup_t *s = state;
    const char *b = req.buf;
    int i = req.index, arity;
    char id[MAXATOMLEN_UTF8];

    if (cn_decode_atom_is(b, &i, "which_children")) {
        if (s->n > 0)
            ei_x_encode_list_header(r, s->n);
        for (int k = 0; k < s->n; k++) {
            child_t *c = &s->children[k];
            ei_x_encode_tuple_header(r, 4);
            ei_x_encode_atom(r, c->id);
            encode_pid_or_undefined(r, c);
            ei_x_encode_atom(r, c->spec.type == CN_SUPERVISOR ? "supervisor" : "worker");
            ei_x_encode_list_header(r, 1);
            ei_x_encode_atom(r, "cnode");
            ei_x_encode_empty_list(r);
        }
        ei_x_encode_empty_list(r);
        return CN_GS_CONTINUE;
    }
    if (cn_decode_atom_is(b, &i, "count_children")) {
        long active = 0, sups = 0;
        for (int k = 0; k < s->n; k++) {
            active += s->children[k].running;
            sups += s->children[k].spec.type == CN_SUPERVISOR;
        }
        const char *keys[4] = { "specs", "active", "supervisors", "workers" };
        long vals[4] = { s->n, active, sups, s->n - sups };
        ei_x_encode_list_header(r, 4);
        for (int k = 0; k < 4; k++) {
            ei_x_encode_tuple_header(r, 2);
            ei_x_encode_atom(r, keys[k]);
            ei_x_encode_long(r, vals[k]);
        }
        ei_x_encode_empty_list(r);
        return CN_GS_CONTINUE;
    }
    if (ei_decode_tuple_header(b, &i, &arity) < 0) {
        encode_error(r, "bad_request");
        return CN_GS_CONTINUE;
    }
    char op[MAXATOMLEN_UTF8];
    if (ei_decode_atom(b, &i, op) < 0) {
        encode_error(r, "bad_request");
        return CN_GS_CONTINUE;
    }
    if (arity == 2 && strcmp(op, "start_child") == 0) {
        encode_error(r, "not_supported"); /* an Erlang child spec can't start C code */
        return CN_GS_CONTINUE;
    }
    if (arity == 7 && strcmp(op, "$cn_start_child") == 0) {
        /* {'$cn_start_child', Id, Start, Arg, Restart, Shutdown, Type} */
        cn_child_spec_t spec;
        unsigned long long start, sarg;
        long restart, type;
        long long shutdown;
        if (ei_decode_atom(b, &i, id) < 0 || ei_decode_ulonglong(b, &i, &start) < 0 ||
            ei_decode_ulonglong(b, &i, &sarg) < 0 || ei_decode_long(b, &i, &restart) < 0 ||
            ei_decode_longlong(b, &i, &shutdown) < 0 || ei_decode_long(b, &i, &type) < 0) {
            encode_error(r, "bad_request");
            return CN_GS_CONTINUE;
        }
        spec.id = id;
        spec.start = (int (*)(void *, cn_pid_t *))(uintptr_t)start;
        spec.arg = (void *)(uintptr_t)sarg;
        spec.restart = (int)restart;
        spec.shutdown_ms = shutdown;
        spec.type = (int)type;
        child_t *c = NULL;
        int rc = add_child(s, &spec, &c);
        if (rc == 0 && (rc = start_child(c)) < 0)
            remove_child(s, c); /* c is not read again: rc < 0 */
        encode_started(r, rc, c);
        return CN_GS_CONTINUE;
    }
    if (arity != 2 || ei_decode_atom(b, &i, id) < 0) {
        encode_error(r, "bad_request");
        return CN_GS_CONTINUE;
    }
    child_t *c = find_id(s, id);
    if (c == NULL) {
        encode_error(r, "not_found");
        return CN_GS_CONTINUE;
    }
    if (strcmp(op, "terminate_child") == 0) {
        shutdown_child(c);
        if (c->spec.restart == CN_TEMPORARY)
            remove_child(s, c);
        ei_x_encode_atom(r, "ok");
    } else if (strcmp(op, "restart_child") == 0) {
        if (c->running) {
            encode_error(r, "running");
        } else {
            encode_started(r, start_child(c), c);
        }
    } else if (strcmp(op, "delete_child") == 0) {
        if (c->running) {
            encode_error(r, "running");
        } else {
            remove_child(s, c);
            ei_x_encode_atom(r, "ok");
        }
    } else if (strcmp(op, "$cn_which_child") == 0) {
        if (!c->running) {
            encode_error(r, "not_running");
        } else {
            ei_x_encode_tuple_header(r, 2);
            ei_x_encode_atom(r, "ok");
            cn_x_encode_pid(r, c->pid);
        }
    } else {
        encode_error(r, "bad_request");
    }
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t sup_cb = {
    .init = sup_init,
    .handle_call = sup_call,
    .handle_info = sup_info,
    .terminate = sup_terminate,
};

/* ---------------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------------ */

int cn_supervisor_start(cn_node_t *node, const cn_sup_flags_t *flags,
                        const cn_child_spec_t *children, int n,
                        const cn_gen_server_opts_t *opts, cn_pid_t *out)
{
    if (node == NULL || n < 0 || (n > 0 && children == NULL))
        return -EINVAL;
    sup_t *s = cn__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    if (flags)
        s->flags = *flags;
    if (s->flags.strategy == 0)
        s->flags.strategy = CN_ONE_FOR_ONE;
    if (s->flags.intensity < 0 || s->flags.strategy < CN_ONE_FOR_ONE ||
        s->flags.strategy > CN_REST_FOR_ONE) {
        cn__free(s);
        return -EINVAL;
    }
    for (int i = 0; i < n; i++) {
        child_t *c;
        int rc = add_child(s, &children[i], &c);
        if (rc < 0) {
            sup_free(s);
            return rc;
        }
    }
    cn_gen_server_opts_t o = { 0 };
    if (opts)
        o = *opts;
    o.trap_exit = true;
    cn_node_t *cur = cn_node_self();
    s->async_start = !(cur == node && node->current != NULL);
    int rc = cn_gen_server_start(node, &sup_cb, s, &o, out);
    if (rc < 0 && !s->async_start)
        sup_free(s); /* the server never took it (init failed or never ran) */
    return rc;
}

/* Decode the reply shapes ok | {ok, Pid} | {error, Atom} | {error, Code}. */
static int decode_result(cn_term_t t, cn_pid_t *out)
{
    int i = t.index, arity;
    char a[MAXATOMLEN_UTF8];
    if (cn_decode_atom_is(t.buf, &i, "ok"))
        return 0;
    if (ei_decode_tuple_header(t.buf, &i, &arity) < 0 || arity != 2)
        return -EPROTO;
    if (cn_decode_atom_is(t.buf, &i, "ok"))
        return out ? cn_decode_pid(t.buf, &i, out) : 0;
    if (!cn_decode_atom_is(t.buf, &i, "error"))
        return -EPROTO;
    long code;
    int j = i;
    if (ei_decode_long(t.buf, &j, &code) == 0)
        return (int)code;
    if (ei_decode_atom(t.buf, &i, a) < 0)
        return -EPROTO;
    if (strcmp(a, "not_found") == 0)
        return -ENOENT;
    if (strcmp(a, "running") == 0)
        return -EBUSY;
    if (strcmp(a, "not_running") == 0)
        return -ESRCH;
    return -EINVAL;
}

static int sup_request(cn_dest_t sup, ei_x_buff *req, cn_pid_t *out)
{
    cn_msg_t *m;
    cn_term_t reply;
    int rc = cn_gen_call(sup, req, CN_INFINITY, &m, &reply);
    if (rc < 0) {
        cn_msg_free(m);
        return rc;
    }
    rc = decode_result(reply, out);
    cn_msg_free(m);
    return rc;
}

static int id_request(cn_dest_t sup, const char *op, const char *id, cn_pid_t *out)
{
    ei_x_buff x;
    if (id == NULL || strlen(id) >= MAXATOMLEN)
        return -EINVAL;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, op);
    ei_x_encode_atom(&x, id);
    return sup_request(sup, &x, out);
}

int cn_supervisor_start_child(cn_dest_t sup, const cn_child_spec_t *spec, cn_pid_t *out)
{
    if (spec == NULL || spec->id == NULL || spec->start == NULL || strlen(spec->id) >= MAXATOMLEN)
        return -EINVAL;
    if (sup.kind == CN_DEST_REMOTE)
        return -EINVAL;
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    ei_x_encode_tuple_header(&x, 7);
    ei_x_encode_atom(&x, "$cn_start_child");
    ei_x_encode_atom(&x, spec->id);
    ei_x_encode_ulonglong(&x, (unsigned long long)(uintptr_t)spec->start);
    ei_x_encode_ulonglong(&x, (unsigned long long)(uintptr_t)spec->arg);
    ei_x_encode_long(&x, spec->restart);
    ei_x_encode_longlong(&x, spec->shutdown_ms);
    ei_x_encode_long(&x, spec->type);
    return sup_request(sup, &x, out);
}

int cn_supervisor_terminate_child(cn_dest_t sup, const char *id)
{
    return id_request(sup, "terminate_child", id, NULL);
}

int cn_supervisor_restart_child(cn_dest_t sup, const char *id, cn_pid_t *out)
{
    int rc = id_request(sup, "restart_child", id, out);
    return rc == -EBUSY ? -EALREADY : rc;
}

int cn_supervisor_delete_child(cn_dest_t sup, const char *id)
{
    return id_request(sup, "delete_child", id, NULL);
}

int cn_supervisor_which_child(cn_dest_t sup, const char *id, cn_pid_t *out)
{
    return id_request(sup, "$cn_which_child", id, out);
}
