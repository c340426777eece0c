/* cache_test.c - the page cache: hits and misses, replacement under a reader,
 * LRU eviction within the byte budget, stale marking, gzip. */
#include "test.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "../../../client/cache.h"

static const char *HTML = "text/html; charset=utf-8";

TEST(get_put_replace_keeps_readers_safe)
{
    cache_t *c = cache_new(1 << 20);
    ASSERT_NULL(cache_get(c, "/"));
    cache_entry_t *e = cache_put(c, "/", "v1", 2, HTML, 200, CACHE_LISTING, 1);
    cache_unref(c, e);
    cache_entry_t *r = cache_get(c, "/");
    ASSERT_NOT_NULL(r);
    ASSERT_STR_EQ(r->body, "v1");
    ASSERT_EQ(r->etag[0], '"');
    ASSERT_EQ(strlen(r->etag), 18);
    /* replaced while r is held: r stays valid, new readers see v2 */
    e = cache_put(c, "/", "v2", 2, HTML, 200, CACHE_LISTING, 2);
    cache_unref(c, e);
    ASSERT_STR_EQ(r->body, "v1");
    cache_entry_t *r2 = cache_get(c, "/");
    ASSERT_STR_EQ(r2->body, "v2");
    ASSERT(strcmp(r->etag, r2->etag) != 0);
    cache_unref(c, r);
    cache_unref(c, r2);
    cache_stats_t st;
    cache_stats(c, &st);
    ASSERT_EQ(st.hits, 2);
    ASSERT_EQ(st.misses, 1);
    ASSERT_EQ(st.entries, 1);
    cache_free(c);
}

TEST(lru_eviction_within_budget)
{
    char body[1000];
    memset(body, 'x', sizeof(body));
    /* room for about 4 entries */
    cache_t *c = cache_new(4 * (1000 + 300));
    char key[32];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "/p%d/", i);
        cache_unref(c, cache_put(c, key, body, sizeof(body), HTML, 200, 0, 1));
    }
    /* touch p0 so p1 is the least recently used */
    cache_unref(c, cache_get(c, "/p0/"));
    cache_unref(c, cache_put(c, "/p4/", body, sizeof(body), HTML, 200, 0, 1));
    cache_entry_t *e;
    ASSERT_NOT_NULL(e = cache_get(c, "/p0/"));
    cache_unref(c, e);
    ASSERT_NULL(cache_get(c, "/p1/"));
    ASSERT_NOT_NULL(e = cache_get(c, "/p4/"));
    cache_unref(c, e);
    cache_stats_t st;
    cache_stats(c, &st);
    ASSERT_LE(st.bytes, 4 * (1000 + 300));
    ASSERT_GE(st.evictions, 1);
    /* an entry bigger than the budget is handed back but not kept */
    char big[8000];
    memset(big, 'y', sizeof(big));
    e = cache_put(c, "/big/", big, sizeof(big), HTML, 200, 0, 1);
    ASSERT_EQ(e->len, sizeof(big));
    cache_unref(c, e);
    ASSERT_NULL(cache_get(c, "/big/"));
    cache_free(c);
}

TEST(invalidation_marks_paths_and_listings_stale)
{
    cache_t *c = cache_new(1 << 20);
    cache_unref(c, cache_put(c, "/", "home", 4, HTML, 200, CACHE_LISTING, 1));
    cache_unref(c, cache_put(c, "/a/", "a", 1, HTML, 200, 0, 1));
    cache_unref(c, cache_put(c, "/b/", "b", 1, HTML, 200, 0, 1));
    const char *paths[] = { "/a/", "/nothing/" };
    cache_invalidate(c, paths, 2);
    cache_entry_t *h = cache_get(c, "/"), *a = cache_get(c, "/a/"), *b = cache_get(c, "/b/");
    ASSERT(h->stale);
    ASSERT(a->stale);
    ASSERT(!b->stale);
    /* the stale copy is still there to serve */
    ASSERT_STR_EQ(a->body, "a");
    cache_unref(c, h);
    cache_unref(c, a);
    cache_unref(c, b);
    cache_invalidate_all(c);
    b = cache_get(c, "/b/");
    ASSERT(b->stale);
    cache_unref(c, b);
    cache_free(c);
}

