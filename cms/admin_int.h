/* admin_int.h - what the admin's files share: the server state, the per-request
 * context, sessions and login limits, page rendering, permissions, and the
 * helpers both the HTML pages and the JSON API use. Not for use outside admin*.c.
 */
#ifndef CMS_ADMIN_INT_H
#define CMS_ADMIN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "admin.h"
#include "cnode/http.h"
#include "tpl.h"
#include "value.h"

#define ADMIN_SID_HEX 64               /* session ids and CSRF tokens: 256 bits, hex */
#define ADMIN_SESSIONS_MAX 10000
#define ADMIN_SESSION_IDLE_S (12 * 3600)  /* a session unused this long ends */
#define ADMIN_SESSION_MAX_S (7 * 86400)   /* and any session after this long */
#define ADMIN_LOGIN_WINDOW_S 60        /* failures counted over this window */
#define ADMIN_LOGIN_ACCOUNT_MAX 5      /* failures per account per window */
#define ADMIN_LOGIN_IP_MAX 20          /* failures per client address per window */
#define ADMIN_LOCKOUT_BASE_S 60        /* first lockout; doubles each time, to 2^10 x */
#define ADMIN_LIMITS_MAX 10000         /* tracked accounts and addresses */
#define ADMIN_BODY_MAX (8 * 1024 * 1024) /* the server refuses larger bodies (413) */
#define ADMIN_SESSION_COOKIE "ob_session"
#define ADMIN_LOGIN_COOKIE "ob_login"  /* the login form's CSRF token (double submit) */

typedef struct admin_session {
    char id[ADMIN_SID_HEX + 1];
    char csrf[ADMIN_SID_HEX + 1];
    int64_t user_id;
    int64_t created, seen;             /* s */
} admin_session_t;

typedef struct admin_limit {
    char key[200];                     /* "ip:127.0.0.1" or "acct:a@b.c" */
    int fails;                         /* in the current window */
    int lockouts;                      /* consecutive lockouts (the exponent) */
    int64_t window_start, locked_until, last_fail; /* s */
} admin_limit_t;

struct cms_admin {
    cms_store_t *store;
    char *host, *dir, *rpc_name;
    int port;
    bool secure_cookie;
    cms_clock_fn clock;
    tpl_set_t *tpl;
    cn_http_static_t *assets;
    cn_http_route_t *routes;
    size_t nroutes;
    struct admin_bind *binds;          /* route udata: {admin, handler, flags} */
    cn_http_server_t *srv;
    char *dummy_hash;                  /* verified against for unknown emails */
    admin_session_t *sessions;
    int nsessions, capsessions;
    admin_limit_t *limits;
    int nlimits, caplimits;
};

/* One request: the admin, the HTTP request and who is asking. */
typedef struct admin_ctx {
    cms_admin_t *a;
    cn_http_req_t *req;
    cms_user_t user;                   /* user.id == 0: nobody logged in */
    char sid[ADMIN_SID_HEX + 1];       /* the session (HTML pages) */
    char csrf[ADMIN_SID_HEX + 1];
    bool api;                          /* authenticated by an API key */
} admin_ctx_t;

typedef int (*admin_fn)(admin_ctx_t *c);

/* Route flags. */
enum {
    ADMIN_PUBLIC = 1,   /* no login needed (the login page itself) */
    ADMIN_API = 2,      /* JSON API: Bearer key, JSON errors */
};

typedef struct admin_route {
    const char *method, *pattern;
    admin_fn fn;
    int flags;
} admin_route_t;

typedef struct admin_bind {
    cms_admin_t *a;
    const admin_route_t *r;
} admin_bind_t;

/* Route tables of each file, ended by a NULL pattern. */
extern const admin_route_t cms_admin_auth_routes[];
extern const admin_route_t cms_admin_post_routes[];
extern const admin_route_t cms_admin_site_routes[];
extern const admin_route_t cms_admin_api_routes[];

/* ---- admin.c: pages ------------------------------------------------------------- */

/* A page context with what every page shows (who is logged in, the CSRF token,
 * which sections the role may see). New tree; admin_render frees it. */
tv_t *admin_page(admin_ctx_t *c, const char *title);
/* Render template `name` with `page` (consumed) and reply with `status`. */
int admin_render(admin_ctx_t *c, int status, const char *name, tv_t *page);
/* An error page with a message (status 4xx/5xx). */
int admin_error(admin_ctx_t *c, int status, const char *message);
/* 303 to `path` (an /admin/ path). */
int admin_redirect(admin_ctx_t *c, const char *path);
/* Security headers of every admin response (CSP, frame, sniffing, caching). */
void admin_security_headers(cn_http_req_t *req);
/* A form field, trimmed of nothing; NULL when absent. */
const char *admin_form(admin_ctx_t *c, const char *name);
/* Now, s. */
int64_t admin_now(const cms_admin_t *a);
/* "2024-05-01 12:00" (UTC) into out; "" for 0. */
void admin_time_str(int64_t t, char out[32]);

