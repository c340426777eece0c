/* history.c - reader histories and view counts (history.h): two string-keyed
 * open-addressing tables. Slugs are interned once in the count table; histories
 * point at the interned copies. */
#include "recs/history.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

typedef struct slug_ent {
    char *slug;      /* interned */
    uint32_t views;
} slug_ent_t;

typedef struct reader_ent {
    char *reader;
    const char *recent[RECS_HISTORY_MAX]; /* interned slugs, newest first */
    int n;
} reader_ent_t;

struct recs_history {
    slug_ent_t *slugs;
    size_t nslugs, capslugs;     /* used slots, table size (power of 2) */
    reader_ent_t *readers;
    size_t nreaders, capreaders;
    size_t max_readers;
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
    h->capslugs = 256;
    h->slugs = xcalloc(h->capslugs, sizeof *h->slugs);
    h->capreaders = 256;
    h->readers = xcalloc(h->capreaders, sizeof *h->readers);
    return h;
}

void recs_history_free(recs_history_t *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->capslugs; i++)
        free(h->slugs[i].slug);
    for (size_t i = 0; i < h->capreaders; i++)
        free(h->readers[i].reader);
    free(h->slugs);
    free(h->readers);
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

static reader_ent_t *reader_find(const recs_history_t *h, const char *reader)
{
    size_t mask = h->capreaders - 1;
    for (size_t i = hash_str(reader) & mask;; i = (i + 1) & mask) {
        if (h->readers[i].reader == NULL || strcmp(h->readers[i].reader, reader) == 0)
            return &h->readers[i];
    }
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

static void grow_readers(recs_history_t *h)
{
    reader_ent_t *old = h->readers;
    size_t oldcap = h->capreaders;
    h->capreaders *= 2;
    h->readers = xcalloc(h->capreaders, sizeof *h->readers);
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].reader)
            *reader_find(h, old[i].reader) = old[i];
    free(old);
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
    if (2 * (h->nreaders + 1) > h->capreaders)
        grow_readers(h);
    reader_ent_t *r = reader_find(h, reader);
    if (r->reader == NULL) {
        if (h->nreaders >= h->max_readers)
            return s->views;
        r->reader = xstrdup(reader);
        h->nreaders++;
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
    reader_ent_t *r = reader_find(h, reader);
    if (r->reader == NULL)
        return 0;
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
