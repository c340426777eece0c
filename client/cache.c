/* cache.c - page cache: a chained hash table plus an LRU list, bounded in bytes.
 *
 * An entry leaves the table when it is replaced or evicted, but its memory goes
 * only when the last reference is dropped, so a response being written is never
 * pulled from under the writer.
 */
#include "cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../common/buf.h"

struct cache {
    cache_entry_t **buckets;
    size_t nbuckets;     /* power of two */
    size_t entries;
    size_t bytes, max_bytes;
    cache_entry_t *lru_head, *lru_tail; /* head = most recent */
    uint64_t hits, misses, evictions;
    uint64_t stale_hits; /* of the hits */
};

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The ETag of a body: four independent 8-byte lanes, so the multiplies overlap
 * (FNV-1a's byte-serial multiply chain over a 20 KB page was 6.8% of the uncached
 * client's CPU under make bench-web; one 8-byte lane was still 3.5%). Only
 * equality matters: a body's ETag is stable across nodes and restarts, and a
 * changed body gets another one with about 2^-64 odds of a clash. */
static inline uint64_t lane(uint64_t h, const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 32);
}

static uint64_t body_hash(const char *s, size_t len)
{
    uint64_t a = 14695981039346656037ull ^ len, b = 0x6a09e667f3bcc909ull,
             c = 0xbb67ae8584caa73bull, d = 0x3c6ef372fe94f82bull;
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        a = lane(a, s + i);
        b = lane(b, s + i + 8);
        c = lane(c, s + i + 16);
        d = lane(d, s + i + 24);
    }
    uint64_t h = a ^ (b << 17 | b >> 47) ^ (c << 31 | c >> 33) ^ (d << 47 | d >> 17);
    for (; i + 8 <= len; i += 8)
        h = lane(h, s + i);
    for (; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 29;
    return h * 0xbf58476d1ce4e5b9ull ^ (h >> 32);
}

static size_t entry_bytes(const cache_entry_t *e)
{
    return strlen(e->key) + e->len + e->gzlen + sizeof(*e);
}

cache_t *cache_new(size_t max_bytes)
{
    cache_t *c = xcalloc(1, sizeof(*c));
    c->nbuckets = 1024;
    c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
    c->max_bytes = max_bytes;
    return c;
}

static void entry_free(cache_entry_t *e)
{
    free(e->key);
    free(e->body);
    free(e->gz);
    free(e);
}

void cache_unref(cache_t *c, cache_entry_t *e)
{
    (void)c;
    if (e && --e->refs == 0)
        entry_free(e);
}

static void lru_unlink(cache_t *c, cache_entry_t *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(cache_t *c, cache_entry_t *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (c->lru_tail == NULL)
        c->lru_tail = e;
}

static cache_entry_t **slot_of(cache_t *c, const char *key)
{
    cache_entry_t **pp = &c->buckets[fnv1a(key, strlen(key)) & (c->nbuckets - 1)];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

/* Take e out of the table and the LRU; drop the table's reference. */
static void remove_entry(cache_t *c, cache_entry_t *e)
{
    cache_entry_t **pp = slot_of(c, e->key);
    if (*pp == e)
        *pp = e->hnext;
    e->hnext = NULL;
    lru_unlink(c, e);
    c->entries--;
    c->bytes -= entry_bytes(e);
    cache_unref(c, e);
}

static void grow(cache_t *c)
{
    size_t n = c->nbuckets * 2;
    cache_entry_t **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < c->nbuckets; i++) {
        cache_entry_t *e = c->buckets[i];
        while (e) {
            cache_entry_t *next = e->hnext;
            size_t j = fnv1a(e->key, strlen(e->key)) & (n - 1);
            e->hnext = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

static void evict(cache_t *c)
{
    while (c->bytes > c->max_bytes && c->lru_tail) {
        remove_entry(c, c->lru_tail);
        c->evictions++;
    }
}

cache_entry_t *cache_get(cache_t *c, const char *key)
{
    cache_entry_t *e = *slot_of(c, key);
    if (e == NULL) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    c->stale_hits += e->stale;
    lru_unlink(c, e);
    lru_push(c, e);
    e->refs++;
    return e;
}

cache_entry_t *cache_put(cache_t *c, const char *key, const char *body, size_t len,
                         const char *ctype, int status, int flags, uint64_t version)
{
    char *copy = xmalloc(len + 1);
    memcpy(copy, body, len);
    copy[len] = '\0';
    return cache_put_take(c, key, copy, len, ctype, status, flags, version);
}

cache_entry_t *cache_put_take(cache_t *c, const char *key, char *body, size_t len,
                              const char *ctype, int status, int flags, uint64_t version)
{
    cache_entry_t *e = xcalloc(1, sizeof(*e));
    e->key = xstrdup(key);
    e->body = body;
    e->len = len;
    e->ctype = ctype;
    e->status = status;
    e->flags = flags;
    e->version = version;
    /* "\"<16 hex digits>\"" (by hand: snprintf is most of the cost of a small page) */
    uint64_t h = body_hash(body, len);
    e->etag[0] = '"';
    for (int i = 16; i >= 1; i--, h >>= 4)
        e->etag[i] = "0123456789abcdef"[h & 15];
    e->etag[17] = '"';
    e->etag[18] = '\0';
    e->refs = 1; /* the caller's */

    cache_entry_t *old = *slot_of(c, key);
    if (old)
        remove_entry(c, old);
    if (entry_bytes(e) > c->max_bytes)
        return e;
    if (c->entries + 1 > c->nbuckets)
        grow(c);
    cache_entry_t **pp = slot_of(c, key);
    e->hnext = *pp;
    *pp = e;
    e->refs++; /* the table's */
    lru_push(c, e);
    c->entries++;
    c->bytes += entry_bytes(e);
    evict(c);
    return e;
}

bool cache_gzip(cache_t *c, cache_entry_t *e)
{
    if (e->gz)
        return true;
    if (e->len < 256)
        return false;
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip wrapper, as Content-Encoding: gzip wants */
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    size_t cap = deflateBound(&z, e->len);
    char *out = xmalloc(cap);
    z.next_in = (Bytef *)e->body;
    z.avail_in = (uInt)e->len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t outlen = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || outlen >= e->len) {
        free(out);
        return false;
    }
    bool stored = *slot_of(c, e->key) == e;
    e->gz = out;
    e->gzlen = outlen;
    if (stored) {
        c->bytes += outlen;
        evict(c);
    }
    return true;
}

void cache_remove(cache_t *c, const char *key)
{
    cache_entry_t *e = *slot_of(c, key);
    if (e)
        remove_entry(c, e);
}

void cache_invalidate(cache_t *c, const char *const *paths, int n)
{
    for (cache_entry_t *e = c->lru_head; e; e = e->lru_next)
        if (e->flags & CACHE_LISTING)
            e->stale = true;
    for (int i = 0; i < n; i++) {
        cache_entry_t *e = *slot_of(c, paths[i]);
        if (e)
            e->stale = true;
    }
}

void cache_invalidate_all(cache_t *c)
{
    for (cache_entry_t *e = c->lru_head; e; e = e->lru_next)
        e->stale = true;
}

void cache_stats(const cache_t *c, cache_stats_t *out)
{
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->stale_hits = c->stale_hits;
    out->entries = c->entries;
    out->bytes = c->bytes;
}

void cache_free(cache_t *c)
{
    if (c == NULL)
        return;
    while (c->lru_head)
        remove_entry(c, c->lru_head);
    free(c->buckets);
    free(c);
}
