/* model_int.h - what the model versions share inside recs/ (not for callers). */
#ifndef ONEBLOG_RECS_MODEL_INT_H
#define ONEBLOG_RECS_MODEL_INT_H

#include "recs/model.h"

/* Keep the best k of scores[0..ix->n) (positions with skip[pos] set are left out)
 * in out, best first: higher score first, then lower post id. Returns the count. */
int recs__top_k(const recs_index_t *ix, const double *scores, const unsigned char *skip,
                int k, recs_item_t *out);

/* As recs__top_k over the positions pos[0..npos) only. */
int recs__top_k_list(const recs_index_t *ix, const double *scores, const int *pos, int npos,
                     int k, recs_item_t *out);

/* The positions (ascending, into cand) that may be in the top k of the exact
 * scores, given approximate ones within `margin` of them: every post not in skip
 * whose approx is at least the k-th best approx minus 2 margin. Returns the count. */
int recs__shortlist(const recs_index_t *ix, const float *approx, const unsigned char *skip,
                    int k, double margin, int *cand);

/* recs@1's cosine similarity of every post to the request's centroid, into
 * scores[0..ix->n) (recs@2 blends it). `params` are recs@1's (recs@2's start
 * with them). */
void recs__v1_scores(void *v1_state, const double *params, const recs_input_t *in,
                     double *scores);

/* The approximate pass: build the request's centroid (kept in the state until
 * recs__v1_done) and point *approx at every post's cosine in floats (ix->n of
 * them, in the state until the next request), from similarity rows or float
 * postings, within *margin of recs__v1_scores' doubles; recs__v1_exact then
 * gives those doubles bit for bit, post by post. Returns 0; or 1 when it put the
 * exact scores into exact[0..ix->n) instead (*approx = NULL, *margin = 0: a huge
 * centroid, or a huge index). */
int recs__v1_approx(void *v1_state, const double *params, const recs_input_t *in, double *exact,
                    const float **approx, double *margin);
/* The exact cosine of post p to the centroid of the last recs__v1_approx. */
double recs__v1_exact(void *v1_state, int p);
/* Forget the centroid (after recs__v1_approx). */
void recs__v1_done(void *v1_state);
/* Start fetching the sparse vectors of posts pos[0..n) into cache, all at once,
 * so that the misses of the posts a request reads (the centroid's, the
 * shortlist's) overlap instead of following one another. Changes no result. */
void recs__v1_prefetch(void *v1_state, const int *pos, int n);
/* Posts of a shortlist whose vectors are being fetched ahead of the one rescored
 * (a shortlist is k posts or a few more; all of them for a cold start). */
#define RECS_PREFETCH_AHEAD 32
/* A scratch array of ix->n ints (a shortlist). */
int *recs__v1_cand(void *v1_state);

/* Mark (on = 1) or unmark the posts a request must not return (its history and
 * context) in the state's skip array (recs__v1_skip). */
void recs__v1_mark(void *v1_state, const recs_input_t *in, unsigned char on);
unsigned char *recs__v1_skip(void *v1_state);
/* A scratch array of ix->n doubles. */
double *recs__v1_scratch(void *v1_state);

/* recs@1's sparse vectors (model_v1.c builds them): per post, its terms in id
 * order with their weights (L2-normalised); per term, its postings in post order. */
typedef struct recs__vectors {
    int nterms;
    const int *doc_off;    /* n + 1 */
    const int *doc_term;
    const double *doc_w;
    const int *post_off;   /* nterms + 1 */
    const int *post_doc;
    const double *post_w;
} recs__vectors_t;

/* Similarity rows (model_rows.c): row p holds the float cosine of post p to every
 * post. The cache of rows built over v (borrowed: it must outlive the rows) for
 * n posts, within the row-cache cap; NULL when fewer than a request's worth of
 * rows fit (recs@1 then scores from the postings). */
typedef struct recs_rows recs_rows_t;
recs_rows_t *recs__rows_new(const recs__vectors_t *v, int n);
void recs__rows_free(recs_rows_t *r); /* NULL allowed */
/* Row p (n floats), computed now if it is not cached. The row stays valid until
 * a call with another stamp evicts it: rows got with the current stamp are never
 * evicted by calls with the same stamp. Stamps are > 0 and grow per request. */
const float *recs__rows_get(recs_rows_t *r, int p, uint64_t stamp);
/* Slots in the cache (0 for NULL), and rows computed on demand so far. */
int recs__rows_slots(const recs_rows_t *r);
uint64_t recs__rows_built(const recs_rows_t *r);

/* The similarity rows of a recs@1 state (NULL: none), for tests. */
recs_rows_t *recs__v1_rows(void *v1_state);

#endif /* ONEBLOG_RECS_MODEL_INT_H */
