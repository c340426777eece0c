/* view.c - template contexts: what themes/default/README.md promises each template,
 * built from the CMS's typed replies (proto.h structs) as value trees (tv_t).
 *
 * Every string goes into the tree as it is; the templates escape for HTML. The one
 * exception is JSON-LD, which is written here with '/' escaped (so no "</script>"
 * can appear inside it; client_json_str) and inserted unescaped by the theme.
 */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feeds.h"

const char *client_base_url(const client_t *cl)
{
    if (cl->cfg.site_url && *cl->cfg.site_url)
        return cl->cfg.site_url;
    if (cl->have_settings && cl->settings.url && *cl->settings.url)
        return cl->settings.url;
    return "";
}

/* Absolute URL for path_or_url, in tmp (reset first); returns tmp->data. */
char *client_abs_url(client_t *cl, buf_t *tmp, const char *path_or_url)
{
    buf_reset(tmp);
    if (path_or_url[0] == '/' && path_or_url[1] != '/') {
        const char *base = client_base_url(cl);
        size_t bl = strlen(base);
        if (bl && base[bl - 1] == '/')
            bl--;
        buf_append(tmp, base, bl);
    }
    buf_puts(tmp, path_or_url);
    return tmp->data;
}

/* map[key] = the absolute URL of a + b + c (a path, or a URL when a is one),
 * built in one piece in the map's allocation (no intermediate buffers: a home
 * page sets some forty of these). */
static void set_abs3(client_t *cl, tv_t *map, const char *key, const char *a, const char *b,
                     const char *c)
{
    const char *base = "";
    size_t bl = 0;
    if (a[0] == '/' && a[1] != '/') {
        base = client_base_url(cl);
        bl = strlen(base);
        if (bl && base[bl - 1] == '/')
            bl--;
    }
    size_t al = strlen(a), l2 = strlen(b), l3 = strlen(c);
    char stackbuf[512];
    size_t n = bl + al + l2 + l3;
    char *s = n < sizeof stackbuf ? stackbuf : xmalloc(n + 1);
    memcpy(s, base, bl);
    memcpy(s + bl, a, al);
    memcpy(s + bl + al, b, l2);
    memcpy(s + bl + al + l2, c, l3);
    tv_map_strn(map, key, s, n);
    if (s != stackbuf)
        free(s);
}

static void set_abs(client_t *cl, tv_t *map, const char *key, const char *path_or_url)
{
    set_abs3(cl, map, key, path_or_url, "", "");
}

void client_human_date(int64_t t, char *out)
{
    static const char *const months[] = { "January", "February", "March",     "April",
                                          "May",     "June",     "July",      "August",
                                          "September", "October", "November", "December" };
    int y, m, d, secs;
    /* by hand: gmtime_r takes the time zone lock, and snprintf cost a thousand
     * instructions a card */
    feeds_civil(t, &y, &m, &d, &secs);
    if (y < 0 || y > 9999) {
        snprintf(out, 40, "%d %s %d", d, months[m - 1], y);
        return;
    }
    char *o = out;
    if (d >= 10)
        *o++ = (char)('0' + d / 10);
    *o++ = (char)('0' + d % 10);
    *o++ = ' ';
    size_t ml = strlen(months[m - 1]);
    memcpy(o, months[m - 1], ml);
    o += ml;
    *o++ = ' ';
    char digits[4];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + y % 10);
        y /= 10;
    } while (y);
    while (nd)
        *o++ = digits[--nd];
    *o = '\0';
}

static void *arena_alloc(void *ud, size_t n)
{
    return tv_arena_alloc(ud, n);
}

