/* vproc.c - virtual processes: the `vproc` process of a node, the activations
 * it starts, and the caller's side (cn_vproc_call).
 *
 * The `vproc` process (the *router*) owns the key table: canonical key ->
 * activation pid. A call {'$gen_call', From, {'$vp', Type, Key, Req, Hops}}
 * arrives here; if this node owns the key in its view (or Hops >= 2), the
 * message itself is passed on to the activation (cn_send_msg, no copy), which
 * answers From directly; otherwise From gets {'$vp_redirect', Owner}. Without an
 * activation, one is spawned (linked to the router, so the router's death ends
 * them all) and the message queued to it at once: the activation loads the
 * state while the router goes on.
 *
 * An activation is one process per key: load (store->load), activate, then
 * serve calls in mailbox order. A call that changed the state is saved with
 * the version it read before its reply is sent (write-through); a -ESTALE save
 * means another activation of the key wrote first, so the state is reloaded
 * and the request run again on it (at most a few times).
 *
 * Ends of an activation, all through the router so that it never forwards a
 * call to a process that is about to exit without reading it:
 *   idle      no call for idle_ms: the activation sends {'$vp_idle', ...}; the
 *             router marks the entry `stopping` and sends '$vp_stop'. Calls the
 *             router forwarded before are ahead of the stop in the mailbox and
 *             are served first; later calls start a successor.
 *   moved     every check_ms the router compares each type's membership with
 *             what it saw; after a change, every key whose owner is now another
 *             node gets '$vp_stop' the same way.
 *   leave     cn_vproc_leave: every entry.
 * Two ends do not go through the router: a failed load (every queued call
 * gets {error, activate}) and a failed save (queued calls get a redirect to
 * this node, so their callers send them again to a successor). Both answer
 * what is queued and exit without yielding, and a call the router forwards to
 * an exited activation (-ESRCH) is answered with the same redirect.
 * A successor of a stopping activation waits for its predecessor's exit before
 * it loads, so on one node a key never has two live states. Across nodes (two
 * views of the membership) the store's version check keeps writes ordered.
 * Whenever an activation ends, its exit hook frees the state and sends
 * {'$vp_gone', Pid, Type, Key} so the router drops the entry if it is still its.
 */
#include "vproc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "telemetry_int.h"

#define ROUTER_NAME "vproc"
#define ACCEPT_HOPS 2        /* from this many redirects on, serve whatever the view */
#define CONFLICT_RETRIES 4   /* reload-and-rerun attempts after -ESTALE */

/* ---------------------------------------------------------------------------------
 * State and references
 * ------------------------------------------------------------------------------ */

static cn__vproc_t *vp_of(cn_node_t *n)
{
    return n ? n->vproc : NULL;
}

static void vp_ref(cn__vproc_t *vp)
{
    vp->refs++;
}

static void vp_unref(cn__vproc_t *vp)
{
    if (--vp->refs > 0)
        return;
    for (size_t b = 0; b < vp->nbuckets; b++) {
        for (vp_entry_t *e = vp->buckets[b], *next; e; e = next) {
            next = e->next;
            cn__free(e);
        }
    }
    cn__free(vp->buckets);
    for (int k = 0; k < vp->ntypes; k++)
        cn__free(vp->types[k]);
    cn__free(vp->types);
    if (vp->kx.buff)
        ei_x_free(&vp->kx);
    if (vp->node && vp->node->vproc == vp)
        vp->node->vproc = NULL;
    cn__free(vp);
}

/* "vproc:TYPE", the cluster service of a type, into out (CN_VPROC_TYPE_MAX + 8
 * bytes). -EINVAL when the type name is too long. */
static int service_name(char *out, const char *type)
{
    size_t l = strlen(type);
    if (l >= CN_VPROC_TYPE_MAX)
        return -EINVAL;
    memcpy(out, "vproc:", 6);
    memcpy(out + 6, type, l + 1);
    return 0;
}

static int type_find(cn__vproc_t *vp, const char *name)
{
    for (int i = 0; i < vp->ntypes; i++)
        if (vp->types[i]->name[0] != '\0' && strcmp(vp->types[i]->name, name) == 0)
            return i;
    return -1;
}

/* ---------------------------------------------------------------------------------
 * Key table
 * ------------------------------------------------------------------------------ */

