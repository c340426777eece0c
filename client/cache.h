/* cache.h - the client's in-memory cache of rendered pages.
 *
 * Keyed by request path ("/", "/page/2/", "/hello-world/", "/rss/"). Entries are
 * reference counted and immutable once stored: a connection process may hold one
 * while it writes the response, even if the entry is replaced or evicted meanwhile.
 * The cache is bounded in bytes; the least recently used entries go first.
 *
 * Invalidation does not delete: it marks entries stale. A request that finds a
 * stale entry re-renders it through the CMS; if no CMS answers, the stale copy is
 * served (with a header saying so) rather than an error. That is how the blog
 * keeps serving when every CMS node is down.
 *
 * Single-threaded: one cache per scheduler, used only from its processes.
 */
#ifndef ONEBLOG_CLIENT_CACHE_H
#define ONEBLOG_CLIENT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cache cache_t;

enum {
    CACHE_LISTING = 1 << 0, /* shows many posts (home, tag, author, feeds, sitemap):
                               stale after any content change */
    CACHE_POST = 1 << 1,    /* a post or page: the reader parts (recommendations,
                               page views) are added when it is served */
};

typedef struct cache_entry {
    /* read-only for users */
    char *key;
    char *body;          /* the response body */
    size_t len;
    char *gz;            /* gzip of body, made on first demand (cache_gzip); or NULL */
    size_t gzlen;
    const char *ctype;   /* static string: "text/html; charset=utf-8", ... */
    char etag[24];       /* "\"<16 hex digits>\"" of the body */
    int status;          /* HTTP status the body goes with (200, 404, 301...) */
    int flags;           /* CACHE_* */
    uint64_t version;    /* content version it was rendered from */
    /* For personalised copies (cache_gzip_splice): the body before `splice_from`
     * and after `splice_to` deflated once, each part ending on a byte boundary,
     * in one buffer (pre_len bytes, then the rest); NULL until first needed. */
    char *gzparts;
    size_t gzparts_len, gzpre_len, splice_from, splice_to;
    uint32_t crc_pre, crc_post;
    bool stale;
    /* private */
    int refs;
    struct cache_entry *lru_prev, *lru_next, *hnext;
} cache_entry_t;

/* max_bytes: the budget for keys and bodies (and gzip copies). */
cache_t *cache_new(size_t max_bytes);
void cache_free(cache_t *c);

/* The entry for key, with a reference the caller must drop (cache_unref), or
 * NULL. Counts a hit (and a stale hit when the entry is stale) or a miss. */
cache_entry_t *cache_get(cache_t *c, const char *key);

/* Store a copy of body under key, replacing any entry; returns the new entry with
 * a reference for the caller. An entry larger than the whole budget is returned
 * but not stored. */
cache_entry_t *cache_put(cache_t *c, const char *key, const char *body, size_t len,
                         const char *ctype, int status, int flags, uint64_t version);
/* The same, taking ownership of body (malloc'd, NUL-terminated at len): a page
 * just rendered goes into the cache without a copy. */
cache_entry_t *cache_put_take(cache_t *c, const char *key, char *body, size_t len,
                              const char *ctype, int status, int flags, uint64_t version);

void cache_unref(cache_t *c, cache_entry_t *e);

/* The ETag cache_put gives a body ("\"<16 hex digits>\"", NUL-terminated). */
void cache_etag_of(const char *body, size_t len, char out[24]);

/* Gzip the body once and keep it (counted in the budget); returns false when the
 * body does not shrink (then serve it uncompressed). */
bool cache_gzip(cache_t *c, cache_entry_t *e);

/* Gzip in[0..len) at zlib level `level` (1-9) into a new malloc'd *out of
 * *outlen bytes; false, nothing allocated, when zlib fails or the result
 * would not be smaller. cache_gzip's compressor, and the theme's for its
 * assets (theme.c). */
bool cache_gzip_bytes(const char *in, size_t len, int level, char **out, size_t *outlen);

/* A gzip copy of the body with bytes [from, to) replaced by mid[0..midlen): the
 * parts around are compressed once per entry (kept, counted in the budget; an
 * entry keeps the parts of one splice position), only mid is compressed per call,
 * and the deflate streams are joined (RFC 1951 blocks, byte-aligned) under one
 * gzip header and trailer (the CRC-32 combined). That makes a personalised page
 * as cheap to gzip as a cached one. Returns true with a new buffer in *out (the
 * caller frees it) and its length, or false (then send the identity body). */
bool cache_gzip_splice(cache_t *c, cache_entry_t *e, size_t from, size_t to, const char *mid,
                       size_t midlen, char **out, size_t *outlen);

/* Remove the entry for key, if any (a page that no longer exists). */
void cache_remove(cache_t *c, const char *key);

/* Mark stale: the given paths, and every CACHE_LISTING entry. */
void cache_invalidate(cache_t *c, const char *const *paths, int n);
/* Mark everything stale (e.g. settings or theme changed). */
void cache_invalidate_all(cache_t *c);

typedef struct cache_stats {
    uint64_t hits, misses, evictions;
    uint64_t stale_hits; /* of the hits, entries found stale */
    size_t entries, bytes;
} cache_stats_t;

void cache_stats(const cache_t *c, cache_stats_t *out);

#endif /* ONEBLOG_CLIENT_CACHE_H */
