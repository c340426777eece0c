/* pages.c - the reader's HTML pages and how every rendered response is served.
 *
 *   /                      home, newest posts       /page/N/            more of them
 *   /SLUG/                 a post, else a page (301 from an old slug)
 *   /tag/SLUG/ [page/N/]   a tag's posts            /author/SLUG/ [...]  an author's
 *   /search?q=Q[&page=N]   full-text search         anything else       the 404 page
 *
 * client_serve() is the one path for cached responses: a fresh cache entry is
 * answered at once (ETag/304, gzip made once); otherwise the page is rendered
 * from CMS calls and stored. When the CMS does not answer, a stale entry is
 * served (X-Cache: STALE) and a page never seen gets a friendly 503 with
 * Retry-After. An invalidation that lands while a page renders (its data may be
 * older than the notification) leaves the new entry stale.
 */
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTML_TYPE "text/html; charset=utf-8"
#define RELATED_MAX 3

static client_t *cl_of(void *udata)
{
    return udata;
}

static void page_init(client_page_t *pg)
{
    memset(pg, 0, sizeof(*pg));
    pg->status = 200;
    pg->ctype = HTML_TYPE;
    pg->html = true;
}

/* ---------------------------------------------------------------------------------
 * Answering
 * ------------------------------------------------------------------------------ */

/* Does If-None-Match name this body's tag (either encoding's, or "*")? */
static bool not_modified(cn_http_req_t *req, const char *etag)
{
    const char *inm = cn_http_header(req, "If-None-Match");
    if (inm == NULL)
        return false;
    if (strchr(inm, '*'))
        return true;
    /* the hex digits alone: the gzip copy's tag has "-gz" after them (comparing
     * with the closing quote included never matched it, so a browser holding a
     * gzip copy never got its 304) */
    size_t n = strlen(etag);
    return n > 2 && memmem(inm, strlen(inm), etag + 1, n - 2) != NULL;
}

static int reply_entry(cache_t *c, cn_http_req_t *req, cache_entry_t *e, const char *state,
                       const char *splice_html)
{
    int rc;
    cn_http_set_header(req, "X-Cache", state);
    if (e->status == 301)
        return cn_http_redirect(req, 301, e->body);
    bool html = strncmp(e->ctype, "text/html", 9) == 0;
    if (splice_html) {
        /* Personal: this reader's recommendations replace the block between the
         * theme's markers. Not shared: no shared caching, an ETag of its own. */
        const char *s = strstr(e->body, "<!--related-->");
        const char *t = s ? strstr(s, "<!--/related-->") : NULL;
        if (s && t) {
            /* splice_html carries the markers itself */
            buf_t b = BUF_INIT;
            buf_append(&b, e->body, (size_t)(s - e->body));
            buf_puts(&b, splice_html);
            buf_puts(&b, t + strlen("<!--/related-->"));
            cn_http_set_header(req, "Cache-Control", "private, no-cache");
            cn_http_set_header(req, "Vary", "Accept-Encoding");
            /* A tag of its own, so that a browser revalidating the page gets a 304
             * while this reader's recommendations stay the same; gzip made from the
             * cached page's parts, only the block compressed per request. */
            char etag[24], tag[32];
            cache_etag_of(b.data, b.len, etag);
            char *gz = NULL;
            size_t gzlen = 0;
            bool use_gz = e->status == 200 && cn_http_accepts_gzip(req) &&
                          cache_gzip_splice(c, e, (size_t)(s - e->body),
                                            (size_t)(t - e->body) + strlen("<!--/related-->"),
                                            splice_html, strlen(splice_html), &gz, &gzlen);
            size_t el = strlen(etag) - 1;
            memcpy(tag, etag, el);
            memcpy(tag + el, use_gz ? "-gz\"" : "\"", use_gz ? 5 : 2);
            cn_http_set_header(req, "ETag", tag);
            if (e->status == 200 && not_modified(req, etag)) {
                rc = cn_http_reply(req, 304, NULL, NULL, 0);
            } else if (use_gz) {
                cn_http_set_header(req, "Content-Encoding", "gzip");
                rc = cn_http_reply(req, e->status, e->ctype, gz, gzlen);
            } else {
                rc = cn_http_reply(req, e->status, e->ctype, b.data, b.len);
            }
            free(gz);
            buf_free(&b);
            return rc;
        }
    }
    bool gz = e->status == 200 && cn_http_accepts_gzip(req) && cache_gzip(c, e);
    char etag[32]; /* the entry's tag, "-gz" inside the quotes for the gzip copy */
    size_t el = strlen(e->etag) - 1;
    memcpy(etag, e->etag, el);
    memcpy(etag + el, gz ? "-gz\"" : "\"", gz ? 5 : 2);
    cn_http_set_header(req, "ETag", etag);
    cn_http_set_header(req, "Vary", "Accept-Encoding");
    cn_http_set_header(req, "Cache-Control",
                       html ? "public, max-age=0, must-revalidate" : "public, max-age=300");
    if (e->status == 200 && not_modified(req, e->etag))
        return cn_http_reply(req, 304, NULL, NULL, 0);
    if (gz) {
        cn_http_set_header(req, "Content-Encoding", "gzip");
        return cn_http_reply(req, e->status, e->ctype, e->gz, e->gzlen);
    }
    return cn_http_reply(req, e->status, e->ctype, e->body, e->len);
}

