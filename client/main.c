/* main.c - oneblog-client: configuration, start-up, signals.
 *
 *   oneblog-client            serve the blog (configured by the environment)
 *   oneblog-client help       the options and their current values
 *
 * One node: the Erlang distribution (so it can call `cms` and be notified), the
 * cluster (to find CMS nodes by service), the HTTP server and two processes of
 * its own: the CMS subscriber (cms.c) and the signal watcher below. SIGHUP
 * reloads the theme (and the distribution cookies); SIGINT/SIGTERM stop the HTTP
 * server gracefully, then the node.
 */
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/telemetry.h"
#include "common/privs.h"

/* ---------------------------------------------------------------------------------
 * Options: one table drives parsing, help and the start-up summary
 * ------------------------------------------------------------------------------ */

enum { OPT_STR, OPT_INT, OPT_BOOL };

typedef struct opt {
    const char *env;
    int type;
    size_t off;
    const char *def;
    long min, max;    /* OPT_INT bounds */
    const char *help;
} opt_t;

#define O(env, t, f, def, min, max, help) { env, t, offsetof(client_config_t, f), def, min, max, help }

static const opt_t opts[] = {
    O("ONEBLOG_HTTP_HOST", OPT_STR, http_host, "127.0.0.1", 0, 0, "address the reader site binds"),
    O("ONEBLOG_HTTP_PORT", OPT_INT, http_port, "8080", 0, 65535, "reader site port (0: any)"),
    O("ONEBLOG_CLIENT_NODE", OPT_STR, node_name, "client@127.0.0.1", 0, 0, "this node's name"),
    O("ONEBLOG_SITE_URL", OPT_STR, site_url, "", 0, 0,
      "base of absolute links (canonical, feeds); empty: the CMS's site url"),
    O("ONEBLOG_THEME_DIR", OPT_STR, theme_dir, "themes/default", 0, 0,
      "theme: templates/*.mustache and assets/ (reloaded on SIGHUP)"),
    O("ONEBLOG_IMAGES_DIR", OPT_STR, images_dir, "./data/images", 0, 0,
      "served under /content/images/ (missing images get a placeholder)"),
    O("ONEBLOG_CACHE_MB", OPT_INT, cache_mb, "64", 0, 65536, "page cache budget in MiB (0: off)"),
    O("ONEBLOG_CMS_TIMEOUT_MS", OPT_INT, cms_timeout_ms, "2000", 10, 60000, "one CMS call"),
    O("ONEBLOG_RECS_TIMEOUT_MS", OPT_INT, recs_timeout_ms, "150", 5, 10000,
      "the recommendations call (then \"Read next\" by tags)"),
    O("ONEBLOG_BREAKER_FAILURES", OPT_INT, breaker_failures, "3", 1, 1000,
      "consecutive failures that open a CMS node's breaker"),
    O("ONEBLOG_BREAKER_OPEN_MS", OPT_INT, breaker_open_ms, "2000", 10, 600000,
      "how long an open breaker waits before a probe call"),
    O("ONEBLOG_LOG_LEVEL", OPT_STR, log_level, "info", 0, 0, "error, warn, info or debug"),
    O("ONEBLOG_ACCESS_LOG", OPT_BOOL, access_log, "0", 0, 0, "one JSON line per request on stdout"),
    O("ONEBLOG_SITE_METRICS", OPT_BOOL, site_metrics, "1", 0, 0,
      "serve /metrics on the reader site (0: only on ONEBLOG_METRICS_ADDR, if set)"),
    O("ONEBLOG_STABLE_VERSION", OPT_STR, stable_version, "", 0, 0,
      "the stable CMS version (empty: the one most CMS nodes run); others are canaries"),
    O("ONEBLOG_CANARY_SHARE", OPT_INT, canary_share_pct, "10", 0, 100,
      "% of CMS calls sent to canary-version nodes"),
    O("ONEBLOG_CANARY_WINDOW_MS", OPT_INT, canary_window_ms, "30000", 1000, 3600000,
      "window over which a canary is compared with the stable version"),
    O("ONEBLOG_CANARY_MIN_CALLS", OPT_INT, canary_min_calls, "20", 1, 1000000,
      "calls a canary needs in the window before it is judged"),
    O("ONEBLOG_CANARY_ERROR_MARGIN", OPT_INT, canary_error_margin_pct, "5", 0, 100,
      "roll back when the canary's error rate exceeds the stable's by this (% points)"),
    O("ONEBLOG_CANARY_P99_MARGIN_MS", OPT_INT, canary_p99_margin_ms, "100", 0, 600000,
      "roll back when the canary's p99 latency exceeds the stable's by this (ms)"),
};

