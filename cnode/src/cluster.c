/* cluster.c - the cluster of a node: options, start-up, discovery loop and mesh.
 *
 * Reading order: options (environment), the strategy table, the shared state
 * and its reference count, the discovery process (polls the strategy every
 * poll_ms, or at once when a strategy asks, and hands the list to the mesh), and
 * the mesh process (`cn_cluster`), which owns connections to listed nodes.
 *
 * The mesh is message driven. It watches every node (cn_dist_monitor_nodes) and,
 * for each attempt it starts, holds a one-shot node monitor (cn_monitor_node, which
 * also starts the connection), so every failure or loss arrives as a {nodedown, N}
 * message; duplicates (the two kinds of monitor for one loss) are recognised by
 * the peer's state. After a failure the next attempt is a timer message
 * {cl_retry, N} after the peer's backoff, which doubles up to backoff_max_ms and
 * goes back to backoff_min_ms once connected. A node that leaves the list is
 * forgotten: no more attempts, and its connection is closed (cn_dist_disconnect).
 * Nodes that connect to us without being listed are left alone: the registry
 * still talks to them, the mesh does not retry them.
 *
 * The registry (`cn_pg`, pg.c) watches nodes by itself; it does not depend on
 * the mesh, so members of any connected node are seen.
 */
#include "cluster_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/gen_server.h"

/* ---------------------------------------------------------------------------------
 * Strategies: one file each, chosen by name.
 * ------------------------------------------------------------------------------ */

static const cn__discovery_t *const strategies[] = {
    &cn__discovery_static, &cn__discovery_epmd, &cn__discovery_dns,
    &cn__discovery_gossip, &cn__discovery_ecs,
};

/* ---------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------ */

static int env_int(const char *name, int lo, int hi, int *out)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end != '\0' || x < lo || x > hi)
        return -EINVAL;
    *out = (int)x;
    return 0;
}

static const char *env_str(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int cn_cluster_opts_from_env(cn_cluster_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->strategy = env_str("ONEBLOG_CLUSTER_STRATEGY");
    o->zone = env_str("ONEBLOG_CLUSTER_ZONE");
    o->nodes = env_str("ONEBLOG_CLUSTER_NODES");
    o->epmd_hosts = env_str("ONEBLOG_CLUSTER_EPMD_HOSTS");
    o->dns_name = env_str("ONEBLOG_CLUSTER_DNS_NAME");
    o->dns_type = env_str("ONEBLOG_CLUSTER_DNS_TYPE");
    o->dns_server = env_str("ONEBLOG_CLUSTER_DNS_SERVER");
    o->basename = env_str("ONEBLOG_CLUSTER_BASENAME");
    o->gossip_addr = env_str("ONEBLOG_CLUSTER_GOSSIP_ADDR");
    o->gossip_bind = env_str("ONEBLOG_CLUSTER_GOSSIP_BIND");
    o->gossip_secret = env_str("ONEBLOG_CLUSTER_GOSSIP_SECRET");
    o->ecs_cluster = env_str("ONEBLOG_CLUSTER_ECS_CLUSTER");
    o->ecs_service = env_str("ONEBLOG_CLUSTER_ECS_SERVICE");
    o->ecs_endpoint = env_str("ONEBLOG_CLUSTER_ECS_ENDPOINT");
    o->ecs_region = env_str("AWS_REGION");
    if (o->ecs_region == NULL)
        o->ecs_region = env_str("AWS_DEFAULT_REGION");
    int rc = 0;
    rc |= env_int("ONEBLOG_CLUSTER_POLL_MS", 10, 3600000, &o->poll_ms);
    rc |= env_int("ONEBLOG_CLUSTER_BACKOFF_MIN_MS", 10, 3600000, &o->backoff_min_ms);
    rc |= env_int("ONEBLOG_CLUSTER_BACKOFF_MAX_MS", 10, 3600000, &o->backoff_max_ms);
    rc |= env_int("ONEBLOG_CLUSTER_GOSSIP_PORT", 1, 65535, &o->gossip_port);
    rc |= env_int("ONEBLOG_CLUSTER_GOSSIP_INTERVAL_MS", 10, 3600000, &o->gossip_interval_ms);
    rc |= env_int("ONEBLOG_CLUSTER_GOSSIP_WINDOW_S", 1, 86400, &o->gossip_window_s);
    return rc ? -EINVAL : 0;
}

/* ---------------------------------------------------------------------------------
 * Name lists
 * ------------------------------------------------------------------------------ */

int cn__names_add(cl_names_t *l, const char *name, int port)
{
    for (int i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], name) == 0) {
            if (port)
                l->port[i] = port;
            return 0;
        }
    }
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        char **v = cn__realloc(l->v, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        l->v = v;
        int *p = cn__realloc(l->port, (size_t)cap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        l->port = p;
        l->cap = cap;
    }
    if ((l->v[l->n] = strdup(name)) == NULL)
        return -ENOMEM;
    l->port[l->n++] = port;
    return 0;
}