/* A response not kept in the cache (404s, search, 503). */
static int reply_page(cn_http_req_t *req, const client_page_t *pg)
{
    if (pg->status == 301)
        return cn_http_redirect(req, 301, pg->body.data);
    cn_http_set_header(req, "Cache-Control", "no-cache");
    return cn_http_reply(req, pg->status, pg->ctype, pg->body.data ? pg->body.data : "",
                         pg->body.len);
}

/* The reader's part of an HTML page: the id cookie, recommendations for posts
 * (spliced into the cached page) and the page view. Returns the HTML to splice
 * or NULL. */
static const char *reader_part(client_t *cl, cn_http_req_t *req, const char *path,
                               const char *post_slug)
{
    const char *reader = client_reader_id(req);
    const char *recs_event = NULL;
    const char *html = NULL;
    if (post_slug && *post_slug)
        html = client_recommend(cl, req, reader, post_slug, &recs_event);
    client_page_view(cl, req, reader, path, post_slug, recs_event);
    return html;
}

/* The slug of a post page's cache key "/slug/". Arena string. */
static const char *slug_of_key(cn_http_req_t *req, const char *key)
{
    size_t n = strlen(key);
    if (n < 3)
        return NULL;
    char *s = cn_http_alloc(req, n);
    if (s == NULL)
        return NULL;
    memcpy(s, key + 1, n - 2);
    s[n - 2] = '\0';
    return s;
}

/* client_serve with the cache given (the pages' or the searches'); page views are
 * recorded under view_path. */