proto_alloc_t client_arena_alloc(tv_arena_t *a)
{
    return (proto_alloc_t){ arena_alloc, a };
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static bool has(const char *s)
{
    return s && *s;
}

/* ---------------------------------------------------------------------------------
 * Site, assets, meta
 * ------------------------------------------------------------------------------ */

tv_t *client_view_page(client_t *cl, tv_arena_t *a, const client_theme_t *th, const char *path,
                       const char *query)
{
    const proto_settings_t *s = &cl->settings;
    tv_t *ctx = tv_map_in(a);
    tv_t *site = tv_map_in(a);
    const char *base = client_base_url(cl);
    tv_map_str(site, "title", has(s->title) ? s->title : "OneBlog");
    tv_map_str(site, "description", nz(s->description));
    tv_map_str(site, "url", base);
    tv_map_str(site, "lang", has(s->locale) ? s->locale : "en");
    tv_t *nav = tv_list_in(a);
    for (int i = 0; i < s->nnavigation; i++) {
        tv_t *item = tv_map_in(a);
        const char *u = nz(s->navigation[i].url);
        tv_map_str(item, "label", nz(s->navigation[i].label));
        set_abs(cl, item, "url", u);
        tv_map_bool(item, "current", path && strcmp(u, path) == 0);
        tv_list_add(nav, item);
    }
    tv_map_set(site, "navigation", nav);
    tv_map_set(ctx, "site", site);

    tv_t *assets = tv_map_in(a);
    tv_map_str(assets, "css", client_theme_asset_url(th, "style.css"));
    tv_map_str(assets, "icon", client_theme_asset_url(th, "icon.svg"));
    tv_map_set(ctx, "assets", assets);

    tv_t *search = tv_map_in(a);
    tv_map_str(search, "query", nz(query));
    tv_map_set(ctx, "search", search);

    client_view_meta(cl, ctx, NULL, NULL, path ? path : "/", NULL, false);
    return ctx;
}

void client_view_meta(client_t *cl, tv_t *ctx, const char *title, const char *description,
                      const char *canonical_path, const char *image, bool noindex)
{
    const proto_settings_t *s = &cl->settings;
    const char *site_title = has(s->title) ? s->title : "OneBlog";
    tv_t *meta = tv_map_in(ctx->arena);
    if (has(title)) {
        buf_t b = BUF_INIT;
        buf_printf(&b, "%s – %s", title, site_title);
        tv_map_strn(meta, "title", b.data, b.len);
        buf_free(&b);
    } else {
        tv_map_str(meta, "title", site_title);
    }
    tv_map_str(meta, "og_title", has(title) ? title : site_title);
    tv_map_str(meta, "description", has(description) ? description : nz(s->description));
    set_abs(cl, meta, "canonical", canonical_path);
    tv_map_str(meta, "og_type", "website");
    if (has(image))
        set_abs(cl, meta, "og_image", image);
    if (noindex)
        tv_map_bool(meta, "noindex", true);
    tv_map_set(ctx, "meta", meta);
}

/* ---------------------------------------------------------------------------------
 * Cards and posts
 * ------------------------------------------------------------------------------ */

static const proto_tag_t *primary_tag(const proto_post_t *p)
{
    for (int i = 0; i < p->ntags; i++)
        if (!p->tags[i].internal)
            return &p->tags[i];
    return NULL;
}

static tv_t *tag_ref(client_t *cl, tv_arena_t *ar, const proto_tag_t *t)
{
    tv_t *m = tv_map_in(ar);
    tv_map_str(m, "name", nz(t->name));
    tv_map_str(m, "slug", nz(t->slug));
    set_abs3(cl, m, "url", "/tag/", nz(t->slug), "/");
    return m;
}

static tv_t *authors_list(client_t *cl, tv_arena_t *ar, const proto_post_t *p, bool full)
{
    tv_t *l = tv_list_in(ar);
    for (int i = 0; i < p->nauthors; i++) {
        const proto_author_t *a = &p->authors[i];
        tv_t *m = tv_map_in(ar);
        tv_map_str(m, "name", nz(a->name));
        set_abs3(cl, m, "url", "/author/", nz(a->slug), "/");
        tv_map_bool(m, "last", i == p->nauthors - 1);
        if (full) {
            if (has(a->bio))
                tv_map_str(m, "bio", a->bio);
            if (has(a->profile_image))
                tv_map_str(m, "profile_image", a->profile_image);
        }
        tv_list_add(l, m);
    }
    return l;
}

static void dates(tv_t *m, const proto_post_t *p)
{
    if (p->published_at > 0) {
        char iso[40], human[40];
        feeds_rfc3339(p->published_at, iso);
        client_human_date(p->published_at, human);
        tv_map_str(m, "published_at", iso);
        tv_map_str(m, "published_human", human);
    }
}

/* Alt text: the editor's, else the title (an image is never without one). */
static const char *image_alt(const proto_post_t *p)
{
    return has(p->feature_image_alt) ? p->feature_image_alt : nz(p->title);
}

tv_t *client_view_card(client_t *cl, tv_arena_t *ar, const proto_post_t *p)
{
    tv_t *m = tv_map_in(ar);
    tv_map_str(m, "title", nz(p->title));
    set_abs3(cl, m, "url", "/", nz(p->slug), "/");
    tv_map_str(m, "excerpt", nz(p->excerpt));
    if (has(p->feature_image)) {
        tv_map_str(m, "feature_image", p->feature_image);
        tv_map_str(m, "feature_image_alt", image_alt(p));
    }
    dates(m, p);
    tv_map_int(m, "reading_time", p->reading_time > 0 ? p->reading_time : 1);
    tv_map_bool(m, "featured", p->featured);
    const proto_tag_t *pt = primary_tag(p);
    if (pt)
        tv_map_set(m, "primary_tag", tag_ref(cl, ar, pt));
    tv_map_set(m, "authors", authors_list(cl, ar, p, false));
    return m;
}

bool client_json_str(buf_t *out, const char *s)
{
    size_t len = strlen(s);
    if (!proto_utf8_valid(s, len))
        return false;
    static const char hex[] = "0123456789ABCDEF";
    buf_reserve(out, len + 2);
    buf_putc(out, '"');
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != '/')
            continue;
        buf_append(out, s + start, i - start);
        start = i + 1;
        char esc[7] = { '\\', 0 };
        switch (c) {
        case '"': case '\\': case '/': esc[1] = (char)c; break;
        case '\b': esc[1] = 'b'; break;
        case '\t': esc[1] = 't'; break;
        case '\n': esc[1] = 'n'; break;
        case '\f': esc[1] = 'f'; break;
        case '\r': esc[1] = 'r'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            buf_append(out, esc, 6);
            continue;
        }
        buf_append(out, esc, 2);
    }
    buf_append(out, s + start, len - start);
    buf_putc(out, '"');
    return true;
}

