/* gen_server.c - the generic server loop and the call/cast/reply protocol.
 *
 * Reading order: the caller's side (cn_gen_call, which monitors the server and
 * waits on a mailbox mark for either the reply or the DOWN), then the server's
 * side (start with a synchronous init acknowledgement, the receive loop, system
 * messages: OTP's sys protocol - suspend, resume, get_state, get_status,
 * terminate, change_code - and ours for swapping a server's module, code.h),
 * then the exit hook that runs terminate().
 * The server's bookkeeping lives on the heap, not on its stack, because the exit
 * hook may run after the process was killed while parked.
 */
#include "cnode/gen_server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cnode/code.h"

#include "cnode_int.h"
#include "telemetry_int.h"

/* ---------------------------------------------------------------------------------
 * Shared helpers
 * ------------------------------------------------------------------------------ */

/* True for {Name, Node} on another node: sent and monitored by name there. */
static bool remote_name(cn_node_t *n, cn_dest_t d)
{
    return d.kind == CN_DEST_REMOTE && d.node && d.name && strcmp(d.node, n->name) != 0;
}

/* Resolve a destination to a pid. {Name, OtherNode} has no pid here: callers
 * check remote_name() first; {Name, ThisNode} is local. */
static int resolve(cn_node_t *n, cn_dest_t d, cn_pid_t *out)
{
    switch (d.kind) {
    case CN_DEST_PID:
        *out = d.pid;
        return 0;
    case CN_DEST_REMOTE:
        if (d.node == NULL || strcmp(d.node, n->name) != 0)
            return -EHOSTUNREACH;
        /* {Name, node()} is a local name */
        __attribute__((fallthrough));
    case CN_DEST_NAME:
        if (d.name == NULL)
            return -EINVAL;
        return cn_whereis(d.name, out) < 0 ? -ESRCH : 0;
    default:
        return -EINVAL;
    }
}

static void x_reset(ei_x_buff *x)
{
    ei_x_free(x);
    x->buff = NULL;
    x->buffsz = x->index = 0;
}

/* Whether x is a message buffer: the version byte and a term after it. A
 * buffer made with ei_x_new has no version byte: its first byte, taken for
 * one, would be cut off the term (the server then drops the call as
 * malformed, and the caller waits out its timeout). */
static bool msg_buf_ok(const ei_x_buff *x)
{
    return x->buff != NULL && x->index > 1 && (unsigned char)x->buff[0] == 131;
}

/* Append the term of a version-prefixed buffer (x's bytes after the version). */
static int append_body(ei_x_buff *dst, const ei_x_buff *src)
{
    if (src->buff == NULL || src->index <= 1)
        return -EINVAL;
    return ei_x_append_buf(dst, src->buff + 1, src->index - 1) < 0 ? -ENOMEM : 0;
}

/* Decode an alias tag [alias|Ref]; false for a plain ref or anything else. */
static bool decode_alias_tag(const char *buf, int *index, cn_ref_t *ref)
{
    int i = *index, arity;
    if (ei_decode_list_header(buf, &i, &arity) < 0 || arity != 1)
        return false;
    if (!cn_decode_atom_is(buf, &i, "alias"))
        return false;
    if (cn_decode_ref(buf, &i, ref) < 0)
        return false;
    *index = i;
    return true;
}

/* The span of Ref in an encoded tag [alias|Ref] (tag is taglen bytes); false
 * for any other tag. */
static bool alias_tag_ref(const char *tag, int taglen, int *off)
{
    int i = 0, arity;
    if (ei_decode_list_header(tag, &i, &arity) < 0 || arity != 1 ||
        !cn_decode_atom_is(tag, &i, "alias"))
        return false;
    int j = i, type, size;
    if (ei_get_type(tag, &j, &type, &size) < 0 ||
        (type != ERL_NEW_REFERENCE_EXT && type != ERL_NEWER_REFERENCE_EXT &&
         type != ERL_REFERENCE_EXT) ||
        ei_skip_term(tag, &j) < 0 || j != taglen)
        return false;
    *off = i;
    return true;
}

int cn__reply_send(cn_node_t *n, cn_pid_t pid, const char *tag, int taglen, ei_x_buff *x)
{
    int off;
    if (pid.node != 0 && n->dist_ops && n->dist_ops->alias_send &&
        alias_tag_ref(tag, taglen, &off)) {
        /* A remote caller's alias: send to the alias (ALIAS_SEND), so that its
         * node drops a reply that comes after the call gave up, as OTP does. */
        cn_msg_t *m = cn__msg_from_x(x);
        if (m == NULL)
            return -ENOMEM;
        cn_pid_t from = n->current ? n->current->pid : (cn_pid_t){ 0, 0, 0, 0 };
        int rc = n->dist_ops->alias_send(n, from, pid, tag + off, taglen - off, m);
        return rc == -ENOTSUP ? cn_send_msg(pid, m) : rc;
    }
    if (pid.node == 0) {
        cn_ref_t ref;
        int i = 0;
        if (decode_alias_tag(tag, &i, &ref)) {
            cn_proc_t *p = cn__proc_get(n, pid);
            if (p == NULL) {
                x_reset(x);
                return -ESRCH;
            }
            if (!p->alias_active || !cn_ref_eq(&p->alias, &ref)) {
                x_reset(x); /* the caller gave up: drop, as an inactive alias does */
                return 0;
            }
        }
    }
    return cn_send(pid, x);
}

/* ---------------------------------------------------------------------------------
 * Caller side
 * ------------------------------------------------------------------------------ */

/* What a call waits for: its Ref, and the tag it sent as it was encoded. */
typedef struct call_match {
    const cn_ref_t *ref;
    const char *tag; /* NULL: not kept (longer than call_tag's room) */
    int taglen;
} call_match_t;

/* Matches {[alias|Ref], _}, {Ref, _} (the tag of a call made while the alias
 * table had no memory) or {'DOWN', Ref, process, _, _} for the call's Ref. */
static bool match_call(const cn_msg_t *m, void *arg)
{
    const call_match_t *cm = arg;
    const cn_ref_t *want = cm->ref;
    int i = 1, arity;
    cn_ref_t ref;
    if (ei_decode_tuple_header(m->buf, &i, &arity) < 0)
        return false;
    if (arity == 2) {
        /* A local server, or another libcnode node, sends the tag back as the
         * bytes it got: compare them. Decoding the ref costs more (libei
         * converts its node name, an atom: a twentieth of a local call); a
         * peer that encodes the ref its own way (BEAM) is decoded below. */
        if (cm->tag && m->len - i >= cm->taglen && memcmp(m->buf + i, cm->tag, (size_t)cm->taglen) == 0)
            return true;
        int j = i;
        if (cn_decode_ref(m->buf, &j, &ref) == 0)
            return cn_ref_eq(&ref, want);
        return decode_alias_tag(m->buf, &i, &ref) && cn_ref_eq(&ref, want);
    }
    if (arity == 5 && cn_decode_atom_is(m->buf, &i, "DOWN"))
        return cn_decode_ref(m->buf, &i, &ref) == 0 && cn_ref_eq(&ref, want);
    return false;
}

