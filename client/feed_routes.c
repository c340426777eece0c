/* feed_routes.c - feeds, sitemaps and robots.txt, over the pure writers of feeds.c.
 *
 *   /rss/  /atom.xml  /feed.json          the site's newest posts
 *   /tag/SLUG/rss/  /author/SLUG/rss/     one tag's or author's
 *   /sitemap.xml                          every post, page, tag and author; past
 *                                         50,000 URLs an index of /sitemap-N.xml
 *   /robots.txt                           allow all, point at the sitemap
 *
 * All are served through client_serve(), so they are cached as listings (stale
 * after any content change) and survive a CMS outage like pages do.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feeds.h"

#define FEED_POSTS 20

enum { FEED_RSS, FEED_ATOM, FEED_JSON };

typedef struct feed_args {
    int format;
    int scope;          /* 0 site, 1 tag, 2 author */
    const char *slug;
} feed_args_t;

static int render_feed(client_t *cl, cn_http_req_t *req, void *arg, client_page_t *pg)
{
    feed_args_t *a = arg;
    client_reply_t rep = { 0 };
    proto_post_t *posts = NULL;
    proto_tag_t tag = { 0 };
    proto_author_t author = { 0 };
    int n = 0, rc;
    buf_t title = BUF_INIT, link = BUF_INIT, self = BUF_INIT, tmp = BUF_INIT;

    if ((rc = client_settings(cl)) < 0)
        return rc;
    pg->flags = CACHE_LISTING;
    pg->html = false;
    const char *site_title = cl->settings.title ? cl->settings.title : "OneBlog";
    const char *desc = cl->settings.description ? cl->settings.description : "";
    buf_puts(&title, site_title);
    buf_puts(&link, "/");
    if (a->scope) {
        proto_req_t r = { .kind = a->scope == 1 ? PROTO_REQ_GET_TAG : PROTO_REQ_GET_AUTHOR,
                          .name = a->scope == 1 ? "get_tag" : "get_author" };
        snprintf(r.slug, sizeof r.slug, "%s", a->slug);
        if ((rc = client_cms_call(cl, &r, &rep)) < 0)
            goto out;
        int idx = rep.index;
        if (rep.status != PROTO_OK ||
            (a->scope == 1 ? proto_decode_tag(rep.buf, &idx, &tag)
                           : proto_decode_author(rep.buf, &idx, &author)) < 0 ||
            tag.internal) {
            rc = 0;
            client_render_error(cl, req, 404, pg);
            goto out;
        }
        client_reply_free(&rep);
        buf_reset(&link);
        if (a->scope == 1) {
            buf_printf(&title, " – %s", tag.name ? tag.name : tag.slug);
            buf_printf(&link, "/tag/%s/", tag.slug);
            if (tag.description)
                desc = tag.description;
        } else {
            buf_printf(&title, " – %s", author.name ? author.name : author.slug);
            buf_printf(&link, "/author/%s/", author.slug);
            if (author.bio)
                desc = author.bio;
        }
    }
    proto_req_t r = { .kind = PROTO_REQ_LIST_POSTS, .name = "list_posts" };
    proto_list_opts_init(&r.opts);
    r.opts.per_page = FEED_POSTS;
    if (a->scope == 1)
        snprintf(r.opts.tag, sizeof r.opts.tag, "%s", a->slug);
    if (a->scope == 2)
        snprintf(r.opts.author, sizeof r.opts.author, "%s", a->slug);
    if ((rc = client_cms_call(cl, &r, &rep)) < 0)
        goto out;
    int idx = rep.index;
    if (rep.status != PROTO_OK || proto_decode_post_list(rep.buf, &idx, &posts, &n, NULL) < 0) {
        rc = -EPROTO;
        goto out;
    }
    client_reply_free(&rep);

    char *link_abs = xstrdup(client_abs_url(cl, &tmp, link.data));
    client_abs_url(cl, &self, req->path);
    proto_settings_t site = cl->settings;
    site.url = (char *)client_base_url(cl);
    int64_t updated = 0;
    for (int i = 0; i < n; i++) {
        int64_t t = posts[i].updated_at > posts[i].published_at ? posts[i].updated_at
                                                                 : posts[i].published_at;
        if (t > updated)
            updated = t;
    }
    feed_t f = { .site = &site, .title = title.data, .description = desc, .link = link_abs,
                 .self_url = self.data, .posts = posts, .nposts = n, .updated = updated };
    switch (a->format) {
    case FEED_RSS:
        feeds_rss(&pg->body, &f);
        pg->ctype = "application/rss+xml; charset=utf-8";
        break;
    case FEED_ATOM:
        feeds_atom(&pg->body, &f);
        pg->ctype = "application/atom+xml; charset=utf-8";
        break;
    default:
        feeds_json(&pg->body, &f);
        pg->ctype = "application/feed+json; charset=utf-8";
        break;
    }
    free(link_abs);
    rc = 0;
out:
    client_reply_free(&rep);
    proto_posts_free(posts, n);
    proto_tag_clear(&tag);
    proto_author_clear(&author);
    buf_free(&title);
    buf_free(&link);
    buf_free(&self);
    buf_free(&tmp);
    return rc;
}