static int config_load(client_config_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const opt_t *o = &opts[i];
        const char *v = getenv(o->env);
        if (v == NULL)
            v = o->def;
        void *field = (char *)cfg + o->off;
        switch (o->type) {
        case OPT_STR:
            *(char **)field = xstrdup(v);
            break;
        case OPT_INT: {
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || errno || n < o->min || n > o->max) {
                snprintf(err, errlen, "%s: '%.40s' is not a number from %ld to %ld", o->env, v,
                         o->min, o->max);
                return -EINVAL;
            }
            *(int *)field = (int)n;
            break;
        }
        case OPT_BOOL:
            if (strcmp(v, "1") != 0 && strcmp(v, "0") != 0 && strcmp(v, "true") != 0 &&
                strcmp(v, "false") != 0) {
                snprintf(err, errlen, "%s: '%.40s' is not 0 or 1", o->env, v);
                return -EINVAL;
            }
            *(bool *)field = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
            break;
        }
    }
    static const char *const levels[] = { "error", "warn", "info", "debug" };
    for (int i = 0; i < 4; i++)
        if (strcmp(cfg->log_level, levels[i]) == 0) {
            client_log_level = i;
            return 0;
        }
    snprintf(err, errlen, "ONEBLOG_LOG_LEVEL: '%.40s' is not error, warn, info or debug",
             cfg->log_level);
    return -EINVAL;
}

static void config_free(client_config_t *cfg)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (opts[i].type == OPT_STR)
            free(*(char **)((char *)cfg + opts[i].off));
}

static void config_print(const client_config_t *cfg, FILE *f)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const opt_t *o = &opts[i];
        const void *field = (const char *)cfg + o->off;
        char val[300];
        if (o->type == OPT_STR)
            snprintf(val, sizeof val, "%s", *(char *const *)field);
        else if (o->type == OPT_INT)
            snprintf(val, sizeof val, "%d", *(const int *)field);
        else
            snprintf(val, sizeof val, "%d", *(const bool *)field ? 1 : 0);
        fprintf(f, "  %-26s %-22s %s\n", o->env, val, o->help);
    }
    fprintf(f, "  %-26s %-22s %s\n", "ONEBLOG_CLUSTER_NODES", getenv("ONEBLOG_CLUSTER_NODES") ?: "",
            "CMS nodes (or another ONEBLOG_CLUSTER_STRATEGY)");
    fprintf(f, "  %-26s %-22s %s\n", "ONEBLOG_COOKIE_FILE", getenv("ONEBLOG_COOKIE_FILE") ?: "",
            "distribution cookie (or ONEBLOG_COOKIE)");
    static const char *const tls[][2] = {
        { "ONEBLOG_DIST_TLS", "1: distribution over TLS, both ends' certificates checked" },
        { "ONEBLOG_DIST_TLS_CERT", "TLS: this node's PEM certificate" },
        { "ONEBLOG_DIST_TLS_KEY", "TLS: its PEM private key" },
        { "ONEBLOG_DIST_TLS_CA", "TLS: PEM CA certificate(s) peers need" },
    };
    for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++)
        fprintf(f, "  %-26s %-22s %s\n", tls[i][0], getenv(tls[i][0]) ?: "", tls[i][1]);
}

static void on_lib_log(void *ud, int level, const char *msg)
{
    (void)ud;
    client_log(level, "dist", "%s", msg);
}

/* ---------------------------------------------------------------------------------
 * Signals
 * ------------------------------------------------------------------------------ */

static int sigfd = -1;

static void reload_theme(client_t *cl)
{
    client_theme_t *t;
    char err[256];
    int rc = client_theme_load(cl->cfg.theme_dir, &t, err, sizeof err);
    if (rc < 0) {
        client_log(CLIENT_LOG_ERROR, "theme", "reload: %s (the old theme stays)", err);
        return;
    }
    client_theme_t *old = cl->theme;
    cl->theme = t;
    client_theme_unref(old);
    client_invalidate(cl, NULL, 0);
    client_log(CLIENT_LOG_INFO, "theme", "reloaded %s: %d templates, %d assets",
               cl->cfg.theme_dir, t->ntemplates, t->nassets);
}