/* Room for a call's envelope {'$gen_call', {Pid, [alias|Ref]}, (bytes): 65
 * and the two node names, each at most twice its length as UTF-8. */
#define CALL_ENVELOPE_MAX 320

/* Put the envelope of a call in front of its request: in the request's own
 * buffer when it has the room (the request moved up behind the envelope; a
 * message buffer has 100 bytes to spare or more, see cn_x_new_size), else in a
 * new buffer of the exact size. Either way *out holds the message and req is
 * empty; *tag_at, *tag_end the span of the tag in it. Returns 0, 1 when the
 * node names are too long for the room here (nothing done), or -ENOMEM (req
 * left as it was). A malloc, a free and a copy less per call than a new
 * buffer each time. Out of line: the envelope's room (and libei's view of a
 * pid and a ref, 1 KB each) is not on a waiting caller's stack. */
static __attribute__((noinline)) int call_envelope(cn_pid_t self, const cn_ref_t *mref,
                                                   bool plain_tag, ei_x_buff *req,
                                                   ei_x_buff *out, int *tag_at, int *tag_end)
{
    cn_node_t *n = cn__cur_node;
    char env[CALL_ENVELOPE_MAX];
    int i = 0;
    size_t names = strlen(cn__node_name_of(n, self.node)) + strlen(cn__node_name_of(n, mref->node));
    if (65 + 2 * names > sizeof env || req->buff == NULL || req->index <= 1)
        return 1;
    ei_encode_tuple_header(env, &i, 3);
    ei_encode_atom_len_as(env, &i, "$gen_call", 9, ERLANG_LATIN1, ERLANG_UTF8);
    ei_encode_tuple_header(env, &i, 2);
    if (cn__encode_pid(env, &i, self) < 0)
        return 1;
    *tag_at = 1 + i;
    if (!plain_tag) {
        ei_encode_list_header(env, &i, 1);
        ei_encode_atom_len_as(env, &i, "alias", 5, ERLANG_LATIN1, ERLANG_UTF8);
    }
    if (cn__encode_ref(env, &i, mref) < 0)
        return 1;
    *tag_end = 1 + i;
    size_t body = (size_t)req->index - 1, envlen = (size_t)i;
    if ((size_t)req->buffsz - (size_t)req->index >= envlen) {
        memmove(req->buff + 1 + envlen, req->buff + 1, body);
        memcpy(req->buff + 1, env, envlen);
        req->index += i;
        *out = *req;
        req->buff = NULL;
        req->buffsz = req->index = 0;
        return 0;
    }
    if (cn_x_new_size(out, envlen + body) < 0)
        return -ENOMEM;
    memcpy(out->buff + 1, env, envlen);
    memcpy(out->buff + 1 + envlen, req->buff + 1, body);
    out->index = (int)(1 + envlen + body);
    x_reset(req);
    return 0;
}

/* The call itself; tc (may be NULL) says whether to wrap the request with its
 * trace context (telemetry.h). */
static int gen_call(cn_dest_t dest, ei_x_buff *req, int64_t timeout_ms, cn_msg_t **msg,
                    cn_term_t *reply, const cn__tel_call_t *tc)
{
    cn_node_t *n = cn__cur_node;
    int rc;
    *msg = NULL;
    if (n == NULL || n->current == NULL) {
        x_reset(req);
        return -EINVAL;
    }
    if (!msg_buf_ok(req)) {
        x_reset(req);
        return -EINVAL;
    }
    cn_proc_t *self = n->current;
    cn_pid_t to = { 0, 0, 0, 0 };
    bool by_name = remote_name(n, dest);
    if (!by_name && (rc = resolve(n, dest, &to)) < 0) {
        x_reset(req);
        return rc;
    }

    /* Mark first: a monitor of a dead process delivers DOWN at once. */
    cn_mark_t mark = cn_mbox_mark();
    cn_ref_t mref;
    rc = by_name ? cn_monitor_name_at(dest.name, dest.node, &mref) : cn_monitor(to, &mref);
    if (rc < 0) {
        x_reset(req);
        return rc;
    }
    /* The reply comes to the alias [alias|Ref], active until we return: a local
     * server checks it before replying, a remote one replies with ALIAS_SEND,
     * which our dist layer delivers only to an active alias (alias.c); so a
     * reply after a timeout is dropped. Without memory for the alias table,
     * tag with the plain Ref, as OTP did before aliases (a late reply then
     * stays in the mailbox). */
    bool plain_tag = cn__alias_activate(n, self, &mref) < 0;

    ei_x_buff x;
    int tag_at = 0, tag_end = 0;
    rc = tc && tc->wrap ? 1 : call_envelope(self->pid, &mref, plain_tag, req, &x, &tag_at, &tag_end);
    if (rc < 0)
        goto nomem;
    if (rc > 0) {
        /* Node names too long for call_envelope's room, or a trace context
         * to wrap the request in: a new buffer, sized at once (libei would
         * grow it a few times, copying the request each time). */
        if (cn_x_new_size(&x, (size_t)req->index + 3 * 255 + 64) < 0) {
            if (x.buff)
                ei_x_free(&x);
            goto nomem;
        }
        if (ei_x_encode_tuple_header(&x, 3) < 0 || cn_x_encode_atom(&x, "$gen_call") < 0 ||
            ei_x_encode_tuple_header(&x, 2) < 0 || cn_x_encode_pid(&x, self->pid) < 0 ||
            (tag_at = x.index, false) ||
            (!plain_tag &&
             (ei_x_encode_list_header(&x, 1) < 0 || cn_x_encode_atom(&x, "alias") < 0)) ||
            cn_x_encode_ref(&x, &mref) < 0 || (tag_end = x.index, false) ||
            (tc && tc->wrap && cn__tel_call_wrap(tc, &x) < 0) || append_body(&x, req) < 0) {
            ei_x_free(&x);
            goto nomem;
        }
    }
    /* The tag as sent, for match_call. Small: this frame is on the stack while
     * the caller waits (copied at each switch on a shared stack), and the tag
     * of a node name up to ~40 bytes fits. */
    char call_tag[80];
    call_match_t cm = { &mref, NULL, tag_end - tag_at };
    if (cm.taglen <= (int)sizeof call_tag) {
        memcpy(call_tag, x.buff + tag_at, (size_t)cm.taglen);
        cm.tag = call_tag;
    }
    x_reset(req);
    rc = by_name ? cn_send_name_at(dest.name, dest.node, &x) : cn_send(to, &x);
    if (rc == -ENOMEM || rc == -ENOBUFS || rc == -EHOSTUNREACH) {
        cn__alias_deactivate(n, self);
        cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
        return rc == -ENOBUFS ? -ENOMEM : rc;
    }

    cn_msg_t *m;
    rc = cn_receive_mark(mark, match_call, &cm, timeout_ms, &m);
    cn__alias_deactivate(n, self);
    if (rc < 0) {
        cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
        return rc;
    }
    int i = 1, arity;
    ei_decode_tuple_header(m->buf, &i, &arity);
    if (arity == 2) {
        cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
        /* The tag: our own bytes (see match_call) are skipped by their length. */
        if (cm.tag && m->len - i >= cm.taglen && memcmp(m->buf + i, cm.tag, (size_t)cm.taglen) == 0)
            i += cm.taglen;
        else
            ei_skip_term(m->buf, &i);
        *msg = m;
        reply->buf = m->buf;
        reply->index = i;
        reply->len = m->len;
        return 0;
    }
    /* DOWN: skip 'DOWN', Ref, process, Pid to reach the reason. */
    for (int k = 0; k < 4; k++)
        ei_skip_term(m->buf, &i);
    int j = i;
    if (cn_decode_atom_is(m->buf, &j, "noproc")) {
        cn_msg_free(m);
        return -ESRCH;
    }
    j = i;
    if (cn_decode_atom_is(m->buf, &j, "noconnection")) {
        cn_msg_free(m);
        return -EHOSTUNREACH;
    }
    *msg = m;
    reply->buf = m->buf;
    reply->index = i;
    reply->len = m->len;
    return -ECONNABORTED;
nomem:
    x_reset(req);
    cn__alias_deactivate(n, self);
    cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
    return -ENOMEM;
}

