/* reply_cache.c - encoded `cms` read replies per content version (reply_cache.h).
 *
 * A chained hash table of {key bytes, reply bytes} in one allocation per entry,
 * behind one mutex. Invalidation is wholesale: the version changes on every
 * visible write, and then every entry is dropped. Measured with make bench-cms
 * (SQLite, 1,000 posts): see docs/ARCHITECTURE.md, Decisions of the CMS core.
 */
#include "reply_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define NBUCKETS 2048

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    size_t klen, rlen; /* bytes; the key, then the reply, follow the struct */
} entry_t;

struct cms_reply_cache {
    pthread_mutex_t mu;
    int64_t version;  /* of every entry; -1 before the first */
    size_t bytes;     /* held by entries */
    size_t max_bytes;
    entry_t *buckets[NBUCKETS];
};

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void clear(cms_reply_cache_t *c)
{
    for (int i = 0; i < NBUCKETS; i++) {
        entry_t *e = c->buckets[i];
        while (e) {
            entry_t *next = e->next;
            free(e);
            e = next;
        }
        c->buckets[i] = NULL;
    }
    c->bytes = 0;
}

cms_reply_cache_t *cms_reply_cache_new(size_t max_bytes)
{
    cms_reply_cache_t *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    c->version = -1;
    c->max_bytes = max_bytes;
    return c;
}

void cms_reply_cache_free(cms_reply_cache_t *c)
{
    if (c == NULL)
        return;
    clear(c);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* With c->mu held: adopt a newer version (dropping every entry). False when
 * version is older than the cache's. */
static bool at_version(cms_reply_cache_t *c, int64_t version)
{
    if (version < c->version)
        return false;
    if (version > c->version) {
        clear(c);
        c->version = version;
    }
    return true;
}

bool cms_reply_cache_get(cms_reply_cache_t *c, int64_t version, const char *key,
                         size_t klen, ei_x_buff *out)
{
    uint64_t h = fnv1a(key, klen);
    bool hit = false;
    pthread_mutex_lock(&c->mu);
    if (at_version(c, version))
        for (entry_t *e = c->buckets[h % NBUCKETS]; e; e = e->next) {
            const char *k = (const char *)(e + 1);
            if (e->hash == h && e->klen == klen && memcmp(k, key, klen) == 0) {
                hit = ei_x_append_buf(out, k + klen, (int)e->rlen) == 0;
                break;
            }
        }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void cms_reply_cache_put(cms_reply_cache_t *c, int64_t version, const char *key, size_t klen,
                         const char *reply, size_t rlen)
{
    size_t need = sizeof(entry_t) + klen + rlen;
    if (need > c->max_bytes / 4)
        return; /* one huge reply would flush everything else */
    entry_t *e = xmalloc(need);
    e->hash = fnv1a(key, klen);
    e->klen = klen;
    e->rlen = rlen;
    memcpy(e + 1, key, klen);
    memcpy((char *)(e + 1) + klen, reply, rlen);
    pthread_mutex_lock(&c->mu);
    if (!at_version(c, version)) {
        pthread_mutex_unlock(&c->mu);
        free(e);
        return;
    }
    entry_t **pp = &c->buckets[e->hash % NBUCKETS];
    for (entry_t *o = *pp; o; o = o->next)
        if (o->hash == e->hash && o->klen == klen && memcmp(o + 1, key, klen) == 0) {
            pthread_mutex_unlock(&c->mu); /* a concurrent miss stored it first */
            free(e);
            return;
        }
    if (c->bytes + need > c->max_bytes)
        clear(c); /* full: start again rather than track recency */
    e->next = c->buckets[e->hash % NBUCKETS];
    c->buckets[e->hash % NBUCKETS] = e;
    c->bytes += need;
    pthread_mutex_unlock(&c->mu);
}
