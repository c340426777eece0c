/* otel_front.c - a front node for tests/integ/otel_*.sh and bench/trace.sh: an
 * HTTP server whose GET /post/:slug makes a gen_server call {get_post, Slug} to
 * `cms` on another node (what the client service will do), GET /cached answers
 * from memory (the cached page path), GET /metrics serves the node's metrics, and
 * GET /peer says whether CMS_NODE is in the cluster registry yet ("peer known"):
 * calls carry the trace context only then, so a test waits for it.
 * Telemetry and the cluster come from the environment (OTEL_*, ONEBLOG_CLUSTER_*).
 *
 *   test-otel_front NODE_NAME HTTP_PORT CMS_NODE      (cookie: $ONEBLOG_COOKIE)
 *
 * Runs until killed. Prints "ready" once the HTTP server listens. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "cnode/http.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/telemetry.h"

static const char *cms_node;
static char page[2048];

static int on_post(cn_http_req_t *req, void *ud)
{
    (void)ud;
    const char *slug = cn_http_param(req, "slug");
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "get_post");
    ei_x_encode_binary(&x, slug, (long)strlen(slug));
    cn_msg_t *m;
    cn_term_t r;
    int rc = cn_gen_call(cn_dest_remote("cms", cms_node), &x, 5000, &m, &r);
    if (rc < 0) {
        cn_log(CN_LOG_WARN, "front", "get_post %s: %s", slug, cn_strerror(rc));
        return cn_http_reply_text(req, 502, "cms unavailable\n");
    }
    int i = r.index, arity;
    bool ok = ei_decode_tuple_header(r.buf, &i, &arity) == 0 && cn_decode_atom_is(r.buf, &i, "ok");
    cn_msg_free(m);
    cn_log(CN_LOG_INFO, "front", "get_post %s: %s", slug, ok ? "found" : "not found");
    return cn_http_reply_text(req, ok ? 200 : 404, ok ? "found\n" : "not found\n");
}

static int on_cached(cn_http_req_t *req, void *ud)
{
    (void)ud;
    return cn_http_reply(req, 200, "text/html; charset=utf-8", page, sizeof page - 1);
}

static int on_peer(cn_http_req_t *req, void *ud)
{
    (void)ud;
    cn_cluster_member_t m[16];
    int n = cn_cluster_members(NULL, m, 16);
    bool known = false;
    for (int i = 0; i < n && i < 16; i++)
        known |= strcmp(m[i].node, cms_node) == 0;
    return cn_http_reply_text(req, 200, known ? "peer known\n" : "peer unknown\n");
}

static const cn_http_route_t routes[] = {
    { "GET", "/post/:slug", on_post, NULL },
    { "GET", "/peer", on_peer, NULL },
    { "GET", "/cached", on_cached, NULL },
    { "GET", "/metrics", cn_metrics_handler, NULL },
};

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s NODE_NAME HTTP_PORT CMS_NODE\n", argv[0]);
        return 2;
    }
    cms_node = argv[3];
    memset(page, 'x', sizeof page - 1);
    cn_node_t *node;
    cn_node_opts_t no = { .name = argv[1] };
    int rc;
    if ((rc = cn_node_new(&no, &node)) < 0)
        goto fail;
    cn_dist_opts_t d;
    cn_dist_opts_from_env(&d, 0, NULL);
    d.node_name = argv[1];
    if ((rc = cn_dist_start(node, &d)) < 0)
        goto fail;
    cn_cluster_opts_t co;
    if ((rc = cn_cluster_opts_from_env(&co)) < 0 || (rc = cn_cluster_start(node, &co)) < 0)
        goto fail;
    if ((rc = cn_telemetry_start(node, NULL)) < 0)
        goto fail;
    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.port = (uint16_t)atoi(argv[2]);
    cfg.routes = routes;
    cfg.nroutes = sizeof(routes) / sizeof(routes[0]);
    cfg.gzip = false;
    cn_http_server_t *srv;
    if ((rc = cn_http_server_start(node, &cfg, &srv)) < 0)
        goto fail;
    printf("ready\n");
    fflush(stdout);
    rc = cn_node_run(node);
    cn_node_free(node);
    cn_http_server_free(srv);
    return rc < 0;
fail:
    fprintf(stderr, "otel_front: %s\n", cn_strerror(rc));
    return 1;
}