TEST(gzip_once_and_round_trip)
{
    cache_t *c = cache_new(1 << 20);
    char body[4096];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = "<p>hello world</p>\n"[i % 19];
    cache_entry_t *e = cache_put(c, "/g/", body, sizeof(body), HTML, 200, 0, 1);
    ASSERT(cache_gzip(c, e));
    ASSERT_LT(e->gzlen, e->len);
    char *first = e->gz;
    ASSERT(cache_gzip(c, e));
    ASSERT_PTR_EQ(e->gz, first);
    char back[8192];
    z_stream z;
    memset(&z, 0, sizeof(z));
    ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)e->gz;
    z.avail_in = (uInt)e->gzlen;
    z.next_out = (Bytef *)back;
    z.avail_out = sizeof(back);
    ASSERT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
    ASSERT_EQ(z.total_out, sizeof(body));
    inflateEnd(&z);
    ASSERT_MEM_EQ(back, body, sizeof(body));
    cache_unref(c, e);
    /* tiny bodies are not worth it */
    e = cache_put(c, "/t/", "tiny", 4, HTML, 200, 0, 1);
    ASSERT(!cache_gzip(c, e));
    cache_unref(c, e);
    cache_free(c);
}

/* The ETag follows every byte: one byte changed anywhere in a page (every
 * position of the hash's lanes and tails) gives another tag, and equal bodies
 * give equal tags. */
TEST(etag_changes_with_any_byte)
{
    cache_t *c = cache_new(1 << 20);
    static char body[1100];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('a' + i % 26);
    size_t lens[] = { 1, 7, 8, 31, 32, 33, 100, sizeof body };
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        size_t n = lens[l];
        cache_entry_t *base = cache_put(c, "/b/", body, n, HTML, 200, 0, 1);
        cache_entry_t *same = cache_put(c, "/s/", body, n, HTML, 200, 0, 1);
        ASSERT_STR_EQ(base->etag, same->etag);
        for (size_t i = 0; i < n; i++) {
            body[i] ^= 1;
            cache_entry_t *e = cache_put(c, "/x/", body, n, HTML, 200, 0, 1);
            ASSERT(strcmp(e->etag, base->etag) != 0);
            cache_unref(c, e);
            body[i] ^= 1;
        }
        cache_unref(c, base);
        cache_unref(c, same);
    }
    cache_free(c);
}

/* Gunzip (any number of members is not needed: one) into a new buffer. */
static char *gunzip(const char *gz, size_t len, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return NULL;
    size_t cap = 1 << 20;
    char *out = malloc(cap);
    z.next_in = (Bytef *)gz;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_FINISH);
    *outlen = cap - z.avail_out;
    bool ok = rc == Z_STREAM_END && z.avail_in == 0;
    inflateEnd(&z);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* A personalised copy's gzip is joined from the page's parts and the block: it
 * inflates (CRC-32 and length checked by zlib) to exactly the spliced body, for
 * blocks big and empty, splices at the ends, and again with the parts reused. */
TEST(gzip_splice_inflates_to_the_spliced_body)
{
    cache_t *c = cache_new(1 << 20);
    static char body[30000];
    size_t n = 0;
    for (int i = 0; n < 20000; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "<p>line %d of the page, words</p>\n",
                              i);
    const char *mark = "<!--related-->old<!--/related-->";
    memcpy(body + 12000, mark, strlen(mark));
    cache_entry_t *e = cache_put(c, "/p/", body, n, HTML, 200, CACHE_POST, 1);
    struct { size_t from, to; const char *mid; } cases[] = {
        { 12000, 12000 + strlen(mark),
          "<!--related--><ul><li>new &amp; personal</li></ul><!--/related-->" },
        { 12000, 12000 + strlen(mark), "" },
        { 12000, 12000 + strlen(mark), "x" },
        { 0, 0, "at the start " },
        { n, n, " at the end" },
        { 0, n, "everything replaced" },
    };
    for (int round = 0; round < 2; round++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            char *gz = NULL;
            size_t gzlen = 0, plain = 0;
            ASSERT(cache_gzip_splice(c, e, cases[k].from, cases[k].to, cases[k].mid,
                                     strlen(cases[k].mid), &gz, &gzlen));
            char *got = gunzip(gz, gzlen, &plain);
            ASSERT_NOT_NULL(got);
            size_t ml = strlen(cases[k].mid);
            ASSERT_EQ(plain, cases[k].from + ml + (n - cases[k].to));
            ASSERT_EQ(memcmp(got, body, cases[k].from), 0);
            ASSERT_EQ(memcmp(got + cases[k].from, cases[k].mid, ml), 0);
            ASSERT_EQ(memcmp(got + cases[k].from + ml, body + cases[k].to, n - cases[k].to), 0);
            if (k == 0)
                ASSERT(gzlen < n / 4); /* it does compress */
            free(got);
            free(gz);
        }
    char *gz;
    size_t gzlen;
    ASSERT(!cache_gzip_splice(c, e, 10, 5, "", 0, &gz, &gzlen));
    ASSERT(!cache_gzip_splice(c, e, 0, n + 1, "", 0, &gz, &gzlen));
    cache_unref(c, e);
    cache_free(c);
}
