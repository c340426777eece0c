/* store.h - the content store: the backend interface (a table of function pointers,
 * one implementation per database) and the content operations written once on
 * top of it.
 *
 * Layers:
 *   store.c, posts.c     content operations (posts, tags, authors, users, settings,
 *                        revisions, search, scheduling), connection pool, migrations
 *   cms_backend_t        what a database must provide: open/close a connection, run
 *                        statement number N with bound parameters and return all rows,
 *                        run a migration script
 *   store_sqlite.c       SQLite through the blocking pool (cn_blocking): one writer
 *                        connection and readers, WAL mode
 *   store_pg.c           PostgreSQL through libpq's asynchronous API (cn_wait_fd on
 *                        PQsocket), a pool of connections
 *
 * All SQL of a backend lives in its *_sql.h file, indexed by the CMS_SQL_* numbers
 * below, with bound parameters only. The content operations therefore have no SQL
 * and no #ifdef, and the same test suite runs them on both databases.
 *
 * Every function here must be called from a libcnode process (the backends park
 * the caller while the database works); shared or own stacks both work (the
 * runtime keeps a blocking call's wake-up while its stack waits for a pin, see
 * pool.c). A connection is checked out for the whole of one operation, so each
 * operation sees one consistent snapshot.
 * Return codes: 0, -ENOENT (no such thing), -EEXIST (a unique slug or email is
 * taken), -EINVAL (invalid input; the message names the field), -EIO (database
 * error; the message has the database's text), -ETIMEDOUT (no connection free).
 * `err`, where taken, is a CMS_ERR_LEN buffer for the message (may be NULL).
 */
#ifndef CMS_STORE_H
#define CMS_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "cnode/telemetry.h"

#include "content.h"
#include "proto/proto.h"

/* ---------------------------------------------------------------------------------
 * The backend interface
 * ------------------------------------------------------------------------------ */

/* A bound parameter. */
typedef struct cms_val {
    int type;        /* CMS_V_* */
    int64_t i;
    const char *s;   /* borrowed, NUL-terminated */
} cms_val_t;
enum { CMS_V_NULL = 0, CMS_V_INT, CMS_V_TEXT };

#define V_INT(x) ((cms_val_t){ CMS_V_INT, (int64_t)(x), NULL })
#define V_TEXT(x) ((cms_val_t){ (x) ? CMS_V_TEXT : CMS_V_NULL, 0, (x) })
#define V_NULL ((cms_val_t){ CMS_V_NULL, 0, NULL })

/* All rows of a result, as text (NULL cells for SQL NULL). */
typedef struct cms_rows {
    int nrows, ncols;
    char **cells;    /* nrows * ncols, row-major; owned */
    int64_t changes; /* rows changed by an INSERT/UPDATE/DELETE */
} cms_rows_t;

const char *cms_rows_str(const cms_rows_t *r, int row, int col);   /* NULL for NULL */
int64_t cms_rows_int(const cms_rows_t *r, int row, int col);       /* 0 for NULL */
char *cms_rows_dup(const cms_rows_t *r, int row, int col);         /* new or NULL */
char *cms_rows_take(cms_rows_t *r, int row, int col); /* the cell itself, now the caller's */
void cms_rows_free(cms_rows_t *r);                                 /* resets *r */
/* For backends: allocate cells for nrows x ncols (zeroed). */
void cms_rows_alloc(cms_rows_t *r, int nrows, int ncols);

typedef struct cms_conn cms_conn_t; /* a backend's connection */