static int serve_in(client_t *cl, cache_t *c, cn_http_req_t *req, const char *key,
                    const char *view_path, client_render_cb render, void *arg)
{
    cl->pages++;
    cache_entry_t *e = cache_get(c, key);
    int rc;
    if (e && !e->stale) {
        const char *splice = NULL;
        if (e->status == 200 && strncmp(e->ctype, "text/html", 9) == 0)
            splice = reader_part(cl, req, view_path,
                                 (e->flags & CACHE_POST) ? slug_of_key(req, key) : NULL);
        rc = reply_entry(c, req, e, "HIT", splice);
        cache_unref(c, e);
        return rc;
    }
    client_page_t pg;
    page_init(&pg);
    uint64_t gen = cl->generation;
    /* Room for a typical page at once (growing from 64 bytes was nine reallocs). */
    buf_reserve(&pg.body, 16 * 1024);
    rc = render(cl, req, arg, &pg);
    if (rc == -EAGAIN) {
        cl->unavailable++;
        buf_free(&pg.body);
        if (e) {
            /* Every CMS node is down: what we had is better than an error. */
            cl->stale_served++;
            cn_http_set_header(req, "Warning", "110 - \"Response is Stale\"");
            rc = reply_entry(c, req, e, "STALE", NULL);
            cache_unref(c, e);
            return rc;
        }
        page_init(&pg);
        client_render_error(cl, req, 503, &pg);
        cn_http_set_header(req, "Retry-After", "5");
        cn_http_set_header(req, "X-Cache", "MISS");
        rc = reply_page(req, &pg);
        buf_free(&pg.body);
        return rc;
    }
    if (e) {
        cache_unref(c, e);
        e = NULL;
    }
    if (rc < 0) {
        client_log(CLIENT_LOG_ERROR, "pages", "%s: %s", key, cn_strerror(rc));
        buf_free(&pg.body);
        page_init(&pg);
        client_render_error(cl, req, 500, &pg);
        rc = reply_page(req, &pg);
        buf_free(&pg.body);
        return rc;
    }
    if (pg.nocache) {
        /* The page is gone (404): a stale copy must not come back later. */
        cache_remove(c, key);
        cn_http_set_header(req, "X-Cache", "MISS");
        rc = reply_page(req, &pg);
        buf_free(&pg.body);
        return rc;
    }
    size_t len = pg.body.len;
    if (cl->cfg.cache_mb > 0 && pg.body.cap > len + 4096)
        pg.body.data = xrealloc(pg.body.data, len + 1); /* kept: no slack */
    e = cache_put_take(c, key, buf_take(&pg.body), len, pg.ctype, pg.status, pg.flags,
                       cl->content_version < 0 ? 0 : (uint64_t)cl->content_version);
    if (gen != cl->generation)
        cache_invalidate(c, &key, 1);
    const char *splice = NULL;
    if (pg.status == 200 && pg.html)
        splice = reader_part(cl, req, view_path, pg.post_slug[0] ? pg.post_slug : NULL);
    rc = reply_entry(c, req, e, "MISS", splice);
    cache_unref(c, e);
    buf_free(&pg.body);
    return rc;
}

int client_serve(client_t *cl, cn_http_req_t *req, const char *key, client_render_cb render,
                 void *arg)
{
    return serve_in(cl, cl->cache, req, key, key, render, arg);
}

/* ---------------------------------------------------------------------------------
 * Rendering helpers
 * ------------------------------------------------------------------------------ */

/* Render template `name` with ctx into pg->body (ctx stays the caller's). */
static int render_tpl(client_t *cl, const char *name, tv_t *ctx, client_theme_t *th,
                      client_page_t *pg)
{
    (void)cl;
    int rc = tpl_render(th->tpl, name, ctx, &pg->body);
    return rc < 0 ? -ENOENT : 0;
}

void client_render_error(client_t *cl, cn_http_req_t *req, int status, client_page_t *pg)
{
    static const struct {
        int status;
        const char *title, *message;
    } texts[] = {
        { 400, "That request did not make sense", "The address or the search is malformed." },
        { 404, "Page not found",
          "The page you are looking for does not exist, or it has moved." },
        { 500, "Something went wrong", "We could not show this page. Please try again." },
        { 503, "We will be right back",
          "The blog is taking a short break. Please try again in a few seconds." },
    };
    const char *title = "Error", *message = "";
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (texts[i].status == status) {
            title = texts[i].title;
            message = texts[i].message;
        }
    pg->status = status;
    pg->ctype = HTML_TYPE;
    pg->nocache = true;
    buf_reset(&pg->body);
    client_theme_t *th = cl->theme;
    client_theme_ref(th);
    tv_arena_t ar = TV_ARENA_INIT;
    tv_t *ctx = client_view_page(cl, &ar, th, req->path, NULL);
    client_view_meta(cl, ctx, title, message, req->path, NULL, true);
    tv_t *err = tv_map_in(&ar);
    tv_map_int(err, "status", status);
    tv_map_str(err, "title", title);
    tv_map_str(err, "message", message);
    tv_map_set(ctx, "error", err);
    int rc = render_tpl(cl, "error", ctx, th, pg);
    tv_arena_free(&ar);
    if (rc < 0 || pg->body.len == 0) {
        buf_reset(&pg->body);
        buf_printf(&pg->body, "<!doctype html><title>%d %s</title><h1>%s</h1><p>%s</p>\n",
                   status, title, title, message);
    }
    client_theme_unref(th);
}

