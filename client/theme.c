/* theme.c - a theme directory loaded into memory: Mustache templates and assets.
 *
 * templates/NAME.mustache becomes template NAME (partials are templates too).
 * assets/FILE is read whole, fingerprinted with a 64-bit FNV-1a of its bytes
 * (style.css -> style.1a2b3c4d.css, served for a year as immutable) and, when it
 * is text and shrinks, gzipped once. A theme is reference counted: a SIGHUP
 * reload swaps the client's pointer while a slow client may still be receiving
 * an asset of the old one.
 */
#include "client.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define THEME_FILE_MAX (4 << 20) /* bytes: larger files are skipped */

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static const char *ctype_of(const char *name)
{
    static const struct {
        const char *ext, *ctype;
    } types[] = {
        { ".css", "text/css; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
        { ".jpg", "image/jpeg" },
        { ".jpeg", "image/jpeg" },
        { ".webp", "image/webp" },
        { ".ico", "image/x-icon" },
        { ".woff2", "font/woff2" },
        { ".txt", "text/plain; charset=utf-8" },
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot, types[i].ext) == 0)
            return types[i].ctype;
    return "application/octet-stream";
}

static bool compressible(const char *ctype)
{
    return strncmp(ctype, "text/", 5) == 0 || strstr(ctype, "svg") != NULL;
}

/* Read a whole regular file; NULL on error or when too large. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > THEME_FILE_MAX) {
        fclose(f);
        return NULL;
    }
    char *data = xmalloc((size_t)sb.st_size + 1);
    size_t n = fread(data, 1, (size_t)sb.st_size, f);
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;
}

/* Assets are compressed once, at load: level 9. */
static void gzip_asset(client_asset_t *a)
{
    char *out;
    size_t n;
    if (cache_gzip_bytes(a->body, a->len, 9, &out, &n)) {
        a->gz = out;
        a->gzlen = n;
    }
}

static int names_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted regular-file names of dir (not starting with '.'); *n of them. */
static char **list_dir(const char *dir, int *n)
{
    DIR *d = opendir(dir);
    char **v = NULL;
    *n = 0;
    if (d == NULL)
        return NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        v = xrealloc(v, (size_t)(*n + 1) * sizeof(char *));
        v[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (*n > 1)
        qsort(v, (size_t)*n, sizeof(char *), names_cmp);
    return v;
}

static void free_names(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void theme_free(client_theme_t *t)
{
    if (t == NULL)
        return;
    tpl_set_free(t->tpl);
    for (int i = 0; i < t->nassets; i++) {
        client_asset_t *a = &t->assets[i];
        free(a->name);
        free(a->fp_name);
        free(a->url);
        free(a->body);
        free(a->gz);
    }
    free(t->assets);
    free(t);
}

int client_theme_load(const char *dir, client_theme_t **out, char *err, size_t errlen)
{
    client_theme_t *t = xcalloc(1, sizeof(*t));
    t->tpl = tpl_set_new();
    t->refs = 1;
    int n = 0, rc = 0;
    buf_t path = BUF_INIT;

    buf_printf(&path, "%s/templates", dir);
    char **names = list_dir(path.data, &n);
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        if (nl <= 9 || strcmp(names[i] + nl - 9, ".mustache") != 0)
            continue;
        size_t len;
        buf_reset(&path);
        buf_printf(&path, "%s/templates/%s", dir, names[i]);
        char *src = read_file(path.data, &len);
        if (src == NULL)
            continue;
        char name[256], terr[200] = "";
        snprintf(name, sizeof name, "%.*s", (int)(nl - 9), names[i]);
        if (tpl_set_add(t->tpl, name, src, len, terr, sizeof terr) < 0)
            client_log(CLIENT_LOG_WARN, "theme", "%s: %s", path.data, terr);
        t->ntemplates++;
        free(src);
    }
    free_names(names, n);
    if (t->ntemplates == 0) {
        snprintf(err, errlen, "%s/templates: no *.mustache templates", dir);
        rc = -ENOENT;
        goto out;
    }

    buf_reset(&path);
    buf_printf(&path, "%s/assets", dir);
    names = list_dir(path.data, &n);
    for (int i = 0; i < n; i++) {
        size_t len;
        buf_reset(&path);
        buf_printf(&path, "%s/assets/%s", dir, names[i]);
        char *body = read_file(path.data, &len);
        if (body == NULL)
            continue;
        t->assets = xrealloc(t->assets, (size_t)(t->nassets + 1) * sizeof(*t->assets));
        client_asset_t *a = &t->assets[t->nassets++];
        memset(a, 0, sizeof(*a));
        a->name = xstrdup(names[i]);
        a->body = body;
        a->len = len;
        a->ctype = ctype_of(names[i]);
        uint64_t h = fnv1a(body, len);
        snprintf(a->etag, sizeof a->etag, "\"%016llx\"", (unsigned long long)h);
        /* style.css -> style.<8 hex>.css; a name without a dot gets .<hex> */
        const char *dot = strrchr(names[i], '.');
        size_t stem = dot ? (size_t)(dot - names[i]) : strlen(names[i]);
        buf_t fp = BUF_INIT;
        buf_printf(&fp, "%.*s.%08llx%s", (int)stem, names[i], (unsigned long long)(h >> 32),
                   dot ? dot : "");
        a->fp_name = buf_take(&fp);
        buf_printf(&fp, "/assets/%s", a->fp_name);
        a->url = buf_take(&fp);
        if (compressible(a->ctype))
            gzip_asset(a);
    }
    free_names(names, n);
out:
    buf_free(&path);
    if (rc < 0) {
        theme_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void client_theme_ref(client_theme_t *t)
{
    t->refs++;
}

void client_theme_unref(client_theme_t *t)
{
    if (t && --t->refs == 0)
        theme_free(t);
}

const client_asset_t *client_theme_asset(const client_theme_t *t, const char *name,
                                         bool *fingerprinted)
{
    for (int i = 0; i < t->nassets; i++) {
        if (strcmp(t->assets[i].fp_name, name) == 0) {
            *fingerprinted = true;
            return &t->assets[i];
        }
        if (strcmp(t->assets[i].name, name) == 0) {
            *fingerprinted = false;
            return &t->assets[i];
        }
    }
    return NULL;
}

const char *client_theme_asset_url(const client_theme_t *t, const char *name)
{
    for (int i = 0; i < t->nassets; i++)
        if (strcmp(t->assets[i].name, name) == 0)
            return t->assets[i].url;
    return "";
}
