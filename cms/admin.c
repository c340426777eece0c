/* admin.c - the admin's HTTP server: the route tables of the admin files bound to
 * one dispatcher (security headers, session or API-key authentication, CSRF and
 * Origin checks, then the handler), the Mustache templates of admin_views/, the
 * static files of admin_assets/, and the page helpers. See admin.h.
 */
#include "admin_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/proc.h"
#include "util.h"

/* ---------------------------------------------------------------------------------
 * Page helpers
 * ------------------------------------------------------------------------------ */

int64_t admin_now(const cms_admin_t *a)
{
    return a->clock();
}

void admin_time_str(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    out[0] = '\0';
    if (t > 0 && gmtime_r(&tt, &tm))
        strftime(out, 32, "%Y-%m-%d %H:%M", &tm);
}

void admin_security_headers(cn_http_req_t *req)
{
    /* Scripts only from our own files: raw HTML an editor previews cannot run
     * inline handlers here. Images may come from anywhere (feature images). */
    cn_http_set_header(req, "Content-Security-Policy",
                       "default-src 'self'; script-src 'self'; style-src 'self'; "
                       "img-src * data:; frame-ancestors 'none'; form-action 'self'; "
                       "base-uri 'none'");
    cn_http_set_header(req, "X-Frame-Options", "DENY");
    cn_http_set_header(req, "X-Content-Type-Options", "nosniff");
    cn_http_set_header(req, "Referrer-Policy", "same-origin");
    cn_http_set_header(req, "Cache-Control", "no-store");
}

const char *admin_form(admin_ctx_t *c, const char *name)
{
    return cn_http_form_get(c->req, name);
}

tv_t *admin_page(admin_ctx_t *c, const char *title)
{
    tv_t *p = tv_map();
    tv_map_str(p, "title", title);
    tv_map_str(p, "csrf", c->csrf);
    if (c->user.id) {
        tv_t *me = tv_map();
        tv_map_str(me, "name", c->user.profile.name);
        tv_map_str(me, "slug", c->user.profile.slug);
        tv_map_str(me, "email", c->user.email ? c->user.email : "");
        tv_map_str(me, "role", cms_role_name(c->user.role));
        tv_map_set(p, "me", me);
        tv_map_set(p, "is_editor", tv_bool(c->user.role >= CMS_ROLE_EDITOR));
        tv_map_set(p, "is_admin", tv_bool(c->user.role >= CMS_ROLE_ADMINISTRATOR));
    }
    /* A notice after a redirect (?notice=saved): fixed texts, nothing reflected. */
    static const struct {
        const char *code, *text;
    } notices[] = { { "saved", "Saved." },         { "published", "Published." },
                    { "unpublished", "Unpublished: back to draft." },
                    { "scheduled", "Scheduled." }, { "deleted", "Deleted." },
                    { "restored", "Revision restored." }, { "created", "Created." },
                    { "updated", "Updated." },     { "loggedout", "You are logged out." } };
    const char *n = cn_http_query_get(c->req, "notice");
    for (size_t i = 0; n && i < sizeof notices / sizeof notices[0]; i++)
        if (strcmp(n, notices[i].code) == 0)
            tv_map_str(p, "notice", notices[i].text);
    return p;
}

int admin_render(admin_ctx_t *c, int status, const char *name, tv_t *page)
{
    buf_t b = BUF_INIT;
    int rc = tpl_render(c->a->tpl, name, page, &b);
    tv_free(page);
    if (rc < 0) {
        buf_free(&b);
        cms_log(CMS_LOG_ERROR, "admin", "no template '%s'", name);
        return cn_http_reply_error(c->req, 500);
    }
    rc = cn_http_reply(c->req, status, "text/html; charset=utf-8", b.data ? b.data : "", b.len);
    buf_free(&b);
    return rc;
}

int admin_error(admin_ctx_t *c, int status, const char *message)
{
    tv_t *p = admin_page(c, cn_http_status_text(status));
    tv_map_set(p, "status", tv_int(status));
    tv_map_str(p, "message", message);
    return admin_render(c, status, "error", p);
}