static void signal_watcher(void *arg)
{
    client_t *cl = arg;
    struct signalfd_siginfo si;
    for (;;) {
        if (cn_wait_fd(sigfd, CN_READABLE, CN_INFINITY) < 0)
            break;
        if (read(sigfd, &si, sizeof si) != (ssize_t)sizeof si)
            continue;
        if (si.ssi_signo == SIGHUP) {
            reload_theme(cl);
            /* The library logs a failed reload (and keeps the old cookies). */
            if (cn_dist_reload_cookies(cl->node) == 0)
                client_log(CLIENT_LOG_INFO, "dist", "SIGHUP: cookies reloaded");
            cn_dist_reload_tls(cl->node); /* logs its outcome; -ENOTSUP when off */
            continue;
        }
        break;
    }
    client_log(CLIENT_LOG_INFO, "main", "signal %u: shutting down", si.ssi_signo);
    cl->stopping = true;
    cn_http_server_stop(cl->http);
    /* Requests in progress finish (bounded by the server's shutdown timeout). */
    for (int i = 0; i < 300 && !cn_http_server_done(cl->http); i++)
        cn_sleep(50);
    cn_fd_close(sigfd);
    sigfd = -1;
    cn_telemetry_stop(cl->node, 2000); /* flush the spans still queued */
    cn_node_stop(cl->node);
}

/* ---------------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------------ */

static cn_http_route_t *build_routes(client_t *cl, size_t *n)
{
    static const struct {
        const cn_http_route_t *r;
        const size_t *n;
    } tables[] = {
        { client_ops_routes, &client_nops_routes },
        { client_asset_routes, &client_nasset_routes },
        { client_feed_routes, &client_nfeed_routes }, /* "/rss/" before "/:slug/" */
        { client_page_routes, &client_npage_routes },
    };
    size_t total = 2;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        total += *tables[i].n;
    cn_http_route_t *v = xcalloc(total, sizeof(*v));
    size_t k = 0;
    /* Prometheus scrapes (metrics.c, cnode/telemetry.h); before "/:file". */
    if (cl->cfg.site_metrics)
        v[k++] = (cn_http_route_t){ "GET", "/metrics", cn_metrics_handler, NULL };
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        for (size_t j = 0; j < *tables[i].n; j++) {
            v[k] = tables[i].r[j];
            v[k++].udata = cl;
        }
    v[k++] = (cn_http_route_t){ "GET", "/:file", client_handle_root_file, cl };
    *n = k;
    return v;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: oneblog-client [help]\n\n"
               "Serves the blog to readers, rendering pages from the `cms` service found\n"
               "in the cluster. Options (environment, current value, meaning):\n\n");
}

