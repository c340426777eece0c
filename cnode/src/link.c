/* link.c - links, monitors and exit signals between local processes.
 *
 * A link is symmetric: each side keeps the other's pid in a small array. A monitor
 * is one record on two intrusive lists, the watcher's (to demonitor in O(k) for the
 * k monitors it holds, usually one) and the target's (to fire them all on exit).
 * Exit signals follow erlang:exit/2: a trapping process gets {'EXIT', From, Reason}
 * at once; a non-trapping one dies unless the reason is `normal`; `kill` sent with
 * cn_exit_pid() cannot be trapped and becomes `killed` for the victim's links.
 * Deaths are queued (cn_kill_t) and carried out by the scheduler between processes.
 * Links and monitors whose other end is on another node are handed to the
 * distribution hooks (n->dist_ops); a process with any such is marked dist_ref so
 * that its death is reported to them too.
 */
#include "cnode_int.h"

#include <errno.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------ */

static bool reason_is(const char *reason, int len, const char *atom)
{
    int i = 0;
    char buf[MAXATOMLEN_UTF8];
    (void)len;
    if (reason == NULL)
        return false;
    if (ei_decode_atom(reason, &i, buf) < 0)
        return false;
    return strcmp(buf, atom) == 0;
}

static int links_add(cn_proc_t *p, cn_pid_t pid)
{
    for (uint32_t i = 0; i < p->nlinks; i++)
        if (cn_pid_eq(p->links[i], pid))
            return 0;
    if (p->nlinks == p->caplinks) {
        uint32_t cap = p->caplinks ? p->caplinks * 2 : 4;
        cn_pid_t *l = cn__realloc(p->links, cap * sizeof(*l));
        if (l == NULL)
            return -ENOMEM;
        p->links = l;
        p->caplinks = cap;
    }
    p->links[p->nlinks++] = pid;
    return 0;
}

static bool links_remove(cn_proc_t *p, cn_pid_t pid)
{
    for (uint32_t i = 0; i < p->nlinks; i++) {
        if (cn_pid_eq(p->links[i], pid)) {
            p->links[i] = p->links[--p->nlinks];
            return true;
        }
    }
    return false;
}

int cn__link_add(cn_proc_t *p, cn_pid_t pid)
{
    return links_add(p, pid);
}

bool cn__link_remove(cn_proc_t *p, cn_pid_t pid)
{
    return links_remove(p, pid);
}

/* Queue a kill of p; the scheduler carries it out between processes. */
static void queue_kill(cn_node_t *n, cn_proc_t *p, const char *reason, int len)
{
    cn_kill_t *k = cn__calloc(1, sizeof(*k));
    char *r = len > 0 ? cn__malloc((size_t)len) : NULL;
    if (k == NULL || (len > 0 && r == NULL)) {
        /* No memory to queue it: kill now; the reason becomes no_memory. */
        cn__free(k);
        cn__free(r);
        cn__proc_kill(n, p, "", 0);
        return;
    }
    memcpy(r, reason, (size_t)len);
    k->proc = p;
    k->serial = p->pid.serial;
    k->reason = r;
    k->reason_len = len;
    *n->kills_tail = k;
    n->kills_tail = &k->next;
}

/* {'EXIT', From, Reason} into p's mailbox. */
static void deliver_exit_msg(cn_node_t *n, cn_proc_t *p, cn_pid_t from, const char *reason,
                             int len)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 3) < 0 || ei_x_encode_atom(&x, "EXIT") < 0 ||
        cn_x_encode_pid(&x, from) < 0 || ei_x_append_buf(&x, reason, len) < 0) {
        ei_x_free(&x);
        return;
    }
    cn_msg_t *m = cn__msg_from_x(&x);
    if (m)
        cn__mbox_push(n, p, m);
}

void cn__exit_signal(cn_node_t *n, cn_pid_t from, cn_proc_t *p, const char *reason, int len,
                     bool from_link)
{
    if (p->state == CN_P_EXITING)
        return;
    if (!from_link && reason_is(reason, len, "kill")) {
        char *killed;
        int klen;
        if (cn__encode_atom("killed", &killed, &klen) < 0) {
            queue_kill(n, p, "", 0);
            return;
        }
        queue_kill(n, p, killed, klen);
        cn__free(killed);
        return;
    }
    if (p->trap_exit) {
        deliver_exit_msg(n, p, from, reason, len);
        return;
    }
    if (reason_is(reason, len, "normal") && !cn_pid_eq(from, p->pid))
        return;
    queue_kill(n, p, reason, len);
}

/* ---------------------------------------------------------------------------------
 * Links
 * ------------------------------------------------------------------------------ */