static vp_entry_t **entry_slot(cn__vproc_t *vp, int type, uint64_t h, const char *key,
                               size_t klen)
{
    vp_entry_t **pp = &vp->buckets[h & (vp->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next) {
        vp_entry_t *e = *pp;
        if (e->hash == h && e->type == type && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return pp;
    }
    return pp;
}

static int table_grow(cn__vproc_t *vp)
{
    size_t nb = vp->nbuckets ? vp->nbuckets * 2 : 1024;
    vp_entry_t **b = cn__calloc(nb, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < vp->nbuckets; i++) {
        for (vp_entry_t *e = vp->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    cn__free(vp->buckets);
    vp->buckets = b;
    vp->nbuckets = nb;
    return 0;
}

static vp_entry_t *entry_add(cn__vproc_t *vp, int type, uint64_t h, const char *key,
                             size_t klen)
{
    if (vp->nentries + 1 > vp->nbuckets && table_grow(vp) < 0)
        return NULL;
    vp_entry_t *e = cn__calloc(1, sizeof(*e) + klen);
    if (e == NULL)
        return NULL;
    e->hash = h;
    e->type = type;
    e->klen = klen;
    memcpy(e->key, key, klen);
    vp_entry_t **pp = &vp->buckets[h & (vp->nbuckets - 1)];
    e->next = *pp;
    *pp = e;
    vp->nentries++;
    return e;
}

/* ---------------------------------------------------------------------------------
 * Small message helpers
 * ------------------------------------------------------------------------------ */

static void reply_error(const cn_from_t *from, const char *reason)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 2) < 0 || ei_x_encode_atom(&x, "error") < 0 ||
        ei_x_encode_atom(&x, reason) < 0) {
        ei_x_free(&x);
        return;
    }
    cn_gen_reply(from, &x);
}

static void reply_redirect(const cn_from_t *from, const char *node)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 2) < 0 || ei_x_encode_atom(&x, "$vp_redirect") < 0 ||
        ei_x_encode_atom(&x, node) < 0) {
        ei_x_free(&x);
        return;
    }
    cn_gen_reply(from, &x);
}

/* {Tag, Pid, TypeIndex, KeyBinary} to pid. */
static void send_note(cn_pid_t to, const char *tag, cn_pid_t pid, int type, const char *key,
                      size_t klen)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 4) < 0 || ei_x_encode_atom(&x, tag) < 0 ||
        cn_x_encode_pid(&x, pid) < 0 || ei_x_encode_long(&x, type) < 0 ||
        ei_x_encode_binary(&x, key, (long)klen) < 0) {
        ei_x_free(&x);
        return;
    }
    cn_send(to, &x);
}

static void send_atom(cn_pid_t to, const char *atom)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    if (ei_x_encode_atom(&x, atom) < 0) {
        ei_x_free(&x);
        return;
    }
    cn_send(to, &x);
}

/* The parts of a routed call. `req` spans the request term; `key` the key as
 * sent (not canonical). */
typedef struct vp_call {
    cn_from_t from;
    char type[MAXATOMLEN_UTF8];
    int key_at;                       /* offset of the key term */
    cn_term_t req;
    long hops;                        /* -1: {call, ...} from Erlang */
    int body_at, body_end;            /* the request tuple (after unwrapping) */
} vp_call_t;

/* Decode {'$gen_call', From, Body} with Body {'$vp', Type, Key, Req, Hops} or
 * {call, Type, Key, Req}, possibly wrapped in {'$cn_trace', _, Body}. */