/* A page number from a route capture: 1..100000, else 0. */
static int page_param(cn_http_req_t *req, const char *name)
{
    const char *s = cn_http_param(req, name);
    if (s == NULL)
        return 1;
    long n = 0;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) || n > 100000)
            return 0;
        n = n * 10 + (*p - '0');
    }
    return n >= 1 && n <= 100000 && s[0] != '0' ? (int)n : 0;
}

/* A slug a reader may ask for: valid UTF-8, bounded, no '/' or controls. */
static bool slug_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > PROTO_SLUG_MAX || !proto_utf8_valid(s, n))
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '/' || *p == '\\' || *p == 0x7f)
            return false;
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* ---------------------------------------------------------------------------------
 * Listings: home, tag, author, search
 * ------------------------------------------------------------------------------ */

enum { LIST_HOME, LIST_TAG, LIST_AUTHOR, LIST_SEARCH };

/* "/search?q=<query, percent-encoded but for unreserved bytes>" appended to b. */
static void search_path(buf_t *b, const char *query)
{
    buf_puts(b, "/search?q=");
    for (const unsigned char *p = (const unsigned char *)query; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
            buf_putc(b, (char)*p);
        else
            buf_printf(b, "%%%02X", *p);
    }
}

typedef struct list_args {
    int kind;
    const char *slug;   /* tag or author */
    const char *query;  /* search */
    int page;
} list_args_t;

