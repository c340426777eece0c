/* model_v2.c - recs@2: recs@1's content similarity blended with recency and
 * popularity.
 *
 *     score(p) = w_sim * cosine(p)                      (recs@1, same params)
 *              + w_recency * 2^(-age(p) / half_life)    age = now - published_at
 *              + w_popularity * ln(1 + views(p)) / ln(1 + max views)
 *
 * `now` is the request's time, passed in (never read from a clock here), and
 * views(p) are the page.view events of p the server had seen when it answered
 * (the event logs which ones, as a seq range, so replay recounts them from the
 * log). A post from the future has age 0; one without a publication time has
 * recency 0. Exclusions and the tie rule are recs@1's.
 *
 * Speed: as in recs@1, every post is first blended approximately (in floats,
 * from recs@1's approximate cosine, recency as exp2((pub - newest) / half-life)
 * computed with the model times one exp2 per request, popularity times 1 / the
 * maximum's log), and only the shortlist is blended exactly with blend().
 */
#include "recs/model_int.h"

#include <math.h>
#include <stdlib.h>

#include "common/buf.h"

enum { P_W_SIM = 5, P_W_RECENCY, P_W_POPULARITY, P_HALF_LIFE_DAYS, V2_NPARAMS };

static const recs_param_def_t v2_params[V2_NPARAMS] = {
    /* recs@1's, by position */
    { "w_title", 3.0, 0.0, 100.0, "weight of title terms" },
    { "w_tags", 2.0, 0.0, 100.0, "weight of tag-name terms" },
    { "w_body", 1.0, 0.0, 100.0, "weight of body terms" },
    { "history_max", 10, 0, RECS_HISTORY_MAX, "recent reads in the centroid" },
    { "context_weight", 1.0, 0.0, 100.0, "weight of the post being read in the centroid" },
    /* recs@2's own */
    { "w_sim", 0.6, 0.0, 1.0, "weight of the content similarity" },
    { "w_recency", 0.2, 0.0, 1.0, "weight of recency" },
    { "w_popularity", 0.2, 0.0, 1.0, "weight of popularity" },
    { "half_life_days", 30.0, 0.01, 3650.0, "age at which recency halves (days)" },
};

typedef struct v2 {
    const recs_index_t *ix;
    void *v1;           /* recs@1's state over the same index and params */
    double *blend;      /* ix->n: exact blends of the shortlist */
    float *approx;      /* ix->n: approximate blends */
    int64_t *pub;       /* ix->n: published_at, contiguous */
    int64_t newest;     /* the largest published_at (s); 0: none */
    double *rec_rel;    /* ix->n: exp2((pub - newest) / half-life), 0 without pub */
    double *log1p_v;    /* LOG1P_CACHE: log1p(v) for small view counts */
} v2_t;

#define LOG1P_CACHE 4096

/* log1p(v): the same double as the call, from a table when v is small. */
static double log1p_views(const v2_t *m, uint32_t v)
{
    return v < LOG1P_CACHE ? m->log1p_v[v] : log1p((double)v);
}

/* A post's recency, popularity and blended score: one expression, used for the
 * approximate and the exact scores alike. */
static double blend(const v2_t *m, const double *params, const recs_input_t *in, int p,
                    uint32_t vmax, double lmax, double half_life_s, double cos)
{
    double rec = 0, pop = 0;
    if (m->pub[p] > 0) {
        double age_s = (double)(in->now_ms - m->pub[p] * 1000) / 1000.0;
        rec = exp2(-(age_s > 0 ? age_s : 0) / half_life_s);
    }
    if (vmax > 0)
        pop = log1p_views(m, in->views[p]) / lmax;
    return params[P_W_SIM] * cos + params[P_W_RECENCY] * rec + params[P_W_POPULARITY] * pop;
}

/* Every post's blend from the approximate cosine, into m->approx. Recency:
 * 2^(-age / h) = rec_rel * 2^(-(now - newest) / h) for every post published by
 * `now` (newest <= now); the product is within a few roundings (relative 1e-15)
 * of blend()'s exp2. A request older than the newest post (a clock behind the
 * CMS's) takes blend()'s recency, post by post. */
static void approx_blends(v2_t *m, const double *params, const recs_input_t *in, uint32_t vmax,
                          double lmax, double half_life_s, const float *acos)
{
    const double w_sim = params[P_W_SIM], w_rec = params[P_W_RECENCY];
    const double w_pop = params[P_W_POPULARITY], inv_lmax = vmax > 0 ? 1.0 / lmax : 0;
    int n = m->ix->n;
    if (m->newest > 0 && in->now_ms < m->newest * 1000) {
        for (int p = 0; p < n; p++)
            m->approx[p] = (float)blend(m, params, in, p, vmax, lmax, half_life_s, acos[p]);
        return;
    }
    double base = m->newest > 0
                      ? exp2(-((double)(in->now_ms - m->newest * 1000) / 1000.0) / half_life_s)
                      : 0;
    for (int p = 0; p < n; p++) {
        double pop = vmax > 0 ? log1p_views(m, in->views[p]) * inv_lmax : 0;
        m->approx[p] = (float)(w_sim * acos[p] + w_rec * (m->rec_rel[p] * base) + w_pop * pop);
    }
}

