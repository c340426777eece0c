/* pg.c - the service registry: process groups across our nodes, and routing.
 *
 * The `cn_pg` gen_server of each node keeps the table of every member it knows
 * (cn__cluster.members): its own, which it monitors, and those announced by the
 * registries of connected nodes. The protocol between registries is in
 * cluster.h: a full sync of local members on every nodeup (both sides), then
 * join/leave messages; a nodedown drops all members of that node. The table is
 * read directly by cn_cluster_pick / cn_cluster_members (same thread, no
 * message), and changed only by this process.
 *
 * Reading order: table helpers, the announcements (encode, broadcast), the
 * gen_server callbacks, then the public API.
 */
#include "cluster_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/gen_server.h"

/* ---------------------------------------------------------------------------------
 * Table
 * ------------------------------------------------------------------------------ */

static const char *node_of(cn__cluster_t *c, cn_pid_t pid)
{
    return cn__node_name_of(c->node, pid.node);
}

static int member_find(cn__cluster_t *c, const char *service, cn_pid_t pid)
{
    for (int i = 0; i < c->nmembers; i++)
        if (cn_pid_eq(c->members[i].pid, pid) && strcmp(c->members[i].service, service) == 0)
            return i;
    return -1;
}

static int member_put(cn__cluster_t *c, const char *service, cn_pid_t pid,
                      const char *version, const char *zone, cl_member_t **out)
{
    int i = member_find(c, service, pid);
    if (i < 0) {
        if (c->nmembers == c->capmembers) {
            int cap = c->capmembers ? c->capmembers * 2 : 16;
            cl_member_t *a = cn__realloc(c->members, (size_t)cap * sizeof(*a));
            if (a == NULL)
                return -ENOMEM;
            c->members = a;
            c->capmembers = cap;
        }
        i = c->nmembers++;
        memset(&c->members[i], 0, sizeof(c->members[i]));
        snprintf(c->members[i].service, sizeof(c->members[i].service), "%s", service);
        c->members[i].pid = pid;
    }
    cl_member_t *m = &c->members[i];
    snprintf(m->version, sizeof(m->version), "%s", version);
    snprintf(m->zone, sizeof(m->zone), "%s", zone);
    if (out)
        *out = m;
    return 0;
}

static void member_del(cn__cluster_t *c, int i)
{
    c->members[i] = c->members[--c->nmembers];
}

/* Drop every member on the node called `name`. */
static void drop_node(cn__cluster_t *c, const char *name)
{
    for (int i = 0; i < c->nmembers;) {
        if (c->members[i].pid.node != 0 && strcmp(node_of(c, c->members[i].pid), name) == 0)
            member_del(c, i);
        else
            i++;
    }
}

/* ---------------------------------------------------------------------------------
 * Announcements
 * ------------------------------------------------------------------------------ */

static int encode_member(ei_x_buff *x, const cl_member_t *m)
{
    return ei_x_encode_atom(x, m->service) | cn_x_encode_pid(x, m->pid) |
           ei_x_encode_binary(x, m->version, (long)strlen(m->version)) |
           ei_x_encode_binary(x, m->zone, (long)strlen(m->zone));
}

/* Send x (version byte + term) to the registry of every connected node in
 * c->pg_nodes, or only to `only` when it is not NULL. Frees x. */
static void broadcast(cn__cluster_t *c, ei_x_buff *x, const char *only)
{
    for (int i = 0; i < c->npg_nodes; i++) {
        const char *n = only ? only : c->pg_nodes[i];
        ei_x_buff y;
        if (ei_x_new(&y) < 0)
            break;
        if (ei_x_append_buf(&y, x->buff, x->index) < 0) {
            ei_x_free(&y);
            break;
        }
        cn_send_name_at("cn_pg", n, &y);
        if (only)
            break;
    }
    ei_x_free(x);
}

static void announce(cn__cluster_t *c, const cl_member_t *m, bool join)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    int rc;
    if (join)
        rc = ei_x_encode_tuple_header(&x, 6) | ei_x_encode_atom(&x, "$cn_pg") |
             ei_x_encode_atom(&x, "join") | encode_member(&x, m);
    else
        rc = ei_x_encode_tuple_header(&x, 4) | ei_x_encode_atom(&x, "$cn_pg") |
             ei_x_encode_atom(&x, "leave") | ei_x_encode_atom(&x, m->service) |
             cn_x_encode_pid(&x, m->pid);
    if (rc < 0) {
        ei_x_free(&x);
        return;
    }
    broadcast(c, &x, NULL);
}

