/* cms.c - the client's calls to the CMS, and the subscriber that keeps the page
 * cache in step with the CMS's content.
 *
 * Calls. CMS nodes are found through the cluster registry (service `cms`), never
 * configured by address. Each call goes to the node with the fewest calls in
 * flight from this client (round robin between equals), with a timeout. Every
 * node has a circuit breaker: after breaker_failures consecutive failures it is
 * left alone for breaker_open_ms, then one probe call is let through (half-open)
 * and its result closes or reopens the breaker. Every request of the reader
 * contract is a read, so a failed call is tried once more on another node. When
 * no node is known or every breaker is open the call fails at once (-EAGAIN):
 * pages then come from the cache (stale) or are a 503, never a hang.
 *
 * Versions. Nodes of a canary version get ONEBLOG_CANARY_SHARE % of first tries
 * and are rolled back when they do worse than the stable version (canary.c):
 * pick() ranks members by the canary tier first, then by calls in flight.
 *
 * Subscriptions. The subscriber process sends {subscribe, self()} to every `cms`
 * member it sees (polling the registry, which is local and cheap), so a CMS that
 * restarts or joins later is subscribed too. {content_changed, Version, Paths}
 * marks those paths (and every listing) stale. A CMS whose content version
 * differs from the last one seen (it changed while we were not subscribed)
 * makes every cached page stale.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/cluster.h"
#include "cnode/gen_server.h"

#define MAX_MEMBERS 64
#define CALL_ATTEMPTS 2
#define SUBSCRIBE_POLL_MS 500

void client_reply_free(client_reply_t *r)
{
    if (r == NULL)
        return;
    cn_msg_free(r->msg);
    r->msg = NULL;
}

/* ---------------------------------------------------------------------------------
 * Nodes and breakers
 * ------------------------------------------------------------------------------ */

static client_cms_node_t *node_find(client_t *cl, const char *name, bool create)
{
    for (int i = 0; i < cl->ncms_nodes; i++)
        if (strcmp(cl->cms_nodes[i].name, name) == 0)
            return &cl->cms_nodes[i];
    if (!create)
        return NULL;
    cl->cms_nodes = xrealloc(cl->cms_nodes, (size_t)(cl->ncms_nodes + 1) * sizeof(*cl->cms_nodes));
    client_cms_node_t *n = &cl->cms_nodes[cl->ncms_nodes++];
    memset(n, 0, sizeof(*n));
    snprintf(n->name, sizeof n->name, "%s", name);
    return n;
}

/* May a call go to n now? Closed, or open but due for its one probe. */
static bool breaker_allows(const client_cms_node_t *n, uint64_t now)
{
    if (n->open_until_ms == 0)
        return true;
    return now >= n->open_until_ms && !n->probing;
}

static void breaker_success(client_cms_node_t *n)
{
    if (n->open_until_ms)
        client_log(CLIENT_LOG_INFO, "cms", "%s answers again: breaker closed", n->name);
    n->failures = 0;
    n->open_until_ms = 0;
    n->probing = false;
}

static void breaker_failure(client_t *cl, client_cms_node_t *n, int rc)
{
    n->errors++;
    n->failures++;
    if (n->probing || n->failures >= cl->cfg.breaker_failures) {
        if (n->open_until_ms == 0 || n->probing)
            client_log(CLIENT_LOG_WARN, "cms", "%s: %s (%d failures): breaker open for %d ms",
                       n->name, cn_strerror(rc), n->failures, cl->cfg.breaker_open_ms);
        n->open_until_ms = cn_now_ms() + (uint64_t)cl->cfg.breaker_open_ms;
    }
    n->probing = false;
}

static bool tried_has(char (*tried)[CN_CLUSTER_NAME_MAX], int ntried, const char *node)
{
    for (int i = 0; i < ntried; i++)
        if (strcmp(tried[i], node) == 0)
            return true;
    return false;
}

