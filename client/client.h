/* client.h - oneblog-client's own state and the functions its files share.
 *
 * The client is one libcnode node: an HTTP server whose connection processes
 * render pages from the CMS's replies (client/pages.c, feed_routes.c, assets.c,
 * ops.c), a page cache (cache.c), the theme (theme.c), the CMS calls with their
 * load balancing, retry and circuit breaker (cms.c), the subscriber that drops
 * cached pages on {content_changed, ...} (cms.c), readers (reader.c: the reader
 * id cookie, page views, recommendations) and the template contexts (view.c).
 *
 * Everything runs on the node's one scheduler thread, so the state below is
 * shared by processes without locks; a process that blocks (a CMS call, a slow
 * client) must not keep borrowed pointers into state that may be replaced
 * meanwhile (the theme is reference counted for that reason).
 */
#ifndef ONEBLOG_CLIENT_H
#define ONEBLOG_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/gen_server.h"
#include "cnode/http.h"
#include "cnode/proc.h"

#include "../common/buf.h"
#include "../common/tpl.h"
#include "../common/value.h"
#include "../proto/proto.h"
#include "cache.h"

#define CLIENT_VERSION "0.1.0"
#define CLIENT_READER_COOKIE "ob_rid"

/* ---------------------------------------------------------------------------------
 * Configuration (main.c: one table of options, from the environment)
 * ------------------------------------------------------------------------------ */

typedef struct client_config {
    char *http_host;        /* ONEBLOG_HTTP_HOST, numeric address to bind */
    int http_port;          /* ONEBLOG_HTTP_PORT */
    char *node_name;        /* ONEBLOG_CLIENT_NODE */
    char *site_url;         /* ONEBLOG_SITE_URL; "" = the CMS's settings.url */
    char *theme_dir;        /* ONEBLOG_THEME_DIR */
    char *images_dir;       /* ONEBLOG_IMAGES_DIR: served under /content/images/ */
    int cache_mb;           /* ONEBLOG_CACHE_MB; 0 = no page cache */
    int cms_timeout_ms;     /* ONEBLOG_CMS_TIMEOUT_MS: one CMS call */
    int recs_timeout_ms;    /* ONEBLOG_RECS_TIMEOUT_MS: the recommendations call */
    int breaker_failures;   /* ONEBLOG_BREAKER_FAILURES: consecutive, to open */
    int breaker_open_ms;    /* ONEBLOG_BREAKER_OPEN_MS: before a probe call */
    char *log_level;        /* ONEBLOG_LOG_LEVEL: error, warn, info, debug */
    bool access_log;        /* ONEBLOG_ACCESS_LOG: one JSON line per request */
    bool site_metrics;      /* ONEBLOG_SITE_METRICS: /metrics on the reader site */
    /* canary rollouts of the CMS (canary.c) */
    char *stable_version;   /* ONEBLOG_STABLE_VERSION; "" = the most common one */
    int canary_share_pct;   /* ONEBLOG_CANARY_SHARE: % of first tries to canaries */
    int canary_window_ms;   /* ONEBLOG_CANARY_WINDOW_MS: the judging window */
    int canary_min_calls;   /* ONEBLOG_CANARY_MIN_CALLS: in the window, to judge */
    int canary_error_margin_pct; /* ONEBLOG_CANARY_ERROR_MARGIN: % points */
    int canary_p99_margin_ms; /* ONEBLOG_CANARY_P99_MARGIN_MS */
} client_config_t;

/* ---------------------------------------------------------------------------------
 * Theme (theme.c)
 * ------------------------------------------------------------------------------ */

typedef struct client_asset {
    char *name;             /* "style.css" */
    char *fp_name;          /* "style.3f2a9c1e.css" */
    char *url;              /* "/assets/style.3f2a9c1e.css" */
    const char *ctype;      /* static */
    char *body;
    size_t len;
    char *gz;               /* NULL when not compressible or not smaller */
    size_t gzlen;
    char etag[24];
} client_asset_t;

typedef struct client_theme {
    tpl_set_t *tpl;
    client_asset_t *assets;
    int nassets;
    int ntemplates;
    int refs;               /* one for the client, one per user in progress */
} client_theme_t;

