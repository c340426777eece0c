/* config.c - oneblog-cms's options: one table (name, type, default, environment
 * variable, help) drives loading, validation and printing. Options come from the
 * environment only (ONEBLOG_*, DATABASE_URL), as in every OneBlog service.
 */
#include "cms.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { OPT_STR, OPT_INT, OPT_BOOL, OPT_PORT, OPT_MS, OPT_PCT };

/* The version `cms` announces when ONEBLOG_VERSION is not set: the build's
 * (make passes the VERSION file), else the source default. */
#ifndef ONEBLOG_BUILD_VERSION
#define ONEBLOG_BUILD_VERSION "0.1.0"
#endif

typedef struct opt {
    const char *name;
    int type;
    size_t off;
    const char *def;
    const char *env;
    const char *help;
} opt_t;

#define O(f, t, def, env, help) { #f, t, offsetof(cms_config_t, f), def, env, help }

static const opt_t opts[] = {
    O(data_dir, OPT_STR, "./data", "ONEBLOG_DATA_DIR", "SQLite database directory"),
    O(database_url, OPT_STR, "", "DATABASE_URL",
      "postgres://user@host:port/db selects PostgreSQL instead of SQLite"),
    O(db_pool, OPT_INT, "0", "ONEBLOG_DB_POOL", "database connections (0: 5 SQLite, 8 PostgreSQL)"),
    O(node_name, OPT_STR, "cms@127.0.0.1", "ONEBLOG_CMS_NODE", "this node's name"),
    O(cookie, OPT_STR, "", "ONEBLOG_COOKIE", "Erlang distribution cookie"),
    O(dist, OPT_BOOL, "1", "ONEBLOG_DIST", "serve: join the Erlang distribution (0: local only)"),
    O(dist_tls, OPT_BOOL, "0", "ONEBLOG_DIST_TLS",
      "serve: distribution over TLS, both ends' certificates checked against the CA"),
    O(dist_tls_cert, OPT_STR, "", "ONEBLOG_DIST_TLS_CERT", "TLS: this node's PEM certificate"),
    O(dist_tls_key, OPT_STR, "", "ONEBLOG_DIST_TLS_KEY", "TLS: its PEM private key"),
    O(dist_tls_ca, OPT_STR, "", "ONEBLOG_DIST_TLS_CA", "TLS: PEM CA certificate(s) peers need"),
    O(log_level, OPT_STR, "info", "ONEBLOG_LOG_LEVEL", "error, warn, info or debug"),
    O(demo, OPT_BOOL, "1", "ONEBLOG_DEMO", "serve: load demo content into an empty database"),
    O(demo_dir, OPT_STR, "cms/demo", "ONEBLOG_DEMO_DIR", "where the demo content is"),
    O(admin, OPT_BOOL, "1", "ONEBLOG_ADMIN", "serve: run the admin web UI and JSON API"),
    O(admin_host, OPT_STR, "127.0.0.1", "ONEBLOG_ADMIN_HOST", "admin: numeric address to listen on"),
    O(admin_port, OPT_PORT, "2369", "ONEBLOG_ADMIN_PORT", "admin: TCP port (0: any free port)"),
    O(admin_dir, OPT_STR, "cms", "ONEBLOG_ADMIN_DIR", "admin: holds admin_views/ and admin_assets/"),
    O(admin_secure_cookie, OPT_BOOL, "0", "ONEBLOG_ADMIN_SECURE_COOKIE",
      "admin: Secure session cookies (set when served behind TLS)"),
    O(version, OPT_STR, ONEBLOG_BUILD_VERSION, "ONEBLOG_VERSION",
      "serve: version announced with `cms` (clients route canary shares by it)"),
    O(drain_ms, OPT_MS, "1000", "ONEBLOG_SHUTDOWN_DRAIN_MS",
      "serve: on SIGTERM, leave the registry and keep answering this long"),
    O(fault_error_pct, OPT_PCT, "0", "ONEBLOG_FAULT_ERROR_RATE",
      "TEST ONLY: % of reader calls answered {error, internal}"),
    O(fault_delay_ms, OPT_MS, "0", "ONEBLOG_FAULT_DELAY_MS",
      "TEST ONLY: delay added to every reader call (ms)"),
};

static int set_opt(cms_config_t *cfg, const opt_t *o, const char *v, char *err)
{
    char *p = (char *)cfg + o->off, *end;
    switch (o->type) {
    case OPT_STR:
        free(*(char **)p);
        *(char **)p = xstrdup(v);
        return 0;
    case OPT_INT:
    case OPT_PORT:
    case OPT_MS:
    case OPT_PCT: {
        long max = o->type == OPT_PORT ? 65535 : o->type == OPT_MS ? 600000
                 : o->type == OPT_PCT ? 100 : 64;
        long n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < 0 || n > max) {
            snprintf(err, CMS_ERR_LEN, "%s: '%.40s' is not an integer in 0..%ld", o->env, v,
                     max);
            return -EINVAL;
        }
        *(int *)p = (int)n;
        return 0;
    }
    case OPT_BOOL:
        if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
            *(bool *)p = true;
        else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
            *(bool *)p = false;
        else {
            snprintf(err, CMS_ERR_LEN, "%s: '%.40s' is not a boolean (1/0, true/false)", o->env,
                     v);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

int cms_config_load(cms_config_t *cfg, char err[CMS_ERR_LEN])
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const char *v = getenv(opts[i].env);
        int rc = set_opt(cfg, &opts[i], opts[i].def, err);
        if (rc == 0 && v)
            rc = set_opt(cfg, &opts[i], v, err);
        if (rc < 0)
            return rc;
    }
    static const char *const levels[] = { "error", "warn", "info", "debug" };
    for (int i = 0; i < 4; i++)
        if (strcmp(cfg->log_level, levels[i]) == 0) {
            cms_log_level = i;
            return 0;
        }
    snprintf(err, CMS_ERR_LEN, "ONEBLOG_LOG_LEVEL: '%.40s' is not error, warn, info or debug",
             cfg->log_level);
    return -EINVAL;
}

void cms_config_free(cms_config_t *cfg)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (opts[i].type == OPT_STR)
            free(*(char **)((char *)cfg + opts[i].off));
    memset(cfg, 0, sizeof(*cfg));
}

void cms_config_print(const cms_config_t *cfg)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const char *p = (const char *)cfg + opts[i].off;
        char val[64];
        if (opts[i].type == OPT_STR)
            snprintf(val, sizeof val, "%s", *(char *const *)p ? *(char *const *)p : "");
        else if (opts[i].type != OPT_BOOL)
            snprintf(val, sizeof val, "%d", *(const int *)p);
        else
            snprintf(val, sizeof val, "%s", *(const bool *)p ? "1" : "0");
        /* Never print secrets. */
        if (strcmp(opts[i].name, "cookie") == 0 && val[0])
            snprintf(val, sizeof val, "(set)");
        if (strcmp(opts[i].name, "database_url") == 0 && strchr(val, '@') && strchr(val, ':'))
            snprintf(val, sizeof val, "(set)");
        printf("  %-18s %-30s %s\n", opts[i].env, val, opts[i].help);
    }
}

const char *cms_config_store_target(const cms_config_t *cfg)
{
    return cfg->database_url && *cfg->database_url ? cfg->database_url : cfg->data_dir;
}