/* A call on a node with telemetry: a client span, the context for the server,
 * and the call's metrics. Out of line, so that the span's state (a few hundred
 * bytes) is not in cn_gen_call's frame: that frame stays on the caller's stack
 * while it waits, and a process on a shared stack has it copied out and back
 * at every switch. */
static __attribute__((noinline)) int gen_call_traced(cn_node_t *n, cn_dest_t dest,
                                                     ei_x_buff *req, int64_t timeout_ms,
                                                     cn_msg_t **msg, cn_term_t *reply)
{
    cn__tel_call_t tc;
    cn__tel_call_begin(n, dest, req, &tc);
    int rc = gen_call(dest, req, timeout_ms, msg, reply, &tc);
    cn__tel_call_end(n, &tc, rc);
    return rc;
}

int cn_gen_call(cn_dest_t dest, ei_x_buff *req, int64_t timeout_ms, cn_msg_t **msg,
                cn_term_t *reply)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->telemetry == NULL)
        return gen_call(dest, req, timeout_ms, msg, reply, NULL);
    return gen_call_traced(n, dest, req, timeout_ms, msg, reply);
}

int cn_gen_cast(cn_dest_t dest, ei_x_buff *req)
{
    cn_node_t *n = cn__cur_node;
    cn_pid_t to;
    int rc;
    if (n == NULL || !msg_buf_ok(req)) {
        x_reset(req);
        return -EINVAL;
    }
    bool by_name = remote_name(n, dest);
    if (!by_name && (rc = resolve(n, dest, &to)) < 0) {
        x_reset(req);
        return rc;
    }
    ei_x_buff x;
    if (cn_x_new(&x) < 0) {
        x_reset(req);
        return -ENOMEM;
    }
    if (ei_x_encode_tuple_header(&x, 2) < 0 || cn_x_encode_atom(&x, "$gen_cast") < 0 ||
        append_body(&x, req) < 0) {
        ei_x_free(&x);
        x_reset(req);
        return -ENOMEM;
    }
    x_reset(req);
    return by_name ? cn_send_name_at(dest.name, dest.node, &x) : cn_send(to, &x);
}

int cn_gen_reply(const cn_from_t *from, ei_x_buff *reply)
{
    cn_node_t *n = cn__cur_node;
    ei_x_buff x;
    if (n == NULL || !msg_buf_ok(reply)) {
        x_reset(reply);
        return -EINVAL;
    }
    /* {Tag, Reply}: the tuple header, the tag, the reply's term. When the
     * reply's buffer has the room (a small reply in cn_x_new's 256 bytes), the
     * envelope is made in it, the term moved up behind the tag: no second
     * buffer, and no free of the first (a malloc and a free per reply). */
    char hdr[8];
    int hlen = 0;
    ei_encode_tuple_header(hdr, &hlen, 2);
    size_t body = reply->buff && reply->index > 1 ? (size_t)reply->index - 1 : 0;
    size_t need = 1 + (size_t)hlen + (size_t)from->taglen + body;
    if (body > 0 && need <= (size_t)reply->buffsz) {
        memmove(reply->buff + 1 + hlen + from->taglen, reply->buff + 1, body);
        memcpy(reply->buff + 1, hdr, (size_t)hlen);
        memcpy(reply->buff + 1 + hlen, from->tag, (size_t)from->taglen);
        reply->index = (int)need;
        return cn__reply_send(n, from->pid, from->tag, from->taglen, reply);
    }
    if (cn_x_new_size(&x, need) < 0) {
        x_reset(reply);
        return -ENOMEM;
    }
    if (ei_x_encode_tuple_header(&x, 2) < 0 || ei_x_append_buf(&x, from->tag, from->taglen) < 0 ||
        append_body(&x, reply) < 0) {
        ei_x_free(&x);
        x_reset(reply);
        return -ENOMEM;
    }
    x_reset(reply);
    return cn__reply_send(n, from->pid, from->tag, from->taglen, &x);
}

/* ---------------------------------------------------------------------------------
 * Server side
 * ------------------------------------------------------------------------------ */

/* A noreply call's unused reply buffer is kept for the next call up to this
 * size (bytes): a callback that grew it for a large answer it then did not
 * send does not pin that memory. */
#define CN_GS_SPARE_MAX 4096

