/* index.c - the content index the models read: posts sorted by id, a slug lookup
 * table and the digest that names the snapshot. Building it from the `cms`
 * server is in index_cms.c; reading and writing it as a file in snapshot.c. */
#include "recs/model.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/buf.h"

void recs_post_clear(recs_post_t *p)
{
    if (p == NULL)
        return;
    free(p->slug);
    free(p->title);
    for (int i = 0; i < p->ntags; i++)
        free(p->tags[i]);
    free(p->tags);
    free(p->plaintext);
    memset(p, 0, sizeof *p);
}

static int cmp_id(const void *a, const void *b)
{
    const recs_post_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* FNV-1a: the slug table's hash (not part of any model's output). */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int recs_index_find(const recs_index_t *ix, const char *slug)
{
    if (ix == NULL || slug == NULL || ix->nslots == 0)
        return -1;
    size_t mask = ix->nslots - 1;
    for (size_t i = hash_str(slug) & mask;; i = (i + 1) & mask) {
        int v = ix->slots[i];
        if (v == 0)
            return -1;
        if (strcmp(ix->posts[v - 1].slug, slug) == 0)
            return v - 1;
    }
}

/* The lookups of a request's history are cache misses on a paced node (the slot,
 * the post, the slug: three dependent loads each, ~33 per request). Issued in
 * rounds, each round's loads overlap: prefetch every slug, then every slot, then
 * every post's slug pointer and string, then look up as recs_index_find does
 * (same results: the prefetches only warm the cache). */
void recs_index_find_n(const recs_index_t *ix, const char *const *slugs, int n, int *pos)
{
    enum { BATCH = 64 };
    size_t at[BATCH];
    for (int base = 0; base < n; base += BATCH) {
        int m = n - base < BATCH ? n - base : BATCH;
        const char *const *sl = slugs + base;
        if (ix != NULL && ix->nslots > 0) {
            size_t mask = ix->nslots - 1;
            for (int i = 0; i < m; i++)
                if (sl[i])
                    __builtin_prefetch(sl[i]);
            for (int i = 0; i < m; i++) {
                at[i] = sl[i] ? hash_str(sl[i]) & mask : 0;
                __builtin_prefetch(&ix->slots[at[i]]);
            }
            for (int i = 0; i < m; i++) {
                int v = ix->slots[at[i]];
                if (v > 0)
                    __builtin_prefetch(&ix->posts[v - 1].slug);
            }
            for (int i = 0; i < m; i++) {
                int v = ix->slots[at[i]];
                if (v > 0)
                    __builtin_prefetch(ix->posts[v - 1].slug);
            }
        }
        for (int i = 0; i < m; i++)
            pos[base + i] = recs_index_find(ix, sl[i]);
    }
}

void recs_digest_slugs(const char *const *slugs, size_t n, char out[RECS_DIGEST_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char h[32];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL || !EVP_DigestInit_ex(c, EVP_sha256(), NULL))
        abort(); /* out of memory inside OpenSSL */
    for (size_t i = 0; i < n; i++) {
        EVP_DigestUpdate(c, slugs[i], strlen(slugs[i]));
        EVP_DigestUpdate(c, "\n", 1);
    }
    EVP_DigestFinal_ex(c, h, NULL);
    EVP_MD_CTX_free(c);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[RECS_DIGEST_LEN] = '\0';
}

recs_index_t *recs_index_new(recs_post_t *posts, int n)
{
    recs_index_t *ix = xcalloc(1, sizeof *ix);
    int kept = 0;

    if (n > 0)
        qsort(posts, (size_t)n, sizeof *posts, cmp_id);
    ix->posts = posts;
    ix->nslots = 16;
    while (ix->nslots < 2 * (size_t)(n > 0 ? n : 1))
        ix->nslots *= 2;
    ix->slots = xcalloc(ix->nslots, sizeof *ix->slots);
    for (int i = 0; i < n; i++) {
        recs_post_t *p = &posts[i];
        bool dup = p->slug == NULL || p->slug[0] == '\0' ||
                   (kept > 0 && posts[kept - 1].id == p->id) || recs_index_find(ix, p->slug) >= 0;
        if (dup) {
            recs_post_clear(p);
            continue;
        }
        if (kept != i) {
            posts[kept] = *p;
            memset(p, 0, sizeof *p);
        }
        ix->n = kept + 1; /* recs_index_find looks at posts[0..n) through the slots */
        size_t mask = ix->nslots - 1, s = hash_str(posts[kept].slug) & mask;
        while (ix->slots[s])
            s = (s + 1) & mask;
        ix->slots[s] = kept + 1;
        kept++;
    }
    ix->n = kept;
    const char **slugs = xmalloc((size_t)(kept ? kept : 1) * sizeof *slugs);
    for (int i = 0; i < kept; i++)
        slugs[i] = posts[i].slug;
    recs_digest_slugs(slugs, (size_t)kept, ix->digest);
    free(slugs);
    return ix;
}

void recs_index_free(recs_index_t *ix)
{
    if (ix == NULL)
        return;
    for (int i = 0; i < ix->n; i++)
        recs_post_clear(&ix->posts[i]);
    free(ix->posts);
    free(ix->slots);
    free(ix);
}