/* Load every templates/ *.mustache and assets/ * of dir. Returns 0 and *out with
 * one reference, or a negative errno with a message in err. */
int client_theme_load(const char *dir, client_theme_t **out, char *err, size_t errlen);
void client_theme_ref(client_theme_t *t);
void client_theme_unref(client_theme_t *t);
/* An asset by plain or fingerprinted name, or NULL; *fingerprinted says which. */
const client_asset_t *client_theme_asset(const client_theme_t *t, const char *name,
                                         bool *fingerprinted);
/* The fingerprinted URL of an asset ("/assets/style.abc.css"), or the plain one. */
const char *client_theme_asset_url(const client_theme_t *t, const char *name);

/* ---------------------------------------------------------------------------------
 * CMS calls (cms.c)
 * ------------------------------------------------------------------------------ */

/* Per CMS node: calls in flight from here and the circuit breaker. */
typedef struct client_cms_node {
    char name[256];
    uint32_t outstanding;   /* calls in progress from this client */
    int failures;           /* consecutive */
    uint64_t open_until_ms; /* breaker open until (cn_now_ms); 0 = closed */
    bool probing;           /* half-open: one probe call in flight */
    uint64_t calls, errors; /* totals */
} client_cms_node_t;

/* A decoded reply: the message holds the term; `index` points at X of {ok, X}. */
typedef struct client_reply {
    cn_msg_t *msg;
    const char *buf;
    int index;
    int status;             /* PROTO_OK, PROTO_ERROR, PROTO_REDIRECT */
    char reason[PROTO_SLUG_MAX + 1]; /* error atom, or the redirect's slug */
} client_reply_t;

void client_reply_free(client_reply_t *r);

/* ---------------------------------------------------------------------------------
 * The client
 * ------------------------------------------------------------------------------ */

typedef struct client {
    client_config_t cfg;
    cn_node_t *node;
    cn_http_server_t *http;
    cache_t *cache;
    cache_t *search_cache;      /* search result pages, apart: a flood of distinct
                                   queries must not push the site's pages out */
    client_theme_t *theme;
    char theme_err[256];

    /* The CMS */
    client_cms_node_t *cms_nodes;
    int ncms_nodes;
    uint32_t rr;                /* round robin between equals */
    char zone[64];              /* this node's zone (ONEBLOG_CLUSTER_ZONE): CMS nodes
                                   in it are preferred */
    cn_pid_t subscriber;
    int64_t content_version;    /* latest seen; -1 = none yet */
    uint64_t generation;        /* bumped by every invalidation */
    proto_settings_t settings;  /* the site's, as last fetched */
    proto_settings_t settings_retired; /* the one before a change, kept alive for
                                   requests that still point into it (see
                                   client_settings) */
    bool settings_valid;        /* false: fetch again before the next render */
    bool have_settings;         /* settings holds a reply (maybe old) */
    uint64_t cms_ok_ms;         /* last successful call (cn_now_ms); 0 = never */

    cn_pid_t events_batcher;    /* reader.c's page-view batcher */
    struct client_canary *canary; /* canary.c; NULL = no canary routing */

    /* Counters for /healthz */
    uint64_t pages, stale_served, unavailable;
    uint64_t views_sent, views_dropped, recs_served, recs_failed;
    bool stopping;
} client_t;

/* cms.c */
/* Call `cms` for request r on a live CMS node: the one with the fewest calls in
 * flight from here among those whose breaker is closed (or due for a probe),
 * with cfg.cms_timeout_ms; a failed read is tried once more on another node.
 * Returns 0 with *out (a reply of any PROTO_* status; free with
 * client_reply_free), -EAGAIN when no CMS answered (none known, all breakers
 * open, or every try failed), -EPROTO for a reply that does not decode. */
int client_cms_call(client_t *cl, const proto_req_t *r, client_reply_t *out);
/* The same for another service's raw request (recs): one try, timeout_ms. */
int client_service_call(client_t *cl, const char *service, ei_x_buff *req,
                        int64_t timeout_ms, cn_msg_t **msg, cn_term_t *reply);
