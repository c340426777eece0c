/* events_url_fuzz.c - libFuzzer target for the EVENTS_URL parser (events/url.c):
 * the scheme, the file store's path, our options taken out of the query string
 * and the rest handed to the MongoDB or PostgreSQL driver.
 *
 * The first input byte sizes the error buffer (1-64 bytes: messages quote the
 * input and must be cut, not overrun), the rest is the URL. A parse that fails
 * leaves *out zeroed with a message; one that succeeds has a known scheme, a
 * path for file: and a driver URL otherwise, only our options in keys[] (the
 * last one wins in ev_url_opt), and none of ours left in the driver's query.
 * Seeds: tests/fuzz/corpus/events_url_fuzz/. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "events/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const ours[] = { "fsync", "segment_bytes", "collection", "table",
                                    "poll_ms", "preallocate", "direct", "sync_mtime", NULL };

static int is_ours(const char *k, size_t n)
{
    for (int i = 0; ours[i]; i++)
        if (strlen(ours[i]) == n && memcmp(ours[i], k, n) == 0)
            return 1;
    return 0;
}

static void check_ok(const ev_url_t *u, const char *text)
{
    int file = strcmp(u->scheme, "file") == 0;
    if (!file && strcmp(u->scheme, "mongodb") != 0 && strcmp(u->scheme, "postgres") != 0)
        abort();
    if (file ? (u->path == NULL || u->path[0] == '\0' || u->driver_url != NULL)
             : (u->path != NULL || u->driver_url == NULL))
        abort();
    if (u->nopts < 0 || u->nopts > EV_URL_MAX_OPTS)
        abort();
    for (int i = 0; i < u->nopts; i++) {
        if (!is_ours(u->keys[i], strlen(u->keys[i])) || u->vals[i] == NULL)
            abort();
        if (ev_url_opt(u, u->keys[i], NULL) == NULL)
            abort();
    }
    if (u->nopts > 0 && ev_url_opt(u, u->keys[u->nopts - 1], NULL) != u->vals[u->nopts - 1])
        abort();
    if (u->driver_url) {
        /* the driver's URL is the text up to '?' and the options not ours */
        const char *q = strchr(text, '?');
        size_t head = q ? (size_t)(q - text) : strlen(text);
        if (strncmp(u->driver_url, text, head) != 0)
            abort();
        const char *p = strchr(u->driver_url, '?');
        while (p && *p) {
            p++;
            size_t n = strcspn(p, "&");
            const char *eq = memchr(p, '=', n);
            if (eq == NULL || is_ours(p, (size_t)(eq - p)))
                abort();
            p += n;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t errlen = 1 + data[0] % 64;
    char *err = malloc(errlen); /* its own allocation: ASan sees an overrun */
    char *text = malloc(size);
    if (err == NULL || text == NULL)
        abort();
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    ev_url_t u;
    err[0] = '\0';
    int rc = ev_url_parse(text, &u, err, errlen);
    if (rc == 0) {
        check_ok(&u, text);
    } else {
        ev_url_t zero;
        memset(&zero, 0, sizeof(zero));
        if (rc != -EINVAL || memcmp(&u, &zero, sizeof(u)) != 0 || strlen(err) >= errlen ||
            (errlen > 1 && err[0] == '\0'))
            abort();
    }
    ev_url_free(&u);
    free(text);
    free(err);
    return 0;
}