/* Pick a member for the next try: not tried yet, breaker allowing, in the best
 * canary tier (canary.c: the version group this try should go to first), then in
 * this node's zone before other zones (DESIGN: same zone first), then fewest
 * calls in flight from here; round robin among equals. want_canary: this try
 * goes to a canary version if one can take it. Returns 0 and *out, or -EAGAIN. */
static int pick(client_t *cl, char (*tried)[CN_CLUSTER_NAME_MAX], int ntried, bool want_canary,
                cn_cluster_member_t *out)
{
    static cn_cluster_member_t m[MAX_MEMBERS]; /* scheduler thread only, no yield */
    int n = cn_cluster_members("cms", m, MAX_MEMBERS);
    if (n <= 0)
        return -EAGAIN;
    if (n > MAX_MEMBERS)
        n = MAX_MEMBERS;
    uint64_t now = cn_now_ms();
    int best = -1, best_tier = 3, best_far = 2;
    uint32_t best_out = UINT32_MAX;
    uint32_t start = cl->rr++;
    char stable[CN_CLUSTER_META_MAX];
    client_canary_stable(cl, m, n, stable);
    int held = -1; /* a running canary this try was for, held back by its breaker */
    for (int k = 0; k < n; k++) {
        int i = (int)((start + (uint32_t)k) % (uint32_t)n);
        if (tried_has(tried, ntried, m[i].node))
            continue;
        client_cms_node_t *cn = node_find(cl, m[i].node, true);
        if (!breaker_allows(cn, now)) {
            if (want_canary && client_canary_tier(cl, m[i].version, stable, true) == 0)
                held = i;
            continue;
        }
        int tier = client_canary_tier(cl, m[i].version, stable, want_canary);
        int far = strcmp(m[i].zone, cl->zone) != 0; /* 0: our zone */
        if (tier < best_tier || (tier == best_tier && far < best_far) ||
            (tier == best_tier && far == best_far && cn->outstanding < best_out)) {
            best = i;
            best_tier = tier;
            best_far = far;
            best_out = cn->outstanding;
        }
    }
    if (best >= 0)
        *out = m[best];
    /* A canary share call its canary could not take (breaker open) counts as a
     * failed canary call: a canary failing half its calls trips its breaker, and
     * then gets so few calls that its window would not fill before it is judged
     * (canary.sh under load: 8 calls in 8 s). Recorded after *out is copied, as
     * recording may evaluate the canary and use the member list. */
    if (held >= 0 && (best < 0 || client_canary_tier(cl, out->version, stable, true) != 0)) {
        char v[CN_CLUSTER_META_MAX];
        snprintf(v, sizeof v, "%s", m[held].version);
        client_canary_record(cl, v, false, 0);
    }
    return best < 0 ? -EAGAIN : 0;
}

bool client_cms_available(client_t *cl)
{
    cn_cluster_member_t m;
    return pick(cl, NULL, 0, false, &m) == 0;
}

/* ---------------------------------------------------------------------------------
 * Calls
 * ------------------------------------------------------------------------------ */

/* Microseconds of the monotonic clock (a call's latency; cn_now_ms is cached
 * per scheduler loop iteration, too coarse for a p99). */