typedef struct gs {
    const cn_gen_server_t *cb;   /* the callbacks in use: mod->callbacks with a module */
    const cn_module_t *mod;      /* NULL: started without a module (not upgradable) */
    bool suspended;              /* sys:suspend: only system messages are handled */
    bool susp_mon;               /* susp_mref monitors the process that suspended us */
    cn_ref_t susp_mref;
    void *arg;
    void *state;
    bool inited;
    bool trap_exit;
    bool sync;            /* a starter waits for the ack */
    bool linked;
    cn_pid_t self;
    cn_pid_t parent;      /* the starter */
    cn_ref_t ack_ref;
    const char *name;     /* borrowed from the start options until the ack */
    const char *stop_reason; /* atom, set by cn_gen_server_set_reason */
    ei_x_buff spare;      /* a reply buffer a noreply call left unused, or no buff */
} gs_t;

/* The server whose callback is running on this thread, for set_reason. */
static __thread gs_t *cur_gs;

void cn_gen_server_set_reason(const char *atom)
{
    if (cur_gs)
        cur_gs->stop_reason = atom;
}

static void on_gs_exit(void *arg)
{
    gs_t *gs = arg;
    cn_node_t *n = cn__cur_node;
    if (gs->inited && gs->cb->terminate) {
        cn_proc_t *p = n->procs[gs->self.num];
        static const char no_memory[] = { 'w', 9, 'n', 'o', '_', 'm', 'e', 'm', 'o', 'r', 'y' };
        cn_term_t reason = { no_memory, 0, (int)sizeof(no_memory) };
        if (p && p->reason) {
            reason.buf = p->reason;
            reason.len = p->reason_len;
        }
        gs->cb->terminate(gs->state, reason);
    }
    if (gs->spare.buff)
        ei_x_free(&gs->spare);
    cn__free(gs);
}

static void send_ack(gs_t *gs, int code)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$cn_ack");
    cn_x_encode_ref(&x, &gs->ack_ref);
    ei_x_encode_long(&x, code);
    cn_send(gs->parent, &x);
}

static _Noreturn void init_failed(gs_t *gs, int code)
{
    if (gs->linked)
        cn_unlink(gs->parent);
    if (gs->sync)
        send_ack(gs, code);
    ei_x_buff x;
    if (cn_x_new(&x) == 0 && ei_x_encode_tuple_header(&x, 2) == 0 &&
        ei_x_encode_atom(&x, "init_failed") == 0 && ei_x_encode_long(&x, code) == 0)
        cn_exit_term(&x);
    cn_exit("init_failed");
}

/* Stop from inside the server: terminate() runs here, in the process, where it may
 * still block (a supervisor waits for its children); then exit with `reason`
 * (a version-prefixed term, consumed). */
static _Noreturn void gs_stop(gs_t *gs, ei_x_buff *reason)
{
    if (gs->inited && gs->cb->terminate) {
        gs->inited = false; /* the exit hook must not run it again */
        cur_gs = gs;
        gs->cb->terminate(gs->state, (cn_term_t){ reason->buff, 1, reason->index });
        cur_gs = NULL;
    }
    gs->inited = false;
    cn_exit_term(reason);
}

static _Noreturn void stop_with(gs_t *gs, const char *atom)
{
    ei_x_buff x;
    if (cn_x_new(&x) == 0 && ei_x_encode_atom(&x, atom ? atom : "normal") == 0)
        gs_stop(gs, &x);
    cn_exit(atom ? atom : "normal");
}

/* {error, <<Text>>} to a system message's sender. */
static void sys_reply_error(const cn_from_t *from, const char *text)
{
    ei_x_buff r;
    if (cn_x_new(&r) < 0)
        return;
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_atom(&r, "error");
    ei_x_encode_binary(&r, text, (long)strlen(text));
    cn_gen_reply(from, &r);
}

static void sys_reply_atom(const cn_from_t *from, const char *atom)
{
    ei_x_buff r;
    if (cn_x_new(&r) < 0)
        return;
    ei_x_encode_atom(&r, atom);
    cn_gen_reply(from, &r);
}

static void encode_text_or_undefined(ei_x_buff *x, const char *s)
{
    if (s)
        ei_x_encode_binary(x, s, (long)strlen(s));
    else
        ei_x_encode_atom(x, "undefined");
}

/* Append the state as a term: the format_state callback's, else
 * {cn_state, Module, Vsn}. A callback that fails leaves nothing half-written. */
static int encode_state(gs_t *gs, ei_x_buff *x)
{
    if (gs->cb->format_state) {
        ei_x_buff t;
        if (cn_x_new(&t) < 0)
            return -ENOMEM;
        cur_gs = gs;
        int rc = gs->cb->format_state(gs->state, &t);
        cur_gs = NULL;
        if (rc == 0 && t.index > 1)
            rc = append_body(x, &t);
        ei_x_free(&t);
        if (rc == 0)
            return 0;
    }
    ei_x_encode_tuple_header(x, 3);
    ei_x_encode_atom(x, "cn_state");
    encode_text_or_undefined(x, gs->mod ? gs->mod->name : NULL);
    encode_text_or_undefined(x, gs->mod ? gs->mod->vsn : NULL);
    return 0;
}

/* sys:get_status/1's reply, shaped as OTP 25's gen_server gives it:
 * {status, Pid, {module, gen_server}, [PDict, SysState, Parent, Debug, Misc]}. */
static void sys_get_status(gs_t *gs, const cn_from_t *from)
{
    ei_x_buff r;
    char header[160];
    cn_node_t *n = cn__cur_node;
    cn_proc_t *p = n->procs[gs->self.num];
    snprintf(header, sizeof header, "Status for generic server %s",
             p && p->name ? p->name : "(unnamed)");
    const char *sys_state = gs->suspended ? "suspended" : "running";
    if (cn_x_new(&r) < 0)
        return;
    ei_x_encode_tuple_header(&r, 4);
    ei_x_encode_atom(&r, "status");
    cn_x_encode_pid(&r, gs->self);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_atom(&r, "module");
    ei_x_encode_atom(&r, "gen_server");
    ei_x_encode_list_header(&r, 5);
    ei_x_encode_empty_list(&r); /* the process dictionary: C has none */
    ei_x_encode_atom(&r, sys_state);
    cn_x_encode_pid(&r, gs->parent);
    ei_x_encode_empty_list(&r); /* sys debug options */
    ei_x_encode_list_header(&r, 3);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_atom(&r, "header");
    ei_x_encode_string(&r, header);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_atom(&r, "data");
    ei_x_encode_list_header(&r, 3);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_string(&r, "Status");
    ei_x_encode_atom(&r, sys_state);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_string(&r, "Parent");
    cn_x_encode_pid(&r, gs->parent);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_string(&r, "Logged events");
    ei_x_encode_empty_list(&r);
    ei_x_encode_empty_list(&r);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_atom(&r, "data");
    ei_x_encode_list_header(&r, 1);
    ei_x_encode_tuple_header(&r, 2);
    ei_x_encode_string(&r, "State");
    encode_state(gs, &r);
    ei_x_encode_empty_list(&r);
    ei_x_encode_empty_list(&r);
    ei_x_encode_empty_list(&r);
    cn_gen_reply(from, &r);
}

