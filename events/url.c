/* url.c - EVENTS_URL parsing: scheme, file path, our options, the driver's URL. */
#include "events/url.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

static const char *const our_opts[] = { "fsync", "segment_bytes", "collection", "table",
                                        "poll_ms", "preallocate", "direct", "sync_mtime", NULL };

static int is_ours(const char *key, size_t n)
{
    for (int i = 0; our_opts[i]; i++)
        if (strlen(our_opts[i]) == n && memcmp(our_opts[i], key, n) == 0)
            return 1;
    return 0;
}

int ev_url_parse(const char *text, ev_url_t *out, char *err, size_t errlen)
{
    const char *colon, *q, *p;
    buf_t drv = BUF_INIT;
    int rc = -EINVAL;

    memset(out, 0, sizeof *out);
    if (text == NULL || (colon = strchr(text, ':')) == NULL) {
        snprintf(err, errlen, "EVENTS_URL '%s': no scheme (file:, mongodb://, postgres://)",
                 text ? text : "");
        goto out;
    }
    out->scheme = xstrndup(text, (size_t)(colon - text));
    if (strcmp(out->scheme, "postgresql") == 0) {
        free(out->scheme);
        out->scheme = xstrdup("postgres");
    }
    if (strcmp(out->scheme, "file") != 0 && strcmp(out->scheme, "mongodb") != 0 &&
        strcmp(out->scheme, "postgres") != 0) {
        snprintf(err, errlen, "EVENTS_URL: unknown scheme '%s' (file, mongodb, postgres)",
                 out->scheme);
        goto out;
    }
    q = strchr(colon, '?');
    if (strcmp(out->scheme, "file") == 0) {
        const char *s = colon + 1;
        size_t n = q ? (size_t)(q - s) : strlen(s);
        /* file:///abs/path and file:rel/path are both accepted. */
        if (n >= 2 && s[0] == '/' && s[1] == '/') {
            s += 2;
            n -= 2;
        }
        if (n == 0) {
            snprintf(err, errlen, "EVENTS_URL '%s': empty path", text);
            goto out;
        }
        out->path = xstrndup(s, n);
    } else {
        buf_append(&drv, text, q ? (size_t)(q - text) : strlen(text));
    }
    /* Options: ours go to keys/vals, the rest back into the driver's URL. */
    for (p = q ? q + 1 : NULL; p && *p;) {
        const char *amp = strchr(p, '&'), *eq;
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        eq = memchr(p, '=', n);
        if (eq == NULL || eq == p) {
            snprintf(err, errlen, "EVENTS_URL: option '%.*s' is not key=value", (int)n, p);
            goto out;
        }
        if (is_ours(p, (size_t)(eq - p))) {
            if (out->nopts == EV_URL_MAX_OPTS) {
                snprintf(err, errlen, "EVENTS_URL: too many options");
                goto out;
            }
            out->keys[out->nopts] = xstrndup(p, (size_t)(eq - p));
            out->vals[out->nopts] = xstrndup(eq + 1, n - (size_t)(eq - p) - 1);
            out->nopts++;
        } else if (strcmp(out->scheme, "file") == 0) {
            snprintf(err, errlen, "EVENTS_URL: unknown option '%.*s' for file:", (int)n, p);
            goto out;
        } else {
            buf_putc(&drv, strchr(drv.data, '?') ? '&' : '?');
            buf_append(&drv, p, n);
        }
        p = amp ? amp + 1 : NULL;
    }
    if (drv.len)
        out->driver_url = buf_take(&drv);
    rc = 0;
out:
    buf_free(&drv);
    if (rc < 0)
        ev_url_free(out);
    return rc;
}

void ev_url_free(ev_url_t *u)
{
    if (u == NULL)
        return;
    free(u->scheme);
    free(u->path);
    free(u->driver_url);
    for (int i = 0; i < u->nopts; i++) {
        free(u->keys[i]);
        free(u->vals[i]);
    }
    memset(u, 0, sizeof *u);
}

const char *ev_url_opt(const ev_url_t *u, const char *key, const char *def)
{
    for (int i = u->nopts - 1; i >= 0; i--)
        if (strcmp(u->keys[i], key) == 0)
            return u->vals[i];
    return def;
}
