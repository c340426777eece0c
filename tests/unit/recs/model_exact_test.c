/* model_exact_test.c - the ranked answers of recs@1 and recs@2 (an approximate
 * pass over similarity rows or float postings, then the shortlist rescored
 * exactly) are bit for bit
 * those of the reference: every post scored with recs@1's double sums in the
 * centroid's term order (recs__v1_scores) and recs@2's blend over all posts, then
 * recs__top_k. Many random readers, contexts, k and view counts over a synthetic
 * index with a small vocabulary (many shared terms and near-ties), with every
 * similarity row kept, with a small cache of rows (evictions during the run)
 * and with no rows (the postings pass). */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "recs/model_int.h"

#define NPOSTS 600

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void word(buf_t *b, uint32_t r)
{
    static const char *syl[] = { "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa" };
    buf_printf(b, "%s%s%s ", syl[r % 10], syl[(r / 10) % 10], r % 3 ? "" : "n");
}

static recs_index_t *synthetic(void)
{
    recs_post_t *v = xcalloc(NPOSTS, sizeof *v);
    for (int i = 0; i < NPOSTS; i++) {
        buf_t body = BUF_INIT, title = BUF_INIT, tag = BUF_INIT;
        char slug[32];
        uint32_t topic = next_rand() % 20;
        /* Some posts are copies of an earlier one: exact ties. */
        int words = i % 37 == 5 ? 0 : 20 + (int)(next_rand() % 120);
        for (int w = 0; w < words; w++)
            word(&body, next_rand() % 3 ? topic * 5 + next_rand() % 5 : next_rand() % 100);
        for (int w = 0; w < 4; w++)
            word(&title, topic * 5 + next_rand() % 5);
        word(&tag, topic * 5);
        snprintf(slug, sizeof slug, "p-%04d", i);
        v[i].id = 1000 - i; /* positions and ids in opposite orders */
        v[i].slug = xstrdup(slug);
        v[i].title = buf_take(&title);
        v[i].plaintext = buf_take(&body);
        v[i].tags = xmalloc(sizeof(char *));
        v[i].tags[0] = buf_take(&tag);
        v[i].ntags = 1;
        v[i].published_at = i % 11 == 0 ? 0 : 1700000000 + (int64_t)(next_rand() % 5000000);
    }
    return recs_index_new(v, NPOSTS);
}

/* recs@1 and recs@2 as they were: every post scored (recs@1's cosine from
 * recs__v1_scores of m1, a recs@1 model with m's first five params; the blend
 * over every post), then recs__top_k. */
static int reference(recs_model_t *m, recs_model_t *m1, const recs_input_t *in, recs_item_t *out)
{
    const recs_index_t *ix = m->ix;
    const double *params = m->params;
    double *cos = xcalloc((size_t)ix->n, sizeof *cos);
    double *score = xcalloc((size_t)ix->n, sizeof *score);
    unsigned char *skip = xcalloc((size_t)ix->n, 1);
    recs__v1_scores(m1->state, params, in, cos);
    if (m->ops->version == 1) {
        memcpy(score, cos, (size_t)ix->n * sizeof *score);
    } else {
        double half_life_s = params[8] * 86400.0, lmax = 0;
        uint32_t vmax = 0;
        if (in->views) {
            for (int p = 0; p < ix->n; p++)
                if (in->views[p] > vmax)
                    vmax = in->views[p];
            lmax = log1p((double)vmax);
        }
        for (int p = 0; p < ix->n; p++) {
            double rec = 0, pop = 0;
            if (ix->posts[p].published_at > 0) {
                double age_s = (double)(in->now_ms - ix->posts[p].published_at * 1000) / 1000.0;
                rec = exp2(-(age_s > 0 ? age_s : 0) / half_life_s);
            }
            if (vmax > 0)
                pop = log1p((double)in->views[p]) / lmax;
            score[p] = params[5] * cos[p] + params[6] * rec + params[7] * pop;
        }
    }
    for (int i = 0; i < in->nhistory; i++)
        if (in->history[i] >= 0 && in->history[i] < ix->n)
            skip[in->history[i]] = 1;
    if (in->context >= 0)
        skip[in->context] = 1;
    int n = recs__top_k(ix, score, skip, in->k, out);
    free(cos);
    free(score);
    free(skip);
    return n;
}