/* An OldVsn term as text: an atom (`undefined` is ""), a string or a binary;
 * anything else is "". */
static void decode_vsn(const char *buf, int i, char *out, size_t outlen)
{
    int type, size;
    long len;
    out[0] = '\0';
    if (ei_get_type(buf, &i, &type, &size) < 0 || (size_t)size >= outlen)
        return;
    if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT || type == ERL_ATOM_UTF8_EXT ||
        type == ERL_SMALL_ATOM_UTF8_EXT) {
        if (ei_decode_atom(buf, &i, out) < 0 || strcmp(out, "undefined") == 0)
            out[0] = '\0';
    } else if (type == ERL_STRING_EXT) {
        if (ei_decode_string(buf, &i, out) < 0)
            out[0] = '\0';
    } else if (type == ERL_BINARY_EXT) {
        if (ei_decode_binary(buf, &i, out, &len) < 0)
            len = 0;
        out[len] = '\0';
    }
}

static int run_code_change(gs_t *gs, const cn_gen_server_t *cb, const char *old_vsn,
                           cn_term_t extra, char *err, size_t errlen)
{
    err[0] = '\0';
    if (cb->code_change == NULL)
        return 0;
    cur_gs = gs;
    int rc = cb->code_change(old_vsn, &gs->state, extra, err, errlen);
    cur_gs = NULL;
    if (rc < 0 && err[0] == '\0')
        snprintf(err, errlen, "code_change failed: %s", cn_strerror(rc));
    return rc < 0 ? rc : 0;
}

/* {'$cn_change_module', Index, Extra} from the node's code server (code.c): run
 * the new module's code_change on our state and, if it succeeds, take its
 * callbacks. Only a local sender may ask; the index must name a loaded module of
 * our module's name. */
static void sys_change_module(gs_t *gs, const cn_from_t *from, const char *buf, int i, int len)
{
    long idx;
    char err[CN_CODE_ERR_LEN];
    const cn_module_t *nm;
    if (from->pid.node != 0) {
        sys_reply_error(from, "only a process of this node may change a server's module");
        return;
    }
    if (ei_decode_long(buf, &i, &idx) < 0 || (nm = cn__code_module_at(idx)) == NULL) {
        sys_reply_error(from, "no such loaded module");
        return;
    }
    if (gs->mod == NULL) {
        sys_reply_error(from, "this server was not started from a module (cn_gen_server_start_module)");
        return;
    }
    if (strcmp(nm->name, gs->mod->name) != 0) {
        snprintf(err, sizeof err, "the file holds module '%s'; this server runs module '%s'",
                 nm->name, gs->mod->name);
        sys_reply_error(from, err);
        return;
    }
    const cn_module_t *old = gs->mod;
    if (run_code_change(gs, nm->callbacks, old->vsn, (cn_term_t){ buf, i, len }, err,
                        sizeof err) < 0) {
        char why[CN_CODE_ERR_LEN + 96];
        snprintf(why, sizeof why, "code_change %s -> %s failed, %s keeps running: %s",
                 old->vsn, nm->vsn, old->vsn, err);
        sys_reply_error(from, why);
        return;
    }
    /* Between two messages: the next one is handled by the new callbacks. */
    gs->mod = nm;
    gs->cb = nm->callbacks;
    ei_x_buff r;
    if (cn_x_new(&r) < 0)
        return;
    ei_x_encode_tuple_header(&r, 3);
    ei_x_encode_atom(&r, "ok");
    ei_x_encode_binary(&r, old->vsn, (long)strlen(old->vsn));
    ei_x_encode_binary(&r, nm->vsn, (long)strlen(nm->vsn));
    cn_gen_reply(from, &r);
}

static void sys_suspend(gs_t *gs, const cn_from_t *from)
{
    if (!gs->suspended) {
        gs->suspended = true;
        /* If the suspender goes away without resuming us, resume (not OTP's rule:
         * there the server would stay suspended until someone remembers it). */
        gs->susp_mon = from->pid.num != 0 && cn_monitor(from->pid, &gs->susp_mref) == 0;
    }
    sys_reply_atom(from, "ok");
}

static void leave_suspension(gs_t *gs)
{
    if (gs->susp_mon)
        cn_demonitor(&gs->susp_mref, CN_DEMONITOR_FLUSH);
    gs->susp_mon = false;
    gs->suspended = false;
}

int cn__decode_from(const char *buf, int *i, cn_from_t *from)
{
    int arity, start;
    if (ei_decode_tuple_header(buf, i, &arity) < 0 || arity != 2 ||
        cn_decode_pid(buf, i, &from->pid) < 0)
        return -EINVAL;
    start = *i;
    if (ei_skip_term(buf, i) < 0 || *i - start > CN_TAG_MAX)
        return -EINVAL;
    from->taglen = *i - start;
    memcpy(from->tag, buf + start, (size_t)from->taglen);
    return 0;
}

/* Handle {system, From, Msg} (what proc_lib and sys send, and our module change).
 * Returns CN_GS_STOP with the reason in *stop (version-prefixed) for a terminate. */
