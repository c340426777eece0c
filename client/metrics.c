/* metrics.c - the client's own metrics on /metrics (Prometheus text format).
 *
 * libcnode measures HTTP requests (by route and status) and the CMS calls (by
 * method, peer node and outcome: rpc_client_calls_total) by itself once
 * telemetry is on (cnode/telemetry.h). This file adds what only the client
 * knows - the page cache, the CMS breakers, readers' page views and
 * recommendations - without touching the request path: the counters the client
 * keeps anyway for /healthz (cache.c, cms.c, pages.c, reader.c) are copied into
 * metrics by a collect callback that runs when a scrape comes in.
 *
 *   client_cache_requests_total{result}   hit (fresh), stale (found but stale:
 *                                         re-rendered), miss
 *   client_cache_stale_served_total       stale pages served because no CMS answered
 *   client_cache_evictions_total, client_cache_entries, client_cache_bytes,
 *   client_cache_max_bytes
 *   client_cms_unavailable_total          renders that found no CMS answering
 *   client_cms_breaker_state{node,state}  1 for the breaker's state (closed, open,
 *                                         half_open), 0 for the others
 *   client_cms_outstanding_calls{node}    calls in flight from this client
 *   client_page_views_total{result}       sent, dropped
 *   client_recs_total{result}             served, failed
 */
#include "client.h"

#include <errno.h>
#include <math.h>

#include "cnode/telemetry.h"

/* Counters mirror a total kept elsewhere: add what it grew by since the last
 * scrape (the metric keeps its own sum, so a restart of the node resets both). */
static void mirror(cn_metric_t *m, const char *const *labels, uint64_t total)
{
    double have = cn_metric_value(m, labels);
    if (isnan(have))
        cn_metric_add(m, labels, (double)total); /* first scrape: the series appears */
    else if ((double)total > have)
        cn_metric_add(m, labels, (double)total - have);
}

static void collect(cn_node_t *node, void *udata)
{
    client_t *cl = udata;
    cache_stats_t cs;
    cache_stats(cl->cache, &cs);

    cn_metric_t *req = cn_metric_counter(node, "client_cache_requests_total", NULL, "result");
    mirror(req, (const char *[]){ "hit" }, cs.hits - cs.stale_hits);
    mirror(req, (const char *[]){ "stale" }, cs.stale_hits);
    mirror(req, (const char *[]){ "miss" }, cs.misses);
    mirror(cn_metric_counter(node, "client_cache_stale_served_total", NULL, NULL), NULL,
           cl->stale_served);
    mirror(cn_metric_counter(node, "client_cache_evictions_total", NULL, NULL), NULL,
           cs.evictions);
    cn_metric_set(cn_metric_gauge(node, "client_cache_entries", NULL, NULL), NULL,
                  (double)cs.entries);
    cn_metric_set(cn_metric_gauge(node, "client_cache_bytes", NULL, NULL), NULL,
                  (double)cs.bytes);
    cn_metric_set(cn_metric_gauge(node, "client_cache_max_bytes", NULL, NULL), NULL,
                  (double)((size_t)cl->cfg.cache_mb << 20));
    mirror(cn_metric_counter(node, "client_cms_unavailable_total", NULL, NULL), NULL,
           cl->unavailable);

    cn_metric_t *br = cn_metric_gauge(node, "client_cms_breaker_state", NULL, "node,state");
    cn_metric_t *out = cn_metric_gauge(node, "client_cms_outstanding_calls", NULL, "node");
    uint64_t now = cn_now_ms();
    static const char *const states[] = { "closed", "open", "half_open" };
    for (int i = 0; i < cl->ncms_nodes; i++) {
        const client_cms_node_t *n = &cl->cms_nodes[i];
        int st = n->open_until_ms == 0 ? 0 : now < n->open_until_ms ? 1 : 2;
        for (int k = 0; k < 3; k++)
            cn_metric_set(br, (const char *[]){ n->name, states[k] }, k == st ? 1 : 0);
        cn_metric_set(out, (const char *[]){ n->name }, n->outstanding);
    }

    cn_metric_t *pv = cn_metric_counter(node, "client_page_views_total", NULL, "result");
    mirror(pv, (const char *[]){ "sent" }, cl->views_sent);
    mirror(pv, (const char *[]){ "dropped" }, cl->views_dropped);
    cn_metric_t *rc = cn_metric_counter(node, "client_recs_total", NULL, "result");
    mirror(rc, (const char *[]){ "served" }, cl->recs_served);
    mirror(rc, (const char *[]){ "failed" }, cl->recs_failed);
}

int client_metrics_start(client_t *cl)
{
    cn_node_t *n = cl->node;
    /* Registered here, with their help text; collect() finds them by name. */
    bool ok =
        cn_metric_counter(n, "client_cache_requests_total",
                          "Page cache lookups: hit (fresh), stale (re-rendered), miss",
                          "result") &&
        cn_metric_counter(n, "client_cache_stale_served_total",
                          "Stale cached pages served because no CMS node answered", NULL) &&
        cn_metric_counter(n, "client_cache_evictions_total",
                          "Pages evicted from the cache to stay within its budget", NULL) &&
        cn_metric_gauge(n, "client_cache_entries", "Pages in the cache", NULL) &&
        cn_metric_gauge(n, "client_cache_bytes", "Bytes held by the page cache", NULL) &&
        cn_metric_gauge(n, "client_cache_max_bytes", "The page cache budget (bytes)", NULL) &&
        cn_metric_counter(n, "client_cms_unavailable_total",
                          "Page renders that found no CMS node answering", NULL) &&
        cn_metric_gauge(n, "client_cms_breaker_state",
                        "Circuit breaker of each CMS node: 1 for its current state", "node,state") &&
        cn_metric_gauge(n, "client_cms_outstanding_calls",
                        "CMS calls in flight from this client, by CMS node", "node") &&
        cn_metric_counter(n, "client_page_views_total",
                          "page.view events sent to the events service, or dropped", "result") &&
        cn_metric_counter(n, "client_recs_total",
                          "Recommendation requests: served, or failed (\"Read next\" shown)",
                          "result");
    if (!ok)
        return -ENOMEM;
    return cn_metrics_on_collect(n, collect, cl);
}