static int render_list(client_t *cl, cn_http_req_t *req, void *arg, client_page_t *pg)
{
    list_args_t *a = arg;
    client_reply_t rep = { 0 };
    proto_post_t *posts = NULL;
    proto_tag_t tag = { 0 };
    proto_author_t author = { 0 };
    proto_pagination_t pgn = { 0 };
    int n = 0, rc;
    client_theme_t *th = NULL;
    tv_arena_t ar = TV_ARENA_INIT; /* the page's context */
    tv_t *ctx = NULL;
    buf_t prefix = BUF_INIT, tmp = BUF_INIT;

    if ((rc = client_settings(cl)) < 0)
        return rc;
    pg->flags = CACHE_LISTING;
    /* The tag or author first: an unknown one is a 404, not an empty list. */
    if (a->kind == LIST_TAG || a->kind == LIST_AUTHOR) {
        proto_req_t r = { .kind = a->kind == LIST_TAG ? PROTO_REQ_GET_TAG : PROTO_REQ_GET_AUTHOR,
                          .name = a->kind == LIST_TAG ? "get_tag" : "get_author" };
        snprintf(r.slug, sizeof r.slug, "%s", a->slug);
        if ((rc = client_cms_call(cl, &r, &rep)) < 0)
            goto out;
        if (rep.status != PROTO_OK) {
            client_render_error(cl, req, 404, pg);
            goto out;
        }
        int idx = rep.index;
        rc = a->kind == LIST_TAG ? proto_decode_tag(rep.buf, &idx, &tag)
                                 : proto_decode_author(rep.buf, &idx, &author);
        client_reply_free(&rep);
        if (rc < 0 || (a->kind == LIST_TAG && tag.internal)) {
            rc = 0;
            client_render_error(cl, req, 404, pg);
            goto out;
        }
    }
    proto_req_t r = { .kind = a->kind == LIST_SEARCH ? PROTO_REQ_SEARCH : PROTO_REQ_LIST_POSTS,
                      .name = a->kind == LIST_SEARCH ? "search" : "list_posts" };
    proto_list_opts_init(&r.opts);
    r.opts.page = a->page;
    if (a->kind == LIST_TAG)
        snprintf(r.opts.tag, sizeof r.opts.tag, "%s", a->slug);
    if (a->kind == LIST_AUTHOR)
        snprintf(r.opts.author, sizeof r.opts.author, "%s", a->slug);
    if (a->kind == LIST_SEARCH)
        snprintf(r.query, sizeof r.query, "%s", a->query);
    if (a->kind != LIST_SEARCH || *a->query) {
        if ((rc = client_cms_call(cl, &r, &rep)) < 0)
            goto out;
        int idx = rep.index;
        proto_alloc_t pa = client_arena_alloc(&ar); /* the posts live as long as the page */
        if (rep.status != PROTO_OK ||
            proto_decode_post_list_in(&pa, rep.buf, &idx, &posts, &n, &pgn) < 0) {
            rc = 0;
            client_render_error(cl, req, rep.status == PROTO_OK ? 500 : 400, pg);
            goto out;
        }
        client_reply_free(&rep);
    }
    if (a->page > 1 && a->page > pgn.pages) {
        client_render_error(cl, req, 404, pg);
        goto out;
    }

    th = cl->theme;
    client_theme_ref(th);
    ctx = client_view_page(cl, &ar, th, req->path, a->kind == LIST_SEARCH ? a->query : NULL);
    tv_t *intro = NULL;
    const char *title = NULL, *desc = NULL, *image = NULL;
    switch (a->kind) {
    case LIST_HOME:
        buf_puts(&prefix, "");
        if (a->page > 1) {
            buf_printf(&tmp, "Page %d", a->page);
            title = tmp.data;
        } else {
            intro = tv_map_in(&ar);
            tv_map_bool(intro, "home", true);
            tv_map_str(intro, "title", cl->settings.title ? cl->settings.title : "OneBlog");
            if (cl->settings.description && *cl->settings.description)
                tv_map_str(intro, "description", cl->settings.description);
        }
        break;
    case LIST_TAG:
        buf_printf(&prefix, "/tag/%s", tag.slug);
        intro = tv_map_in(&ar);
        tv_map_str(intro, "title", tag.name ? tag.name : tag.slug);
        if (tag.description && *tag.description)
            tv_map_str(intro, "description", tag.description);
        if (tag.feature_image && *tag.feature_image) {
            tv_map_str(intro, "image", tag.feature_image);
            tv_map_str(intro, "image_alt", tag.name ? tag.name : "");
        }
        title = tag.meta_title && *tag.meta_title ? tag.meta_title : tag.name;
        desc = tag.meta_description && *tag.meta_description ? tag.meta_description
                                                             : tag.description;
        image = tag.feature_image;
        buf_printf(&tmp, "%lld post%s", (long long)pgn.total, pgn.total == 1 ? "" : "s");
        tv_map_str(intro, "count", tmp.data);
        break;
    case LIST_AUTHOR:
        buf_printf(&prefix, "/author/%s", author.slug);
        intro = tv_map_in(&ar);
        tv_map_str(intro, "title", author.name ? author.name : author.slug);
        if (author.bio && *author.bio)
            tv_map_str(intro, "description", author.bio);
        if (author.profile_image && *author.profile_image) {
            tv_map_str(intro, "image", author.profile_image);
            tv_map_str(intro, "image_alt", author.name ? author.name : "");
        }
        title = author.name;
        desc = author.bio;
        image = author.profile_image;
        buf_printf(&tmp, "%lld post%s", (long long)pgn.total, pgn.total == 1 ? "" : "s");
        tv_map_str(intro, "count", tmp.data);
        break;
    case LIST_SEARCH: {
        intro = tv_map_in(&ar);
        if (*a->query) {
            buf_printf(&tmp, "Results for “%s”", a->query);
            tv_map_str(intro, "title", tmp.data);
            buf_reset(&tmp);
            buf_printf(&tmp, "%lld post%s found", (long long)pgn.total, pgn.total == 1 ? "" : "s");
            tv_map_str(intro, "count", tmp.data);
        } else {
            tv_map_str(intro, "title", "Search");
        }
        title = "Search";
        /* Search pages link with the query: /search?q=<escaped>&page=N */
        search_path(&prefix, a->query);
        break;
    }
    }
    if (intro)
        tv_map_set(ctx, "intro", intro);
    client_view_meta(cl, ctx, title, desc, a->kind == LIST_SEARCH ? "/search" : req->path, image,
                     a->kind == LIST_SEARCH || a->page > 1);
    tv_t *list = tv_list_in(&ar);
    for (int i = 0; i < n; i++)
        tv_list_add(list, client_view_card(cl, &ar, &posts[i]));
    tv_map_bool(ctx, "has_posts", n > 0);
    tv_map_set(ctx, "posts", list);
    tv_t *pag = client_view_pagination(cl, &ar, prefix.data ? prefix.data : "", &pgn,
                                       a->kind == LIST_SEARCH ? "page" : NULL);
    if (pag)
        tv_map_set(ctx, "pagination", pag);
    tv_map_str(ctx, "empty_message", a->kind == LIST_SEARCH && *a->query
                                         ? "Nothing matched your search. Try other words."
                                     : a->kind == LIST_SEARCH ? "Type a few words to search the blog."
                                                              : "Nothing here yet.");
    rc = render_tpl(cl, "list", ctx, th, pg);
out:
    client_reply_free(&rep);
    tv_arena_free(&ar); /* with the posts */
    client_theme_unref(th);
    proto_tag_clear(&tag);
    proto_author_clear(&author);
    buf_free(&prefix);
    buf_free(&tmp);
    return rc;
}

