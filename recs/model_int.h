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
int recs__shortlist(const recs_index_t *ix, const double *approx, const unsigned char *skip,
                    int k, double margin, int *cand);

/* recs@1's cosine similarity of every post to the request's centroid, into
 * scores[0..ix->n) (recs@2 blends it). `params` are recs@1's (recs@2's start
 * with them). */
void recs__v1_scores(void *v1_state, const double *params, const recs_input_t *in,
                     double *scores);

/* The approximate pass: build the request's centroid (kept in the state until
 * recs__v1_done) and put into approx[0..ix->n) every post's cosine from float
 * postings, within *margin of recs__v1_scores' doubles; recs__v1_exact then gives
 * those doubles bit for bit, post by post. Returns 0; or 1 when it computed the
 * exact scores instead (*margin = 0: a huge centroid, or a huge index). */
int recs__v1_approx(void *v1_state, const double *params, const recs_input_t *in,
                    double *approx, double *margin);
/* The exact cosine of post p to the centroid of the last recs__v1_approx. */
double recs__v1_exact(void *v1_state, int p);
/* Forget the centroid (after recs__v1_approx). */
void recs__v1_done(void *v1_state);
/* A scratch array of ix->n ints (a shortlist). */
int *recs__v1_cand(void *v1_state);

/* Mark (on = 1) or unmark the posts a request must not return (its history and
 * context) in the state's skip array (recs__v1_skip). */
void recs__v1_mark(void *v1_state, const recs_input_t *in, unsigned char on);
unsigned char *recs__v1_skip(void *v1_state);
/* A scratch array of ix->n doubles. */
double *recs__v1_scratch(void *v1_state);

#endif /* ONEBLOG_RECS_MODEL_INT_H */