static int decode_call(const cn_msg_t *m, vp_call_t *c)
{
    const char *buf = m->buf;
    int i = 1, arity;
    if (ei_decode_tuple_header(buf, &i, &arity) < 0 || arity != 3 ||
        !cn_decode_atom_is(buf, &i, "$gen_call") || cn__decode_from(buf, &i, &c->from) < 0)
        return -EINVAL;
    cn_term_t body = { buf, i, m->len };
    cn_span_ctx_t ctx;
    cn__tel_unwrap(&body, &ctx);
    i = body.index;
    c->body_at = i;
    if (ei_decode_tuple_header(buf, &i, &arity) < 0)
        return -EBADMSG;
    if (arity == 5 && cn_decode_atom_is(buf, &i, "$vp"))
        c->hops = 0;
    else if (arity == 4 && cn_decode_atom_is(buf, &i, "call"))
        c->hops = -1;
    else
        return -EBADMSG;
    if (ei_decode_atom(buf, &i, c->type) < 0)
        return -EBADMSG;
    c->key_at = i;
    if (ei_skip_term(buf, &i) < 0)
        return -EBADMSG;
    c->req.buf = buf;
    c->req.index = i;
    c->req.len = m->len;
    if (ei_skip_term(buf, &i) < 0)
        return -EBADMSG;
    if (c->hops == 0 && (ei_decode_long(buf, &i, &c->hops) < 0 || c->hops < 0))
        return -EBADMSG;
    if (i > m->len)
        return -EBADMSG;
    c->body_end = i;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Activations
 * ------------------------------------------------------------------------------ */

typedef struct vp_act {
    cn__vproc_t *vp;
    int type;
    cn_pid_t self, prev;              /* prev: predecessor to wait for, or nil */
    void *state;
    bool has_state;
    int64_t version;                  /* the stored version the state came from */
    /* What a call in progress owns, here rather than on the stack so that the
     * exit hook frees it when the activation is killed while parked (in the
     * store, or in a blocking callback): buff NULL / cur NULL when not in use. */
    cn_msg_t *cur;                    /* the call message being served */
    ei_x_buff lx, rx, sx;             /* loaded bytes, the reply, saved bytes */
    size_t klen;
    char key[];                       /* canonical key */
} vp_act_t;

static void x_drop(ei_x_buff *x)
{
    if (x->buff)
        ei_x_free(x);
    x->buff = NULL;
    x->index = x->buffsz = 0;
}

static void act_drop_state(vp_act_t *a)
{
    const cn_vproc_type_t *t = &a->vp->types[a->type]->cb;
    if (a->has_state && t->deactivate)
        t->deactivate(a->state);
    a->has_state = false;
    a->state = NULL;
}

/* Exit hook: on every end, also when killed. */
static void act_exit(void *arg)
{
    vp_act_t *a = arg;
    cn__vproc_t *vp = a->vp;
    act_drop_state(a);
    cn_msg_free(a->cur);
    x_drop(&a->lx);
    x_drop(&a->rx);
    x_drop(&a->sx);
    vp->st.active--;
    send_note(vp->router, "$vp_gone", a->self, a->type, a->key, a->klen);
    vp_unref(vp);
    cn__free(a);
}

/* Load the key's state from the store and activate it. 0 or a negative code. */
static int act_load(vp_act_t *a)
{
    cn__vproc_t *vp = a->vp;
    const vp_type_t *t = vp->types[a->type];
    ei_x_buff *x = &a->lx;
    if (ei_x_new(x) < 0) {
        x->buff = NULL;
        return -ENOMEM;
    }
    int64_t version = 0;
    int rc = vp->store->ops->load(vp->store, t->name, a->key, a->klen, x, &version);
    if (rc == -ENOENT) {
        version = 0;
        rc = 0;
    }
    if (rc < 0) {
        vp->st.store_errors++;
        x_drop(x);
        return rc;
    }
    cn_term_t key = { a->key, 0, (int)a->klen };
    void *state = NULL;
    rc = t->cb.activate(t->cb.ud, key, version ? x->buff : NULL, version ? (size_t)x->index : 0,
                        &state);
    x_drop(x);
    if (rc < 0)
        return rc;
    a->state = state;
    a->has_state = true;
    a->version = version;
    return 0;
}

/* Serve one forwarded call message. Returns false when the activation must end
 * (its state may differ from the store). */
static bool act_serve(vp_act_t *a, const cn_msg_t *m)
{
    cn__vproc_t *vp = a->vp;
    const vp_type_t *t = vp->types[a->type];
    vp_call_t c;
    int rc = decode_call(m, &c);
    if (rc == -EINVAL)
        return true;
    if (rc < 0) {
        reply_error(&c.from, "badarg");
        return true;
    }
    if (!a->has_state) {
        reply_error(&c.from, "activate");
        return true;
    }
    ei_x_buff *x = &a->rx, *sb = &a->sx;
    if (cn_x_new(x) < 0) {
        x->buff = NULL;
        return true;
    }
    if (ei_x_encode_tuple_header(x, 2) < 0 || ei_x_append_buf(x, c.from.tag, c.from.taglen) < 0) {
        x_drop(x);
        return true;
    }
    int prefix = x->index;
    bool keep = true;
    for (int attempt = 0;; attempt++) {
        x->index = prefix;
        rc = t->cb.handle_call(a->state, c.req, x);
        vp->st.calls++;
        if (rc < 0) {
            x->index = prefix;
            ei_x_encode_tuple_header(x, 2);
            ei_x_encode_atom(x, "error");
            ei_x_encode_long(x, rc);
            break;
        }
        if (x->index == prefix)
            ei_x_encode_atom(x, "ok");
        if (rc != CN_VPROC_WRITE)
            break;
        bool cb_failed = false;
        if (ei_x_new(sb) < 0) {
            sb->buff = NULL;
            rc = -ENOMEM;
        } else {
            rc = t->cb.save(a->state, sb);
            cb_failed = rc < 0;
            if (rc == 0)
                rc = vp->store->ops->save(vp->store, t->name, a->key, a->klen, a->version,
                                          sb->buff, (size_t)sb->index);
            x_drop(sb);
        }
        if (rc == 0) {
            a->version++;
            vp->st.writes++;
            break;
        }
        x->index = prefix;
        if (rc == -ESTALE && attempt + 1 < CONFLICT_RETRIES) {
            /* A newer activation elsewhere wrote first: take its state and run
             * the request again on it. */
            vp->st.conflicts++;
            act_drop_state(a);
            if (act_load(a) == 0)
                continue;
            ei_x_encode_tuple_header(x, 2);
            ei_x_encode_atom(x, "error");
            ei_x_encode_atom(x, "store");
            keep = false;
            break;
        }
        if (rc == -ESTALE)
            vp->st.conflicts++;
        else if (!cb_failed)
            vp->st.store_errors++;
        /* Not saved: the state in memory is ahead of the store. End; the next
         * call loads what the store has. */
        ei_x_encode_tuple_header(x, 2);
        ei_x_encode_atom(x, "error");
        ei_x_encode_atom(x, cb_failed ? "save" : "store");
        keep = false;
        break;
    }
    cn__reply_send(cn__cur_node, c.from.pid, c.from.tag, c.from.taglen, x);
    x->buff = NULL; /* consumed */
    return keep;
}

static bool is_atom_msg(const cn_msg_t *m, const char *atom)
{
    int i = 1;
    return cn_decode_atom_is(m->buf, &i, atom);
}

static void act_main(void *arg)
{
    vp_act_t *a = arg;
    cn__vproc_t *vp = a->vp;
    const vp_type_t *t = vp->types[a->type];
    int idle_ms = t->cb.idle_ms > 0 ? t->cb.idle_ms : 60000;

    if (!cn_pid_is_nil(a->prev)) {
        /* One live state per key on this node: the predecessor serves what was
         * queued to it before we load. */
        cn_ref_t ref;
        cn_msg_t *m;
        if (cn_monitor(a->prev, &ref) == 0 && cn_receive(cn__match_down, &ref, 30000, &m) == 0)
            cn_msg_free(m);
    }
    if (act_load(a) < 0) {
        /* Answer what is queued, then end; the router starts a new activation
         * for the next call. No yield between the last look and the exit, so
         * nothing the router sends can be left unanswered. */
        cn_msg_t *m;
        while (cn_receive(NULL, NULL, 0, &m) == 0) {
            act_serve(a, m);
            cn_msg_free(m);
        }
        cn_exit("normal");
    }
    for (;;) {
        cn_msg_t *m;
        if (cn_receive(NULL, NULL, idle_ms, &m) < 0) {
            send_note(vp->router, "$vp_idle", a->self, a->type, a->key, a->klen);
            continue;
        }
        if (is_atom_msg(m, "$vp_stop")) {
            cn_msg_free(m);
            break;
        }
        a->cur = m; /* the exit hook frees it if we are killed while serving */
        bool keep = act_serve(a, m);
        a->cur = NULL;
        cn_msg_free(m);
        if (!keep) {
            /* The calls already queued here go back to their callers as a
             * redirect to this node: they send again and find the entry gone or
             * stopping, so a successor serves them from the store's state. No
             * yield until the exit, so the router cannot queue more meanwhile. */
            cn_msg_t *q;
            while (cn_receive(NULL, NULL, 0, &q) == 0) {
                vp_call_t c;
                if (decode_call(q, &c) == 0) {
                    vp->st.redirects++;
                    reply_redirect(&c.from, vp->node->name);
                }
                cn_msg_free(q);
            }
            break;
        }
    }
    cn_exit("normal");
}

/* ---------------------------------------------------------------------------------
 * The router
 * ------------------------------------------------------------------------------ */

/* Start an activation for (type, key) and return its entry (replacing a
 * stopping one), or NULL. */
static vp_entry_t *activate_key(cn__vproc_t *vp, int type, uint64_t h, const char *key,
                                size_t klen, vp_entry_t **slot)
{
    vp_act_t *a = cn__calloc(1, sizeof(*a) + klen);
    if (a == NULL)
        return NULL;
    a->vp = vp;
    a->type = type;
    a->klen = klen;
    memcpy(a->key, key, klen);
    vp_entry_t *e = *slot;
    if (e)
        a->prev = e->pid;
    cn_spawn_opts_t so = { .flags = CN_SPAWN_LINK };
    cn_pid_t pid;
    if (cn_spawn(vp->node, act_main, a, &so, &pid) < 0) {
        cn__free(a);
        return NULL;
    }
    /* The exit handler goes on now, not when it first runs: an activation
     * killed before that (its router died, the node is freed) still releases
     * its reference and memory. */
    a->self = pid;
    if (cn__on_exit_of(vp->node, pid, act_exit, a) < 0) {
        /* It dies before running, so it frees nothing of ours; unlinked
         * first, or its death would take the router with it. */
        cn_unlink(pid);
        cn_exit_pid(pid, "kill");
        cn__free(a);
        return NULL;
    }
    vp_ref(vp);
    vp->st.active++;
    vp->st.activations++;
    if (e == NULL && (e = entry_add(vp, type, h, key, klen)) == NULL) {
        /* The activation runs without an entry: it serves nothing and idles out. */
        return NULL;
    }
    e->pid = pid;
    e->stopping = false;
    return e;
}

/* Forward an Erlang {call, Type, Key, Req} to the owner's router as a '$vp'
 * call that will be served there (Hops = ACCEPT_HOPS), keeping From. */
static void forward_erlang(cn__vproc_t *vp, const cn_msg_t *m, const vp_call_t *c,
                           const char *owner, const char *kbuf, int klen)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    int rc = ei_x_encode_tuple_header(&x, 3) | ei_x_encode_atom(&x, "$gen_call") |
             ei_x_encode_tuple_header(&x, 2) | cn_x_encode_pid(&x, c->from.pid) |
             ei_x_append_buf(&x, c->from.tag, c->from.taglen) |
             ei_x_encode_tuple_header(&x, 5) | ei_x_encode_atom(&x, "$vp") |
             ei_x_encode_atom(&x, c->type) | ei_x_append_buf(&x, kbuf, klen);
    int rs = c->req.index, re = rs;
    ei_skip_term(m->buf, &re);
    rc |= ei_x_append_buf(&x, m->buf + rs, re - rs) | ei_x_encode_long(&x, ACCEPT_HOPS);
    if (rc < 0) {
        ei_x_free(&x);
        return;
    }
    vp->st.forwards++;
    cn_send_name_at(ROUTER_NAME, owner, &x);
}

