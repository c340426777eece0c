/* model_rows.c - recs@1's similarity rows: for a post p, the float cosine of p to
 * every post of the index, S[p][c] = sum over terms t of w(p,t) w(c,t).
 *
 * Why: recs@1's score of a post is its cosine to the request's centroid, and the
 * centroid is a weighted sum of at most history_max + 1 post vectors, so by
 * linearity every post's (unnormalised) score is the same weighted sum of those
 * posts' rows. Adding a dozen rows of n floats replaces a pass over the postings
 * of every term of the centroid (most of the index's postings on a blog whose
 * posts share their vocabulary), and reads a few tens of KB instead of the whole
 * postings. The rows only serve the approximate pass: the shortlist is rescored
 * exactly from the doubles (model_v1.c), so answers do not depend on them.
 *
 * Memory: n floats a row (on huge pages when the rows take MBs: rows_alloc). When
 * every row fits in the cap (recs_model_set_row_cache, 32 MiB by default: up to
 * 2,896 posts) they are all built with the model, from the
 * postings, each pair once (the matrix is symmetric). Otherwise rows are built
 * on first use and kept in a cache of cap / (4 n) slots, least recently used out;
 * with fewer than RECS_ROWS_MIN slots there is no cache and recs@1 scores from
 * the postings. A request holds its rows until its next request (a stamp), so
 * it needs at most history_max + 1 <= RECS_HISTORY_MAX + 1 slots at once.
 *
 * A row is computed in doubles, in post order per term, then rounded to float:
 * within a few float roundings of the exact dot product, whatever the order.
 */
#include "recs/model_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/buf.h"

#define RECS_ROWS_MIN 64 /* > RECS_HISTORY_MAX + 1: a request's rows never evict each other */

static size_t row_cache_cap = RECS_ROW_CACHE_DEFAULT; /* bytes */

void recs_model_set_row_cache(size_t bytes)
{
    row_cache_cap = bytes;
}

struct recs_rows {
    const recs__vectors_t *v; /* borrowed from the model */
    int n;                 /* posts: a row's length */
    int nslots;            /* rows that fit */
    float *data;           /* nslots * n */
    int *slot_of;          /* n: post -> slot + 1, 0 = not cached */
    int *post_of;          /* nslots: slot -> post, -1 = free */
    uint64_t *used;        /* nslots: stamp of the last request that used the slot */
    double *acc;           /* n: one row in doubles while it is built */
    uint64_t built;        /* rows computed (after the model's build) */
};

/* Row p into out (n floats), from p's terms and their postings. */
static void compute_row(recs_rows_t *r, int p, float *out)
{
    const recs__vectors_t *v = r->v;
    double *acc = r->acc;
    memset(acc, 0, (size_t)r->n * sizeof *acc);
    for (int j = v->doc_off[p]; j < v->doc_off[p + 1]; j++) {
        int t = v->doc_term[j];
        double w = v->doc_w[j];
        if (w == 0)
            continue;
        for (int i = v->post_off[t]; i < v->post_off[t + 1]; i++)
            acc[v->post_doc[i]] += w * v->post_w[i];
    }
    for (int c = 0; c < r->n; c++)
        out[c] = (float)acc[c];
}

/* Every row at once: row p takes the postings of its terms from p on (the
 * postings are in post order, and cur[t] walks them as p grows), so each pair
 * is computed once and mirrored. */