static void *v2_build(const recs_index_t *ix, const double *params)
{
    v2_t *m = xcalloc(1, sizeof *m);
    m->ix = ix;
    m->v1 = recs_model_v1.build(ix, params);
    m->blend = xcalloc((size_t)(ix->n ? ix->n : 1), sizeof *m->blend);
    m->approx = xcalloc((size_t)(ix->n ? ix->n : 1), sizeof *m->approx);
    m->pub = xmalloc((size_t)(ix->n ? ix->n : 1) * sizeof *m->pub);
    m->rec_rel = xcalloc((size_t)(ix->n ? ix->n : 1), sizeof *m->rec_rel);
    for (int p = 0; p < ix->n; p++) {
        m->pub[p] = ix->posts[p].published_at;
        if (m->pub[p] > m->newest)
            m->newest = m->pub[p];
    }
    double half_life_s = params[P_HALF_LIFE_DAYS] * 86400.0;
    for (int p = 0; p < ix->n; p++)
        if (m->pub[p] > 0)
            m->rec_rel[p] = exp2((double)(m->pub[p] - m->newest) / half_life_s);
    m->log1p_v = xmalloc(LOG1P_CACHE * sizeof *m->log1p_v);
    for (uint32_t v = 0; v < LOG1P_CACHE; v++)
        m->log1p_v[v] = log1p((double)v);
    return m;
}

static void v2_free(void *state)
{
    v2_t *m = state;
    if (m == NULL)
        return;
    recs_model_v1.free(m->v1);
    free(m->blend);
    free(m->approx);
    free(m->pub);
    free(m->rec_rel);
    free(m->log1p_v);
    free(m);
}

static void v2_recommend(void *state, const double *params, const recs_input_t *in,
                         recs_item_t *out, int *nout)
{
    v2_t *m = state;
    const recs_index_t *ix = m->ix;
    double *cos = recs__v1_scratch(m->v1);
    double half_life_s = params[P_HALF_LIFE_DAYS] * 86400.0, lmax = 0, margin;
    const float *acos;
    uint32_t vmax = 0;

    int exact = recs__v1_approx(m->v1, params, in, cos, &acos, &margin);
    if (in->views) {
        for (int p = 0; p < ix->n; p++)
            if (in->views[p] > vmax)
                vmax = in->views[p];
        lmax = log1p_views(m, vmax);
    }
    unsigned char *skip = recs__v1_skip(m->v1);
    recs__v1_mark(m->v1, in, 1);
    if (exact) {
        for (int p = 0; p < ix->n; p++)
            m->blend[p] = blend(m, params, in, p, vmax, lmax, half_life_s, cos[p]);
        *nout = recs__top_k(ix, m->blend, skip, in->k, out);
    } else {
        approx_blends(m, params, in, vmax, lmax, half_life_s, acos);
        /* The approximate blends differ from the exact ones by w_sim times the
         * cosine's error, plus the float rounding of a number below 2 (2^-23),
         * plus the approximate recency and popularity and a few double roundings
         * (far below 1e-9). */
        int *cand = recs__v1_cand(m->v1);
        int nc = recs__shortlist(ix, m->approx, skip, in->k,
                                 params[P_W_SIM] * margin + 0x1p-23 + 1e-9, cand);
        int ahead = nc < RECS_PREFETCH_AHEAD ? nc : RECS_PREFETCH_AHEAD;
        recs__v1_prefetch(m->v1, cand, ahead);
        for (int c = 0; c < ahead; c++)
            __builtin_prefetch(&m->pub[cand[c]]);
        for (int c = 0; c < nc; c++) {
            int p = cand[c];
            if (c + ahead < nc) {
                recs__v1_prefetch(m->v1, &cand[c + ahead], 1);
                __builtin_prefetch(&m->pub[cand[c + ahead]]);
            }
            m->blend[p] = blend(m, params, in, p, vmax, lmax, half_life_s,
                                recs__v1_exact(m->v1, p));
        }
        *nout = recs__top_k_list(ix, m->blend, cand, nc, in->k, out);
    }
    recs__v1_mark(m->v1, in, 0);
    recs__v1_done(m->v1);
}

const recs_model_ops_t recs_model_v2 = {
    .name = RECS_MODEL_NAME,
    .version = 2,
    .params = v2_params,
    .nparams = V2_NPARAMS,
    .build = v2_build,
    .free = v2_free,
    .recommend = v2_recommend,
};