int admin_redirect(admin_ctx_t *c, const char *path)
{
    return cn_http_redirect(c->req, 303, path);
}

/* ---------------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------------ */

/* A POST from a browser carries Origin; it must be this host (a second line of
 * defence beside the CSRF token). Requests without Origin (curl) pass. */
static bool origin_ok(cn_http_req_t *req)
{
    const char *o = cn_http_header(req, "Origin"), *h = cn_http_header(req, "Host");
    if (o == NULL)
        return true;
    if (h == NULL)
        return false;
    const char *p = strstr(o, "://");
    return p && strcmp(p + 3, h) == 0;
}

static int on_route(cn_http_req_t *req, void *udata)
{
    admin_bind_t *b = udata;
    admin_ctx_t c = { .a = b->a, .req = req };
    bool post = strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0;
    int rc;
    admin_security_headers(req);
    if (b->r->flags & ADMIN_API) {
        c.api = true;
        rc = admin_api_auth(&c);
        if (rc == -EPERM)
            return admin_api_error(&c, 403, "forbidden", "this key is not an admin API key");
        if (rc < 0) {
            cn_http_set_header(req, "WWW-Authenticate", "Bearer realm=\"oneblog-admin\"");
            return admin_api_error(&c, 401, "unauthorized",
                                   "send Authorization: Bearer <admin API key>");
        }
    } else if (!(b->r->flags & ADMIN_PUBLIC)) {
        if (admin_session_load(&c) < 0) {
            if (!post)
                return admin_redirect(&c, "/admin/login");
            return admin_error(&c, 401, "Your session has ended: log in again.");
        }
        if (post && (!origin_ok(req) || !admin_csrf_ok(&c))) {
            cms_log(CMS_LOG_WARN, "admin", "%s %s: CSRF check failed (user %lld)", req->method,
                    req->path, (long long)c.user.id);
            rc = admin_error(&c, 403, "The form's security token is missing or out of date. "
                                      "Go back, reload the page and try again.");
            cms_user_clear(&c.user);
            return rc;
        }
    }
    rc = b->r->fn(&c);
    cms_user_clear(&c.user);
    return rc;
}

static int on_home(cn_http_req_t *req, void *udata)
{
    (void)udata;
    admin_security_headers(req);
    return cn_http_redirect(req, 303, "/admin/posts");
}

/* ---------------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------------ */

static int load_templates(cms_admin_t *a, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/admin_views", a->dir);
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;
    if (d == NULL) {
        snprintf(err, CMS_ERR_LEN, "ONEBLOG_ADMIN_DIR: cannot open %.200s: %s", path,
                 strerror(errno));
        return -ENOENT;
    }
    a->tpl = tpl_set_new();
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        static const char ext[] = ".mustache";
        if (len <= sizeof ext - 1 || strcmp(e->d_name + len - (sizeof ext - 1), ext) != 0)
            continue;
        char file[4400], name[256], terr[200];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        snprintf(name, sizeof name, "%.*s", (int)(len - (sizeof ext - 1)), e->d_name);
        FILE *f = fopen(file, "rb");
        if (f == NULL)
            continue;
        buf_t src = BUF_INIT;
        char chunk[4096];
        size_t k;
        while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
            buf_append(&src, chunk, k);
        fclose(f);
        if (tpl_set_add(a->tpl, name, src.data ? src.data : "", src.len, terr, sizeof terr) < 0)
            cms_log(CMS_LOG_ERROR, "admin", "template %s: %s", file, terr);
        buf_free(&src);
        n++;
    }
    closedir(d);
    if (n == 0) {
        snprintf(err, CMS_ERR_LEN, "ONEBLOG_ADMIN_DIR: no templates in %.200s", path);
        return -ENOENT;
    }
    return 0;
}

static const admin_route_t *const route_tables[] = {
    cms_admin_auth_routes, cms_admin_post_routes, cms_admin_site_routes, cms_admin_api_routes,
};