/* ,"key":"value" (no comma first); a value that is not UTF-8 leaves the member
 * out, as jansson's json_string() did. */
static void json_member(buf_t *out, bool *first, const char *key, const char *val)
{
    size_t mark = out->len;
    if (!*first)
        buf_putc(out, ',');
    buf_putc(out, '"');
    buf_puts(out, key);
    buf_puts(out, "\":");
    if (!client_json_str(out, val)) {
        out->len = mark; /* take the key back */
        out->data[mark] = '\0';
        return;
    }
    *first = false;
}

/* JSON-LD (schema.org BlogPosting) for a post, appended to out. Written by hand
 * (jansson's object building and dump were 13% of an uncached post page), with
 * what jansson's JSON_COMPACT | JSON_ESCAPE_SLASH made: members in this order,
 * '/' escaped (so no "</script>" can appear), controls as \uXXXX, UTF-8 as is. */
static void json_ld(client_t *cl, buf_t *out, const proto_post_t *p, const char *canonical,
                    const char *image, const char *description)
{
    char pub[40], mod[40];
    feeds_rfc3339(p->published_at ? p->published_at : p->created_at, pub);
    feeds_rfc3339(p->updated_at ? p->updated_at : p->published_at, mod);
    bool first = true;
    buf_putc(out, '{');
    json_member(out, &first, "@context", "https://schema.org");
    json_member(out, &first, "@type", p->type == PROTO_PAGE ? "WebPage" : "BlogPosting");
    json_member(out, &first, "headline", nz(p->title));
    json_member(out, &first, "description", nz(description));
    json_member(out, &first, "url", canonical);
    json_member(out, &first, "mainEntityOfPage", canonical);
    json_member(out, &first, "datePublished", pub);
    json_member(out, &first, "dateModified", mod);
    if (has(image))
        json_member(out, &first, "image", image);
    buf_puts(out, first ? "\"author\":[" : ",\"author\":[");
    first = false;
    buf_t b = BUF_INIT, u = BUF_INIT;
    for (int i = 0; i < p->nauthors; i++) {
        bool f = true;
        buf_puts(out, i ? ",{" : "{");
        json_member(out, &f, "@type", "Person");
        json_member(out, &f, "name", nz(p->authors[i].name));
        buf_reset(&b);
        buf_printf(&b, "/author/%s/", nz(p->authors[i].slug));
        json_member(out, &f, "url", client_abs_url(cl, &u, b.data));
        buf_putc(out, '}');
    }
    buf_puts(out, "],\"publisher\":{");
    bool f = true;
    json_member(out, &f, "@type", "Organization");
    json_member(out, &f, "name", has(cl->settings.title) ? cl->settings.title : "OneBlog");
    json_member(out, &f, "url", client_abs_url(cl, &u, "/"));
    buf_putc(out, '}');
    if (p->reading_time > 0) {
        buf_reset(&b);
        buf_printf(&b, "PT%dM", p->reading_time);
        json_member(out, &first, "timeRequired", b.data);
    }
    buf_putc(out, '}');
    buf_free(&b);
    buf_free(&u);
}

