/* model_int.h - what the model versions share inside recs/ (not for callers). */
#ifndef ONEBLOG_RECS_MODEL_INT_H
#define ONEBLOG_RECS_MODEL_INT_H

#include "recs/model.h"

/* Keep the best k of scores[0..ix->n) (positions with skip[pos] set are left out)
 * in out, best first: higher score first, then lower post id. Returns the count. */
int recs__top_k(const recs_index_t *ix, const double *scores, const unsigned char *skip,
                int k, recs_item_t *out);

/* recs@1's cosine similarity of every post to the request's centroid, into
 * scores[0..ix->n) (recs@2 blends it). `params` are recs@1's (recs@2's start
 * with them). */
void recs__v1_scores(void *v1_state, const double *params, const recs_input_t *in,
                     double *scores);

/* Mark (on = 1) or unmark the posts a request must not return (its history and
 * context) in the state's skip array (recs__v1_skip). */
void recs__v1_mark(void *v1_state, const recs_input_t *in, unsigned char on);
unsigned char *recs__v1_skip(void *v1_state);
/* A scratch array of ix->n doubles. */
double *recs__v1_scratch(void *v1_state);

#endif /* ONEBLOG_RECS_MODEL_INT_H */