static int handle_system(gs_t *gs, const cn_msg_t *m, int i, ei_x_buff *stop)
{
    cn_from_t from;
    int arity;
    if (cn__decode_from(m->buf, &i, &from) < 0)
        return CN_GS_CONTINUE;

    int j = i;
    char atom[MAXATOMLEN_UTF8];
    if (ei_decode_atom(m->buf, &j, atom) == 0) {
        if (strcmp(atom, "suspend") == 0) {
            sys_suspend(gs, &from);
        } else if (strcmp(atom, "resume") == 0) {
            leave_suspension(gs);
            sys_reply_atom(&from, "ok");
        } else if (strcmp(atom, "get_state") == 0) {
            /* sys:get_state/1 returns the reply itself as the state. */
            ei_x_buff r;
            if (cn_x_new(&r) == 0) {
                encode_state(gs, &r);
                cn_gen_reply(&from, &r);
            }
        } else if (strcmp(atom, "get_status") == 0) {
            sys_get_status(gs, &from);
        } else if (strcmp(atom, "$cn_which") == 0) {
            ei_x_buff r;
            if (gs->mod == NULL) {
                sys_reply_error(&from, "this server was not started from a module");
            } else if (cn_x_new(&r) == 0) {
                ei_x_encode_tuple_header(&r, 3);
                ei_x_encode_atom(&r, "ok");
                encode_text_or_undefined(&r, gs->mod->name);
                encode_text_or_undefined(&r, gs->mod->vsn);
                cn_gen_reply(&from, &r);
            }
        } else {
            sys_reply_error(&from, "not supported by a libcnode server");
        }
        return CN_GS_CONTINUE;
    }
    j = i;
    if (ei_decode_tuple_header(m->buf, &j, &arity) < 0 || ei_decode_atom(m->buf, &j, atom) < 0) {
        sys_reply_error(&from, "not supported by a libcnode server");
        return CN_GS_CONTINUE;
    }
    if (arity == 2 && strcmp(atom, "terminate") == 0) {
        /* {terminate, Reason}: exit with that reason; the caller waits for DOWN. */
        if (cn_x_new(stop) == 0 && cn_x_append_term(stop, (cn_term_t){ m->buf, j, m->len }) < 0)
            x_reset(stop);
        return CN_GS_STOP;
    }
    if (arity == 4 && strcmp(atom, "change_code") == 0) {
        /* sys:change_code/4: the same callbacks (erl cannot load C code into us),
         * their code_change with OldVsn and Extra. */
        char old_vsn[64], err[CN_CODE_ERR_LEN];
        ei_skip_term(m->buf, &j); /* Module */
        decode_vsn(m->buf, j, old_vsn, sizeof old_vsn);
        ei_skip_term(m->buf, &j); /* OldVsn */
        int rc = run_code_change(gs, gs->cb, old_vsn, (cn_term_t){ m->buf, j, m->len }, err,
                                 sizeof err);
        ei_x_buff r;
        if (cn_x_new(&r) < 0)
            return CN_GS_CONTINUE;
        if (rc == 0) {
            ei_x_encode_atom(&r, "ok");
        } else {
            ei_x_encode_tuple_header(&r, 2);
            ei_x_encode_atom(&r, "error");
            ei_x_encode_tuple_header(&r, 2);
            ei_x_encode_long(&r, rc);
            ei_x_encode_binary(&r, err, (long)strlen(err));
        }
        cn_gen_reply(&from, &r);
        return CN_GS_CONTINUE;
    }
    if (arity == 3 && strcmp(atom, "$cn_change_module") == 0) {
        sys_change_module(gs, &from, m->buf, j, m->len);
        return CN_GS_CONTINUE;
    }
    sys_reply_error(&from, "not supported by a libcnode server");
    return CN_GS_CONTINUE;
}

static int handle_call_msg(gs_t *gs, const cn_msg_t *m, int i)
{
    cn_from_t from;
    if (cn__decode_from(m->buf, &i, &from) < 0)
        return CN_GS_CONTINUE;
    cn_term_t req = { m->buf, i, m->len };
    int end = i;
    if (ei_skip_term(m->buf, &end) < 0 || end > m->len)
        return CN_GS_CONTINUE; /* malformed request term: nothing to answer */
    /* {'$cn_trace', Traceparent, Req} from another libcnode node: handle_call
     * sees Req; the context parents the server span (telemetry.h). */
    cn_span_ctx_t wrapped;
    bool was_wrapped = cn__tel_unwrap(&req, &wrapped);
    cn_node_t *n = cn__cur_node;
    cn_span_t *span = NULL;
    uint64_t t0 = 0;
    char method[CN__TEL_METHOD_MAX];
    if (n->telemetry)
        span = cn__tel_serve_begin(n, req, &from, was_wrapped ? &wrapped : NULL, &t0, method);

    /* Encode "{Tag, " now; the callback appends the reply right after it. A
     * buffer that a noreply call left unused is taken again (a server that
     * answers later, as the events server does, would otherwise allocate and
     * free one per call). */
    ei_x_buff x;
    if (gs->spare.buff) {
        x = gs->spare;
        gs->spare.buff = NULL;
        x.index = 0;
        if (ei_x_encode_version(&x) < 0) {
            ei_x_free(&x);
            return CN_GS_CONTINUE;
        }
    } else if (cn_x_new(&x) < 0) {
        return CN_GS_CONTINUE;
    }
    if (ei_x_encode_tuple_header(&x, 2) < 0 || ei_x_append_buf(&x, from.tag, from.taglen) < 0) {
        ei_x_free(&x);
        return CN_GS_CONTINUE;
    }
    int prefix = x.index;
    int rc;
    if (gs->cb->handle_call) {
        cur_gs = gs;
        rc = gs->cb->handle_call(gs->state, req, &from, &x);
        cur_gs = NULL;
    } else {
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, "error");
        ei_x_encode_atom(&x, "not_implemented");
        rc = CN_GS_CONTINUE;
    }
    if (rc == CN_GS_NOREPLY && gs->spare.buff == NULL && x.buff &&
        x.buffsz <= CN_GS_SPARE_MAX) {
        gs->spare = x; /* for the next call */
    } else if (rc == CN_GS_NOREPLY || (rc == CN_GS_STOP && x.index == prefix)) {
        ei_x_free(&x);
    } else {
        if (x.index == prefix)
            cn_x_encode_atom(&x, "ok");
        cn__reply_send(cn__cur_node, from.pid, from.tag, from.taglen, &x);
    }
    if (n->telemetry)
        cn__tel_serve_end(n, span, req, t0, rc, method);
    return rc == CN_GS_STOP ? CN_GS_STOP : CN_GS_CONTINUE;
}

/* What a suspended server takes from its mailbox: system messages, its parent's
 * EXIT (when trapping exits) and the DOWN of the process that suspended it.
 * Everything else stays queued, in order. */
static bool match_suspended(const cn_msg_t *m, void *arg)
{
    const gs_t *gs = arg;
    int i = 1, arity;
    char tag[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(m->buf, &i, &arity) < 0 || ei_decode_atom(m->buf, &i, tag) < 0)
        return false;
    if (arity == 3 && strcmp(tag, "system") == 0)
        return true;
    if (arity == 3 && strcmp(tag, "EXIT") == 0) {
        cn_pid_t from;
        return gs->trap_exit && gs->linked && cn_decode_pid(m->buf, &i, &from) == 0 &&
               cn_pid_eq(from, gs->parent);
    }
    cn_ref_t ref;
    return arity == 5 && strcmp(tag, "DOWN") == 0 && gs->susp_mon &&
           cn_decode_ref(m->buf, &i, &ref) == 0 && cn_ref_eq(&ref, &gs->susp_mref);
}