static int serve_feed(cn_http_req_t *req, client_t *cl, int format, int scope)
{
    feed_args_t a = { format, scope, cn_http_param(req, "slug") };
    if (scope && (a.slug == NULL || strlen(a.slug) > PROTO_SLUG_MAX ||
                  !proto_utf8_valid(a.slug, strlen(a.slug))))
        return client_handle_fallback(req, cl);
    return client_serve(cl, req, req->path, render_feed, &a);
}

static int on_rss(cn_http_req_t *req, void *udata)
{
    return serve_feed(req, udata, FEED_RSS, 0);
}

static int on_tag_rss(cn_http_req_t *req, void *udata)
{
    return serve_feed(req, udata, FEED_RSS, 1);
}

static int on_author_rss(cn_http_req_t *req, void *udata)
{
    return serve_feed(req, udata, FEED_RSS, 2);
}

/* ---------------------------------------------------------------------------------
 * Sitemaps
 * ------------------------------------------------------------------------------ */

static int64_t parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    return end ? (int64_t)timegm(&tm) : 0;
}

static const char *kind_name(const char *k)
{
    static const char *const kinds[] = { "post", "page", "tag", "author" };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(k, kinds[i]) == 0)
            return kinds[i];
    return "page";
}

/* {ok, #{entries => [#{path, lastmod, kind}]}} at idx -> a new array. */
static int decode_sitemap(const char *buf, int idx, proto_sitemap_entry_t **out, int *nout)
{
    int arity, n;
    *out = NULL;
    *nout = 0;
    if (ei_decode_map_header(buf, &idx, &arity) < 0)
        return -EPROTO;
    for (int i = 0; i < arity; i++) {
        char key[MAXATOMLEN_UTF8];
        if (ei_decode_atom(buf, &idx, key) < 0)
            return -EPROTO;
        if (strcmp(key, "entries") != 0) {
            if (ei_skip_term(buf, &idx) < 0)
                return -EPROTO;
            continue;
        }
        if (ei_decode_list_header(buf, &idx, &n) < 0 || n < 0)
            return -EPROTO;
        proto_sitemap_entry_t *v = xcalloc((size_t)n + 1, sizeof(*v));
        for (int k = 0; k < n; k++) {
            int m;
            if (ei_decode_map_header(buf, &idx, &m) < 0)
                goto bad;
            for (int j = 0; j < m; j++) {
                char f[MAXATOMLEN_UTF8], val[512];
                int type, size;
                long len;
                if (ei_decode_atom(buf, &idx, f) < 0 || ei_get_type(buf, &idx, &type, &size) < 0)
                    goto bad;
                if (type == ERL_BINARY_EXT && size < (int)sizeof val) {
                    if (ei_decode_binary(buf, &idx, val, &len) < 0)
                        goto bad;
                    val[len] = '\0';
                } else if (ei_decode_atom(buf, &idx, val) < 0 && ei_skip_term(buf, &idx) < 0) {
                    goto bad;
                }
                if (strcmp(f, "path") == 0) {
                    free(v[k].path);
                    v[k].path = xstrdup(val);
                } else if (strcmp(f, "lastmod") == 0) {
                    v[k].lastmod = parse_iso(val);
                } else if (strcmp(f, "kind") == 0) {
                    v[k].kind = kind_name(val);
                }
            }
            if (v[k].path == NULL)
                v[k].path = xstrdup("/");
            if (v[k].kind == NULL)
                v[k].kind = "page";
        }
        *out = v;
        *nout = n;
        return 0;
    bad:
        for (int k = 0; k < n; k++)
            free(v[k].path);
        free(v);
        return -EPROTO;
    }
    return 0;
}