int main(int argc, char **argv)
{
    xmalloc_keep_heap(); /* before the first allocation */
    client_t *cl = xcalloc(1, sizeof(*cl));
    char err[256] = "";
    int rc, status = 1;
    cn_http_route_t *routes = NULL;
    size_t nroutes = 0;

    /* Give root up before anything is opened (common/privs.h). */
    int prc = privs_drop_root(err, sizeof err);
    if (prc != PRIVS_UNCHANGED)
        fprintf(stderr, "oneblog-client: %s\n", err);
    if (prc < 0) {
        free(cl);
        return 1;
    }
    cl->content_version = -1;
    if (config_load(&cl->cfg, err, sizeof err) < 0) {
        fprintf(stderr, "oneblog-client: %s\n", err);
        config_free(&cl->cfg);
        free(cl);
        return 2;
    }
    /* The node's name, as every binary takes it: --name, else ONEBLOG_NODE, else
     * ONEBLOG_CLIENT_NODE (the table's option) or its default. */
    const char *name = NULL;
    if (argc == 3 && strcmp(argv[1], "--name") == 0) {
        name = argv[2];
        argc = 1;
    } else if (getenv("ONEBLOG_CLIENT_NODE") == NULL) {
        name = getenv("ONEBLOG_NODE");
    }
    if (name && *name) {
        free(cl->cfg.node_name);
        cl->cfg.node_name = xstrdup(name);
    }
    if (argc > 1) {
        bool help = strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
                    strcmp(argv[1], "-h") == 0;
        usage(help ? stdout : stderr);
        config_print(&cl->cfg, help ? stdout : stderr);
        config_free(&cl->cfg);
        free(cl);
        return help ? 0 : 2;
    }

    /* Signals are read through a signalfd by a process; block them before any
     * thread (the node's pool) starts, so that every thread inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);

    if ((rc = client_theme_load(cl->cfg.theme_dir, &cl->theme, err, sizeof err)) < 0) {
        fprintf(stderr, "oneblog-client: theme: %s\n", err);
        goto out;
    }
    cl->cache = cache_new((size_t)cl->cfg.cache_mb << 20);
    /* a sixteenth of the page cache, at most 4 MiB (a few hundred result pages) */
    size_t search_bytes = ((size_t)cl->cfg.cache_mb << 20) / 16;
    cl->search_cache = cache_new(search_bytes < (4u << 20) ? search_bytes : (4u << 20));

    cn_node_opts_t no = { .name = cl->cfg.node_name };
    if ((rc = cn_node_new(&no, &cl->node)) < 0) {
        fprintf(stderr, "oneblog-client: ONEBLOG_CLIENT_NODE '%s': %s\n", cl->cfg.node_name,
                cn_strerror(rc));
        goto out;
    }
    cn_dist_opts_t d;
    cn_dist_opts_from_env(&d, 0, NULL);
    d.node_name = cl->cfg.node_name;
    d.sighup_reload = false; /* our signal watcher reloads the cookies with the theme */
    d.log = on_lib_log;
    if ((rc = cn_dist_start(cl->node, &d)) < 0) {
        fprintf(stderr, "oneblog-client: distribution: %s\n", cn_strerror(rc));
        goto out;
    }
    cn_cluster_opts_t co;
    if ((rc = cn_cluster_opts_from_env(&co)) < 0 ||
        (co.log = on_lib_log, rc = cn_cluster_start(cl->node, &co)) < 0) {
        fprintf(stderr, "oneblog-client: cluster: %s\n", cn_strerror(rc));
        goto out;
    }
    snprintf(cl->zone, sizeof cl->zone, "%s", co.zone ? co.zone : "");
    if ((rc = client_canary_start(cl)) < 0) {
        fprintf(stderr, "oneblog-client: canary: %s\n", cn_strerror(rc));
        goto out;
    }

    /* Telemetry from the environment (docs/observability.md): metrics always
     * (on /metrics here and on ONEBLOG_METRICS_ADDR), traces when an OTLP
     * endpoint is set. */
    if ((rc = cn_telemetry_start(cl->node, NULL)) < 0 || (rc = client_metrics_start(cl)) < 0) {
        fprintf(stderr, "oneblog-client: telemetry: %s\n", cn_strerror(rc));
        goto out;
    }

    routes = build_routes(cl, &nroutes);
    cn_http_config_t hc;
    cn_http_config_init(&hc);
    hc.host = cl->cfg.http_host;
    hc.port = (uint16_t)cl->cfg.http_port;
    hc.routes = routes;
    hc.nroutes = nroutes;
    hc.fallback = client_handle_fallback;
    hc.fallback_udata = cl;
    hc.gzip = false; /* cached pages carry their own gzip copy (cache.c) */
    hc.server_name = "oneblog";
    hc.shutdown_timeout_ms = 5000;
    if (cl->cfg.access_log)
        hc.access_log = stdout;
    if ((rc = cn_http_server_start(cl->node, &hc, &cl->http)) < 0) {
        fprintf(stderr, "oneblog-client: HTTP on %s:%d: %s\n", cl->cfg.http_host,
                cl->cfg.http_port, cn_strerror(rc));
        goto out;
    }
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    if ((rc = cn_spawn(cl->node, client_subscriber_main, cl, &own, &cl->subscriber)) < 0 ||
        (rc = cn_spawn(cl->node, signal_watcher, cl, &own, NULL)) < 0 ||
        (rc = cn_spawn(cl->node, client_events_main, cl, &own, &cl->events_batcher)) < 0) {
        fprintf(stderr, "oneblog-client: %s\n", cn_strerror(rc));
        goto out;
    }
    printf("oneblog-client: node %s serving http://%s:%u/ (theme %s: %d templates, %d assets; "
           "cache %d MiB)\n",
           cl->cfg.node_name, cl->cfg.http_host, cn_http_server_port(cl->http),
           cl->cfg.theme_dir, cl->theme->ntemplates, cl->theme->nassets, cl->cfg.cache_mb);
    fflush(stdout);
    if ((rc = cn_node_run(cl->node)) < 0)
        fprintf(stderr, "oneblog-client: node: %s\n", cn_strerror(rc));
    else
        status = 0;
out:
    cn_node_free(cl->node);
    cn_http_server_free(cl->http);
    client_assets_free();
    free(routes);
    cache_free(cl->cache);
    cache_free(cl->search_cache);
    client_theme_unref(cl->theme);
    proto_settings_clear(&cl->settings);
    proto_settings_clear(&cl->settings_retired);
    free(cl->cms_nodes);
    client_canary_free(cl);
    config_free(&cl->cfg);
    free(cl);
    return status;
}