static void route_call(cn__vproc_t *vp, cn_msg_t *m, ei_x_buff *kx)
{
    vp_call_t c;
    int rc = decode_call(m, &c);
    if (rc == -EINVAL) {
        cn_msg_free(m);
        return;
    }
    if (rc < 0) {
        reply_error(&c.from, "badarg");
        cn_msg_free(m);
        return;
    }
    kx->index = 0;
    int ki = c.key_at;
    if (cn__vproc_key_canon(m->buf, &ki, kx) < 0) {
        reply_error(&c.from, "badkey");
        cn_msg_free(m);
        return;
    }
    uint64_t h = cn__vproc_hash(kx->buff, (size_t)kx->index);
    int type = type_find(vp, c.type);
    bool accept = c.hops >= ACCEPT_HOPS && type >= 0 && !vp->leaving;
    if (!accept && vp->node->cluster) {
        char service[CN_VPROC_TYPE_MAX + 8];
        const char *owner;
        if (service_name(service, c.type) == 0 &&
            cn__vproc_owner_of(vp->node, service, h, &owner) == 0 &&
            strcmp(owner, vp->node->name) != 0) {
            if (c.hops < 0) {
                forward_erlang(vp, m, &c, owner, kx->buff, kx->index);
            } else {
                vp->st.redirects++;
                reply_redirect(&c.from, owner);
            }
            cn_msg_free(m);
            return;
        }
    }
    if (type < 0 || vp->leaving) {
        reply_error(&c.from, "notype");
        cn_msg_free(m);
        return;
    }
    vp_entry_t **slot = entry_slot(vp, type, h, kx->buff, (size_t)kx->index);
    vp_entry_t *e = *slot;
    if (e && !e->stopping) {
        rc = cn_send_msg(e->pid, m);
        if (rc != -ESRCH)
            return;
        /* It exited and its '$vp_gone' is still queued behind us: the message
         * was dropped (the caller monitors us, not it, and would wait for its
         * timeout). Answer with a redirect to ourselves; the caller sends
         * again and finds the entry stopping, so a successor starts. */
        e->stopping = true;
        vp->st.redirects++;
        reply_redirect(&c.from, vp->node->name);
        return;
    }
    if ((uint64_t)vp->max_activations <= vp->st.active) {
        reply_error(&c.from, "busy");
        cn_msg_free(m);
        return;
    }
    e = activate_key(vp, type, h, kx->buff, (size_t)kx->index, slot);
    if (e == NULL) {
        reply_error(&c.from, "busy");
        cn_msg_free(m);
        return;
    }
    cn_send_msg(e->pid, m);
}