static int serve_list(cn_http_req_t *req, client_t *cl, int kind, const char *slug)
{
    list_args_t a = { .kind = kind, .slug = slug, .query = "", .page = page_param(req, "n") };
    if (a.page == 0 || (slug && !slug_ok(slug)))
        return client_handle_fallback(req, cl);
    if (a.page == 1 && cn_http_param(req, "n")) {
        /* /page/1/ is the first page itself: cut "page/1/" off the raw path */
        char *loc = cn_http_strdup(req, req->path);
        char *cut = NULL;
        for (char *p = loc; p && (p = strstr(p, "/page/")) != NULL; p++)
            cut = p;
        if (cut == NULL)
            return cn_http_reply_error(req, 500);
        cut[1] = '\0';
        return cn_http_redirect(req, 301, loc);
    }
    return client_serve(cl, req, req->path, render_list, &a);
}

static int on_home(cn_http_req_t *req, void *udata)
{
    return serve_list(req, cl_of(udata), LIST_HOME, NULL);
}

static int on_tag(cn_http_req_t *req, void *udata)
{
    return serve_list(req, cl_of(udata), LIST_TAG, cn_http_param(req, "slug"));
}

static int on_author(cn_http_req_t *req, void *udata)
{
    return serve_list(req, cl_of(udata), LIST_AUTHOR, cn_http_param(req, "slug"));
}

/* Search results are cached apart from the pages (cl->search_cache, bounded, and
 * stale after any change, like every listing), keyed by the query as decoded and
 * the page, so that equal searches share one entry however they were escaped.
 * Page views record "/search", not the query. */
