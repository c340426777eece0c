/* admin.h - the editors' side of oneblog-cms: the admin web UI (server-rendered
 * Mustache pages under /admin/) and the JSON Admin API (/admin/api/v1/), on their
 * own HTTP port beside the `cms` RPC server.
 *
 * Both run in the CMS node: each HTTP connection is a libcnode process that
 * reads and writes the store directly (the store's transactions serialise the
 * writes), and asks the `cms` gen_server to notify subscribers after every change
 * readers can see ({changed, Version, Paths}); publish, unpublish, schedule and
 * delete go through `cms` itself ({publish, Id} ...), so it also re-arms its
 * schedule timer. Sessions and login rate limits live in this node's memory.
 *
 * Files: admin.c (this server, routes, pages, static assets), admin_auth.c
 * (passwords, sessions, CSRF, rate limiting, API keys), admin_posts.c (post list,
 * editor, preview, workflow, revisions), admin_site.c (tags, staff, settings),
 * admin_api.c (the JSON API); templates in admin_views/, CSS and JS in
 * admin_assets/.
 */
#ifndef CMS_ADMIN_H
#define CMS_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "cms.h"

typedef struct cms_admin cms_admin_t;

typedef struct cms_admin_opts {
    cms_store_t *store;     /* borrowed; must outlive the admin */
    const char *host;       /* numeric address; NULL = "127.0.0.1" */
    int port;               /* 0 = the kernel picks (cms_admin_port) */
    const char *dir;        /* holds admin_views/ and admin_assets/; NULL = "cms" */
    bool secure_cookie;     /* Secure cookies (behind TLS) */
    const char *rpc_name;   /* the `cms` server to notify; NULL = "cms" */
    cms_clock_fn clock;     /* seconds; NULL = cms_time_now */
} cms_admin_opts_t;

/* Load the templates, bind and start serving. Call from a process of the node.
 * `o` is copied (its strings too). Returns 0 and *out, or a negative errno with
 * a message in err (a missing template directory, a port in use). */
int cms_admin_start(const cms_admin_opts_t *o, cms_admin_t **out, char err[CMS_ERR_LEN]);

/* The bound port. */
int cms_admin_port(const cms_admin_t *a);

/* Stop accepting, let requests in progress finish (up to 5 s), from a process of
 * the node; the store may be closed after it returns. */
void cms_admin_stop(cms_admin_t *a);

/* Free after cn_node_free(), or after cms_admin_stop(). NULL is allowed. */
void cms_admin_free(cms_admin_t *a);

/* Hash a password for storage (argon2id, 64 MiB, 2 passes, 16-byte salt): a new
 * encoded string in *out. Runs on the blocking pool when called from a process.
 * Returns 0 or -EINVAL / -EIO. */
int cms_admin_hash_password(const char *password, char **out);

/* A new admin API key for user_id: stores its hash and returns the key to show
 * once ("ID.SECRET", a new string) in *key. */
int cms_admin_apikey_create(cms_store_t *s, const char *name, int64_t user_id, char **key,
                            char err[CMS_ERR_LEN]);

#endif /* CMS_ADMIN_H */