typedef struct cms_backend {
    const char *name;               /* "sqlite" | "postgres" */
    const char *const *sql;         /* CMS_SQL__COUNT statements, by CMS_SQL_* */
    const char *const *migrations;  /* migration scripts; [0] is version 1 */
    int nmigrations;
    bool single_writer;             /* only connection 0 writes (SQLite) */
    bool blocking;                  /* exec blocks its thread (SQLite): store.c runs
                                       whole read requests on the blocking pool
                                       (cms_store_read_batch); else exec parks the
                                       caller on the scheduler (PostgreSQL) */
    int default_pool;               /* connections when not configured */
    /* Open connection number `index` to `target` (a directory or a URL). Returns 0
     * and *out, or -EIO with a message. */
    int (*open)(const char *target, int index, cms_conn_t **out, char err[CMS_ERR_LEN]);
    void (*close)(cms_conn_t *c);
    /* Run statement `stmt` with n parameters; all rows go to *out (may be NULL).
     * Returns 0, -EEXIST for a unique violation, -EIO (message in err). */
    int (*exec)(cms_conn_t *c, int stmt, const cms_val_t *params, int n, cms_rows_t *out,
                char err[CMS_ERR_LEN]);
    /* Run a script of several statements without parameters (migrations). */
    int (*exec_script)(cms_conn_t *c, const char *sql, char err[CMS_ERR_LEN]);
} cms_backend_t;

extern const cms_backend_t cms_backend_sqlite;
extern const cms_backend_t cms_backend_pg;

/* Statement numbers. Each backend's SQL table has exactly these entries. */
enum cms_sql {
    CMS_SQL_BEGIN_READ = 0,
    CMS_SQL_BEGIN_WRITE,
    CMS_SQL_COMMIT,
    CMS_SQL_ROLLBACK,
    CMS_SQL_MIGRATIONS_TABLE,
    CMS_SQL_MIGRATIONS_LOCK,
    CMS_SQL_MIGRATIONS_MAX,
    CMS_SQL_MIGRATIONS_ADD,
    CMS_SQL_VERSION_GET,
    CMS_SQL_VERSION_BUMP,
    /* posts */
    CMS_SQL_POST_BY_ID,
    CMS_SQL_POST_BY_SLUG,
    CMS_SQL_POST_BY_TOKEN,
    CMS_SQL_POST_ID_BY_SLUG,
    CMS_SQL_REDIRECT_GET,
    CMS_SQL_REDIRECT_PUT,
    CMS_SQL_REDIRECT_DEL,
    CMS_SQL_POST_INSERT,
    CMS_SQL_POST_UPDATE,
    CMS_SQL_POST_DELETE,
    CMS_SQL_POST_SET_STATUS,
    CMS_SQL_POST_LIST,
    CMS_SQL_POST_COUNT,
    CMS_SQL_POST_MANY,
    CMS_SQL_POST_DUE,
    CMS_SQL_POST_PUBLISH_DUE,
    CMS_SQL_POST_NEXT_DUE,
    CMS_SQL_POST_SEARCH,
    CMS_SQL_POST_SEARCH_COUNT,
    CMS_SQL_POST_ALL_IDS,
    CMS_SQL_POST_COUNT_ALL,
    /* tags and authors of posts */
    CMS_SQL_POST_TAGS,
    CMS_SQL_POST_TAGS_DEL,
    CMS_SQL_POST_TAG_ADD,
    CMS_SQL_POST_AUTHORS,
    CMS_SQL_POST_AUTHORS_DEL,
    CMS_SQL_POST_AUTHOR_ADD,
    CMS_SQL_TAG_BY_SLUG,
    CMS_SQL_TAG_INSERT,
    CMS_SQL_TAG_UPDATE,
    CMS_SQL_TAG_LIST,
    CMS_SQL_AUTHOR_BY_SLUG,
    CMS_SQL_AUTHOR_LIST,
    /* users and keys */
    CMS_SQL_USER_INSERT,
    CMS_SQL_USER_BY_EMAIL,
    CMS_SQL_USER_COUNT,
    CMS_SQL_APIKEY_INSERT,
    /* revisions */
    CMS_SQL_REVISION_ADD,
    CMS_SQL_REVISION_LIST,
    CMS_SQL_REVISION_GET,
    /* settings */
    CMS_SQL_SETTINGS_ALL,
    CMS_SQL_SETTING_PUT,
    /* sitemap */
    CMS_SQL_SITEMAP_POSTS,
    CMS_SQL_SITEMAP_TAGS,
    CMS_SQL_SITEMAP_AUTHORS,
    /* the admin: staff listings, users, API keys */
    CMS_SQL_POST_STAFF_LIST,
    CMS_SQL_POST_STAFF_COUNT,
    CMS_SQL_USER_BY_ID,
    CMS_SQL_USER_LIST,
    CMS_SQL_USER_SET_ROLE,
    CMS_SQL_APIKEY_BY_ID,
    CMS_SQL__COUNT
};