static void gs_loop(gs_t *gs)
{
    for (;;) {
        cn_msg_t *m;
        if (cn_receive(gs->suspended ? match_suspended : NULL, gs, CN_INFINITY, &m) < 0)
            continue;
        if (gs->susp_mon && gs->suspended && match_suspended(m, gs)) {
            int k = 1, ar;
            ei_decode_tuple_header(m->buf, &k, &ar);
            if (ar == 5) { /* the suspender's DOWN: resume by ourselves */
                gs->susp_mon = false;
                gs->suspended = false;
                cn_msg_free(m);
                continue;
            }
        }
        int i = 1, arity, rc = CN_GS_CONTINUE;
        char tag[MAXATOMLEN_UTF8];
        bool tagged = false;
        if (ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity >= 2) {
            int j = i;
            tagged = ei_decode_atom(m->buf, &j, tag) == 0;
            if (tagged)
                i = j;
        }
        ei_x_buff stop = { NULL, 0, 0 };
        if (tagged && arity == 3 && strcmp(tag, "$gen_call") == 0) {
            rc = handle_call_msg(gs, m, i);
        } else if (tagged && arity == 2 && strcmp(tag, "$gen_cast") == 0) {
            if (gs->cb->handle_cast) {
                cur_gs = gs;
                rc = gs->cb->handle_cast(gs->state, (cn_term_t){ m->buf, i, m->len });
                cur_gs = NULL;
            }
        } else if (tagged && arity == 3 && strcmp(tag, "system") == 0) {
            rc = handle_system(gs, m, i, &stop);
        } else {
            cn_pid_t from;
            int j = i;
            if (tagged && arity == 3 && strcmp(tag, "EXIT") == 0 && gs->trap_exit &&
                cn_decode_pid(m->buf, &j, &from) == 0 && cn_pid_eq(from, gs->parent) &&
                gs->linked) {
                /* The parent (a supervisor) exits: follow it with its reason. */
                ei_x_buff x;
                if (cn_x_new(&x) == 0 &&
                    cn_x_append_term(&x, (cn_term_t){ m->buf, j, m->len }) == 0) {
                    cn_msg_free(m);
                    gs_stop(gs, &x);
                }
                cn_msg_free(m);
                stop_with(gs, "shutdown");
            }
            if (gs->cb->handle_info) {
                cur_gs = gs;
                rc = gs->cb->handle_info(gs->state, cn_msg_term(m));
                cur_gs = NULL;
            }
        }
        cn_msg_free(m);
        if (rc == CN_GS_STOP && stop.buff)
            gs_stop(gs, &stop);
        if (rc == CN_GS_STOP)
            stop_with(gs, gs->stop_reason);
    }
}

static void gs_main(void *arg)
{
    gs_t *gs = arg;
    if (cn_on_exit(on_gs_exit, gs) < 0) {
        if (gs->linked)
            cn_unlink(gs->parent);
        if (gs->sync)
            send_ack(gs, -ENOMEM);
        cn__free(gs);
        cn_exit("no_memory");
    }
    if (gs->trap_exit)
        cn_trap_exit(true);
    if (gs->name) {
        int rc = cn_register(gs->name, gs->self);
        if (rc < 0)
            init_failed(gs, rc == -EBUSY ? -EEXIST : rc);
    }
    int rc = gs->cb->init ? gs->cb->init(gs->arg, &gs->state) : 0;
    if (rc < 0)
        init_failed(gs, rc);
    gs->inited = true;
    gs->name = NULL;
    if (gs->sync)
        send_ack(gs, 0);
    gs_loop(gs);
}

static int start(cn_node_t *node, const cn_module_t *mod, const cn_gen_server_t *cb, void *arg,
                 const cn_gen_server_opts_t *opts, cn_pid_t *out);

static bool match_ack(const cn_msg_t *m, void *arg)
{
    const cn_ref_t *want = arg;
    int i = 1, arity;
    cn_ref_t ref;
    return ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity == 3 &&
           cn_decode_atom_is(m->buf, &i, "$cn_ack") && cn_decode_ref(m->buf, &i, &ref) == 0 &&
           cn_ref_eq(&ref, want);
}

int cn_gen_server_start(cn_node_t *node, const cn_gen_server_t *cb, void *arg,
                        const cn_gen_server_opts_t *opts, cn_pid_t *out)
{
    return start(node, NULL, cb, arg, opts, out);
}

int cn_gen_server_start_module(cn_node_t *node, const cn_module_t *mod, void *arg,
                               const cn_gen_server_opts_t *opts, cn_pid_t *out)
{
    if (mod == NULL || mod->callbacks == NULL)
        return -EINVAL;
    return start(node, mod, mod->callbacks, arg, opts, out);
}