static void send_sync(cn__cluster_t *c, const char *to)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    int nlocal = 0;
    for (int i = 0; i < c->nmembers; i++)
        nlocal += c->members[i].pid.node == 0;
    int rc = ei_x_encode_tuple_header(&x, 4) | ei_x_encode_atom(&x, "$cn_pg") |
             ei_x_encode_atom(&x, "sync") | ei_x_encode_atom(&x, c->node->name);
    if (nlocal)
        rc |= ei_x_encode_list_header(&x, nlocal);
    for (int i = 0; i < c->nmembers; i++) {
        if (c->members[i].pid.node != 0)
            continue;
        rc |= ei_x_encode_tuple_header(&x, 4) | encode_member(&x, &c->members[i]);
    }
    rc |= ei_x_encode_empty_list(&x);
    if (rc < 0) {
        ei_x_free(&x);
        return;
    }
    /* broadcast() walks pg_nodes; `to` is in it (added on nodeup). */
    broadcast(c, &x, to);
}

/* ---------------------------------------------------------------------------------
 * Decoding helpers
 * ------------------------------------------------------------------------------ */

static int decode_bin(const char *buf, int *i, char *out, size_t cap)
{
    int type, size;
    long len;
    if (ei_get_type(buf, i, &type, &size) < 0 || type != ERL_BINARY_EXT ||
        (size_t)size >= cap)
        return -EINVAL;
    if (ei_decode_binary(buf, i, out, &len) < 0)
        return -EINVAL;
    out[len] = '\0';
    return 0;
}

/* Service, Pid, Version, Zone. */
static int decode_member(const char *buf, int *i, char *svc, cn_pid_t *pid, char *ver,
                         char *zone)
{
    char atom[MAXATOMLEN_UTF8];
    if (ei_decode_atom(buf, i, atom) < 0 || strlen(atom) >= CN_CLUSTER_SVC_MAX)
        return -EINVAL;
    strcpy(svc, atom);
    if (cn_decode_pid(buf, i, pid) < 0 || decode_bin(buf, i, ver, CN_CLUSTER_META_MAX) < 0 ||
        decode_bin(buf, i, zone, CN_CLUSTER_META_MAX) < 0)
        return -EINVAL;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * The gen_server
 * ------------------------------------------------------------------------------ */

static int pg_init(void *arg, void **state)
{
    cn__cluster_t *c = arg;
    c->pg = cn_self();
    *state = c;
    return cn_dist_monitor_nodes(true);
}

static void pg_terminate(void *state, cn_term_t reason)
{
    (void)reason;
    cn__cluster_unref(state);
}

static void ok_or_error(ei_x_buff *reply, int rc)
{
    if (rc == 0) {
        ei_x_encode_atom(reply, "ok");
    } else {
        ei_x_encode_tuple_header(reply, 2);
        ei_x_encode_atom(reply, "error");
        ei_x_encode_long(reply, rc);
    }
}

static int pg_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    cn__cluster_t *c = state;
    (void)from;
    const char *buf = req.buf;
    int i = req.index, arity;
    char tag[MAXATOMLEN_UTF8], svc[MAXATOMLEN_UTF8], ver[CN_CLUSTER_META_MAX];
    cn_pid_t pid;
    int rc = -EINVAL;
    if (ei_decode_tuple_header(buf, &i, &arity) < 0 || arity < 3 ||
        ei_decode_atom(buf, &i, tag) < 0 || ei_decode_atom(buf, &i, svc) < 0 ||
        strlen(svc) >= CN_CLUSTER_SVC_MAX || cn_decode_pid(buf, &i, &pid) < 0 ||
        pid.node != 0)
        goto out;
    if (strcmp(tag, "join") == 0 && arity == 4) {
        if (decode_bin(buf, &i, ver, sizeof(ver)) < 0)
            goto out;
        if (member_find(c, svc, pid) >= 0) {
            rc = 0;
            goto out;
        }
        if (!cn_is_alive(pid)) {
            rc = -ESRCH;
            goto out;
        }
        cl_member_t *m;
        if ((rc = member_put(c, svc, pid, ver, c->zone, &m)) < 0)
            goto out;
        if ((rc = cn_monitor(pid, &m->mon)) < 0) {
            member_del(c, member_find(c, svc, pid));
            goto out;
        }
        cn__cluster_log(c, CN_LOG_DEBUG, "join %s %s", svc, ver);
        announce(c, m, true);
    } else if (strcmp(tag, "leave") == 0 && arity == 3) {
        int k = member_find(c, svc, pid);
        rc = -ENOENT;
        if (k >= 0) {
            cl_member_t m = c->members[k];
            cn_demonitor(&m.mon, CN_DEMONITOR_FLUSH);
            member_del(c, k);
            announce(c, &m, false);
            rc = 0;
        }
    }
out:
    ok_or_error(reply, rc);
    return CN_GS_CONTINUE;
}