static void sitemap_free(proto_sitemap_entry_t *v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i].path);
    free(v);
}

/* arg: the page (0 = /sitemap.xml: the whole urlset, or the index). */
static int render_sitemap(client_t *cl, cn_http_req_t *req, void *arg, client_page_t *pg)
{
    int page = *(int *)arg, rc, n = 0;
    proto_sitemap_entry_t *v = NULL;
    client_reply_t rep;
    (void)req;
    if ((rc = client_settings(cl)) < 0)
        return rc;
    proto_req_t r = { .kind = PROTO_REQ_SITEMAP, .name = "sitemap" };
    if ((rc = client_cms_call(cl, &r, &rep)) < 0)
        return rc;
    if (rep.status != PROTO_OK || decode_sitemap(rep.buf, rep.index, &v, &n) < 0) {
        client_reply_free(&rep);
        return -EPROTO;
    }
    client_reply_free(&rep);
    /* The home page is not in the CMS's list; it leads. */
    v = xrealloc(v, (size_t)(n + 1) * sizeof(*v));
    memmove(v + 1, v, (size_t)n * sizeof(*v));
    v[0] = (proto_sitemap_entry_t){ .path = xstrdup("/"), .kind = "page" };
    n++;
    int64_t newest = 0;
    for (int i = 1; i < n; i++)
        if (v[i].lastmod > newest)
            newest = v[i].lastmod;
    v[0].lastmod = newest;
    int pages = feeds_sitemap_pages(n);
    pg->html = false;
    pg->flags = CACHE_LISTING;
    pg->ctype = "application/xml; charset=utf-8";
    const char *base = client_base_url(cl);
    if (page == 0 && pages > 1) {
        feeds_sitemap_index(&pg->body, base, pages, newest);
    } else if (page <= pages) {
        feeds_sitemap(&pg->body, base, v, n, page == 0 ? 1 : page);
    } else {
        client_render_error(cl, req, 404, pg);
    }
    sitemap_free(v, n);
    return 0;
}

static int render_robots(client_t *cl, cn_http_req_t *req, void *arg, client_page_t *pg)
{
    (void)req;
    (void)arg;
    int rc = client_settings(cl);
    if (rc < 0)
        return rc;
    pg->html = false;
    pg->flags = CACHE_LISTING;
    pg->ctype = "text/plain; charset=utf-8";
    buf_printf(&pg->body, "User-agent: *\nAllow: /\nDisallow: /search\n\nSitemap: %s/sitemap.xml\n",
               client_base_url(cl));
    return 0;
}

/* Single-segment files at the root: "/robots.txt", "/sitemap.xml",
 * "/sitemap-N.xml", "/atom.xml", "/feed.json"; anything else is the fallback. */
int client_handle_root_file(cn_http_req_t *req, void *udata)
{
    client_t *cl = udata;
    const char *f = cn_http_param(req, "file");
    int page = 0;
    if (strcmp(f, "robots.txt") == 0)
        return client_serve(cl, req, "/robots.txt", render_robots, NULL);
    if (strcmp(f, "sitemap.xml") == 0)
        return client_serve(cl, req, "/sitemap.xml", render_sitemap, &page);
    if (strcmp(f, "atom.xml") == 0)
        return serve_feed(req, cl, FEED_ATOM, 0);
    if (strcmp(f, "feed.json") == 0)
        return serve_feed(req, cl, FEED_JSON, 0);
    char tail[8] = "";
    if (sscanf(f, "sitemap-%6d%7s", &page, tail) == 2 && page >= 1 && strcmp(tail, ".xml") == 0) {
        char key[40];
        snprintf(key, sizeof key, "/sitemap-%d.xml", page);
        return client_serve(cl, req, key, render_sitemap, &page);
    }
    return client_handle_fallback(req, cl);
}

const cn_http_route_t client_feed_routes[] = {
    { "GET", "/rss/", on_rss, NULL },
    { "GET", "/tag/:slug/rss/", on_tag_rss, NULL },
    { "GET", "/author/:slug/rss/", on_author_rss, NULL },
};
const size_t client_nfeed_routes = sizeof client_feed_routes / sizeof client_feed_routes[0];