/* {'$vp_idle' | '$vp_gone', Pid, Type, Key} from an activation. */
static void activation_note(cn__vproc_t *vp, const cn_msg_t *m, bool gone)
{
    int i = 1, arity;
    cn_pid_t pid;
    long type;
    char key[CN_VPROC_KEY_MAX];
    long klen;
    int t, sz;
    if (ei_decode_tuple_header(m->buf, &i, &arity) < 0 || arity != 4 ||
        ei_skip_term(m->buf, &i) < 0 || cn_decode_pid(m->buf, &i, &pid) < 0 ||
        ei_decode_long(m->buf, &i, &type) < 0 || type < 0 || type >= vp->ntypes ||
        ei_get_type(m->buf, &i, &t, &sz) < 0 || sz > CN_VPROC_KEY_MAX ||
        ei_decode_binary(m->buf, &i, key, &klen) < 0)
        return;
    uint64_t h = cn__vproc_hash(key, (size_t)klen);
    vp_entry_t **slot = entry_slot(vp, (int)type, h, key, (size_t)klen);
    vp_entry_t *e = *slot;
    if (e == NULL || !cn_pid_eq(e->pid, pid)) {
        /* A successor owns the entry now, or the activation never had one
         * (no memory for it): an idle one can go. */
        if (!gone)
            send_atom(pid, "$vp_stop");
        return;
    }
    if (gone) {
        *slot = e->next;
        cn__free(e);
        vp->nentries--;
    } else if (!e->stopping) {
        e->stopping = true;
        vp->st.idle_stops++;
        send_atom(pid, "$vp_stop");
    }
}