static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int client_cms_call(client_t *cl, const proto_req_t *r, client_reply_t *out)
{
    char tried[CALL_ATTEMPTS][CN_CLUSTER_NAME_MAX];
    int ntried = 0;
    memset(out, 0, sizeof(*out));
    /* Only a first try may go to a canary; a retry goes to the stable version. */
    bool want_canary = client_canary_roll(cl);
    for (int attempt = 0; attempt < CALL_ATTEMPTS; attempt++) {
        cn_cluster_member_t m;
        if (pick(cl, tried, ntried, want_canary && attempt == 0, &m) < 0)
            break;
        snprintf(tried[ntried++], CN_CLUSTER_NAME_MAX, "%s", m.node);
        client_cms_node_t *n = node_find(cl, m.node, true);
        if (n->open_until_ms)
            n->probing = true; /* half-open: this is the probe */
        ei_x_buff x;
        if (cn_x_new(&x) < 0)
            return -ENOMEM;
        if (proto_req_encode(&x, r) < 0) {
            ei_x_free(&x);
            return -EINVAL;
        }
        n->outstanding++;
        n->calls++;
        cn_msg_t *msg = NULL;
        cn_term_t rep;
        uint64_t t0 = mono_us();
        int rc = cn_gen_call(cn_dest_pid(m.pid), &x, cl->cfg.cms_timeout_ms, &msg, &rep);
        uint64_t took_us = mono_us() - t0;
        /* The node table may have grown while this process waited: look again. */
        n = node_find(cl, m.node, true);
        n->outstanding--;
        if (rc == 0) {
            int idx = rep.index;
            int st = proto_decode_reply(rep.buf, &idx, out->reason, sizeof out->reason);
            if (st < 0) {
                cn_msg_free(msg);
                breaker_failure(cl, n, -EPROTO);
                client_canary_record(cl, m.version, false, took_us);
                return -EPROTO;
            }
            if (st == PROTO_ERROR && strcmp(out->reason, "internal") == 0) {
                /* The node's store failed: another node may do better. */
                cn_msg_free(msg);
                breaker_failure(cl, n, -EIO);
                client_canary_record(cl, m.version, false, took_us);
                continue;
            }
            breaker_success(n);
            client_canary_record(cl, m.version, true, took_us);
            cl->cms_ok_ms = cn_now_ms();
            out->msg = msg;
            out->buf = rep.buf;
            out->index = idx;
            out->status = st;
            return 0;
        }
        cn_msg_free(msg);
        client_log(CLIENT_LOG_DEBUG, "cms", "%s %s: %s", m.node, r->name ? r->name : "call",
                   cn_strerror(rc));
        breaker_failure(cl, n, rc);
        client_canary_record(cl, m.version, false, took_us);
    }
    return -EAGAIN;
}

int client_service_call(client_t *cl, const char *service, ei_x_buff *req, int64_t timeout_ms,
                        cn_msg_t **msg, cn_term_t *reply)
{
    (void)cl;
    cn_cluster_member_t m;
    *msg = NULL;
    if (cn_cluster_pick(service, &m) == 0)
        return cn_gen_call(cn_dest_pid(m.pid), req, timeout_ms, msg, reply);
    /* Not registered in the cluster: a node named by the environment, for services
     * that do not join the registry yet (ONEBLOG_RECS_NODE for `recs`). */
    const char *node = strcmp(service, "recs") == 0 ? getenv("ONEBLOG_RECS_NODE") : NULL;
    if (node && *node)
        return cn_gen_call(cn_dest_remote(service, node), req, timeout_ms, msg, reply);
    ei_x_free(req);
    return -ENOENT;
}

/* ---------------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------------ */