static void build_all(recs_rows_t *r)
{
    const recs__vectors_t *v = r->v;
    int n = r->n;
    int *cur = xmalloc((size_t)(v->nterms ? v->nterms : 1) * sizeof *cur);
    memcpy(cur, v->post_off, (size_t)v->nterms * sizeof *cur);
    for (int p = 0; p < n; p++) {
        double *acc = r->acc;
        float *row = r->data + (size_t)p * (size_t)n;
        memset(acc + p, 0, (size_t)(n - p) * sizeof *acc);
        for (int j = v->doc_off[p]; j < v->doc_off[p + 1]; j++) {
            int t = v->doc_term[j];
            double w = v->doc_w[j];
            /* cur[t] is p's own entry in t's postings: every post before p that
             * has t has been passed. */
            int from = cur[t]++;
            if (w == 0)
                continue;
            for (int i = from; i < v->post_off[t + 1]; i++)
                acc[v->post_doc[i]] += w * v->post_w[i];
        }
        for (int c = p; c < n; c++) {
            float f = (float)acc[c];
            row[c] = f;
            r->data[(size_t)c * (size_t)n + (size_t)p] = f;
        }
        r->slot_of[p] = p + 1;
        r->post_of[p] = p;
    }
    free(cur);
}

/* The rows' memory (freed with free()). A request reads a dozen rows spread over
 * the n * n * 4 bytes (4 MB for 1,000 posts), and a paced node comes to it with
 * a TLB emptied by other work: on 4 KiB pages each row's pages cost a page walk
 * that misses in cache too. From HUGE_PAGE bytes up the rows sit on whole 2 MiB
 * pages, marked for transparent huge pages (Linux's default "madvise" mode gives
 * them; where THP is off, madvise fails and the pages stay small: same answers).
 * bench-recs --model, BENCH_RECS_COLD=1: the rows pass 3.1 -> 2.4 us. */
#define HUGE_PAGE ((size_t)2 << 20)
static float *rows_alloc(size_t bytes)
{
    if (bytes < HUGE_PAGE)
        return xmalloc(bytes);
    size_t len = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    float *p = aligned_alloc(HUGE_PAGE, len);
    if (p == NULL)
        return xmalloc(bytes);
    (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
}

recs_rows_t *recs__rows_new(const recs__vectors_t *v, int n)
{
    if (n <= 0)
        return NULL;
    size_t row_bytes = (size_t)n * sizeof(float);
    size_t fit = row_cache_cap / row_bytes;
    if (fit < RECS_ROWS_MIN && fit < (size_t)n)
        return NULL;
    recs_rows_t *r = xcalloc(1, sizeof *r);
    r->v = v;
    r->n = n;
    r->nslots = fit >= (size_t)n ? n : (int)fit;
    r->data = rows_alloc((size_t)r->nslots * row_bytes);
    r->slot_of = xcalloc((size_t)n, sizeof *r->slot_of);
    r->post_of = xmalloc((size_t)r->nslots * sizeof *r->post_of);
    r->used = xcalloc((size_t)r->nslots, sizeof *r->used);
    r->acc = xmalloc((size_t)n * sizeof *r->acc);
    for (int s = 0; s < r->nslots; s++)
        r->post_of[s] = -1;
    if (r->nslots == n)
        build_all(r);
    return r;
}

void recs__rows_free(recs_rows_t *r)
{
    if (r == NULL)
        return;
    free(r->data);
    free(r->slot_of);
    free(r->post_of);
    free(r->used);
    free(r->acc);
    free(r);
}

const float *recs__rows_get(recs_rows_t *r, int p, uint64_t stamp)
{
    int s = r->slot_of[p] - 1;
    if (s < 0) {
        /* The least recently used slot; a free one (stamp 0) first. The current
         * request's own rows have stamp == `stamp` and are never taken: there are
         * more slots than a request uses. */
        s = 0;
        for (int i = 1; i < r->nslots && r->used[s] != 0; i++)
            if (r->used[i] < r->used[s])
                s = i;
        if (r->post_of[s] >= 0)
            r->slot_of[r->post_of[s]] = 0;
        compute_row(r, p, r->data + (size_t)s * (size_t)r->n);
        r->post_of[s] = p;
        r->slot_of[p] = s + 1;
        r->built++;
    }
    r->used[s] = stamp;
    return r->data + (size_t)s * (size_t)r->n;
}

int recs__rows_slots(const recs_rows_t *r)
{
    return r ? r->nslots : 0;
}

uint64_t recs__rows_built(const recs_rows_t *r)
{
    return r ? r->built : 0;
}