/* After a membership change of some type, stop the keys now owned elsewhere. */
static void check_views(cn__vproc_t *vp)
{
    if (vp->node->cluster == NULL)
        return;
    bool changed_any = false;
    bool changed[vp->ntypes > 0 ? vp->ntypes : 1];
    for (int k = 0; k < vp->ntypes; k++) {
        uint64_t sig = cn__vproc_view_sig(vp->node, vp->types[k]->service);
        changed[k] = sig != vp->types[k]->view_sig;
        vp->types[k]->view_sig = sig;
        changed_any |= changed[k];
    }
    if (!changed_any)
        return;
    for (size_t b = 0; b < vp->nbuckets; b++) {
        for (vp_entry_t *e = vp->buckets[b]; e; e = e->next) {
            if (e->stopping || !changed[e->type])
                continue;
            const char *owner;
            if (cn__vproc_owner_of(vp->node, vp->types[e->type]->service, e->hash, &owner) == 0 &&
                strcmp(owner, vp->node->name) == 0)
                continue;
            e->stopping = true;
            vp->st.moved_stops++;
            send_atom(e->pid, "$vp_stop");
        }
    }
}

static void stop_all(cn__vproc_t *vp)
{
    for (size_t b = 0; b < vp->nbuckets; b++) {
        for (vp_entry_t *e = vp->buckets[b]; e; e = e->next) {
            if (!e->stopping) {
                e->stopping = true;
                vp->st.moved_stops++;
                send_atom(e->pid, "$vp_stop");
            }
        }
    }
}

static void router_exit(void *arg)
{
    vp_unref(arg);
}

static void router_main(void *arg)
{
    cn__vproc_t *vp = arg; /* router_exit is registered by cn_vproc_start */
    /* Freed with the state: the router usually ends killed. */
    if (ei_x_new(&vp->kx) < 0)
        cn_exit("enomem");
    uint64_t next_check = cn_now_ms() + (uint64_t)vp->check_ms;
    for (;;) {
        uint64_t now = cn_now_ms();
        if (now >= next_check) {
            check_views(vp);
            next_check = now + (uint64_t)vp->check_ms;
        }
        cn_msg_t *m;
        if (cn_receive(NULL, NULL, (int64_t)(next_check - now), &m) < 0)
            continue;
        int i = 1, arity;
        char tag[MAXATOMLEN_UTF8];
        if (ei_decode_tuple_header(m->buf, &i, &arity) < 0 || ei_decode_atom(m->buf, &i, tag) < 0) {
            if (is_atom_msg(m, "$vp_leave"))
                stop_all(vp);
            cn_msg_free(m);
            continue;
        }
        if (strcmp(tag, "$gen_call") == 0) {
            route_call(vp, m, &vp->kx); /* takes m */
            continue;
        }
        if (strcmp(tag, "$vp_gone") == 0)
            activation_note(vp, m, true);
        else if (strcmp(tag, "$vp_idle") == 0)
            activation_note(vp, m, false);
        cn_msg_free(m);
    }
}

/* ---------------------------------------------------------------------------------
 * Public API: nodes
 * ------------------------------------------------------------------------------ */

int cn_vproc_start(cn_node_t *node, const cn_vproc_opts_t *opts)
{
    if (node == NULL || opts == NULL || opts->store == NULL || opts->store->ops == NULL)
        return -EINVAL;
    if (node->vproc)
        return -EALREADY;
    cn__vproc_t *vp = cn__calloc(1, sizeof(*vp));
    if (vp == NULL)
        return -ENOMEM;
    vp->node = node;
    vp->refs = 1;
    vp->store = opts->store;
    vp->check_ms = opts->check_ms > 0 ? opts->check_ms : 100;
    vp->max_activations = opts->max_activations > 0 ? opts->max_activations : 1000000;
    if (table_grow(vp) < 0) {
        cn__free(vp);
        return -ENOMEM;
    }
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK, .stack_size = 128 << 10 };
    int rc = cn_spawn(node, router_main, vp, &so, &vp->router);
    if (rc < 0) {
        cn__free(vp->buckets);
        cn__free(vp);
        return rc;
    }
    cn_node_t *saved = cn__cur_node;
    cn__cur_node = node;
    /* The exit hook goes on now, not when the router first runs: a router
     * killed before that (a failed registration below, a node freed without
     * running) still releases the state. Without the hook it frees nothing. */
    if (cn__on_exit_of(node, vp->router, router_exit, vp) < 0) {
        cn_exit_pid(vp->router, "kill");
        cn__cur_node = saved;
        cn__free(vp->buckets);
        cn__free(vp);
        return -ENOMEM;
    }
    /* Registered now, so a call can find it before the router first runs. */
    rc = cn_register(ROUTER_NAME, vp->router);
    if (rc < 0)
        cn_exit_pid(vp->router, "kill"); /* router_exit frees vp */
    cn__cur_node = saved;
    if (rc < 0)
        return rc;
    node->vproc = vp;
    return 0;
}