/* Build the models under the current row-cache cap, check 1,500 requests each
 * against the reference; *slots and *built report the rows of the first model. */
static void check_against_reference(int *slots, uint64_t *built)
{
    recs_index_t *ix = synthetic();
    recs_model_t *m[3], *ref[3];
    double p2[RECS_MAX_PARAMS];
    recs_params_default(2, p2);
    p2[4] = 0.0; /* context_weight 0 in one recs@2 */
    ASSERT_EQ(recs_model_new(1, ix, NULL, &m[0]), 0);
    ASSERT_EQ(recs_model_new(2, ix, NULL, &m[1]), 0);
    ASSERT_EQ(recs_model_new(2, ix, p2, &m[2]), 0);
    for (int v = 0; v < 3; v++)
        ASSERT_EQ(recs_model_new(1, ix, m[v]->params, &ref[v]), 0);
    uint32_t *views = xcalloc(NPOSTS, sizeof *views);
    for (int i = 0; i < 3000; i++)
        views[(next_rand() % NPOSTS) * (next_rand() % NPOSTS) / NPOSTS] += 1 + (i % 97 == 0) * 5000;
    int checked = 0;
    for (int it = 0; it < 1500; it++) {
        int hist[RECS_HISTORY_MAX], nh = (int)(next_rand() % (RECS_HISTORY_MAX + 1));
        for (int i = 0; i < nh; i++)
            hist[i] = i > 0 && next_rand() % 5 == 0 ? hist[i - 1] : (int)(next_rand() % NPOSTS);
        if (nh > 0 && it % 23 == 0)
            hist[0] = -1;
        int k = it % 7 == 0 ? RECS_K_MAX : 1 + (int)(next_rand() % 12);
        recs_input_t in = { hist, nh, it % 9 == 0 ? -1 : (int)(next_rand() % NPOSTS), k,
                            1700000000000LL + (int64_t)(next_rand() % 6000000) * 1000,
                            it % 4 ? views : NULL };
        for (int v = 0; v < 3; v++) {
            recs_item_t got[RECS_K_MAX], want[RECS_K_MAX];
            int ng = recs_model_recommend(m[v], &in, got);
            int nw = reference(m[v], ref[v], &in, want);
            ASSERT_EQ(ng, nw);
            for (int i = 0; i < ng; i++) {
                ASSERT_EQ(got[i].pos, want[i].pos);
                ASSERT(memcmp(&got[i].score, &want[i].score, sizeof(double)) == 0);
            }
            checked++;
        }
    }
    ASSERT_EQ(checked, 4500);
    *slots = recs__rows_slots(recs__v1_rows(m[0]->state));
    *built = recs__rows_built(recs__v1_rows(m[0]->state));
    for (int v = 0; v < 3; v++) {
        recs_model_free(m[v]);
        recs_model_free(ref[v]);
    }
    free(views);
    recs_index_free(ix);
}

/* The bound the shortlist relies on: every post's approximate score is within
 * the margin of its exact one (rows and postings alike). */
static void check_margin(void)
{
    recs_index_t *ix = synthetic();
    recs_model_t *m;
    double p1[RECS_MAX_PARAMS];
    recs_params_default(1, p1);
    p1[4] = 37.5; /* a heavy context */
    ASSERT_EQ(recs_model_new(1, ix, p1, &m), 0);
    double *exact_all = xcalloc(NPOSTS, sizeof *exact_all), worst = 0;
    for (int it = 0; it < 300; it++) {
        int hist[RECS_HISTORY_MAX], nh = (int)(next_rand() % (RECS_HISTORY_MAX + 1));
        for (int i = 0; i < nh; i++)
            hist[i] = (int)(next_rand() % NPOSTS);
        recs_input_t in = { hist, nh, it % 5 == 0 ? -1 : (int)(next_rand() % NPOSTS), 10, 0,
                            NULL };
        double margin;
        const float *approx;
        int exact = recs__v1_approx(m->state, m->params, &in, exact_all, &approx, &margin);
        ASSERT_EQ(exact, 0);
        ASSERT(margin > 0 && margin < 1e-4);
        for (int p = 0; p < NPOSTS; p++) {
            double e = recs__v1_exact(m->state, p), d = fabs((double)approx[p] - e);
            if (d > margin)
                test__fail(__FILE__, __LINE__, "post %d: approx %.17g exact %.17g margin %g", p,
                           (double)approx[p], e, margin);
            if (d / margin > worst)
                worst = d / margin;
        }
        recs__v1_done(m->state);
    }
    printf("largest error / margin: %.3g\n", worst);
    free(exact_all);
    recs_model_free(m);
    recs_index_free(ix);
}