static int start(cn_node_t *node, const cn_module_t *mod, const cn_gen_server_t *cb, void *arg,
                 const cn_gen_server_opts_t *opts, cn_pid_t *out)
{
    cn_gen_server_opts_t o = { 0 };
    if (opts)
        o = *opts;
    if (node == NULL || cb == NULL)
        return -EINVAL;
    cn_node_t *prev = cn__cur_node;
    bool in_proc = prev == node && node->current != NULL;
    if (o.link && !in_proc)
        return -EINVAL;
    if (o.name) {
        cn__cur_node = node;
        cn_pid_t existing;
        int rc = cn_whereis(o.name, &existing);
        cn__cur_node = prev;
        if (rc == 0)
            return -EEXIST;
    }

    gs_t *gs = cn__calloc(1, sizeof(*gs));
    if (gs == NULL)
        return -ENOMEM;
    gs->cb = cb;
    gs->mod = mod;
    gs->arg = arg;
    gs->trap_exit = o.trap_exit;
    gs->linked = o.link;
    gs->sync = in_proc;
    gs->name = o.name;
    cn_mark_t mark = { NULL };
    if (in_proc) {
        gs->parent = node->current->pid;
        gs->ack_ref = cn_make_ref();
        mark = cn_mbox_mark();
    }
    cn_spawn_opts_t so = o.spawn;
    so.flags &= ~(CN_SPAWN_LINK | CN_SPAWN_MONITOR);
    if (o.link)
        so.flags |= CN_SPAWN_LINK;
    so.mref = NULL;
    cn_pid_t pid;
    int rc = cn_spawn(node, gs_main, gs, &so, &pid);
    if (rc < 0) {
        cn__free(gs);
        return rc;
    }
    gs->self = pid;
    if (!in_proc) {
        gs->name = NULL; /* registration of a not-waited-for server: see below */
        if (o.name) {
            cn__cur_node = node;
            rc = cn_register(o.name, pid);
            cn__cur_node = prev;
            if (rc < 0)
                return rc; /* it runs unnamed; the caller decides */
        }
        if (out)
            *out = pid;
        return 0;
    }

    /* gs belongs to the server now and goes when it exits: keep our own copy. */
    cn_ref_t ack_ref = gs->ack_ref;
    cn_msg_t *m;
    int64_t tmo = o.timeout_ms ? o.timeout_ms : 5000;
    rc = cn_receive_mark(mark, match_ack, &ack_ref, tmo, &m);
    if (rc < 0) {
        /* init hangs: kill it (its links see `killed`; ours first goes away) */
        if (o.link)
            cn_unlink(pid);
        cn_exit_pid(pid, "kill");
        return -ETIMEDOUT;
    }
    int i = 1, arity;
    long code = 0;
    ei_decode_tuple_header(m->buf, &i, &arity);
    ei_skip_term(m->buf, &i);
    ei_skip_term(m->buf, &i);
    ei_decode_long(m->buf, &i, &code);
    cn_msg_free(m);
    if (code < 0)
        return (int)code;
    if (out)
        *out = pid;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Stop and code change from outside
 * ------------------------------------------------------------------------------ */

int cn_gen_server_stop(cn_dest_t dest, const char *reason, int64_t timeout_ms)
{
    cn_node_t *n = cn__cur_node;
    cn_pid_t to;
    int rc;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    if ((rc = resolve(n, dest, &to)) < 0)
        return rc;
    cn_mark_t mark = cn_mbox_mark();
    cn_ref_t mref;
    if ((rc = cn_monitor(to, &mref)) < 0)
        return rc;
    ei_x_buff x;
    if (cn_x_new(&x) < 0) {
        cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
        return -ENOMEM;
    }
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "system");
    ei_x_encode_tuple_header(&x, 2);
    cn_x_encode_pid(&x, n->current->pid);
    cn_x_encode_ref(&x, &mref);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "terminate");
    ei_x_encode_atom(&x, reason ? reason : "normal");
    cn_send(to, &x);
    cn_msg_t *m;
    rc = cn_receive_mark(mark, cn__match_down, &mref, timeout_ms, &m);
    if (rc < 0) {
        cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
        return rc;
    }
    int i = 1, arity;
    ei_decode_tuple_header(m->buf, &i, &arity);
    for (int k = 0; k < 4; k++)
        ei_skip_term(m->buf, &i);
    bool noproc = cn_decode_atom_is(m->buf, &i, "noproc");
    cn_msg_free(m);
    return noproc ? -ESRCH : 0;
}

int cn__sys_call(cn_dest_t dest, ei_x_buff *msg, int64_t timeout_ms, cn_msg_t **out,
                 cn_term_t *reply)
{
    cn_node_t *n = cn__cur_node;
    cn_pid_t to;
    int rc;
    *out = NULL;
    if (n == NULL || n->current == NULL) {
        x_reset(msg);
        return -EINVAL;
    }
    if ((rc = resolve(n, dest, &to)) < 0) {
        x_reset(msg);
        return rc;
    }
    /* Same shape as a call, with the 'system' tag (what sys sends). */
    cn_mark_t mark = cn_mbox_mark();
    cn_ref_t mref;
    if ((rc = cn_monitor(to, &mref)) < 0) {
        x_reset(msg);
        return rc;
    }
    ei_x_buff x;
    if (cn_x_new(&x) < 0) {
        x_reset(msg);
        cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
        return -ENOMEM;
    }
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "system");
    ei_x_encode_tuple_header(&x, 2);
    cn_x_encode_pid(&x, n->current->pid);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_atom(&x, "alias");
    cn_x_encode_ref(&x, &mref);
    rc = append_body(&x, msg);
    x_reset(msg);
    if (rc < 0 || cn__alias_activate(n, n->current, &mref) < 0) {
        ei_x_free(&x);
        cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
        return rc < 0 ? rc : -ENOMEM;
    }
    cn_send(to, &x);
    cn_msg_t *m;
    call_match_t cm = { &mref, NULL, 0 };
    rc = cn_receive_mark(mark, match_call, &cm, timeout_ms, &m);
    cn__alias_deactivate(n, n->current);
    cn_demonitor(&mref, CN_DEMONITOR_FLUSH);
    if (rc < 0)
        return rc;
    int i = 1, arity;
    ei_decode_tuple_header(m->buf, &i, &arity);
    if (arity == 5) {
        cn_msg_free(m);
        return -ESRCH;
    }
    ei_skip_term(m->buf, &i); /* the tag */
    *out = m;
    *reply = (cn_term_t){ m->buf, i, m->len };
    return 0;
}

int cn_gen_server_code_change(cn_dest_t dest, ei_x_buff *extra, int64_t timeout_ms)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0) {
        if (extra)
            x_reset(extra);
        return -ENOMEM;
    }
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "change_code");
    ei_x_encode_atom(&x, "cnode");
    ei_x_encode_atom(&x, "undefined");
    int rc = 0;
    if (extra && extra->buff && extra->index > 1)
        rc = append_body(&x, extra);
    else
        ei_x_encode_atom(&x, "undefined");
    if (extra)
        x_reset(extra);
    if (rc < 0) {
        ei_x_free(&x);
        return rc;
    }
    cn_msg_t *m;
    cn_term_t r;
    if ((rc = cn__sys_call(dest, &x, timeout_ms, &m, &r)) < 0)
        return rc;
    int i = r.index, arity;
    long code = -EINVAL;
    if (cn_decode_atom_is(m->buf, &i, "ok")) {
        code = 0;
    } else if (ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity == 2) {
        /* {error, {Code, Text}} */
        ei_skip_term(m->buf, &i);
        if (ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity == 2)
            ei_decode_long(m->buf, &i, &code);
    }
    cn_msg_free(m);
    return (int)code;
}

/* A system message whose reply is the atom `ok`. */
static int sys_ok(cn_dest_t dest, const char *atom, int64_t timeout_ms)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    ei_x_encode_atom(&x, atom);
    cn_msg_t *m;
    cn_term_t r;
    int rc = cn__sys_call(dest, &x, timeout_ms, &m, &r);
    if (rc < 0)
        return rc;
    int i = r.index;
    rc = cn_decode_atom_is(m->buf, &i, "ok") ? 0 : -EPROTO;
    cn_msg_free(m);
    return rc;
}

int cn_gen_server_suspend(cn_dest_t dest, int64_t timeout_ms)
{
    return sys_ok(dest, "suspend", timeout_ms);
}

int cn_gen_server_resume(cn_dest_t dest, int64_t timeout_ms)
{
    return sys_ok(dest, "resume", timeout_ms);
}
