/* reader.c - readers without accounts: the first-party reader id, page views and
 * personal recommendations.
 *
 * The reader id is 128 random bits (arc4random, 32 hex digits) in the cookie
 * ob_rid: first party, HttpOnly, SameSite=Lax, two years. It names a browser,
 * not a person, and is never shown or shared.
 */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READER_MAX_AGE_S (2 * 365 * 24 * 3600)

static bool reader_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 16 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

const char *client_reader_id(cn_http_req_t *req)
{
    const char *id = cn_http_cookie_get(req, CLIENT_READER_COOKIE);
    if (reader_id_ok(id))
        return id;
    unsigned char raw[16];
    arc4random_buf(raw, sizeof raw);
    char *hex = cn_http_alloc(req, 33);
    if (hex == NULL)
        return "";
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    cn_http_cookie_attrs_t a = { .max_age = READER_MAX_AGE_S, .path = "/", .same_site = "Lax",
                                 .http_only = true };
    cn_http_set_cookie(req, CLIENT_READER_COOKIE, hex, &a);
    return hex;
}

void client_page_view(client_t *cl, cn_http_req_t *req, const char *reader, const char *path,
                      const char *post_slug, const char *recs_event)
{
    (void)cl;
    (void)req;
    (void)reader;
    (void)path;
    (void)post_slug;
    (void)recs_event;
}

char *client_recommend(client_t *cl, cn_http_req_t *req, const char *reader, const char *slug,
                       const char **recs_event)
{
    (void)cl;
    (void)req;
    (void)reader;
    (void)slug;
    *recs_event = NULL;
    return NULL;
}
