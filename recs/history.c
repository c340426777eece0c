/* history.c - reader histories and view counts (history.h): two string-keyed
 * open-addressing tables (linear probing). Slugs are interned once in the count
 * table; histories point at the interned copies. Readers live in an array of
 * entries that keep their index, the table holds those indexes, and a doubly
 * linked list through the entries orders them by last view: at max_readers the
 * least recently viewing reader is dropped (its table slot freed by backward
 * shift, so lookups need no tombstones) and its entry reused. */
#include "recs/history.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

typedef struct slug_ent {
    char *slug;      /* interned */
    uint32_t views;
} slug_ent_t;

#define NONE UINT32_MAX

typedef struct reader_ent {
    char *reader;
    uint64_t hash;                        /* hash_str(reader) */
    const char *recent[RECS_HISTORY_MAX]; /* interned slugs, newest first */
    int n;
    uint32_t newer, older;                /* the LRU list (entry indexes, NONE) */
} reader_ent_t;

struct recs_history {
    slug_ent_t *slugs;
    size_t nslugs, capslugs;     /* used slots, table size (power of 2) */
    reader_ent_t *readers;       /* entries, nreaders of them in use */
    size_t nreaders, capreaders;
    uint32_t *rslots;            /* entry index + 1; 0 = empty */
    size_t caprslots;            /* power of 2, at least twice nreaders */
    uint32_t newest, oldest;     /* ends of the LRU list */
    size_t max_readers;
    uint64_t evicted;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

recs_history_t *recs_history_new(size_t max_readers)
{
    recs_history_t *h = xcalloc(1, sizeof *h);
    h->max_readers = max_readers ? max_readers : 1000000;
    if (h->max_readers >= NONE)
        h->max_readers = NONE - 1;
    h->capslugs = 256;
    h->slugs = xcalloc(h->capslugs, sizeof *h->slugs);
    h->caprslots = 256;
    h->rslots = xcalloc(h->caprslots, sizeof *h->rslots);
    h->newest = h->oldest = NONE;
    return h;
}

void recs_history_free(recs_history_t *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->capslugs; i++)
        free(h->slugs[i].slug);
    for (size_t i = 0; i < h->nreaders; i++)
        free(h->readers[i].reader);
    free(h->slugs);
    free(h->readers);
    free(h->rslots);
    free(h);
}

static slug_ent_t *slug_find(const recs_history_t *h, const char *slug)
{
    size_t mask = h->capslugs - 1;
    for (size_t i = hash_str(slug) & mask;; i = (i + 1) & mask) {
        if (h->slugs[i].slug == NULL || strcmp(h->slugs[i].slug, slug) == 0)
            return &h->slugs[i];
    }
}

/* The table slot of `reader` (hash `hv`): its own, or the empty one it would take. */
static size_t rslot_find(const recs_history_t *h, const char *reader, uint64_t hv)
{
    size_t mask = h->caprslots - 1;
    for (size_t i = hv & mask;; i = (i + 1) & mask) {
        uint32_t e = h->rslots[i];
        if (e == 0 || (h->readers[e - 1].hash == hv && strcmp(h->readers[e - 1].reader, reader) == 0))
            return i;
    }
}

/* Free slot i and move later entries of its probe run back (no tombstones): an
 * entry at j may fill i unless its home slot lies cyclically in (i, j]. */
static void rslot_delete(recs_history_t *h, size_t i)
{
    size_t mask = h->caprslots - 1, j = i;
    for (;;) {
        h->rslots[i] = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (h->rslots[j] == 0)
                return;
            size_t home = h->readers[h->rslots[j] - 1].hash & mask;
            bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays)
                break;
        }
        h->rslots[i] = h->rslots[j];
        i = j;
    }
}

static void lru_unlink(recs_history_t *h, uint32_t e)
{
    reader_ent_t *r = &h->readers[e];
    if (r->newer != NONE)
        h->readers[r->newer].older = r->older;
    else
        h->newest = r->older;
    if (r->older != NONE)
        h->readers[r->older].newer = r->newer;
    else
        h->oldest = r->newer;
}

static void lru_push(recs_history_t *h, uint32_t e)
{
    reader_ent_t *r = &h->readers[e];
    r->newer = NONE;
    r->older = h->newest;
    if (h->newest != NONE)
        h->readers[h->newest].newer = e;
    else
        h->oldest = e;
    h->newest = e;
}