void client_view_post(client_t *cl, tv_t *ctx, const proto_post_t *p)
{
    tv_arena_t *ar = ctx->arena;
    tv_t *m = tv_map_in(ar);
    tv_map_str(m, "title", nz(p->title));
    tv_map_str(m, "html", nz(p->html));
    if (has(p->custom_excerpt))
        tv_map_str(m, "custom_excerpt", p->custom_excerpt);
    if (has(p->feature_image)) {
        tv_map_str(m, "feature_image", p->feature_image);
        tv_map_str(m, "feature_image_alt", image_alt(p));
        if (has(p->feature_image_caption))
            tv_map_str(m, "feature_image_caption", p->feature_image_caption);
    }
    if (p->type == PROTO_POST)
        dates(m, p);
    tv_map_int(m, "reading_time", p->reading_time > 0 ? p->reading_time : 1);
    tv_map_bool(m, "is_page", p->type == PROTO_PAGE);
    const proto_tag_t *pt = primary_tag(p);
    if (pt)
        tv_map_set(m, "primary_tag", tag_ref(cl, ar, pt));
    tv_t *tags = tv_list_in(ar);
    for (int i = 0; i < p->ntags; i++)
        if (!p->tags[i].internal)
            tv_list_add(tags, tag_ref(cl, ar, &p->tags[i]));
    tv_map_bool(m, "has_tags", tags->u.list.n > 0 || p->nauthors > 0);
    tv_map_set(m, "tags", tags);
    tv_map_set(m, "authors", authors_list(cl, ar, p, true));
    tv_map_set(ctx, "post", m);

    /* Head: the editor's SEO fields first, then the post's own. */
    const char *title = has(p->meta_title) ? p->meta_title : nz(p->title);
    const char *desc = has(p->meta_description) ? p->meta_description
                       : has(p->custom_excerpt)  ? p->custom_excerpt
                                                 : nz(p->excerpt);
    const char *image = has(p->og_image) ? p->og_image : p->feature_image;
    buf_t path = BUF_INIT, b = BUF_INIT;
    buf_printf(&path, "/%s/", nz(p->slug));
    client_view_meta(cl, ctx, title, desc, has(p->canonical_url) ? p->canonical_url : path.data,
                     image, false);
    tv_t *meta = (tv_t *)tv_map_get(ctx, "meta");
    if (has(p->og_title))
        tv_map_str(meta, "og_title", p->og_title);
    if (has(p->og_description))
        tv_map_str(meta, "description", p->og_description);
    if (p->type == PROTO_POST) {
        char iso[40];
        tv_map_str(meta, "og_type", "article");
        if (p->published_at > 0) {
            feeds_rfc3339(p->published_at, iso);
            tv_map_str(meta, "published_time", iso);
        }
        if (p->updated_at > 0) {
            feeds_rfc3339(p->updated_at, iso);
            tv_map_str(meta, "modified_time", iso);
        }
    }
    const tv_t *canon = tv_map_get(meta, "canonical");
    const tv_t *img = tv_map_get(meta, "og_image");
    buf_t ld = BUF_INIT;
    json_ld(cl, &ld, p, canon ? canon->u.str.s : "", img ? img->u.str.s : NULL, desc);
    tv_map_strn(meta, "json_ld", ld.data, ld.len);
    buf_free(&ld);
    buf_free(&path);
    buf_free(&b);
}

tv_t *client_view_pagination(client_t *cl, tv_arena_t *a, const char *prefix,
                             const proto_pagination_t *pg, const char *query_param)
{
    if (pg->pages <= 1)
        return NULL;
    tv_t *m = tv_map_in(a);
    tv_map_int(m, "page", pg->page);
    tv_map_int(m, "pages", pg->pages);
    buf_t b = BUF_INIT;
    for (int k = 0; k < 2; k++) {
        int target = k == 0 ? pg->page - 1 : pg->page + 1;
        if (target < 1 || target > pg->pages)
            continue;
        buf_reset(&b);
        if (query_param)  /* search: /search?q=...&page=N */
            buf_printf(&b, "%s&page=%d", prefix, target);
        else if (target == 1)
            buf_printf(&b, "%s/", prefix);
        else
            buf_printf(&b, "%s/page/%d/", prefix, target);
        set_abs(cl, m, k == 0 ? "prev_url" : "next_url", b.data);
    }
    buf_free(&b);
    return m;
}
