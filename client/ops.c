/* ops.c - what operators and orchestrators ask: liveness, readiness, counters.
 *
 *   /healthz   200 while the node runs (it answers from its own process), with
 *              counters as JSON: cache, CMS nodes and their breakers
 *   /readyz    200 when a CMS node is known and its breaker lets calls through,
 *              503 otherwise (a load balancer then sends readers elsewhere;
 *              this node still serves its cache to those who come)
 */
#include "client.h"

#include <stdio.h>
#include <string.h>

#include "cnode/cluster.h"

static int on_healthz(cn_http_req_t *req, void *udata)
{
    client_t *cl = udata;
    cache_stats_t cs;
    cache_stats(cl->cache, &cs);
    buf_t b = BUF_INIT;
    buf_printf(&b, "{\"status\":\"ok\",\"version\":\"%s\",\"content_version\":%lld,"
                   "\"pages\":%llu,\"stale_served\":%llu,\"cms_unavailable\":%llu,"
                   "\"views_sent\":%llu,\"views_dropped\":%llu,\"recs_served\":%llu,"
                   "\"recs_failed\":%llu,"
                   "\"cache\":{\"entries\":%zu,\"bytes\":%zu,\"hits\":%llu,\"misses\":%llu,"
                   "\"evictions\":%llu},\"cms\":[",
               CLIENT_VERSION, (long long)cl->content_version, (unsigned long long)cl->pages,
               (unsigned long long)cl->stale_served, (unsigned long long)cl->unavailable,
               (unsigned long long)cl->views_sent, (unsigned long long)cl->views_dropped,
               (unsigned long long)cl->recs_served, (unsigned long long)cl->recs_failed,
               cs.entries, cs.bytes, (unsigned long long)cs.hits, (unsigned long long)cs.misses,
               (unsigned long long)cs.evictions);
    uint64_t now = cn_now_ms();
    for (int i = 0; i < cl->ncms_nodes; i++) {
        const client_cms_node_t *n = &cl->cms_nodes[i];
        char name[300];
        cn_http_json_escape(name, sizeof name, n->name);
        buf_printf(&b, "%s{\"node\":\"%s\",\"outstanding\":%u,\"calls\":%llu,\"errors\":%llu,"
                       "\"breaker\":\"%s\"}",
                   i ? "," : "", name, n->outstanding, (unsigned long long)n->calls,
                   (unsigned long long)n->errors,
                   n->open_until_ms == 0 ? "closed" : now < n->open_until_ms ? "open" : "half-open");
    }
    buf_puts(&b, "]}\n");
    cn_http_set_header(req, "Cache-Control", "no-store");
    int rc = cn_http_reply(req, 200, "application/json", b.data, b.len);
    buf_free(&b);
    return rc;
}

static int on_readyz(cn_http_req_t *req, void *udata)
{
    client_t *cl = udata;
    bool ready = client_cms_available(cl) && cl->theme != NULL;
    cn_http_set_header(req, "Cache-Control", "no-store");
    return cn_http_reply_text(req, ready ? 200 : 503,
                              ready ? "ready\n" : "not ready: no CMS node reachable\n");
}

const cn_http_route_t client_ops_routes[] = {
    { "GET", "/healthz", on_healthz, NULL },
    { "GET", "/readyz", on_readyz, NULL },
};
const size_t client_nops_routes = sizeof client_ops_routes / sizeof client_ops_routes[0];