int cms_admin_start(const cms_admin_opts_t *o, cms_admin_t **out, char err[CMS_ERR_LEN])
{
    char scratch[CMS_ERR_LEN], path[4096];
    int rc;
    if (err == NULL)
        err = scratch;
    cms_admin_t *a = xcalloc(1, sizeof(*a));
    a->store = o->store;
    a->host = xstrdup(o->host ? o->host : "127.0.0.1");
    a->dir = xstrdup(o->dir ? o->dir : "cms");
    a->rpc_name = xstrdup(o->rpc_name ? o->rpc_name : "cms");
    a->secure_cookie = o->secure_cookie;
    a->clock = o->clock ? o->clock : cms_time_now;
    if ((rc = load_templates(a, err)) < 0)
        goto fail;
    snprintf(path, sizeof path, "%s/admin_assets", a->dir);
    cn_http_static_opts_t so = { .root = path, .max_age_s = 300, .gzip = true };
    if ((rc = cn_http_static_new(&so, &a->assets)) < 0) {
        snprintf(err, CMS_ERR_LEN, "ONEBLOG_ADMIN_DIR: %.200s: %s", path, cn_strerror(rc));
        goto fail;
    }
    if ((rc = admin_auth_init(a)) < 0) {
        snprintf(err, CMS_ERR_LEN, "admin: cannot prepare password hashing");
        goto fail;
    }
    /* The routes: the fixed ones, then every file's table bound to on_route. */
    size_t n = 0;
    for (size_t t = 0; t < sizeof route_tables / sizeof route_tables[0]; t++)
        for (const admin_route_t *r = route_tables[t]; r->pattern; r++)
            n++;
    a->routes = xcalloc(n + 4, sizeof(cn_http_route_t));
    a->binds = xcalloc(n, sizeof(admin_bind_t));
    a->routes[a->nroutes++] = (cn_http_route_t){ "GET", "/", on_home, NULL };
    a->routes[a->nroutes++] = (cn_http_route_t){ "GET", "/admin", on_home, NULL };
    a->routes[a->nroutes++] = (cn_http_route_t){ "GET", "/admin/assets/*path",
                                                 cn_http_static_handler, a->assets };
    size_t k = 0;
    for (size_t t = 0; t < sizeof route_tables / sizeof route_tables[0]; t++)
        for (const admin_route_t *r = route_tables[t]; r->pattern; r++, k++) {
            a->binds[k] = (admin_bind_t){ a, r };
            a->routes[a->nroutes++] = (cn_http_route_t){ r->method, r->pattern, on_route,
                                                         &a->binds[k] };
        }
    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.host = a->host;
    cfg.port = (uint16_t)o->port;
    cfg.routes = a->routes;
    cfg.nroutes = a->nroutes;
    cfg.max_body_bytes = ADMIN_BODY_MAX;
    cfg.server_name = "";
    if ((rc = cn_http_server_start(cn_node_self(), &cfg, &a->srv)) < 0) {
        snprintf(err, CMS_ERR_LEN, "admin: listening on %s:%d: %s", a->host, o->port,
                 cn_strerror(rc));
        goto fail;
    }
    a->port = cn_http_server_port(a->srv);
    *out = a;
    return 0;
fail:
    cms_admin_free(a);
    return rc;
}

int cms_admin_port(const cms_admin_t *a)
{
    return a->port;
}

void cms_admin_stop(cms_admin_t *a)
{
    if (a == NULL || a->srv == NULL)
        return;
    cn_http_server_stop(a->srv);
    /* Handlers use the store: wait until they are done (bounded). */
    for (int i = 0; i < 550 && !cn_http_server_done(a->srv); i++)
        cn_sleep(10);
}

void cms_admin_free(cms_admin_t *a)
{
    if (a == NULL)
        return;
    cn_http_server_free(a->srv);
    cn_http_static_free(a->assets);
    tpl_set_free(a->tpl);
    admin_auth_free(a);
    free(a->routes);
    free(a->binds);
    free(a->host);
    free(a->dir);
    free(a->rpc_name);
    free(a);
}