static void add_pg_node(cn__cluster_t *c, const char *name)
{
    for (int i = 0; i < c->npg_nodes; i++)
        if (strcmp(c->pg_nodes[i], name) == 0)
            return;
    if (c->npg_nodes == c->cappg_nodes) {
        int cap = c->cappg_nodes ? c->cappg_nodes * 2 : 8;
        char **a = cn__realloc(c->pg_nodes, (size_t)cap * sizeof(*a));
        if (a == NULL)
            return;
        c->pg_nodes = a;
        c->cappg_nodes = cap;
    }
    if ((c->pg_nodes[c->npg_nodes] = strdup(name)) != NULL)
        c->npg_nodes++;
}

static void del_pg_node(cn__cluster_t *c, const char *name)
{
    for (int i = 0; i < c->npg_nodes; i++) {
        if (strcmp(c->pg_nodes[i], name) == 0) {
            free(c->pg_nodes[i]);
            c->pg_nodes[i] = c->pg_nodes[--c->npg_nodes];
            return;
        }
    }
}

/* {'$cn_pg', ...} from another registry. */
static void peer_msg(cn__cluster_t *c, const char *buf, int i, int arity)
{
    char tag[MAXATOMLEN_UTF8], svc[CN_CLUSTER_SVC_MAX], ver[CN_CLUSTER_META_MAX],
        zone[CN_CLUSTER_META_MAX], node[MAXATOMLEN_UTF8];
    cn_pid_t pid;
    if (ei_decode_atom(buf, &i, tag) < 0)
        return;
    if (strcmp(tag, "join") == 0 && arity == 6) {
        if (decode_member(buf, &i, svc, &pid, ver, zone) == 0 && pid.node != 0)
            member_put(c, svc, pid, ver, zone, NULL);
    } else if (strcmp(tag, "leave") == 0 && arity == 4) {
        char atom[MAXATOMLEN_UTF8];
        if (ei_decode_atom(buf, &i, atom) < 0 || cn_decode_pid(buf, &i, &pid) < 0)
            return;
        int k = member_find(c, atom, pid);
        if (k >= 0 && pid.node != 0)
            member_del(c, k);
    } else if (strcmp(tag, "sync") == 0 && arity == 4) {
        if (ei_decode_atom(buf, &i, node) < 0 || strcmp(node, c->node->name) == 0)
            return;
        int n;
        if (ei_decode_list_header(buf, &i, &n) < 0)
            return;
        drop_node(c, node);
        for (int k = 0; k < n; k++) {
            int a;
            if (ei_decode_tuple_header(buf, &i, &a) < 0 || a != 4 ||
                decode_member(buf, &i, svc, &pid, ver, zone) < 0)
                return;
            /* Only members of the sender's node: a sync cannot speak for others. */
            if (pid.node != 0 && strcmp(node_of(c, pid), node) == 0)
                member_put(c, svc, pid, ver, zone, NULL);
        }
        cn__cluster_log(c, CN_LOG_DEBUG, "sync from %s: %d member(s)", node, n);
    }
}