/* A digest of what every page shows of the settings. */
static uint64_t settings_digest(const proto_settings_t *s)
{
    uint64_t h = 14695981039346656037ull;
    const char *f[] = { s->title, s->description, s->url, s->locale, s->logo, s->accent_color };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        for (const char *p = f[i] ? f[i] : ""; ; p++) {
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
            if (*p == '\0')
                break;
        }
    for (int i = 0; i < s->nnavigation; i++) {
        const char *g[] = { s->navigation[i].label, s->navigation[i].url };
        for (int k = 0; k < 2; k++)
            for (const char *p = g[k] ? g[k] : ""; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    return h ^ (uint64_t)s->posts_per_page;
}

int client_settings(client_t *cl)
{
    if (cl->settings_valid)
        return 0;
    proto_req_t r = { .kind = PROTO_REQ_GET_SETTINGS, .name = "get_settings" };
    client_reply_t rep;
    int rc = client_cms_call(cl, &r, &rep);
    if (rc == 0 && rep.status == PROTO_OK) {
        proto_settings_t s = { 0 };
        int idx = rep.index;
        if (proto_decode_settings(rep.buf, &idx, &s) == 0) {
            bool changed = cl->have_settings && settings_digest(&s) != settings_digest(&cl->settings);
            /* Requests that fetched the settings before a CMS call may still point
             * into them when they render (two of them can refresh at once, each
             * parked in its call). So unchanged settings are kept as they are, and
             * changed ones retire the old copy for one more change instead of
             * freeing it under a request that uses it. */
            if (cl->have_settings && !changed) {
                proto_settings_clear(&s);
            } else {
                proto_settings_clear(&cl->settings_retired);
                cl->settings_retired = cl->settings;
                cl->settings = s;
            }
            cl->have_settings = true;
            cl->settings_valid = true;
            if (changed) {
                /* Every page shows the site's title and navigation. */
                client_log(CLIENT_LOG_INFO, "cms", "site settings changed: every page is stale");
                cache_invalidate_all(cl->cache);
                cl->generation++;
            }
        } else {
            proto_settings_clear(&s);
        }
    }
    client_reply_free(&rep);
    return cl->have_settings ? 0 : -EAGAIN;
}

/* ---------------------------------------------------------------------------------
 * Invalidation and the subscriber
 * ------------------------------------------------------------------------------ */

void client_invalidate(client_t *cl, const char *const *paths, int n)
{
    if (paths == NULL)
        cache_invalidate_all(cl->cache);
    else
        cache_invalidate(cl->cache, paths, n);
    /* any change may change any search's results: every entry is a listing */
    cache_invalidate_all(cl->search_cache);
    cl->generation++;
    cl->settings_valid = false; /* settings changes come as a change of "/" */
}

typedef struct sub {
    cn_pid_t pid;
    char node[CN_CLUSTER_NAME_MAX];
} sub_t;

/* {ok, #{version => N}} -> N, or -1. */
static int64_t decode_version(const char *buf, int idx)
{
    char reason[64];
    int arity;
    if (proto_decode_reply(buf, &idx, reason, sizeof reason) != PROTO_OK ||
        ei_decode_map_header(buf, &idx, &arity) < 0)
        return -1;
    for (int i = 0; i < arity; i++) {
        char key[MAXATOMLEN_UTF8];
        long long v;
        if (ei_decode_atom(buf, &idx, key) < 0)
            return -1;
        if (strcmp(key, "version") == 0 && ei_decode_longlong(buf, &idx, &v) == 0)
            return v;
        if (ei_skip_term(buf, &idx) < 0)
            return -1;
    }
    return -1;
}

static void saw_version(client_t *cl, int64_t v, const char *node)
{
    if (v < 0)
        return;
    if (cl->content_version >= 0 && v != cl->content_version) {
        client_log(CLIENT_LOG_INFO, "cms", "%s is at content version %lld (we had %lld): "
                   "every cached page is stale", node, (long long)v,
                   (long long)cl->content_version);
        client_invalidate(cl, NULL, 0);
    }
    cl->content_version = v;
}

static int subscribe(client_t *cl, const cn_cluster_member_t *m)
{
    proto_req_t r = { .kind = PROTO_REQ_SUBSCRIBE, .name = "subscribe", .pid = cn_self() };
    ei_x_buff x;
    cn_msg_t *msg = NULL;
    cn_term_t rep;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    if (proto_req_encode(&x, &r) < 0) {
        ei_x_free(&x);
        return -EINVAL;
    }
    int rc = cn_gen_call(cn_dest_pid(m->pid), &x, cl->cfg.cms_timeout_ms, &msg, &rep);
    if (rc == 0) {
        int64_t v = decode_version(rep.buf, rep.index);
        client_log(CLIENT_LOG_INFO, "cms", "subscribed to `cms` on %s (content version %lld)",
                   m->node, (long long)v);
        saw_version(cl, v, m->node);
    }
    cn_msg_free(msg);
    return rc;
}

/* {content_changed, Version, [Path]} */
static void on_message(client_t *cl, const cn_msg_t *msg)
{
    cn_term_t t = cn_msg_term(msg);
    int idx = t.index, arity, n;
    long long version;
    if (ei_decode_tuple_header(t.buf, &idx, &arity) < 0 || arity != 3 ||
        !cn_decode_atom_is(t.buf, &idx, "content_changed") ||
        ei_decode_longlong(t.buf, &idx, &version) < 0 ||
        ei_decode_list_header(t.buf, &idx, &n) < 0 || n < 0 || n > 10000)
        return;
    char **paths = xcalloc((size_t)n + 1, sizeof(char *));
    int k = 0;
    for (int i = 0; i < n; i++) {
        int type, size;
        long len;
        if (ei_get_type(t.buf, &idx, &type, &size) < 0 || type != ERL_BINARY_EXT ||
            size > 1024)
            break;
        paths[k] = xmalloc((size_t)size + 1);
        if (ei_decode_binary(t.buf, &idx, paths[k], &len) < 0) {
            free(paths[k]);
            break;
        }
        paths[k++][len] = '\0';
    }
    client_log(CLIENT_LOG_DEBUG, "cms", "content_changed %lld: %d paths", version, k);
    client_invalidate(cl, (const char *const *)paths, k);
    cl->content_version = version;
    for (int i = 0; i < k; i++)
        free(paths[i]);
    free(paths);
}

/* The subscriber's heap state, freed by its exit hook if it is killed (at node
 * shutdown): exit hooks may not point into a process's stack. */
typedef struct sub_state {
    cn_cluster_member_t *m;
    sub_t *subs;
} sub_state_t;

static void sub_state_free(void *arg)
{
    sub_state_t *st = arg;
    free(st->m);
    free(st->subs);
    free(st);
}

void client_subscriber_main(void *arg)
{
    client_t *cl = arg;
    sub_t *subs = NULL;
    int nsubs = 0;
    sub_state_t *st = xcalloc(1, sizeof(*st));
    cn_cluster_member_t *m = st->m = xcalloc(MAX_MEMBERS, sizeof(*m));
    long h1 = cn_on_exit(sub_state_free, st);
    while (!cl->stopping) {
        int n = cn_cluster_members("cms", m, MAX_MEMBERS);
        if (n > MAX_MEMBERS)
            n = MAX_MEMBERS;
        /* Forget subscriptions to members that left (their node went down or
         * the server restarted: a new pid is a new member). */
        for (int i = 0; i < nsubs;) {
            bool live = false;
            for (int k = 0; k < n && !live; k++)
                live = cn_pid_eq(m[k].pid, subs[i].pid);
            if (!live) {
                client_log(CLIENT_LOG_INFO, "cms", "`cms` on %s left", subs[i].node);
                subs[i] = subs[--nsubs];
            } else {
                i++;
            }
        }
        for (int k = 0; k < n; k++) {
            bool have = false;
            for (int i = 0; i < nsubs && !have; i++)
                have = cn_pid_eq(m[k].pid, subs[i].pid);
            if (have || subscribe(cl, &m[k]) < 0)
                continue;
            subs = st->subs = xrealloc(subs, (size_t)(nsubs + 1) * sizeof(*subs));
            subs[nsubs].pid = m[k].pid;
            snprintf(subs[nsubs].node, sizeof subs[nsubs].node, "%s", m[k].node);
            nsubs++;
        }
        cn_msg_t *msg;
        if (cn_receive(NULL, NULL, SUBSCRIBE_POLL_MS, &msg) == 0) {
            on_message(cl, msg);
            cn_msg_free(msg);
        }
    }
    cn_on_exit_cancel(h1);
    sub_state_free(st);
}