static int on_search(cn_http_req_t *req, void *udata)
{
    client_t *cl = cl_of(udata);
    const char *q = req->query ? cn_http_query_get(req, "q") : NULL;
    const char *p = req->query ? cn_http_query_get(req, "page") : NULL;
    list_args_t a = { .kind = LIST_SEARCH, .query = q ? q : "", .page = 1 };
    client_page_t pg;
    page_init(&pg);
    int rc;
    if (p) {
        a.page = atoi(p);
        if (a.page < 1 || a.page > 1000)
            a.page = 1;
    }
    size_t ql = strlen(a.query);
    if ((req->query && q == NULL && strstr(req->query, "q=")) || ql > PROTO_QUERY_MAX ||
        !proto_utf8_valid(a.query, ql)) {
        client_render_error(cl, req, 400, &pg);
        rc = reply_page(req, &pg);
        buf_free(&pg.body);
        return rc;
    }
    buf_t key = BUF_INIT;
    search_path(&key, a.query);
    buf_printf(&key, "&page=%d", a.page);
    rc = serve_in(cl, cl->search_cache, req, key.data, "/search", render_list, &a);
    buf_free(&key);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Posts and pages
 * ------------------------------------------------------------------------------ */

/* "Read next": newest posts sharing the primary tag (then any), without p. */
static tv_t *read_next(client_t *cl, tv_arena_t *ar, const proto_post_t *p)
{
    proto_req_t r = { .kind = PROTO_REQ_LIST_POSTS, .name = "list_posts" };
    proto_list_opts_init(&r.opts);
    r.opts.per_page = RELATED_MAX + 1;
    for (int i = 0; i < p->ntags; i++)
        if (!p->tags[i].internal) {
            snprintf(r.opts.tag, sizeof r.opts.tag, "%s", p->tags[i].slug);
            break;
        }
    tv_t *list = tv_list_in(ar);
    for (int round = 0; round < 2 && list->u.list.n < RELATED_MAX; round++) {
        client_reply_t rep;
        proto_post_t *v = NULL;
        int n = 0;
        if (round == 1)
            r.opts.tag[0] = '\0'; /* too few with the tag: fill with the newest */
        if (client_cms_call(cl, &r, &rep) < 0)
            break;
        int idx = rep.index;
        proto_alloc_t pa = client_arena_alloc(ar);
        if (rep.status == PROTO_OK &&
            proto_decode_post_list_in(&pa, rep.buf, &idx, &v, &n, NULL) == 0) {
            for (int i = 0; i < n && list->u.list.n < RELATED_MAX; i++) {
                bool dup = v[i].id == p->id;
                for (size_t k = 0; k < list->u.list.n && !dup; k++) {
                    const tv_t *u = tv_map_get(list->u.list.items[k], "slug");
                    dup = u && strcmp(u->u.str.s, v[i].slug) == 0;
                }
                if (dup)
                    continue;
                tv_t *card = client_view_card(cl, ar, &v[i]);
                tv_map_str(card, "slug", v[i].slug);
                tv_list_add(list, card);
            }
        }
        client_reply_free(&rep); /* v is in the arena */
    }
    return list;
}

static int render_post(client_t *cl, cn_http_req_t *req, void *arg, client_page_t *pg)
{
    const char *slug = arg;
    client_reply_t rep = { 0 };
    proto_post_t post = { 0 };
    int rc;
    if ((rc = client_settings(cl)) < 0)
        return rc;
    /* A post, else a page; either may answer with a redirect from an old slug. */
    for (int kind = 0; kind < 2; kind++) {
        proto_req_t r = { .kind = kind == 0 ? PROTO_REQ_GET_POST : PROTO_REQ_GET_PAGE,
                          .name = kind == 0 ? "get_post" : "get_page" };
        snprintf(r.slug, sizeof r.slug, "%s", slug);
        if ((rc = client_cms_call(cl, &r, &rep)) < 0)
            return rc;
        if (rep.status != PROTO_ERROR || strcmp(rep.reason, "not_found") != 0)
            break;
        client_reply_free(&rep);
    }
    if (rep.msg == NULL || rep.status == PROTO_ERROR) {
        client_reply_free(&rep);
        client_render_error(cl, req, 404, pg);
        return 0;
    }
    if (rep.status == PROTO_REDIRECT) {
        /* Old slug: a permanent redirect, cached like the page. */
        buf_t u = BUF_INIT;
        buf_t path = BUF_INIT;
        buf_printf(&path, "/%s/", rep.reason);
        client_abs_url(cl, &u, path.data);
        pg->status = 301;
        pg->html = false;
        buf_puts(&pg->body, u.data);
        buf_free(&u);
        buf_free(&path);
        client_reply_free(&rep);
        return 0;
    }
    /* The page's arena: the post as decoded and the template context. */
    tv_arena_t ar = TV_ARENA_INIT;
    proto_alloc_t pa = client_arena_alloc(&ar);
    int idx = rep.index;
    rc = proto_decode_post_in(&pa, rep.buf, &idx, &post);
    client_reply_free(&rep);
    if (rc < 0) {
        tv_arena_free(&ar);
        return -EPROTO;
    }
    client_theme_t *th = cl->theme;
    client_theme_ref(th);
    tv_t *ctx = client_view_page(cl, &ar, th, req->path, NULL);
    client_view_post(cl, ctx, &post);
    if (post.type == PROTO_POST) {
        tv_t *related = tv_map_in(&ar);
        tv_t *list = read_next(cl, &ar, &post);
        tv_map_str(related, "heading", "Read next");
        tv_map_bool(related, "has_posts", list->u.list.n > 0);
        tv_map_set(related, "posts", list);
        tv_map_set(ctx, "related", related);
        snprintf(pg->post_slug, sizeof pg->post_slug, "%s", post.slug);
    }
    pg->flags = CACHE_POST;
    rc = render_tpl(cl, "post", ctx, th, pg);
    tv_arena_free(&ar);
    client_theme_unref(th);
    return rc;
}

static int on_post(cn_http_req_t *req, void *udata)
{
    client_t *cl = cl_of(udata);
    const char *slug = cn_http_param(req, "slug");
    if (!slug_ok(slug))
        return client_handle_fallback(req, cl);
    return client_serve(cl, req, req->path, render_post, (void *)slug);
}

/* ---------------------------------------------------------------------------------
 * 404 and friends
 * ------------------------------------------------------------------------------ */

static int render_not_found(client_t *cl, cn_http_req_t *req, void *arg, client_page_t *pg)
{
    (void)arg;
    client_settings(cl); /* the site's name if we can; the page renders anyway */
    client_render_error(cl, req, 404, pg);
    return 0;
}

/* A path that could be a post or listing without its final '/': redirect. Only
 * plain, relative-safe paths ("/a", "/tag/b"), never "//host". */
static bool wants_slash(const char *path)
{
    size_t n = strlen(path);
    if (n < 2 || n > PROTO_SLUG_MAX + 16 || path[n - 1] == '/' || path[1] == '/')
        return false;
    int segs = 0;
    for (const char *p = path; *p; p++) {
        if (*p == '/') {
            if (p[1] == '/' || p[1] == '.')
                return false;
            segs++;
        } else if (*p == '%' && p[1] == '2' && (p[2] == 'e' || p[2] == 'E' || p[2] == 'f' ||
                                               p[2] == 'F')) {
            return false; /* an encoded '.' or '/' */
        } else if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '%')) {
            return false;
        }
    }
    return segs <= 4;
}

int client_handle_fallback(cn_http_req_t *req, void *udata)
{
    client_t *cl = cl_of(udata);
    if (req->method_id != 1 /* GET */ && req->method_id != 2 /* HEAD */)
        return cn_http_reply_error(req, 405);
    if (wants_slash(req->path)) {
        char *loc = cn_http_sprintf(req, "%s/", req->path);
        return cn_http_redirect(req, 301, loc);
    }
    client_page_t pg;
    page_init(&pg);
    render_not_found(cl, req, NULL, &pg);
    int rc = reply_page(req, &pg);
    buf_free(&pg.body);
    return rc;
}

const cn_http_route_t client_page_routes[] = {
    { "GET", "/", on_home, NULL },
    { "GET", "/page/:n/", on_home, NULL },
    { "GET", "/search", on_search, NULL },
    { "GET", "/tag/:slug/", on_tag, NULL },
    { "GET", "/tag/:slug/page/:n/", on_tag, NULL },
    { "GET", "/author/:slug/", on_author, NULL },
    { "GET", "/author/:slug/page/:n/", on_author, NULL },
    { "GET", "/:slug/", on_post, NULL },
};
const size_t client_npage_routes = sizeof client_page_routes / sizeof client_page_routes[0];