/* Column order of every statement that returns posts (CMS_SQL_POST_BY_*, LIST,
 * MANY, SEARCH): both backends select exactly these, in this order. */
enum {
    PC_ID, PC_TYPE, PC_STATUS, PC_TITLE, PC_SLUG, PC_HTML, PC_PLAINTEXT, PC_CUSTOM_EXCERPT,
    PC_FEATURE_IMAGE, PC_FEATURE_IMAGE_ALT, PC_FEATURE_IMAGE_CAPTION, PC_FEATURED,
    PC_CREATED_AT, PC_UPDATED_AT, PC_PUBLISHED_AT, PC_META_TITLE, PC_META_DESCRIPTION,
    PC_OG_TITLE, PC_OG_DESCRIPTION, PC_OG_IMAGE, PC_CANONICAL_URL, PC_MARKDOWN,
    PC_PREVIEW_TOKEN, PC__COUNT
};
/* Tags: id, slug, name, description, feature_image, meta_title, meta_description,
 * internal, post_count (post_count is the post id in CMS_SQL_POST_TAGS). */
enum { TC_ID, TC_SLUG, TC_NAME, TC_DESCRIPTION, TC_FEATURE_IMAGE, TC_META_TITLE,
       TC_META_DESCRIPTION, TC_INTERNAL, TC_COUNT };
/* Authors: id, slug, name, bio, profile_image, website, location, post_count (the
 * post id in CMS_SQL_POST_AUTHORS). */
enum { AC_ID, AC_SLUG, AC_NAME, AC_BIO, AC_PROFILE_IMAGE, AC_WEBSITE, AC_LOCATION,
       AC_COUNT };

/* ---------------------------------------------------------------------------------
 * Opening, migrations
 * ------------------------------------------------------------------------------ */

typedef struct cms_store cms_store_t;

/* Open a store: `url` "postgres://..." or "postgresql://..." picks PostgreSQL,
 * anything else is a data directory for SQLite (created if missing; the database
 * is DIR/oneblog.db). `pool` connections (0 = the backend's default). Returns 0
 * and *out, or -EIO with a message. Call from a process. */
int cms_store_open(const char *url, int pool, cms_store_t **out, char err[CMS_ERR_LEN]);

/* Close every connection. No operation may be running. NULL is allowed. */
void cms_store_close(cms_store_t *s);

const cms_backend_t *cms_store_backend(const cms_store_t *s);

/* Apply the migrations above the database's version, each in its own transaction
 * (PostgreSQL: under an advisory lock, so two nodes starting together are safe).
 * *from and *to (may be NULL) get the versions before and after. */
int cms_store_migrate(cms_store_t *s, int *from, int *to, char err[CMS_ERR_LEN]);

/* The latest migration this build knows. */
int cms_store_latest_version(const cms_store_t *s);

/* Connections available to readers at once (the pool less SQLite's writer): how
 * many reads can usefully run together. */
int cms_store_read_slots(const cms_store_t *s);