bool cn__names_has(const cl_names_t *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i], name) == 0)
            return true;
    return false;
}

void cn__names_free(cl_names_t *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    cn__free(l->v);
    cn__free(l->port);
    memset(l, 0, sizeof(*l));
}

/* ---------------------------------------------------------------------------------
 * State, references, logging
 * ------------------------------------------------------------------------------ */

cn__cluster_t *cn__cluster_of(cn_node_t *n)
{
    return n ? n->cluster : NULL;
}

void cn__cluster_ref(cn__cluster_t *c)
{
    c->refs++;
}

static void cluster_free(cn__cluster_t *c)
{
    if (c == NULL)
        return;
    if (c->disc && c->disc->free)
        c->disc->free(c->disc_state);
    if (c->node && c->node->cluster == c)
        c->node->cluster = NULL;
    cn__names_free(&c->listed);
    for (int i = 0; i < c->npeers; i++)
        free(c->peers[i].name);
    cn__free(c->peers);
    cn__free(c->members);
    for (int i = 0; i < c->npg_nodes; i++)
        free(c->pg_nodes[i]);
    cn__free(c->pg_nodes);
    char **strs[] = { &c->strategy_name, &c->zone, &c->nodes, &c->epmd_hosts,
                      &c->dns_name, &c->dns_type, &c->dns_server, &c->basename,
                      &c->gossip_addr, &c->gossip_bind, &c->gossip_secret,
                      &c->ecs_cluster, &c->ecs_service, &c->ecs_region, &c->ecs_endpoint };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(*strs[i]);
    cn__free(c);
}

void cn__cluster_unref(void *arg)
{
    cn__cluster_t *c = arg;
    if (--c->refs == 0)
        cluster_free(c);
}

void cn__cluster_log(cn__cluster_t *c, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->log) {
        c->log(c->log_ud, level, msg);
        return;
    }
    if (level >= CN_LOG_DEBUG && !getenv("ONEBLOG_CLUSTER_DEBUG"))
        return;
    static const char *names[] = { "error", "warn", "info", "debug" };
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s cluster %s: %s\n", when, ts.tv_nsec / 1000000,
            level >= 0 && level <= 3 ? names[level] : "?", c->node->name, msg);
}

void cn__cluster_self_parts(cn__cluster_t *c, char *alive, size_t alen, char *host,
                            size_t hlen)
{
    const char *name = c->node->name;
    const char *at = strchr(name, '@');
    snprintf(alive, alen, "%.*s", (int)(at - name), name);
    snprintf(host, hlen, "%s", at + 1);
}

/* Send a message made of one atom, or {atom, string-atom}, to pid. */
static void send_atom(cn_pid_t to, const char *atom, const char *arg)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    int rc = arg ? ei_x_encode_tuple_header(&x, 2) | ei_x_encode_atom(&x, atom) |
                       ei_x_encode_atom(&x, arg)
                 : ei_x_encode_atom(&x, atom);
    if (rc < 0) {
        ei_x_free(&x);
        return;
    }
    cn_send(to, &x);
}

void cn__cluster_poll_now(cn__cluster_t *c)
{
    send_atom(c->discovery, "cl_poll", NULL);
}

/* ---------------------------------------------------------------------------------
 * Discovery process
 * ------------------------------------------------------------------------------ */

static bool is_poll_msg(const cn_msg_t *m, void *arg)
{
    (void)arg;
    int i = 1;
    return cn_decode_atom_is(m->buf, &i, "cl_poll");
}