TEST(approximate_scores_are_within_the_margin_rows_and_postings)
{
    check_margin();
    recs_model_set_row_cache(0);
    check_margin();
    recs_model_set_row_cache(RECS_ROW_CACHE_DEFAULT);
}

TEST(every_row_cached_gives_the_reference_answers_bit_for_bit)
{
    int slots;
    uint64_t built;
    check_against_reference(&slots, &built);
    ASSERT_EQ(slots, NPOSTS); /* the default cap holds them all: built with the model */
    ASSERT_EQ(built, 0);
}

TEST(a_small_row_cache_with_evictions_gives_the_reference_answers_bit_for_bit)
{
    int slots;
    uint64_t built;
    recs_model_set_row_cache(70 * NPOSTS * sizeof(float));
    check_against_reference(&slots, &built);
    recs_model_set_row_cache(RECS_ROW_CACHE_DEFAULT);
    ASSERT_EQ(slots, 70);
    ASSERT(built > 1000); /* rows were evicted and built again */
}

TEST(no_rows_the_postings_pass_gives_the_reference_answers_bit_for_bit)
{
    int slots;
    uint64_t built;
    recs_model_set_row_cache(0);
    check_against_reference(&slots, &built);
    recs_model_set_row_cache(RECS_ROW_CACHE_DEFAULT);
    ASSERT_EQ(slots, 0);
}

/* recs__shortlist as it was written first (one post at a time, in position
 * order): the list the faster one must give, post for post. */
static int shortlist_reference(int n, const float *approx, const unsigned char *skip, int k,
                               double margin, int *cand)
{
    float best[RECS_K_MAX];
    int nb = 0, nc = 0;
    for (int p = 0; p < n; p++) {
        if (skip && skip[p])
            continue;
        float s = approx[p];
        if (nb == k && !(s > best[k - 1]))
            continue;
        int i = nb < k ? nb++ : k - 1;
        while (i > 0 && s > best[i - 1]) {
            best[i] = best[i - 1];
            i--;
        }
        best[i] = s;
    }
    double lo = nb == k ? (double)best[k - 1] - 2 * margin : -HUGE_VAL;
    for (int p = 0; p < n; p++)
        if (!(skip && skip[p]) && approx[p] >= lo)
            cand[nc++] = p;
    return nc;
}

TEST(the_shortlist_is_the_one_post_at_a_time_list)
{
    enum { NMAX = 203 };
    float approx[NMAX];
    unsigned char skip[NMAX];
    int got[NMAX], want[NMAX];
    for (int round = 0; round < 20000; round++) {
        recs_index_t ix = { .n = (int)(next_rand() % NMAX) };
        int k = 1 + (int)(next_rand() % RECS_K_MAX), shape = (int)(next_rand() % 4);
        /* Margins from none to wide, down to the float spacing of the scores. */
        double margin = next_rand() % 3 == 0 ? 0 : (double)(next_rand() % 1000) * 0x1p-30;
        for (int p = 0; p < ix.n; p++) {
            uint32_t r = next_rand();
            /* Random, rising with the position (recency), few distinct values
             * (ties), and values a float spacing apart. */
            approx[p] = shape == 0   ? (float)(r % 100000) / 100000.0f
                        : shape == 1 ? (float)p / (float)NMAX + (float)(r % 100) * 1e-4f
                        : shape == 2 ? (float)(r % 4) * 0.25f
                                     : 0.5f + (float)(r % 16) * 0x1p-24f;
            skip[p] = r % 13 == 0;
        }
        const unsigned char *sk = round % 5 == 0 ? NULL : skip;
        int ng = recs__shortlist(&ix, approx, sk, k, margin, got);
        int nw = shortlist_reference(ix.n, approx, sk, k, margin, want);
        ASSERT_EQ(ng, nw);
        for (int i = 0; i < nw; i++)
            ASSERT_EQ(got[i], want[i]);
    }
}
