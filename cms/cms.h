/* cms.h - oneblog-cms's service state: the configuration, the open store, and the
 * entry points of the parts main.c starts (the `cms` gen_server, the importers,
 * the exporter).
 */
#ifndef CMS_CMS_H
#define CMS_CMS_H

#include <stdbool.h>
#include <stdint.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "store.h"

/* ---- configuration (config.c) ------------------------------------------------ */

typedef struct cms_config {
    char *data_dir;     /* ONEBLOG_DATA_DIR: SQLite's directory */
    char *database_url; /* DATABASE_URL: postgres://... selects PostgreSQL */
    char *node_name;    /* ONEBLOG_CMS_NODE: this node's name */
    char *cookie;       /* ONEBLOG_COOKIE: distribution cookie (when dist lands) */
    char *log_level;    /* ONEBLOG_LOG_LEVEL: error, warn, info, debug */
    char *demo_dir;     /* ONEBLOG_DEMO_DIR: demo content for an empty database */
    int db_pool;        /* ONEBLOG_DB_POOL: connections; 0 = the backend's default */
    bool demo;          /* ONEBLOG_DEMO: load demo content into an empty database */
    bool dist;          /* ONEBLOG_DIST: serve joins the Erlang distribution */
    bool dist_tls;      /* ONEBLOG_DIST_TLS: distribution over TLS (operations.md) */
    char *dist_tls_cert; /* ONEBLOG_DIST_TLS_CERT: this node's PEM certificate */
    char *dist_tls_key; /* ONEBLOG_DIST_TLS_KEY: its PEM private key */
    char *dist_tls_ca;  /* ONEBLOG_DIST_TLS_CA: CA that peers' certificates chain to */
    /* the admin web UI and JSON API (admin*.c), started by serve */
    bool admin;         /* ONEBLOG_ADMIN: serve the admin (0: off) */
    char *admin_host;   /* ONEBLOG_ADMIN_HOST: numeric address to listen on */
    int admin_port;     /* ONEBLOG_ADMIN_PORT: 0 = the kernel picks */
    char *admin_dir;    /* ONEBLOG_ADMIN_DIR: holds admin_views/ and admin_assets/ */
    bool admin_secure_cookie; /* ONEBLOG_ADMIN_SECURE_COOKIE: behind TLS */
    /* deployment (docs/operations.md) */
    char *version;      /* ONEBLOG_VERSION: announced with `cms` (canary rollouts) */
    int drain_ms;       /* ONEBLOG_SHUTDOWN_DRAIN_MS: leave the registry, then wait */
    int fault_error_pct; /* ONEBLOG_FAULT_ERROR_RATE: test only, % of failed replies */
    int fault_delay_ms; /* ONEBLOG_FAULT_DELAY_MS: test only, added to each reply */
} cms_config_t;

/* Fill cfg from defaults, then the environment. Returns 0, or -EINVAL with a
 * message naming the option ("ONEBLOG_DB_POOL: 'x' is not an integer"). */
int cms_config_load(cms_config_t *cfg, char err[CMS_ERR_LEN]);
void cms_config_free(cms_config_t *cfg);
/* Print every option: name, environment variable, value, help (for `help`). */
void cms_config_print(const cms_config_t *cfg);
/* The store target: the DATABASE_URL if set, else the data directory. Borrowed. */
const char *cms_config_store_target(const cms_config_t *cfg);

/* ---- the `cms` gen_server (rpc.c) -------------------------------------------- */

typedef int64_t (*cms_clock_fn)(void);

typedef struct cms_rpc_opts {
    cms_store_t *store;   /* borrowed; must outlive the server */
    cms_clock_fn clock;   /* seconds; NULL = cms_time_now (tests inject a clock) */
    const char *name;     /* registered name; NULL = "cms" */
    bool link;            /* start linked (under a supervisor) */
    /* Fault injection, for canary tests only (docs/operations.md): this share of
     * reader calls (0..100 %) is answered {error, internal}, and every reader
     * call waits fault_delay_ms first. Subscriptions are left alone. */
    int fault_error_pct;
    int fault_delay_ms;
} cms_rpc_opts_t;

/* Start the `cms` gen_server. At start it publishes every overdue scheduled post,
 * then arms a timer for the next one. `o` must outlive the server. Returns as
 * cn_gen_server_start(). Call from a process. */
int cms_rpc_start(const cms_rpc_opts_t *o, cn_pid_t *out);

/* ---- import and export (import.c, export.c) ---------------------------------- */

typedef struct cms_import_stats {
    int posts, pages, tags, authors, skipped;
} cms_import_stats_t;

/* Import every *.md file of dir (Markdown with YAML front matter: title, slug,
 * date, tags, authors, draft, featured, excerpt, feature_image, type: page) and
 * authors.yml if present. Authors named but unknown are created. Existing slugs
 * are skipped (import is idempotent). Returns 0 or a negative code with a message
 * naming the file. */
int cms_import_dir(cms_store_t *s, const char *dir, cms_import_stats_t *st,
                   char err[CMS_ERR_LEN]);

/* Import a Ghost JSON export (db[0].data.posts/tags/users/posts_tags/posts_authors).
 * Posts with markdown in `mobiledoc` or `lexical` cards, or `html` (kept as raw
 * HTML in Markdown), are imported. */
int cms_import_ghost(cms_store_t *s, const char *file, cms_import_stats_t *st,
                     char err[CMS_ERR_LEN]);

/* Write every post, page, tag, author and the settings as one JSON document to
 * out ("-" = stdout). */
int cms_export_json(cms_store_t *s, const char *out, char err[CMS_ERR_LEN]);

#endif /* CMS_CMS_H */