/* Log what a poll added and removed (one line, truncated if long). */
static void log_diff(cn__cluster_t *c, const cl_names_t *old, const cl_names_t *new)
{
    char buf[400];
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < new->n; i++)
        if (!cn__names_has(old, new->v[i]) && len < sizeof(buf))
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, " +%s", new->v[i]);
    for (int i = 0; i < old->n; i++)
        if (!cn__names_has(new, old->v[i]) && len < sizeof(buf))
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, " -%s", old->v[i]);
    if (len)
        cn__cluster_log(c, CN_LOG_INFO, "%s discovery:%s", c->disc->name, buf);
}

static void discovery_main(void *arg)
{
    cn__cluster_t *c = arg;
    if (cn_on_exit(cn__cluster_unref, c) < 0) {
        cn__cluster_unref(c);
        return;
    }
    int last_err = 0;
    for (;;) {
        cl_names_t got = { 0 };
        int rc = c->disc->poll(c, c->disc_state, &got);
        if (rc == 0) {
            /* Never list ourselves. */
            for (int i = 0; i < got.n; i++) {
                if (strcmp(got.v[i], c->node->name) == 0) {
                    free(got.v[i]);
                    got.v[i] = got.v[got.n - 1];
                    got.port[i] = got.port[got.n - 1];
                    got.n--;
                    break;
                }
            }
            log_diff(c, &c->listed, &got);
            cn__names_free(&c->listed);
            c->listed = got;
            c->listed_valid = true;
            send_atom(c->mesh, "cl_list", NULL);
            last_err = 0;
        } else {
            cn__names_free(&got);
            if (rc != last_err)
                cn__cluster_log(c, CN_LOG_WARN, "%s discovery failed: %s (keeping %d node(s))",
                                c->disc->name, cn_strerror(rc), c->listed.n);
            last_err = rc;
        }
        /* Wait for the next round; a burst of "poll now" requests is one poll. */
        cn_msg_t *m;
        if (cn_receive(is_poll_msg, NULL, c->poll_ms, &m) == 0) {
            cn_msg_free(m);
            while (cn_receive(is_poll_msg, NULL, 0, &m) == 0)
                cn_msg_free(m);
        }
    }
}

/* ---------------------------------------------------------------------------------
 * Mesh process
 * ------------------------------------------------------------------------------ */

static cl_peer_t *peer_find(cn__cluster_t *c, const char *name)
{
    for (int i = 0; i < c->npeers; i++)
        if (strcmp(c->peers[i].name, name) == 0)
            return &c->peers[i];
    return NULL;
}

static void hook(cn__cluster_t *c, cl_peer_t *p, bool up)
{
    if (p->hooked_up == up)
        return;
    p->hooked_up = up;
    cn__cluster_log(c, up ? CN_LOG_INFO : CN_LOG_WARN, "node %s %s", p->name,
                    up ? "joined the mesh" : "left the mesh");
    if (c->on_node)
        c->on_node(c->on_node_ud, p->name, up);
}

static void mark_up(cn__cluster_t *c, cl_peer_t *p)
{
    p->state = CL_UP;
    p->backoff_ms = c->backoff_min_ms;
    hook(c, p, true);
}

static void attempt(cn__cluster_t *c, cl_peer_t *p)
{
    if (cn_dist_is_connected(p->name)) {
        mark_up(c, p);
        return;
    }
    p->state = CL_CONNECTING;
    /* The node monitor starts the connection and reports its failure. */
    int rc = cn_monitor_node(p->name, true);
    if (rc < 0) {
        cn__cluster_log(c, CN_LOG_WARN, "cannot connect to %s: %s", p->name, cn_strerror(rc));
        p->state = CL_DOWN;
    }
}

static void arm_retry(cn__cluster_t *c, cl_peer_t *p)
{
    if (p->retry_armed)
        return;
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 2) < 0 || ei_x_encode_atom(&x, "cl_retry") < 0 ||
        ei_x_encode_atom(&x, p->name) < 0) {
        ei_x_free(&x);
        return;
    }
    if (cn_send_after(p->backoff_ms, cn_self(), &x, NULL) == 0)
        p->retry_armed = true;
    cn__cluster_log(c, CN_LOG_DEBUG, "retry %s in %d ms", p->name, p->backoff_ms);
    p->backoff_ms = p->backoff_ms * 2 > c->backoff_max_ms ? c->backoff_max_ms
                                                          : p->backoff_ms * 2;
}

static void on_nodeup(cn__cluster_t *c, const char *name)
{
    cl_peer_t *p = peer_find(c, name);
    if (p)
        mark_up(c, p);
}