/* Run fn(arg), which makes store *read* calls (any number, each its own read
 * transaction as usual) and otherwise pure code, as one unit of work: with a
 * blocking backend (SQLite) fn runs on a blocking-pool thread with one read
 * connection checked out for all its calls, so a request costs one hand-off to the
 * pool instead of one per statement. fn must not call libcnode there (no sends,
 * no receives, no cn_blocking); a write call inside fails with -EINVAL. With
 * PostgreSQL, when the caller's trace is sampled (database spans are made on the
 * scheduler), or when no connection is free, fn runs in the caller as ordinary
 * code. Database metrics are recorded either way. Returns 1 if fn ran as a batch
 * on the pool, 0 if it ran in the caller. Call from a process on its own stack. */
int cms_store_read_batch(cms_store_t *s, void (*fn)(void *arg), void *arg);

/* One request of several answered by one batch (cms_store_read_batch_parts). */
typedef struct cms_batch_part {
    cn_span_ctx_t parent;      /* the request's server span; not sampled: no spans */
    const char *name;          /* the request's name: rpc.method of its span */
    /* private */
    uint64_t start_ns, end_ns; /* taken on the pool */
    int first, last;           /* its statements among the batch's: [first, last) */
    cn_span_t *span;           /* its `cms read` span, when fn runs in the caller */
} cms_batch_part_t;

/* As cms_store_read_batch, for n requests that fn answers one after the other,
 * calling cms_store_batch_part(parts, k) as it starts the k-th (0 first). Each
 * sampled request gets a `cms read` span under its parent, over its own part of
 * the batch, with the spans of its statements under it - so traced requests are
 * batched with the others and their traces stay whole. */
int cms_store_read_batch_parts(cms_store_t *s, void (*fn)(void *arg), void *arg,
                               cms_batch_part_t *parts, int n);
/* In fn: the k-th request starts (on a pool thread or in the caller). */
void cms_store_batch_part(cms_batch_part_t *parts, int k);

/* ---------------------------------------------------------------------------------
 * Changes readers can see (for content_changed notifications)
 * ------------------------------------------------------------------------------ */

typedef struct cms_change {
    bool visible;     /* readers see a difference: version bumped, paths set */
    int64_t version;  /* content version after the change */
    char **paths;     /* affected reader paths: "/", "/slug/", "/tag/x/", ... */
    int npaths;
} cms_change_t;

void cms_change_clear(cms_change_t *c);

/* ---------------------------------------------------------------------------------
 * Posts and pages
 * ------------------------------------------------------------------------------ */

typedef struct cms_save_opts {
    cms_role_t role;    /* of the editor: raw HTML kept for editors and above */
    int64_t user_id;    /* who saves (revision author); 0 = the system */
    const char *reason; /* revision note; NULL = "save" */
    int64_t now;        /* clock, s; 0 = now */
} cms_save_opts_t;

/* Insert (p->id == 0) or update a post. Validates (cms_post_validate), renders the
 * Markdown, keeps the old slug for redirects when it changes, stores tags (created
 * when new, in the given order) and authors (must exist: -ENOENT names the slug),
 * and records a revision. Sets p->id, html, plaintext, timestamps (published_at
 * defaults to now when publishing), preview_token. A status of published with
 * published_at in the future is stored as scheduled. chg (may be NULL) says what
 * readers will see. Nothing is written unless everything succeeds. */
int cms_post_save(cms_store_t *s, proto_post_t *p, const cms_save_opts_t *o,
                  cms_change_t *chg, char err[CMS_ERR_LEN]);

/* Any post by id, whatever its status, with tags (internal ones too) and authors. */
int cms_post_get(cms_store_t *s, int64_t id, proto_post_t *out, char err[CMS_ERR_LEN]);

/* A published post or page by slug. When the slug is an old slug of a published
 * post of that type, returns -EAGAIN with *redirect (new string) set to its
 * current slug. -ENOENT when neither. */
int cms_post_find(cms_store_t *s, int type, const char *slug, proto_post_t *out,
                  char **redirect, char err[CMS_ERR_LEN]);

/* Any post by its preview token. */
int cms_post_by_preview(cms_store_t *s, const char *token, proto_post_t *out,
                        char err[CMS_ERR_LEN]);