static int pg_info(void *state, cn_term_t msg)
{
    cn__cluster_t *c = state;
    const char *buf = msg.buf;
    int i = msg.index, arity;
    char tag[MAXATOMLEN_UTF8], name[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(buf, &i, &arity) < 0 || ei_decode_atom(buf, &i, tag) < 0)
        return CN_GS_CONTINUE;
    if (strcmp(tag, "$cn_pg") == 0) {
        peer_msg(c, buf, i, arity);
    } else if (strcmp(tag, "nodeup") == 0 && arity == 2 &&
               ei_decode_atom(buf, &i, name) == 0) {
        add_pg_node(c, name);
        send_sync(c, name);
    } else if (strcmp(tag, "nodedown") == 0 && arity == 2 &&
               ei_decode_atom(buf, &i, name) == 0) {
        del_pg_node(c, name);
        drop_node(c, name);
    } else if (strcmp(tag, "DOWN") == 0 && arity == 5) {
        cn_ref_t ref;
        if (cn_decode_ref(buf, &i, &ref) < 0)
            return CN_GS_CONTINUE;
        for (int k = 0; k < c->nmembers;) {
            cl_member_t *m = &c->members[k];
            if (m->pid.node == 0 && cn_ref_eq(&m->mon, &ref)) {
                cl_member_t copy = *m;
                member_del(c, k);
                announce(c, &copy, false);
            } else {
                k++;
            }
        }
    }
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t pg_server = {
    .init = pg_init,
    .handle_call = pg_call,
    .handle_info = pg_info,
    .terminate = pg_terminate,
};

int cn__pg_start(cn__cluster_t *c)
{
    cn_gen_server_opts_t o = { .name = "cn_pg" };
    o.spawn.flags = CN_SPAWN_OWN_STACK;
    o.spawn.stack_size = 128 << 10;
    cn__cluster_ref(c);
    int rc = cn_gen_server_start(c->node, &pg_server, c, &o, NULL);
    if (rc < 0)
        cn__cluster_unref(c);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------------ */

static int pg_request(const char *tag, const char *service, cn_pid_t pid, const char *version)
{
    cn__cluster_t *c = cn__cluster_of(cn__cur_node);
    if (c == NULL)
        return -ENOTCONN;
    if (service == NULL || *service == '\0' || strlen(service) >= CN_CLUSTER_SVC_MAX ||
        (version && strlen(version) >= CN_CLUSTER_META_MAX) || pid.node != 0)
        return -EINVAL;
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    int rc = ei_x_encode_tuple_header(&x, version ? 4 : 3) | ei_x_encode_atom(&x, tag) |
             ei_x_encode_atom(&x, service) | cn_x_encode_pid(&x, pid);
    if (version)
        rc |= ei_x_encode_binary(&x, version, (long)strlen(version));
    if (rc < 0) {
        ei_x_free(&x);
        return -ENOMEM;
    }
    cn_msg_t *m;
    cn_term_t reply;
    if ((rc = cn_gen_call(cn_dest_name("cn_pg"), &x, 5000, &m, &reply)) < 0)
        return rc;
    int i = reply.index, arity;
    long code = 0;
    if (!cn_decode_atom_is(reply.buf, &i, "ok")) {
        code = -EINVAL;
        if (ei_decode_tuple_header(reply.buf, &i, &arity) == 0 && arity == 2 &&
            cn_decode_atom_is(reply.buf, &i, "error"))
            ei_decode_long(reply.buf, &i, &code);
    }
    cn_msg_free(m);
    return (int)code;
}

int cn_cluster_join(const char *service, cn_pid_t pid, const char *version)
{
    return pg_request("join", service, pid, version ? version : "");
}

int cn_cluster_leave(const char *service, cn_pid_t pid)
{
    return pg_request("leave", service, pid, NULL);
}

static void fill(cn__cluster_t *c, const cl_member_t *m, cn_cluster_member_t *out)
{
    out->pid = m->pid;
    snprintf(out->node, sizeof(out->node), "%s", node_of(c, m->pid));
    snprintf(out->service, sizeof(out->service), "%s", m->service);
    snprintf(out->version, sizeof(out->version), "%s", m->version);
    snprintf(out->zone, sizeof(out->zone), "%s", m->zone);
    out->outstanding = m->outstanding;
}

/* Pick among members of `service` not in excl[0..nexcl). */
static int pick(cn__cluster_t *c, const char *service, const cn_pid_t *excl, int nexcl,
                cn_cluster_member_t *out)
{
    int best = -1, nbest = 0;
    bool best_local_zone = false;
    uint32_t rr = c->rr++;
    for (int i = 0; i < c->nmembers; i++) {
        cl_member_t *m = &c->members[i];
        if (strcmp(m->service, service) != 0)
            continue;
        bool skip = false;
        for (int k = 0; k < nexcl && !skip; k++)
            skip = cn_pid_eq(excl[k], m->pid);
        if (skip)
            continue;
        bool zone = strcmp(m->zone, c->zone) == 0;
        /* Better: our zone over others, then fewer outstanding calls. Among equals
         * pick the (rr mod count)-th, so that ties rotate. */
        int cmp;
        if (best < 0)
            cmp = 1;
        else if (zone != best_local_zone)
            cmp = zone ? 1 : -1;
        else if (m->outstanding != c->members[best].outstanding)
            cmp = m->outstanding < c->members[best].outstanding ? 1 : -1;
        else
            cmp = 0;
        if (cmp > 0) {
            best = i;
            best_local_zone = zone;
            nbest = 1;
        } else if (cmp == 0) {
            nbest++;
            /* Reservoir by counter: the k-th equal wins when rr % k == 0. */
            if (rr % (uint32_t)nbest == 0)
                best = i;
        }
    }
    if (best < 0)
        return -ENOENT;
    fill(c, &c->members[best], out);
    return 0;
}

int cn_cluster_pick(const char *service, cn_cluster_member_t *out)
{
    cn__cluster_t *c = cn__cluster_of(cn__cur_node);
    if (c == NULL)
        return -ENOTCONN;
    if (service == NULL || out == NULL)
        return -EINVAL;
    return pick(c, service, NULL, 0, out);
}

static int cmp_member(const void *a, const void *b)
{
    const cn_cluster_member_t *x = a, *y = b;
    bool lx = x->pid.node == 0, ly = y->pid.node == 0;
    if (lx != ly)
        return lx ? -1 : 1;
    int r = strcmp(x->node, y->node);
    if (r == 0)
        r = strcmp(x->service, y->service);
    return r ? r : (x->pid.num > y->pid.num) - (x->pid.num < y->pid.num);
}

int cn_cluster_members(const char *service, cn_cluster_member_t *out, int max)
{
    cn__cluster_t *c = cn__cluster_of(cn__cur_node);
    if (c == NULL)
        return -ENOTCONN;
    int total = 0;
    for (int i = 0; i < c->nmembers; i++)
        if (service == NULL || strcmp(c->members[i].service, service) == 0)
            total++;
    if (out == NULL || max <= 0)
        return total;
    /* Sort all matches, then copy the first max: a bounded scratch array. */
    cn_cluster_member_t *all = cn__calloc((size_t)total + 1, sizeof(*all));
    if (all == NULL)
        return -ENOMEM;
    int n = 0;
    for (int i = 0; i < c->nmembers; i++)
        if (service == NULL || strcmp(c->members[i].service, service) == 0)
            fill(c, &c->members[i], &all[n++]);
    qsort(all, (size_t)n, sizeof(*all), cmp_member);
    memcpy(out, all, (size_t)(n < max ? n : max) * sizeof(*all));
    cn__free(all);
    return total;
}

static void outstanding_add(cn__cluster_t *c, const char *service, cn_pid_t pid, int d)
{
    int k = member_find(c, service, pid);
    if (k >= 0 && (d > 0 || c->members[k].outstanding > 0))
        c->members[k].outstanding += (uint32_t)d;
}

int cn_cluster_call(const char *service, ei_x_buff *req, int64_t timeout_ms,
                    cn_msg_t **msg, cn_term_t *reply, cn_cluster_member_t *who)
{
    cn__cluster_t *c = cn__cluster_of(cn__cur_node);
    int rc = -ENOTCONN;
    cn_pid_t tried[3];
    int ntried = 0;
    if (c == NULL || service == NULL)
        goto out;
    rc = -ENOENT;
    while (ntried < 3) {
        cn_cluster_member_t m;
        if (pick(c, service, tried, ntried, &m) < 0)
            break;
        tried[ntried++] = m.pid;
        ei_x_buff x;
        if (ei_x_new(&x) < 0 || ei_x_append_buf(&x, req->buff, req->index) < 0) {
            ei_x_free(&x);
            rc = -ENOMEM;
            break;
        }
        outstanding_add(c, service, m.pid, 1);
        rc = cn_gen_call(cn_dest_pid(m.pid), &x, timeout_ms, msg, reply);
        /* The table may have changed meanwhile: find the member again. */
        outstanding_add(c, service, m.pid, -1);
        if (rc == 0 && who)
            *who = m;
        if (rc != -ESRCH && rc != -EHOSTUNREACH)
            break;
    }
out:
    ei_x_free(req);
    return rc;
}