static void on_nodedown(cn__cluster_t *c, const char *name)
{
    cl_peer_t *p = peer_find(c, name);
    if (p == NULL || p->state == CL_DOWN)
        return; /* not listed, or the second report of the same loss */
    p->state = CL_DOWN;
    hook(c, p, false);
    arm_retry(c, p);
}

static void on_retry(cn__cluster_t *c, const char *name)
{
    cl_peer_t *p = peer_find(c, name);
    if (p == NULL)
        return;
    p->retry_armed = false;
    if (p->state == CL_DOWN)
        attempt(c, p);
}

/* Make the peers match the latest list. */
static void apply_list(cn__cluster_t *c)
{
    const cl_names_t *l = &c->listed;
    for (int i = 0; i < c->npeers;) {
        cl_peer_t *p = &c->peers[i];
        if (cn__names_has(l, p->name)) {
            i++;
            continue;
        }
        hook(c, p, false);
        cn_monitor_node(p->name, false);
        cn_dist_disconnect(p->name);
        free(p->name);
        c->peers[i] = c->peers[--c->npeers];
    }
    for (int i = 0; i < l->n; i++) {
        if (l->port[i] > 0)
            cn_dist_set_peer_port(c->node, l->v[i], l->port[i]);
        if (peer_find(c, l->v[i]))
            continue;
        if (c->npeers == c->cappeers) {
            int cap = c->cappeers ? c->cappeers * 2 : 8;
            cl_peer_t *a = cn__realloc(c->peers, (size_t)cap * sizeof(*a));
            if (a == NULL)
                return;
            c->peers = a;
            c->cappeers = cap;
        }
        cl_peer_t *p = &c->peers[c->npeers];
        memset(p, 0, sizeof(*p));
        if ((p->name = strdup(l->v[i])) == NULL)
            return;
        p->backoff_ms = c->backoff_min_ms;
        c->npeers++;
        attempt(c, p);
    }
}

static void mesh_main(void *arg)
{
    cn__cluster_t *c = arg;
    if (cn_on_exit(cn__cluster_unref, c) < 0) {
        cn__cluster_unref(c);
        return;
    }
    if (cn_dist_monitor_nodes(true) < 0)
        return;
    for (;;) {
        cn_msg_t *m;
        if (cn_receive(NULL, NULL, CN_INFINITY, &m) < 0)
            continue;
        int i = 1, arity;
        char tag[MAXATOMLEN_UTF8], name[MAXATOMLEN_UTF8];
        if (cn_decode_atom_is(m->buf, &i, "cl_list")) {
            apply_list(c);
        } else if (ei_decode_tuple_header(m->buf, &i, &arity) == 0 && arity == 2 &&
                   ei_decode_atom(m->buf, &i, tag) == 0 &&
                   ei_decode_atom(m->buf, &i, name) == 0) {
            if (strcmp(tag, "nodeup") == 0)
                on_nodeup(c, name);
            else if (strcmp(tag, "nodedown") == 0)
                on_nodedown(c, name);
            else if (strcmp(tag, "cl_retry") == 0)
                on_retry(c, name);
        }
        cn_msg_free(m);
    }
}

/* ---------------------------------------------------------------------------------
 * Start and the node list
 * ------------------------------------------------------------------------------ */

static int dup_opt(char **dst, const char *src)
{
    if (src == NULL)
        return 0;
    return (*dst = strdup(src)) ? 0 : -ENOMEM;
}