int cn_link(cn_pid_t pid)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    cn_proc_t *self = n->current;
    if (cn_pid_eq(pid, self->pid))
        return 0;
    if (pid.node != 0) {
        /* Remote: our side now, the peer's side by the LINK message; an
         * unreachable node comes back as an exit signal `noconnection`. */
        if (n->dist_ops == NULL)
            return -EHOSTUNREACH;
        if (links_add(self, pid) < 0)
            return -ENOMEM;
        self->dist_ref = true;
        int rc = n->dist_ops->link(n, self->pid, pid);
        if (rc < 0)
            links_remove(self, pid);
        return rc;
    }
    cn_proc_t *p = cn__proc_get(n, pid);
    if (p == NULL) {
        if (self->trap_exit) {
            char *r;
            int rlen;
            if (cn__encode_atom("noproc", &r, &rlen) == 0) {
                deliver_exit_msg(n, self, pid, r, rlen);
                cn__free(r);
            }
        }
        return -ESRCH;
    }
    if (links_add(self, pid) < 0)
        return -ENOMEM;
    if (links_add(p, self->pid) < 0) {
        links_remove(self, pid);
        return -ENOMEM;
    }
    return 0;
}

int cn_unlink(cn_pid_t pid)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    cn_proc_t *self = n->current;
    links_remove(self, pid);
    if (pid.node != 0) {
        if (n->dist_ops)
            n->dist_ops->unlink(n, self->pid, pid);
        return 0;
    }
    cn_proc_t *p = cn__proc_get(n, pid);
    if (p)
        links_remove(p, self->pid);
    return 0;
}

bool cn_trap_exit(bool on)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return false;
    bool old = n->current->trap_exit;
    n->current->trap_exit = on;
    return old;
}

static int exit_pid_raw(cn_pid_t pid, const char *reason, int len)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL)
        return -EINVAL;
    cn_pid_t from = n->current ? n->current->pid : (cn_pid_t){ 0, 0, 0, 0 };
    if (pid.node != 0) {
        if (n->dist_ops == NULL)
            return -EHOSTUNREACH;
        n->dist_ops->exit(n, from, pid, reason, len, false);
        return 0;
    }
    cn_proc_t *p = cn__proc_get(n, pid);
    if (p == NULL)
        return -ESRCH;
    cn__exit_signal(n, from, p, reason, len, false);
    /* A signal that kills the caller itself takes effect now, as in Erlang. */
    if (p == n->current && n->kills) {
        cn__kills_run(n);
        if (p->state == CN_P_EXITING)
            cn__ctx_leave(p);
    }
    return 0;
}

int cn_exit_pid(cn_pid_t pid, const char *reason)
{
    char *r;
    int len;
    int rc = cn__encode_atom(reason, &r, &len);
    if (rc < 0)
        return rc;
    rc = exit_pid_raw(pid, r, len);
    cn__free(r);
    return rc;
}

int cn_exit_pid_term(cn_pid_t pid, ei_x_buff *x)
{
    int rc = -EINVAL;
    if (x->buff && x->index > 1)
        rc = exit_pid_raw(pid, x->buff + 1, x->index - 1);
    ei_x_free(x);
    x->buff = NULL;
    x->buffsz = x->index = 0;
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Monitors
 * ------------------------------------------------------------------------------ */

cn_ref_t cn_make_ref(void)
{
    cn_node_t *n = cn__cur_node;
    cn_ref_t r = { { 0, 0, 0 }, 0, 0, 3 };
    if (n == NULL)
        return r;
    /* A 82-bit counter, as BEAM's refs are unique per node incarnation. */
    if (++n->ref_n[0] > 0x3ffff) {
        n->ref_n[0] = 0;
        if (++n->ref_n[1] == 0)
            n->ref_n[2]++;
    }
    r.n[0] = n->ref_n[0];
    r.n[1] = n->ref_n[1];
    r.n[2] = n->ref_n[2];
    r.creation = n->creation;
    return r;
}

static void send_down(cn_node_t *n, cn_proc_t *watcher, const cn_ref_t *ref, cn_pid_t pid,
                      const char *reason, int len)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 5) < 0 || ei_x_encode_atom(&x, "DOWN") < 0 ||
        cn_x_encode_ref(&x, ref) < 0 || ei_x_encode_atom(&x, "process") < 0 ||
        cn_x_encode_pid(&x, pid) < 0 || ei_x_append_buf(&x, reason, len) < 0) {
        ei_x_free(&x);
        return;
    }
    cn_msg_t *m = cn__msg_from_x(&x);
    if (m)
        cn__mbox_push(n, watcher, m);
}