/* True if some CMS node is registered with a closed breaker. */
bool client_cms_available(client_t *cl);
/* Fetch the settings if invalid. Returns 0 (cl->settings usable: fresh, or old
 * when the CMS is down), or -EAGAIN when there never were any. */
int client_settings(client_t *cl);
/* The subscriber process: subscribes to every `cms` member and applies
 * {content_changed, Version, Paths} to the cache. arg = client_t *. */
void client_subscriber_main(void *arg);
/* Drop cached pages for paths (NULL/0: everything). */
void client_invalidate(client_t *cl, const char *const *paths, int n);

/* ---------------------------------------------------------------------------------
 * Canary rollouts (canary.c; the rules are at the top of that file)
 * ------------------------------------------------------------------------------ */

typedef struct client_canary client_canary_t;
struct cn_cluster_member;

/* Set up the canary state (cl->canary) and spawn the start of the `canary`
 * control server, announced as cluster service `canary` (for oneblog-ctl).
 * Call after cn_cluster_start, before cn_node_run. Returns 0 or a negative errno. */
int client_canary_start(client_t *cl);
void client_canary_free(client_t *cl);
/* Should this call's first try go to a canary version? (ONEBLOG_CANARY_SHARE) */
bool client_canary_roll(client_t *cl);
/* The stable version among the `cms` members m[0..n) into out (64 bytes). */
void client_canary_stable(client_t *cl, const struct cn_cluster_member *m, int n, char *out);
/* A member's rank for this try, lower first: 0 the wanted group, 1 the other
 * group, 2 a rolled-back canary (last resort). */
int client_canary_tier(client_t *cl, const char *version, const char *stable, bool want_canary);
/* Record one call attempt to a node of `version`. May roll a canary back. */
void client_canary_record(client_t *cl, const char *version, bool ok, uint64_t latency_us);

/* ---------------------------------------------------------------------------------
 * Serving rendered pages (pages.c)
 * ------------------------------------------------------------------------------ */

/* What a render function produces. */
typedef struct client_page {
    int status;             /* 200, 301, 404 */
    const char *ctype;      /* static string */
    buf_t body;             /* for a 301: the Location */
    int flags;              /* CACHE_* */
    bool nocache;           /* do not keep (404s of arbitrary paths, search) */
    bool html;              /* a reader page: cookie, page view, recommendations */
    char post_slug[PROTO_SLUG_MAX + 1]; /* a post page: its slug (page views, recs) */
} client_page_t;

/* Render into *pg. Returns 0, -EAGAIN (the CMS did not answer), or another
 * negative errno (500). */
typedef int (*client_render_cb)(client_t *cl, cn_http_req_t *req, void *arg,
                                client_page_t *pg);

/* Answer req from the cache under `key`, or render, cache and answer; serve a
 * stale copy (X-Cache: STALE) or a friendly 503 when the CMS is down. */
int client_serve(client_t *cl, cn_http_req_t *req, const char *key, client_render_cb render,
                 void *arg);

/* Render an error page (404, 503, 400) into pg with the theme's error template. */
void client_render_error(client_t *cl, cn_http_req_t *req, int status, client_page_t *pg);

/* Routes of each file, concatenated by main.c. */
extern const cn_http_route_t client_page_routes[];
extern const size_t client_npage_routes;
extern const cn_http_route_t client_feed_routes[];
extern const size_t client_nfeed_routes;
extern const cn_http_route_t client_asset_routes[];
extern const size_t client_nasset_routes;
extern const cn_http_route_t client_ops_routes[];
extern const size_t client_nops_routes;
/* assets.c: free the content-images file server at exit. */
void client_assets_free(void);
/* "/:file" (route it last): robots.txt, sitemaps, atom.xml, feed.json. */
int client_handle_root_file(cn_http_req_t *req, void *udata);
/* Unmatched paths: "/slug" -> "/slug/", else the 404 page. udata = client_t *. */
int client_handle_fallback(cn_http_req_t *req, void *udata);

/* ---------------------------------------------------------------------------------
 * Template contexts (view.c)
 * ------------------------------------------------------------------------------ */