int cn_cluster_start(cn_node_t *node, const cn_cluster_opts_t *opts)
{
    cn_cluster_opts_t o = { 0 };
    if (opts)
        o = *opts;
    if (node == NULL)
        return -EINVAL;
    if (cn_dist_listen_port(node) < 0)
        return -ENOTCONN;
    if (node->cluster)
        return -EALREADY;
    cn_node_t *prev = cn__cur_node;
    if (prev != NULL && prev != node)
        return -EINVAL;
    cn__cur_node = node;

    int rc = -ENOMEM;
    cn__cluster_t *c = cn__calloc(1, sizeof(*c));
    if (c == NULL)
        goto out;
    c->node = node;
    c->refs = 1; /* ours until the processes hold theirs */
    const char *sname = o.strategy ? o.strategy : "static";
    for (size_t i = 0; i < sizeof(strategies) / sizeof(strategies[0]); i++)
        if (strcmp(strategies[i]->name, sname) == 0)
            c->disc = strategies[i];
    c->poll_ms = o.poll_ms > 0 ? o.poll_ms : 5000;
    c->backoff_min_ms = o.backoff_min_ms >= 10 ? o.backoff_min_ms : 200;
    c->backoff_max_ms = o.backoff_max_ms > 0 ? o.backoff_max_ms : 5000;
    if (c->backoff_max_ms < c->backoff_min_ms)
        c->backoff_max_ms = c->backoff_min_ms;
    c->gossip_port = o.gossip_port > 0 ? o.gossip_port : 45892;
    c->gossip_interval_ms = o.gossip_interval_ms > 0 ? o.gossip_interval_ms : 1000;
    c->gossip_window_s = o.gossip_window_s > 0 ? o.gossip_window_s : 10;
    c->on_node = o.on_node;
    c->on_node_ud = o.on_node_ud;
    c->log = o.log;
    c->log_ud = o.log_ud;
    if (dup_opt(&c->strategy_name, sname) < 0 || dup_opt(&c->zone, o.zone ? o.zone : "") < 0 ||
        dup_opt(&c->nodes, o.nodes) < 0 || dup_opt(&c->epmd_hosts, o.epmd_hosts) < 0 ||
        dup_opt(&c->dns_name, o.dns_name) < 0 || dup_opt(&c->dns_type, o.dns_type) < 0 ||
        dup_opt(&c->dns_server, o.dns_server) < 0 || dup_opt(&c->basename, o.basename) < 0 ||
        dup_opt(&c->gossip_addr, o.gossip_addr) < 0 ||
        dup_opt(&c->gossip_bind, o.gossip_bind) < 0 ||
        dup_opt(&c->gossip_secret, o.gossip_secret) < 0 ||
        dup_opt(&c->ecs_cluster, o.ecs_cluster) < 0 ||
        dup_opt(&c->ecs_service, o.ecs_service) < 0 ||
        dup_opt(&c->ecs_region, o.ecs_region) < 0 ||
        dup_opt(&c->ecs_endpoint, o.ecs_endpoint) < 0)
        goto fail;
    if (c->disc == NULL) {
        cn__cluster_log(c, CN_LOG_ERROR, "unknown discovery strategy '%s'", sname);
        rc = -ENOENT;
        goto fail;
    }
    if (strlen(c->zone) >= CN_CLUSTER_META_MAX) {
        cn__cluster_log(c, CN_LOG_ERROR, "zone name too long");
        rc = -EINVAL;
        goto fail;
    }
    const cn__discovery_t *disc = c->disc;
    c->disc = NULL; /* not initialised yet: cluster_free must not call its free */
    if ((rc = disc->init(c, &c->disc_state)) < 0)
        goto fail;
    c->disc = disc;
    node->cluster = c;

    /* Each process takes a reference; ours is dropped at the end. */
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK, .stack_size = 128 << 10 };
    cn__cluster_ref(c);
    if ((rc = cn_spawn(node, mesh_main, c, &so, &c->mesh)) < 0) {
        cn__cluster_unref(c);
        goto installed;
    }
    cn_register("cn_cluster", c->mesh);
    if ((rc = cn__pg_start(c)) < 0)
        goto installed;
    cn__cluster_ref(c);
    if ((rc = cn_spawn(node, discovery_main, c, &so, &c->discovery)) < 0) {
        cn__cluster_unref(c);
        goto installed;
    }
    cn__cluster_log(c, CN_LOG_INFO, "cluster started: strategy %s, zone '%s'", disc->name,
                    c->zone);
    rc = 0;
installed:
    cn__cluster_unref(c);
    goto out;
fail:
    cluster_free(c);
out:
    cn__cur_node = prev;
    return rc;
}

int cn_cluster_nodes(char (*names)[CN_CLUSTER_NAME_MAX], bool *up, int max)
{
    cn__cluster_t *c = cn__cluster_of(cn__cur_node);
    if (c == NULL)
        return -ENOTCONN;
    for (int i = 0; i < c->npeers && i < max; i++) {
        snprintf(names[i], CN_CLUSTER_NAME_MAX, "%s", c->peers[i].name);
        up[i] = c->peers[i].state == CL_UP;
    }
    return c->npeers;
}
