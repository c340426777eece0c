/* view_test.c - template contexts: the JSON-LD written by hand is byte for byte
 * what jansson's dump made (JSON_COMPACT | JSON_ESCAPE_SLASH, the reference kept
 * here), for hostile strings and invalid UTF-8; human dates. */
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../client/client.h"
#include "../../../client/feeds.h"

/* Strings that need escaping, controls, slashes, UTF-8 and not-UTF-8. */
static const char *const hostile[] = {
    "", "plain", "</script><script>alert(1)</script>", "q\"uo\\te", "tab\tnl\ncr\rff\fbs\b",
    "\x01\x02\x1f\x7f", "caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80", "bad \xff utf-8",
    "overlong \xc0\xaf", "surrogate \xed\xa0\x80", "truncated \xe2\x82", "a/b//c",
};
#define NHOSTILE (sizeof hostile / sizeof hostile[0])

TEST(json_strings_as_jansson_writes_them)
{
    unsigned seed = 3;
    for (size_t i = 0; i < NHOSTILE + 5000; i++) {
        char rnd[64];
        const char *s = hostile[i % NHOSTILE];
        if (i >= NHOSTILE) {
            /* random bytes, mostly ASCII, some high bytes and controls */
            size_t n = (size_t)(seed % 40);
            for (size_t k = 0; k < n; k++) {
                seed = seed * 1103515245u + 12345u;
                unsigned r = seed >> 16;
                rnd[k] = (char)(r % 7 == 0   ? 0x80 + r % 0x70
                                : r % 5 == 0 ? 1 + r % 0x1f
                                             : 0x20 + r % 0x5f);
            }
            rnd[n] = '\0';
            seed = seed * 1103515245u + 12345u;
            s = rnd;
        }
        json_t *j = json_string(s);
        char *want = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ESCAPE_SLASH) : NULL;
        buf_t got = BUF_INIT;
        bool ok = client_json_str(&got, s);
        ASSERT_EQ(ok, want != NULL);
        if (want)
            ASSERT_STR_EQ(got.data, want);
        else
            ASSERT_EQ(got.len, 0);
        buf_free(&got);
        free(want);
        json_decref(j);
    }
}

/* The JSON-LD as the client made it with jansson before it was written by hand. */
static char *reference_ld(const proto_post_t *p, const char *base, const char *site_title,
                          const char *canonical, const char *image, const char *description)
{
    char pub[40], mod[40], b[512];
    feeds_rfc3339(p->published_at ? p->published_at : p->created_at, pub);
    feeds_rfc3339(p->updated_at ? p->updated_at : p->published_at, mod);
    json_t *o = json_object();
    json_object_set_new(o, "@context", json_string("https://schema.org"));
    json_object_set_new(o, "@type", json_string(p->type == PROTO_PAGE ? "WebPage" : "BlogPosting"));
    json_object_set_new(o, "headline", json_string(p->title ? p->title : ""));
    json_object_set_new(o, "description", json_string(description));
    json_object_set_new(o, "url", json_string(canonical));
    json_object_set_new(o, "mainEntityOfPage", json_string(canonical));
    json_object_set_new(o, "datePublished", json_string(pub));
    json_object_set_new(o, "dateModified", json_string(mod));
    if (image && *image)
        json_object_set_new(o, "image", json_string(image));
    json_t *authors = json_array();
    for (int i = 0; i < p->nauthors; i++) {
        json_t *a = json_object();
        json_object_set_new(a, "@type", json_string("Person"));
        json_object_set_new(a, "name", json_string(p->authors[i].name ? p->authors[i].name : ""));
        snprintf(b, sizeof b, "%s/author/%s/", base, p->authors[i].slug);
        json_object_set_new(a, "url", json_string(b));
        json_array_append_new(authors, a);
    }
    json_object_set_new(o, "author", authors);
    json_t *pubr = json_object();
    json_object_set_new(pubr, "@type", json_string("Organization"));
    json_object_set_new(pubr, "name", json_string(site_title));
    snprintf(b, sizeof b, "%s/", base);
    json_object_set_new(pubr, "url", json_string(b));
    json_object_set_new(o, "publisher", pubr);
    if (p->reading_time > 0) {
        snprintf(b, sizeof b, "PT%dM", p->reading_time);
        json_object_set_new(o, "timeRequired", json_string(b));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_ESCAPE_SLASH);
    json_decref(o);
    return s;
}

TEST(json_ld_as_jansson_wrote_it)
{
    client_t cl;
    memset(&cl, 0, sizeof cl);
    cl.cfg.site_url = "http://127.0.0.1:8080";
    for (size_t i = 0; i < NHOSTILE; i++) {
        const char *h = hostile[i], *h2 = hostile[(i + 5) % NHOSTILE];
        cl.settings.title = (char *)h2;
        cl.have_settings = true;
        proto_author_t authors[2] = { { .slug = "ada", .name = (char *)h },
                                      { .slug = "bob", .name = (char *)h2 } };
        proto_post_t p = { .type = i % 2 ? PROTO_PAGE : PROTO_POST, .title = (char *)h,
                           .slug = "post", .excerpt = (char *)h2,
                           .feature_image = i % 3 ? (char *)"/content/images/x.png" : NULL,
                           .published_at = 1795165200 + (int64_t)i,
                           .updated_at = i % 2 ? 0 : 1795168800,
                           .created_at = 1795000000, .reading_time = (int)i % 3,
                           .authors = authors, .nauthors = (int)i % 3 };
        tv_arena_t ar = TV_ARENA_INIT;
        tv_t *ctx = tv_map_in(&ar);
        client_view_post(&cl, ctx, &p);
        const tv_t *meta = tv_map_get(ctx, "meta");
        const tv_t *ld = tv_map_get(meta, "json_ld");
        ASSERT_NOT_NULL(ld);
        const char *title = h2[0] ? h2 : "OneBlog";
        char *want = reference_ld(&p, cl.cfg.site_url, title,
                                  tv_map_get(meta, "canonical")->u.str.s,
                                  p.feature_image ? "http://127.0.0.1:8080/content/images/x.png"
                                                  : NULL,
                                  h2);
        ASSERT_STR_EQ(ld->u.str.s, want);
        ASSERT_NULL(strstr(ld->u.str.s, "</"));
        free(want);
        tv_arena_free(&ar);
    }
}

TEST(human_dates)
{
    char d[40];
    client_human_date(1795165200, d);
    ASSERT_STR_EQ(d, "20 November 2026");
    client_human_date(951782400, d); /* leap day 2000 */
    ASSERT_STR_EQ(d, "29 February 2000");
    client_human_date(0, d);
    ASSERT_STR_EQ(d, "1 January 1970");
}
