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

void cache_etag_of(const char *body, size_t len, char out[24])
{
    /* "\"<16 hex digits>\"" (by hand: snprintf is most of the cost of a small page) */
    uint64_t h = body_hash(body, len);
    out[0] = '"';
    for (int i = 16; i >= 1; i--, h >>= 4)
        out[i] = "0123456789abcdef"[h & 15];
    out[17] = '"';
    out[18] = '\0';
}

static size_t entry_bytes(const cache_entry_t *e)
{
    return strlen(e->key) + e->len + e->gzlen + e->gzparts_len + sizeof(*e);
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
    free(e->gzparts);
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
    cache_etag_of(body, len, e->etag);
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

bool cache_gzip_bytes(const char *in, size_t len, int level, char **out, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip wrapper, as Content-Encoding: gzip wants */
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    size_t cap = deflateBound(&z, len);
    char *o = xmalloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)o;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || n >= len) {
        free(o);
        return false;
    }
    *out = o;
    *outlen = n;
    return true;
}

bool cache_gzip(cache_t *c, cache_entry_t *e)
{
    if (e->gz)
        return true;
    if (e->len < 256)
        return false;
    char *out;
    size_t outlen;
    if (!cache_gzip_bytes(e->body, e->len, 6, &out, &outlen))
        return false;
    bool stored = *slot_of(c, e->key) == e;
    e->gz = out;
    e->gzlen = outlen;
    if (stored) {
        c->bytes += outlen;
        evict(c);
    }
    return true;
}

/* Raw deflate of in[0..len) appended to out: ending with a full flush (byte
 * aligned, not final, no references back across the join) or with the final
 * block. memLevel 1 for the small per-request middle: less state to set up. */
static bool deflate_part(const char *in, size_t len, bool final, int mem_level, buf_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, -15, mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    size_t cap = deflateBound(&z, len) + 16; /* + the flush's empty stored block */
    buf_reserve(out, cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, final ? Z_FINISH : Z_FULL_FLUSH);
    bool ok = final ? rc == Z_STREAM_END : rc == Z_OK && z.avail_in == 0 && z.avail_out > 0;
    if (ok)
        out->len += cap - z.avail_out;
    deflateEnd(&z);
    return ok;
}

bool cache_gzip_splice(cache_t *c, cache_entry_t *e, size_t from, size_t to, const char *mid,
                       size_t midlen, char **out, size_t *outlen)
{
    if (from > to || to > e->len)
        return false;
    if (e->gzparts == NULL || e->splice_from != from || e->splice_to != to) {
        buf_t parts = BUF_INIT;
        size_t pre_len;
        if (!deflate_part(e->body, from, false, 8, &parts) ||
            (pre_len = parts.len, !deflate_part(e->body + to, e->len - to, true, 8, &parts))) {
            buf_free(&parts);
            return false;
        }
        bool stored = *slot_of(c, e->key) == e;
        if (stored)
            c->bytes -= e->gzparts_len;
        free(e->gzparts);
        e->gzparts_len = parts.len;
        e->gzparts = buf_take(&parts);
        e->gzpre_len = pre_len;
        e->splice_from = from;
        e->splice_to = to;
        e->crc_pre = (uint32_t)crc32(0, (const Bytef *)e->body, (uInt)from);
        e->crc_post = (uint32_t)crc32(0, (const Bytef *)e->body + to, (uInt)(e->len - to));
        if (stored) {
            c->bytes += e->gzparts_len;
            evict(c);
        }
    }
    buf_t b = BUF_INIT;
    static const unsigned char header[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
    buf_reserve(&b, e->gzparts_len + midlen + 64);
    buf_append(&b, (const char *)header, sizeof header);
    buf_append(&b, e->gzparts, e->gzpre_len);
    if (!deflate_part(mid, midlen, false, 1, &b)) {
        buf_free(&b);
        return false;
    }
    buf_append(&b, e->gzparts + e->gzpre_len, e->gzparts_len - e->gzpre_len);
    size_t post_len = e->len - e->splice_to, total = e->splice_from + midlen + post_len;
    uLong crc = crc32(0, (const Bytef *)mid, (uInt)midlen);
    crc = crc32_combine(e->crc_pre, crc, (z_off_t)midlen);
    crc = crc32_combine(crc, e->crc_post, (z_off_t)post_len);
    unsigned char trailer[8];
    for (int i = 0; i < 4; i++) {
        trailer[i] = (unsigned char)(crc >> (8 * i));
        trailer[4 + i] = (unsigned char)((uint32_t)total >> (8 * i));
    }
    buf_append(&b, (const char *)trailer, sizeof trailer);
    *outlen = b.len;
    *out = buf_take(&b);
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