/* The base URL of absolute links, without a trailing slash. */
const char *client_base_url(const client_t *cl);
/* The view functions build in arena a (a request's, freed with tv_arena_free
 * after rendering; NULL = the heap), and those given a context use its arena.
 * Strings are copied: the proto structs may go before the tree does. */
/* An allocator for proto_*_in decoders that takes from arena a (the page's). */
proto_alloc_t client_arena_alloc(tv_arena_t *a);
/* A new page context with site, assets, meta defaults (title = site title). */
tv_t *client_view_page(client_t *cl, tv_arena_t *a, const client_theme_t *th, const char *path,
                       const char *query);
/* A card for a post summary. */
tv_t *client_view_card(client_t *cl, tv_arena_t *a, const proto_post_t *p);
/* The `post` object of a post page and its meta (with JSON-LD) set in ctx. */
void client_view_post(client_t *cl, tv_t *ctx, const proto_post_t *p);
/* pagination: prefix "" (home), "/tag/x", "/author/y"; NULL when one page. */
tv_t *client_view_pagination(client_t *cl, tv_arena_t *a, const char *prefix,
                             const proto_pagination_t *pg, const char *query_param);
/* Set meta.* (title, description, canonical, og_*) of a listing or error page. */
void client_view_meta(client_t *cl, tv_t *ctx, const char *title, const char *description,
                      const char *canonical_path, const char *image, bool noindex);
/* Append s as a JSON string as jansson's JSON_ESCAPE_SLASH dump writes it ('"',
 * '\\' and '/' escaped, controls as \b \t \n \f \r or \u00XX, UTF-8 as is);
 * false (nothing appended) when s is not valid UTF-8. */
bool client_json_str(buf_t *out, const char *s);
/* "8 January 2024" (UTC). out holds 40 bytes. */
void client_human_date(int64_t t, char *out);
/* Absolute URL for a path or URL (paths get the base prepended). Arena string. */
char *client_abs_url(client_t *cl, buf_t *tmp, const char *path_or_url);

/* ---------------------------------------------------------------------------------
 * Readers (reader.c)
 * ------------------------------------------------------------------------------ */

/* The reader id from the cookie, or a new one (then Set-Cookie is added).
 * Arena string. */
const char *client_reader_id(cn_http_req_t *req);
/* Record a page view (a cast to `events` if the cluster has one; never waits). */
void client_page_view(client_t *cl, cn_http_req_t *req, const char *reader, const char *path,
                      const char *post_slug, const char *recs_event);
/* Where events go: an `events` member of the cluster (m receives it), else
 * $ONEBLOG_EVENTS_NODE. False when neither. */
bool client_events_dest(cn_dest_t *out, struct cn_cluster_member *m);
/* The page-view batcher process (arg = client_t *). */
void client_events_main(void *arg);
/* Personal recommendations for a post page: HTML of the related block to put
 * in place of the "Read next" one, or NULL (no recs service, error, timeout).
 * *recs_event receives the recs.request event id (arena) or NULL. */
char *client_recommend(client_t *cl, cn_http_req_t *req, const char *reader,
                       const char *slug, const char **recs_event);

/* ---------------------------------------------------------------------------------
 * Metrics (metrics.c)
 * ------------------------------------------------------------------------------ */

/* Register the client's metrics on cl->node (after cn_telemetry_start) and the
 * collect callback that fills them from the counters above at each scrape.
 * Returns 0 or -ENOMEM. */
int client_metrics_start(client_t *cl);

/* ---------------------------------------------------------------------------------
 * Logging (main.c)
 * ------------------------------------------------------------------------------ */

enum { CLIENT_LOG_ERROR = 0, CLIENT_LOG_WARN, CLIENT_LOG_INFO, CLIENT_LOG_DEBUG };
extern int client_log_level;
void client_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define client_log(level, module, ...)                                                   \
    do {                                                                                 \
        if ((level) <= client_log_level)                                                 \
            client_log_write((level), (module), __VA_ARGS__);                            \
    } while (0)

#endif /* ONEBLOG_CLIENT_H */