int cn_monitor(cn_pid_t pid, cn_ref_t *out)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    cn_proc_t *self = n->current;
    *out = cn_make_ref();
    if (pid.node != 0 && n->dist_ops) {
        self->dist_ref = true;
        return n->dist_ops->monitor(n, self->pid, pid, NULL, NULL, out);
    }
    cn_proc_t *p = cn__proc_get(n, pid);
    if (p == NULL) {
        char *r;
        int len;
        if (cn__encode_atom(pid.node != 0 ? "noconnection" : "noproc", &r, &len) < 0)
            return -ENOMEM;
        send_down(n, self, out, pid, r, len);
        cn__free(r);
        return 0;
    }
    cn_mon_t *m = cn__calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->ref = *out;
    m->watcher = self;
    m->target = p;
    m->w_next = self->mons_out;
    if (m->w_next)
        m->w_next->w_prev = m;
    self->mons_out = m;
    m->t_next = p->mons_in;
    if (m->t_next)
        m->t_next->t_prev = m;
    p->mons_in = m;
    return 0;
}

int cn_monitor_name_at(const char *name, const char *node, cn_ref_t *out)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL || name == NULL)
        return -EINVAL;
    if (node == NULL || strcmp(node, n->name) == 0) {
        cn_pid_t pid;
        if (cn_whereis(name, &pid) == 0)
            return cn_monitor(pid, out);
        /* Not registered: DOWN noproc at once, with a pid nobody has. */
        return cn_monitor((cn_pid_t){ 0, 0, n->creation, 0 }, out);
    }
    if (n->dist_ops == NULL)
        return -EHOSTUNREACH;
    *out = cn_make_ref();
    n->current->dist_ref = true;
    return n->dist_ops->monitor(n, n->current->pid, (cn_pid_t){ 0, 0, 0, 0 }, name, node, out);
}

static void mon_unlink_watcher(cn_mon_t *m)
{
    if (m->w_prev)
        m->w_prev->w_next = m->w_next;
    else
        m->watcher->mons_out = m->w_next;
    if (m->w_next)
        m->w_next->w_prev = m->w_prev;
}

void cn__mon_unlink_target(cn_mon_t *m)
{
    if (m->t_prev)
        m->t_prev->t_next = m->t_next;
    else
        m->target->mons_in = m->t_next;
    if (m->t_next)
        m->t_next->t_prev = m->t_prev;
}

bool cn__match_down(const cn_msg_t *msg, void *arg)
{
    const cn_ref_t *ref = arg;
    int i = 1, arity;
    cn_ref_t r;
    if (ei_decode_tuple_header(msg->buf, &i, &arity) < 0 || arity != 5)
        return false;
    if (!cn_decode_atom_is(msg->buf, &i, "DOWN"))
        return false;
    if (cn_decode_ref(msg->buf, &i, &r) < 0)
        return false;
    return cn_ref_eq(&r, ref);
}

int cn_demonitor(const cn_ref_t *ref, int flags)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    cn_proc_t *self = n->current;
    for (cn_mon_t *m = self->mons_out; m; m = m->w_next) {
        if (cn_ref_eq(&m->ref, ref)) {
            mon_unlink_watcher(m);
            cn__mon_unlink_target(m);
            cn__free(m);
            return 0;
        }
    }
    if (n->dist_ops && n->dist_ops->demonitor(n, self->pid, ref) == 0) {
        if (flags & CN_DEMONITOR_FLUSH) {
            cn_msg_t *msg;
            if (cn_receive(cn__match_down, (void *)ref, 0, &msg) == 0)
                cn_msg_free(msg);
        }
        return 0;
    }
    if (flags & CN_DEMONITOR_FLUSH) {
        cn_msg_t *msg;
        if (cn_receive(cn__match_down, (void *)ref, 0, &msg) == 0)
            cn_msg_free(msg);
    }
    return -ENOENT;
}

/* ---------------------------------------------------------------------------------
 * Death notifications
 * ------------------------------------------------------------------------------ */

void cn__links_notify(cn_node_t *n, cn_proc_t *p)
{
    const char *reason = p->reason;
    int len = p->reason_len;

    for (uint32_t i = 0; i < p->nlinks; i++) {
        if (p->links[i].node != 0) {
            if (n->dist_ops)
                n->dist_ops->exit(n, p->pid, p->links[i], reason, len, true);
            continue;
        }
        cn_proc_t *q = cn__proc_get(n, p->links[i]);
        if (q == NULL)
            continue;
        links_remove(q, p->pid);
        cn__exit_signal(n, p->pid, q, reason, len, true);
    }
    p->nlinks = 0;

    while (p->mons_in) {
        cn_mon_t *m = p->mons_in;
        p->mons_in = m->t_next;
        mon_unlink_watcher(m);
        if (m->watcher->state != CN_P_EXITING)
            send_down(n, m->watcher, &m->ref, p->pid, reason, len);
        cn__free(m);
    }
    while (p->mons_out) {
        cn_mon_t *m = p->mons_out;
        p->mons_out = m->w_next;
        cn__mon_unlink_target(m);
        cn__free(m);
    }
    if (p->dist_ref && n->dist_ops)
        n->dist_ops->proc_exit(n, p);
}