void cn_vproc_store_free(cn_vproc_store_t *s)
{
    if (s && s->ops && s->ops->close)
        s->ops->close(s);
}

int cn_vproc_register(const cn_vproc_type_t *t)
{
    cn__vproc_t *vp = vp_of(cn__cur_node);
    if (vp == NULL)
        return -ENOTCONN;
    if (t == NULL || t->name == NULL || *t->name == '\0' ||
        strlen(t->name) >= CN_VPROC_TYPE_MAX || t->activate == NULL ||
        t->handle_call == NULL || t->save == NULL)
        return -EINVAL;
    if (type_find(vp, t->name) >= 0)
        return -EEXIST;
    if (vp->ntypes == vp->captypes) {
        int cap = vp->captypes ? vp->captypes * 2 : 4;
        vp_type_t **a = cn__realloc(vp->types, (size_t)cap * sizeof(*a));
        if (a == NULL)
            return -ENOMEM;
        vp->types = a;
        vp->captypes = cap;
    }
    /* Each type in a block of its own: activations parked in the store hold
     * pointers to theirs while another type may be registered. */
    vp_type_t *nt = cn__calloc(1, sizeof(*nt));
    if (nt == NULL)
        return -ENOMEM;
    vp->types[vp->ntypes] = nt;
    nt->cb = *t;
    snprintf(nt->name, sizeof(nt->name), "%s", t->name);
    nt->cb.name = nt->name;
    service_name(nt->service, t->name);
    vp->ntypes++;
    if (cn__cur_node->cluster) {
        int rc = cn_cluster_join(nt->service, vp->router, NULL);
        if (rc < 0) {
            /* Not offered after all. It stays in the table (indices are kept by
             * entries and activations) under a name no call can match. */
            nt->name[0] = '\0';
            nt->service[0] = '\0';
            return rc;
        }
        nt->view_sig = cn__vproc_view_sig(cn__cur_node, nt->service);
    }
    return 0;
}

int cn_vproc_leave(void)
{
    cn__vproc_t *vp = vp_of(cn__cur_node);
    if (vp == NULL)
        return -ENOTCONN;
    vp->leaving = true;
    if (cn__cur_node->cluster)
        for (int k = 0; k < vp->ntypes; k++)
            cn_cluster_leave(vp->types[k]->service, vp->router);
    send_atom(vp->router, "$vp_leave");
    return 0;
}

int cn_vproc_stats(cn_vproc_stats_t *out)
{
    cn__vproc_t *vp = vp_of(cn__cur_node);
    if (vp == NULL)
        return -ENOTCONN;
    *out = vp->st;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Public API: calls
 * ------------------------------------------------------------------------------ */

/* The owner of a canonical key's hash in this node's view. */
static int owner_name(cn_node_t *n, const char *type, uint64_t h, const char **out)
{
    if (n->cluster) {
        char service[CN_VPROC_TYPE_MAX + 8];
        if (service_name(service, type) < 0)
            return -EINVAL;
        return cn__vproc_owner_of(n, service, h, out);
    }
    /* No cluster: this node, if it offers the type. */
    cn__vproc_t *vp = vp_of(n);
    if (vp == NULL || type_find(vp, type) < 0)
        return -ENOENT;
    *out = n->name;
    return 0;
}

int cn_vproc_owner(const char *type, cn_term_t key, char *out)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || type == NULL || strlen(type) >= CN_VPROC_TYPE_MAX)
        return -EINVAL;
    ei_x_buff kx;
    if (ei_x_new(&kx) < 0)
        return -ENOMEM;
    int i = key.index;
    int rc = cn__vproc_key_canon(key.buf, &i, &kx);
    const char *owner;
    if (rc == 0 && (rc = owner_name(n, type, cn__vproc_hash(kx.buff, (size_t)kx.index), &owner)) == 0)
        snprintf(out, CN_VPROC_NODE_MAX, "%s", owner);
    ei_x_free(&kx);
    return rc;
}

/* Exit hook of a caller killed inside cn_vproc_call: its key and request. */
static void free_block(void *p)
{
    free(p);
}

static bool is_redirect(cn_term_t r, char *node)
{
    int i = r.index, arity;
    return ei_decode_tuple_header(r.buf, &i, &arity) == 0 && arity == 2 &&
           cn_decode_atom_is(r.buf, &i, "$vp_redirect") && ei_decode_atom(r.buf, &i, node) == 0;
}

