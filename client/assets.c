/* assets.c - the theme's assets and content images.
 *
 *   /assets/NAME.HASH.EXT   a theme asset by its fingerprinted name: a year of
 *                           caching, immutable (a new file gets a new name)
 *   /assets/NAME.EXT        the same file by its plain name: revalidated (ETag)
 *   /content/images/PATH    uploaded images, from ONEBLOG_IMAGES_DIR (sendfile,
 *                           ETag, a day of caching). An image that is not there
 *                           gets a generated SVG placeholder (a gradient picked
 *                           from its name), so the demo content, whose images are
 *                           only names, still looks like a blog.
 */
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool etag_seen(cn_http_req_t *req, const char *etag)
{
    const char *inm = cn_http_header(req, "If-None-Match");
    return inm && (strstr(inm, etag + 1) != NULL || strchr(inm, '*'));
}

static int on_asset(cn_http_req_t *req, void *udata)
{
    client_t *cl = udata;
    const char *name = cn_http_param(req, "name");
    client_theme_t *th = cl->theme;
    bool fp = false;
    const client_asset_t *a = client_theme_asset(th, name, &fp);
    if (a == NULL)
        return client_handle_fallback(req, cl);
    client_theme_ref(th); /* the reply may park on a slow client over a reload */
    bool gz = a->gz && cn_http_accepts_gzip(req);
    char etag[32];
    snprintf(etag, sizeof etag, "%.*s%s\"", (int)strlen(a->etag) - 1, a->etag, gz ? "-gz" : "");
    cn_http_set_header(req, "ETag", etag);
    cn_http_set_header(req, "Cache-Control",
                       fp ? "public, max-age=31536000, immutable" : "public, max-age=0, must-revalidate");
    if (a->gz)
        cn_http_set_header(req, "Vary", "Accept-Encoding");
    int rc;
    if (etag_seen(req, a->etag)) {
        rc = cn_http_reply(req, 304, NULL, NULL, 0);
    } else if (gz) {
        cn_http_set_header(req, "Content-Encoding", "gzip");
        rc = cn_http_reply(req, 200, a->ctype, a->gz, a->gzlen);
    } else {
        rc = cn_http_reply(req, 200, a->ctype, a->body, a->len);
    }
    client_theme_unref(th);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Content images
 * ------------------------------------------------------------------------------ */

static cn_http_static_t *images; /* one per node; made on first use */
static bool images_tried;

/* A relative image path without "..", empty or hidden segments. */
static bool image_path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > 255 || p[0] == '/')
        return false;
    for (const char *s = p; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == '\\')
            return false;
        if ((s == p || s[-1] == '/') && (*s == '.' || *s == '/'))
            return false;
    }
    return true;
}

static bool is_image_name(const char *p)
{
    const char *dot = strrchr(p, '.');
    static const char *const exts[] = { ".jpg", ".jpeg", ".png", ".webp", ".gif", ".svg" };
    for (size_t i = 0; dot && i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i]) == 0)
            return true;
    return false;
}

/* A deterministic SVG for an image that is not there: two colours from a hash
 * of the name, soft circles, no text (the page has the alt text). */
static int reply_placeholder(cn_http_req_t *req, const char *name)
{
    static const char *const palette[][2] = {
        { "#2b59c3", "#8fb8ff" }, { "#0f766e", "#5eead4" }, { "#7c3aed", "#c4b5fd" },
        { "#b45309", "#fcd34d" }, { "#be123c", "#fda4af" }, { "#1e3a8a", "#93c5fd" },
        { "#065f46", "#a7f3d0" }, { "#9d174d", "#f9a8d4" },
    };
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    const char *const *c = palette[h % (sizeof palette / sizeof palette[0])];
    int cx1 = 200 + (int)(h >> 8) % 800, cy1 = 80 + (int)(h >> 16) % 300;
    int cx2 = 100 + (int)(h >> 4) % 900, cy2 = 300 + (int)(h >> 12) % 300;
    char *svg = cn_http_sprintf(
        req,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1200 630\" "
        "preserveAspectRatio=\"xMidYMid slice\">"
        "<defs><linearGradient id=\"g\" x1=\"0\" y1=\"0\" x2=\"1\" y2=\"1\">"
        "<stop offset=\"0\" stop-color=\"%s\"/><stop offset=\"1\" stop-color=\"%s\"/>"
        "</linearGradient></defs>"
        "<rect width=\"1200\" height=\"630\" fill=\"url(#g)\"/>"
        "<circle cx=\"%d\" cy=\"%d\" r=\"220\" fill=\"#fff\" fill-opacity=\".14\"/>"
        "<circle cx=\"%d\" cy=\"%d\" r=\"140\" fill=\"#fff\" fill-opacity=\".10\"/>"
        "<circle cx=\"%d\" cy=\"%d\" r=\"60\" fill=\"#000\" fill-opacity=\".08\"/>"
        "</svg>\n",
        c[0], c[1], cx1, cy1, cx2, cy2, (cx1 + cx2) / 2, (cy1 + cy2) / 2);
    if (svg == NULL)
        return -ENOMEM;
    cn_http_set_header(req, "Cache-Control", "public, max-age=86400");
    return cn_http_reply(req, 200, "image/svg+xml", svg, strlen(svg));
}

static int on_image(cn_http_req_t *req, void *udata)
{
    client_t *cl = udata;
    const char *path = cn_http_param(req, "path");
    if (path == NULL || !image_path_ok(path))
        return client_handle_fallback(req, cl);
    const char *dir = cl->cfg.images_dir;
    if (!images_tried && dir && *dir) {
        images_tried = true;
        cn_http_static_opts_t o = { .root = dir, .max_age_s = 86400, .gzip = true };
        if (cn_http_static_new(&o, &images) < 0)
            images = NULL;
    }
    if (images) {
        char *full = cn_http_sprintf(req, "%s/%s", dir, path);
        struct stat sb;
        if (full && stat(full, &sb) == 0 && S_ISREG(sb.st_mode))
            return cn_http_static_handler(req, images);
    }
    if (is_image_name(path))
        return reply_placeholder(req, path);
    return client_handle_fallback(req, cl);
}

void client_assets_free(void)
{
    cn_http_static_free(images);
    images = NULL;
    images_tried = false;
}

const cn_http_route_t client_asset_routes[] = {
    { "GET", "/assets/:name", on_asset, NULL },
    { "GET", "/content/images/*path", on_image, NULL },
};
const size_t client_nasset_routes = sizeof client_asset_routes / sizeof client_asset_routes[0];