/* ---- admin_auth.c ----------------------------------------------------------------- */

void admin_random_hex(char out[ADMIN_SID_HEX + 1]);
/* Constant-time equality of two NUL-terminated strings (time depends on the
 * lengths only). */
bool admin_ct_streq(const char *a, const char *b);
/* Find the request's session and load its user into c (0 and c->user set), or
 * -ENOENT. Touches the session. */
int admin_session_load(admin_ctx_t *c);
/* Check the POST's CSRF token against the session's. */
bool admin_csrf_ok(admin_ctx_t *c);
/* Authenticate an API request (Authorization: Bearer ID.SECRET) into c->user:
 * 0, -EACCES (no or a bad key: 401), -EPERM (not an admin key: 403). */
int admin_api_auth(admin_ctx_t *c);
/* Verify a password against an argon2id encoded hash, on the blocking pool. */
bool admin_password_ok(const char *encoded, const char *password);
/* Drop every session of a user (a role change or removal takes effect now). */
void admin_sessions_drop_user(cms_admin_t *a, int64_t user_id);
/* Prepare the admin's auth state (the dummy hash). */
int admin_auth_init(cms_admin_t *a);
void admin_auth_free(cms_admin_t *a);

/* ---- admin_posts.c: shared by pages and the API ------------------------------------- */

typedef enum { ADMIN_VIEW, ADMIN_EDIT, ADMIN_PUBLISH, ADMIN_DELETE } admin_action_t;
/* May c->user do `act` on post p (p NULL: a new post)? */
bool admin_may(const admin_ctx_t *c, admin_action_t act, const proto_post_t *p);
/* Tell `cms` about a change readers can see (a no-op when !chg->visible). */
void admin_notify(cms_admin_t *a, const cms_change_t *chg);
/* Run a workflow call on `cms`: "publish", "unpublish", "delete" (at unused) or
 * "schedule" (at = s). Returns 0, -ENOENT, -EINVAL, -EEXIST, -EIO. */
int admin_workflow(cms_admin_t *a, const char *op, int64_t id, int64_t at);
/* Save p as c->user (raw HTML by the role's rule, revision author, the role's
 * author rule), then notify. p->id 0 creates. The status is the caller's. */
int admin_save_post(admin_ctx_t *c, proto_post_t *p, const proto_post_t *old, char err[CMS_ERR_LEN]);
/* Restore a revision as c->user and notify. */
int admin_restore(admin_ctx_t *c, int64_t post_id, int64_t rev_id, char err[CMS_ERR_LEN]);
/* Tags as "a, b, c" -> p->tags (names; slugs derived by validation). */
void admin_set_tags(proto_post_t *p, const char *csv);
/* Author slugs as "a, b" -> p->authors. */
void admin_set_authors(proto_post_t *p, const char *csv);
/* The HTTP status for a store error: 404, 409, 413 (markdown too long), 422, 500. */
int admin_status_of(int rc, const char *err);

/* ---- admin_site.c: shared by pages and the API ------------------------------------ */

/* Save a tag (create or update by slug) and notify. */
int admin_tag_save(admin_ctx_t *c, proto_tag_t *t, char err[CMS_ERR_LEN]);
/* May c->user give `target` (NULL: a new user) the role `role`? */
bool admin_may_set_role(const admin_ctx_t *c, const cms_user_t *target, cms_role_t role);
/* Add a staff user with a password (10..1024 bytes) into *out (caller clears). */
int admin_user_add(admin_ctx_t *c, const char *email, const char *name, const char *role,
                   const char *password, cms_user_t *out, char err[CMS_ERR_LEN]);
int admin_user_set_role(admin_ctx_t *c, int64_t id, const char *role, char err[CMS_ERR_LEN]);
/* Set every setting get(arg, key) gives (non-NULL), stopping at the first error;
 * notifies once. */
int admin_settings_apply(admin_ctx_t *c, const char *(*get)(void *, const char *), void *arg,
                         char err[CMS_ERR_LEN]);

/* ---- admin_api.c -------------------------------------------------------------------- */

/* {"error": {"code": code, "message": message}} with `status`. */
int admin_api_error(admin_ctx_t *c, int status, const char *code, const char *message);

#endif /* CMS_ADMIN_INT_H */