int cn_vproc_call(const char *type, cn_term_t key, ei_x_buff *req, int64_t timeout_ms,
                  int flags, cn_msg_t **msg, cn_term_t *reply, char *node_out)
{
    cn_node_t *n = cn__cur_node;
    ei_x_buff kx = { 0 };
    long hook = 0;
    int rc = -EINVAL;
    *msg = NULL;
    if (n == NULL || type == NULL || *type == '\0' || strlen(type) >= CN_VPROC_TYPE_MAX ||
        req == NULL || req->buff == NULL)
        goto out;
    if ((rc = ei_x_new(&kx)) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    int ki = key.index;
    if ((rc = cn__vproc_key_canon(key.buf, &ki, &kx)) < 0)
        goto out;
    uint64_t h = cn__vproc_hash(kx.buff, (size_t)kx.index);
    /* The request joins the key in kx, which is then fixed: one heap block,
     * freed by an exit hook if the caller is killed while parked below (kx
     * itself is on the caller's stack, which a hook cannot read). */
    int klen = kx.index;
    if (ei_x_append_buf(&kx, req->buff + 1, req->index - 1) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    int rlen = kx.index - klen;
    ei_x_free(req);
    req->buff = NULL;
    if ((hook = cn_on_exit(free_block, kx.buff)) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t deadline = timeout_ms == CN_INFINITY ? UINT64_MAX : cn_now_ms() + (uint64_t)timeout_ms;
    char target[MAXATOMLEN_UTF8] = "";
    long hops = 0;
    int backoff = 2;
    for (;;) {
        uint64_t now = cn_now_ms();
        if (now >= deadline) {
            rc = rc == -ENOENT ? -ENOENT : -ETIMEDOUT;
            goto out;
        }
        int64_t left = deadline == UINT64_MAX ? CN_INFINITY : (int64_t)(deadline - now);
        bool retry = false;
        if (target[0] == '\0') {
            const char *owner;
            if ((rc = owner_name(n, type, h, &owner)) < 0) {
                if (rc != -ENOENT)
                    goto out;
                retry = true;
            } else {
                snprintf(target, sizeof(target), "%s", owner);
            }
        }
        bool local = !retry && strcmp(target, n->name) == 0;
        /* A connection that cannot be made certainly did not carry the request:
         * connect first, so that a failure after sending means "unknown". */
        if (!retry && !local && !cn_dist_is_connected(target) &&
            cn_dist_connect(target, left) < 0) {
            retry = true;
            rc = -EHOSTUNREACH;
        }
        if (!retry) {
            ei_x_buff x;
            if (cn_x_new(&x) < 0) {
                rc = -ENOMEM;
                goto out;
            }
            if (ei_x_encode_tuple_header(&x, 5) < 0 || ei_x_encode_atom(&x, "$vp") < 0 ||
                ei_x_encode_atom(&x, type) < 0 || ei_x_append_buf(&x, kx.buff, klen) < 0 ||
                ei_x_append_buf(&x, kx.buff + klen, rlen) < 0 ||
                ei_x_encode_long(&x, hops) < 0) {
                ei_x_free(&x);
                rc = -ENOMEM;
                goto out;
            }
            cn_dest_t d = local ? cn_dest_name(ROUTER_NAME) : cn_dest_remote(ROUTER_NAME, target);
            rc = cn_gen_call(d, &x, left, msg, reply);
            char redirect[MAXATOMLEN_UTF8];
            if (rc == 0 && is_redirect(*reply, redirect)) {
                cn_msg_free(*msg);
                *msg = NULL;
                snprintf(target, sizeof(target), "%s", redirect);
                hops++;
                if (hops > 8) {
                    /* Something keeps answering with redirects: slow down. */
                    cn_sleep(backoff);
                    backoff = backoff < 50 ? backoff * 2 : 50;
                }
                continue;
            }
            if (rc == 0) {
                if (node_out)
                    snprintf(node_out, CN_VPROC_NODE_MAX, "%s", target);
                goto out;
            }
            if (rc == -ESRCH) {
                retry = true; /* no `vproc` there: nothing was delivered */
            } else if ((rc == -EHOSTUNREACH || rc == -ECONNABORTED) &&
                       (flags & CN_VPROC_RETRY_UNKNOWN)) {
                cn_msg_free(*msg);
                *msg = NULL;
                retry = true;
            } else {
                if (rc == -EHOSTUNREACH)
                    rc = -ECONNABORTED; /* connected before: maybe delivered */
                goto out;
            }
        }
        /* Views settle within milliseconds of a change (nodedown, registry
         * sync); back off a little so a gone node is not dialled in a loop. */
        target[0] = '\0';
        hops = 0;
        now = cn_now_ms();
        if (now + (uint64_t)backoff >= deadline && rc == -ENOENT)
            goto out;
        cn_sleep(backoff);
        backoff = backoff < 50 ? backoff * 2 : 50;
    }
out:
    if (hook > 0)
        cn_on_exit_cancel(hook);
    ei_x_free(&kx);
    if (req && req->buff) {
        ei_x_free(req);
        req->buff = NULL;
    }
    return rc;
}