/* A query over published posts (type post unless `pages`). */
typedef struct cms_list_q {
    int page, per_page;   /* page >= 1; per_page 1..100 */
    const char *tag;      /* slug; NULL = any */
    const char *author;   /* slug; NULL = any */
    int featured;         /* -1 any, 0, 1 */
    bool pages;           /* list pages instead of posts */
    int status;           /* -1 = published only (readers); else that status */
    bool staff;           /* the admin's listing: any status when status is -1,
                             drafts included, most recently updated first */
} cms_list_q_t;

/* One page of posts, newest first: *out (free with proto_posts_free), *n, *total. */
int cms_post_list(cms_store_t *s, const cms_list_q_t *q, proto_post_t **out, int *n,
                  int64_t *total, char err[CMS_ERR_LEN]);

/* Full-text search over titles and bodies of published posts, best match first
 * (SQLite FTS5 bm25 with titles weighted 10:1; PostgreSQL ts_rank with title
 * weight A, body B). An empty query (no words) gives no results. */
int cms_post_search(cms_store_t *s, const char *query, int page, int per_page,
                    proto_post_t **out, int *n, int64_t *total, char err[CMS_ERR_LEN]);

/* Published posts by id, in the order asked; unknown ids are skipped. */
int cms_post_get_many(cms_store_t *s, const int64_t *ids, int nids, proto_post_t **out,
                      int *n, char err[CMS_ERR_LEN]);

/* Workflow. publish: now (or at published_at if already set in the past);
 * unpublish: back to draft; schedule: scheduled for `at` (> now). */
int cms_post_publish(cms_store_t *s, int64_t id, int64_t now, cms_change_t *chg,
                     char err[CMS_ERR_LEN]);
int cms_post_unpublish(cms_store_t *s, int64_t id, int64_t now, cms_change_t *chg,
                       char err[CMS_ERR_LEN]);
int cms_post_schedule(cms_store_t *s, int64_t id, int64_t at, int64_t now,
                      cms_change_t *chg, char err[CMS_ERR_LEN]);
int cms_post_delete(cms_store_t *s, int64_t id, cms_change_t *chg, char err[CMS_ERR_LEN]);

/* Publish every scheduled post whose time has come (published_at <= now). Each
 * post goes live exactly once even with several callers or nodes: the update is
 * conditional on the post still being scheduled. *published gets how many this
 * call published; chg the union of their paths. */
int cms_post_publish_due(cms_store_t *s, int64_t now, int *published, cms_change_t *chg,
                         char err[CMS_ERR_LEN]);

/* The earliest scheduled time, or -ENOENT when nothing is scheduled. */
int cms_post_next_due(cms_store_t *s, int64_t *at);

/* Revisions, newest first. */
typedef struct cms_revision {
    int64_t id, post_id, user_id, created_at;
    char *title, *markdown, *reason;
} cms_revision_t;

int cms_revision_list(cms_store_t *s, int64_t post_id, cms_revision_t **out, int *n,
                      char err[CMS_ERR_LEN]);
void cms_revisions_free(cms_revision_t *v, int n);
/* Put a revision's title and Markdown back (itself saved as a new revision). */
int cms_revision_restore(cms_store_t *s, int64_t post_id, int64_t rev_id,
                         const cms_save_opts_t *o, cms_change_t *chg, char err[CMS_ERR_LEN]);

/* Total posts and pages, any status (to know whether the database is empty). */
int cms_post_count_all(cms_store_t *s, int64_t *out);
/* All ids (any status, any type), oldest first, for export. */
int cms_post_all_ids(cms_store_t *s, int64_t **out, int *n);

/* ---------------------------------------------------------------------------------
 * Tags, authors, users, keys, settings, sitemap, version
 * ------------------------------------------------------------------------------ */

/* A tag by slug with its count of published posts. Internal tags are -ENOENT
 * unless include_internal. */
int cms_tag_get(cms_store_t *s, const char *slug, bool include_internal, proto_tag_t *out,
                char err[CMS_ERR_LEN]);