static void grow_slugs(recs_history_t *h)
{
    slug_ent_t *old = h->slugs;
    size_t oldcap = h->capslugs;
    h->capslugs *= 2;
    h->slugs = xcalloc(h->capslugs, sizeof *h->slugs);
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].slug)
            *slug_find(h, old[i].slug) = old[i]; /* the strings move: histories still
                                                    point at the same bytes */
    free(old);
}

static void grow_rslots(recs_history_t *h)
{
    free(h->rslots);
    h->caprslots *= 2;
    h->rslots = xcalloc(h->caprslots, sizeof *h->rslots);
    size_t mask = h->caprslots - 1;
    for (size_t e = 0; e < h->nreaders; e++) {
        size_t i = h->readers[e].hash & mask;
        while (h->rslots[i])
            i = (i + 1) & mask;
        h->rslots[i] = (uint32_t)e + 1;
    }
}

/* The entry of a reader seen for the first time, in table slot `slot`: a new one
 * below max_readers, else the least recently viewing reader's, emptied. */
static reader_ent_t *reader_add(recs_history_t *h, const char *reader, uint64_t hv, size_t slot)
{
    uint32_t e;
    if (h->nreaders < h->max_readers) {
        if (2 * (h->nreaders + 1) > h->caprslots) {
            grow_rslots(h);
            slot = rslot_find(h, reader, hv);
        }
        if (h->nreaders == h->capreaders) {
            h->capreaders = h->capreaders ? 2 * h->capreaders : 256;
            h->readers = xrealloc(h->readers, h->capreaders * sizeof *h->readers);
        }
        e = (uint32_t)h->nreaders++;
    } else {
        e = h->oldest;
        lru_unlink(h, e);
        rslot_delete(h, rslot_find(h, h->readers[e].reader, h->readers[e].hash));
        free(h->readers[e].reader);
        h->evicted++;
        slot = rslot_find(h, reader, hv); /* the deletion may have moved the run */
    }
    reader_ent_t *r = &h->readers[e];
    r->reader = xstrdup(reader);
    r->hash = hv;
    r->n = 0;
    h->rslots[slot] = e + 1;
    lru_push(h, e);
    return r;
}

uint32_t recs_history_view(recs_history_t *h, const char *reader, const char *slug)
{
    if (slug == NULL || *slug == '\0')
        return 0;
    if (2 * (h->nslugs + 1) > h->capslugs)
        grow_slugs(h);
    slug_ent_t *s = slug_find(h, slug);
    if (s->slug == NULL) {
        s->slug = xstrdup(slug);
        h->nslugs++;
    }
    s->views++;
    if (reader == NULL || *reader == '\0')
        return s->views;
    uint64_t hv = hash_str(reader);
    size_t slot = rslot_find(h, reader, hv);
    reader_ent_t *r;
    if (h->rslots[slot] == 0) {
        r = reader_add(h, reader, hv, slot);
    } else {
        uint32_t e = h->rslots[slot] - 1;
        if (h->newest != e) {
            lru_unlink(h, e);
            lru_push(h, e);
        }
        r = &h->readers[e];
    }
    /* Move (or insert) the slug to the front. */
    int at = r->n < RECS_HISTORY_MAX ? r->n : RECS_HISTORY_MAX - 1;
    for (int i = 0; i < r->n; i++)
        if (r->recent[i] == s->slug) {
            at = i;
            break;
        }
    if (at == r->n)
        r->n++;
    memmove(&r->recent[1], &r->recent[0], (size_t)at * sizeof r->recent[0]);
    r->recent[0] = s->slug;
    return s->views;
}

int recs_history_get(const recs_history_t *h, const char *reader, const char **out, int max)
{
    if (reader == NULL)
        return 0;
    uint32_t e = h->rslots[rslot_find(h, reader, hash_str(reader))];
    if (e == 0)
        return 0;
    const reader_ent_t *r = &h->readers[e - 1];
    int n = r->n < max ? r->n : max;
    memcpy(out, r->recent, (size_t)(n > 0 ? n : 0) * sizeof *out);
    return n > 0 ? n : 0;
}

uint32_t recs_history_views(const recs_history_t *h, const char *slug)
{
    slug_ent_t *s = slug_find(h, slug);
    return s->slug ? s->views : 0;
}

void recs_history_fill_views(const recs_history_t *h, const recs_index_t *ix, uint32_t *views)
{
    for (int i = 0; i < ix->n; i++)
        views[i] = recs_history_views(h, ix->posts[i].slug);
}

size_t recs_history_readers(const recs_history_t *h)
{
    return h->nreaders;
}

uint64_t recs_history_evicted(const recs_history_t *h)
{
    return h->evicted;
}