int cms_tag_list(cms_store_t *s, bool include_internal, proto_tag_t **out, int *n,
                 char err[CMS_ERR_LEN]);
void cms_tags_free(proto_tag_t *v, int n);
/* Create or update (by slug) a tag. */
int cms_tag_save(cms_store_t *s, proto_tag_t *t, char err[CMS_ERR_LEN]);

/* Authors are staff users; these are their public profiles. */
int cms_author_get(cms_store_t *s, const char *slug, proto_author_t *out,
                   char err[CMS_ERR_LEN]);
int cms_author_list(cms_store_t *s, proto_author_t **out, int *n, char err[CMS_ERR_LEN]);
void cms_authors_free(proto_author_t *v, int n);

typedef struct cms_user {
    int64_t id;
    proto_author_t profile; /* slug, name, bio, image, website, location */
    char *email;            /* NULL for authors who do not log in */
    char *password_hash;    /* argon2id encoded hash, or NULL */
    cms_role_t role;
} cms_user_t;

void cms_user_clear(cms_user_t *u);
/* Add a user (slug from the name when missing). -EEXIST if the slug or email is
 * taken. Sets u->id. */
int cms_user_add(cms_store_t *s, cms_user_t *u, int64_t now, char err[CMS_ERR_LEN]);
int cms_user_by_email(cms_store_t *s, const char *email, cms_user_t *out,
                      char err[CMS_ERR_LEN]);
int cms_user_count(cms_store_t *s, int64_t *out);
/* A user by id (-ENOENT if none). */
int cms_user_get(cms_store_t *s, int64_t id, cms_user_t *out, char err[CMS_ERR_LEN]);
/* Every user, most privileged first, then by name: *out (free with cms_users_free). */
int cms_user_list(cms_store_t *s, cms_user_t **out, int *n, char err[CMS_ERR_LEN]);
void cms_users_free(cms_user_t *v, int n);
/* Change a user's role (-ENOENT if no such user). */
int cms_user_set_role(cms_store_t *s, int64_t id, cms_role_t role, char err[CMS_ERR_LEN]);

/* Store an API key: `secret_hash` (the admin stores "sha256$HEX" of a 256-bit
 * random secret; see cms/admin_api.c) for a key named `name` of kind "content" or
 * "admin". Sets *id. */
int cms_apikey_add(cms_store_t *s, const char *name, const char *kind,
                   const char *secret_hash, int64_t user_id, int64_t now, int64_t *id,
                   char err[CMS_ERR_LEN]);
/* An API key by id: its kind, secret_hash and user (0 if none), as new strings in
 * *kind and *secret_hash. -ENOENT if no such key. */
int cms_apikey_get(cms_store_t *s, int64_t id, char **kind, char **secret_hash,
                   int64_t *user_id, char err[CMS_ERR_LEN]);

/* Site settings; missing keys get defaults (title "OneBlog", posts_per_page 10...). */
int cms_settings_get(cms_store_t *s, proto_settings_t *out, char err[CMS_ERR_LEN]);
/* Set one setting by key (title, description, url, timezone, locale, logo,
 * accent_color, posts_per_page, navigation as JSON [{label,url}]). -EINVAL for an
 * unknown key or a bad value. Bumps the content version. */
int cms_settings_set(cms_store_t *s, const char *key, const char *value,
                     cms_change_t *chg, char err[CMS_ERR_LEN]);

/* Everything readers can reach: published posts and pages, public tags and authors
 * with posts. *out is a new array (free with cms_sitemap_free). */
int cms_sitemap(cms_store_t *s, proto_sitemap_entry_t **out, int *n, char err[CMS_ERR_LEN]);
void cms_sitemap_free(proto_sitemap_entry_t *v, int n);

/* The content version: bumped by every change readers can see. */
int cms_content_version(cms_store_t *s, int64_t *out);

#endif /* CMS_STORE_H */
