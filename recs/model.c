/* model.c - the model registry, parameters and the helpers every version shares
 * (top-k selection with the tie rule). */
#include "recs/model_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

static const recs_model_ops_t *const versions[RECS_VERSIONS] = { &recs_model_v1,
                                                                 &recs_model_v2 };

const recs_model_ops_t *recs_model_ops(int version)
{
    return version >= 1 && version <= RECS_VERSIONS ? versions[version - 1] : NULL;
}

int recs_params_default(int version, double *params)
{
    const recs_model_ops_t *ops = recs_model_ops(version);
    if (ops == NULL)
        return -EINVAL;
    for (int i = 0; i < ops->nparams; i++)
        params[i] = ops->params[i].def;
    return ops->nparams;
}

int recs_params_parse(int version, const char *text, double *params, char *err, size_t errlen)
{
    const recs_model_ops_t *ops = recs_model_ops(version);
    double tmp[RECS_MAX_PARAMS];
    char *copy, *save = NULL;
    int rc = 0;

    if (ops == NULL) {
        snprintf(err, errlen, "no model recs@%d", version);
        return -EINVAL;
    }
    memcpy(tmp, params, sizeof tmp);
    copy = xstrdup(text ? text : "");
    for (char *kv = strtok_r(copy, ",", &save); kv && rc == 0; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '='), *end;
        int k;
        while (*kv == ' ')
            kv++;
        if (eq == NULL) {
            snprintf(err, errlen, "'%s': expected name=value", kv);
            rc = -EINVAL;
            break;
        }
        *eq = '\0';
        for (k = 0; k < ops->nparams && strcmp(ops->params[k].name, kv) != 0; k++)
            ;
        double v = strtod(eq + 1, &end);
        if (k == ops->nparams) {
            snprintf(err, errlen, "recs@%d has no parameter '%s'", version, kv);
            rc = -EINVAL;
        } else if (end == eq + 1 || *end || !(v >= ops->params[k].min && v <= ops->params[k].max)) {
            snprintf(err, errlen, "%s: '%s' is not a number in [%g, %g]", kv, eq + 1,
                     ops->params[k].min, ops->params[k].max);
            rc = -EINVAL;
        } else {
            tmp[k] = v;
        }
    }
    free(copy);
    if (rc == 0)
        memcpy(params, tmp, sizeof tmp);
    return rc;
}

int recs_model_new(int version, const recs_index_t *ix, const double *params,
                   recs_model_t **out)
{
    const recs_model_ops_t *ops = recs_model_ops(version);
    if (ops == NULL || ix == NULL)
        return -EINVAL;
    recs_model_t *m = xcalloc(1, sizeof *m);
    m->ops = ops;
    m->ix = ix;
    recs_params_default(version, m->params);
    if (params) {
        for (int i = 0; i < ops->nparams; i++) {
            if (!(params[i] >= ops->params[i].min && params[i] <= ops->params[i].max)) {
                free(m);
                return -EINVAL;
            }
            m->params[i] = params[i];
        }
    }
    m->state = ops->build(ix, m->params);
    *out = m;
    return 0;
}

void recs_model_free(recs_model_t *m)
{
    if (m == NULL)
        return;
    m->ops->free(m->state);
    free(m);
}

int recs_model_recommend(recs_model_t *m, const recs_input_t *in, recs_item_t *out)
{
    recs_input_t q = *in;
    int n = 0;
    if (q.k < 1)
        q.k = 1;
    if (q.k > RECS_K_MAX)
        q.k = RECS_K_MAX;
    if (q.nhistory < 0 || (q.nhistory > 0 && q.history == NULL))
        q.nhistory = 0;
    if (q.context >= m->ix->n)
        q.context = -1;
    m->ops->recommend(m->state, m->params, &q, out, &n);
    return n;
}

void recs_model_label(int version, char *out, size_t len)
{
    snprintf(out, len, "%s@%d", RECS_MODEL_NAME, version);
}

int recs_model_parse_label(const char *s)
{
    char *end;
    if (s == NULL)
        return -EINVAL;
    if (strncmp(s, RECS_MODEL_NAME "@", sizeof RECS_MODEL_NAME) == 0)
        s += sizeof RECS_MODEL_NAME;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > RECS_VERSIONS)
        return -EINVAL;
    return (int)v;
}

/* a ranks before b: higher score, then lower id. */
static bool better(const recs_index_t *ix, double sa, int a, double sb, int b)
{
    if (sa != sb)
        return sa > sb;
    return ix->posts[a].id < ix->posts[b].id;
}

/* Insert post p (score s) into the sorted out[0..*n) of at most k. */
static void top_insert(const recs_index_t *ix, int p, double s, int k, recs_item_t *out, int *n)
{
    if (*n == k && !better(ix, s, p, out[*n - 1].score, out[*n - 1].pos))
        return;
    int i = *n < k ? (*n)++ : k - 1;
    while (i > 0 && better(ix, s, p, out[i - 1].score, out[i - 1].pos)) {
        out[i] = out[i - 1];
        i--;
    }
    out[i].pos = p;
    out[i].score = s;
}

int recs__top_k(const recs_index_t *ix, const double *scores, const unsigned char *skip,
                int k, recs_item_t *out)
{
    int n = 0;
    /* Insertion into a sorted array of at most k (k <= RECS_K_MAX): cheaper than a
     * heap at these sizes, and the order is total, so the result is unique. */
    for (int p = 0; p < ix->n; p++)
        if (!(skip && skip[p]))
            top_insert(ix, p, scores[p], k, out, &n);
    return n;
}

int recs__top_k_list(const recs_index_t *ix, const double *scores, const int *pos, int npos,
                     int k, recs_item_t *out)
{
    int n = 0;
    for (int c = 0; c < npos; c++)
        top_insert(ix, pos[c], scores[pos[c]], k, out, &n);
    return n;
}

/* Four floats (GCC vector extension: SSE on x86-64, plain code elsewhere). */
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

static bool any4(v4i m)
{
    return (m[0] | m[1] | m[2] | m[3]) != 0;
}

/* Post p into best[0..*nb) of at most k, in recs__shortlist's first pass. */
static void best_insert(const float *approx, const unsigned char *skip, int p, int k,
                        float *best, int *nb)
{
    if (skip && skip[p])
        return;
    float s = approx[p];
    if (*nb == k && !(s > best[k - 1]))
        return;
    int i = *nb < k ? (*nb)++ : k - 1;
    while (i > 0 && s > best[i - 1]) {
        best[i] = best[i - 1];
        i--;
    }
    best[i] = s;
}

int recs__shortlist(const recs_index_t *ix, const float *approx, const unsigned char *skip,
                    int k, double margin, int *cand)
{
    float best[RECS_K_MAX];
    int nb = 0, nc = 0, n = ix->n, p = n;
    /* T, the k-th best approximate score. At least k posts have approx >= T, so
     * exact >= T - margin for them and the k-th best exact score E >= T - margin.
     * A post of the exact top k (exact >= E, ties included) has approx >= T -
     * 2 margin; any other post has exact < E and may be left out.
     *
     * T is the k-th largest of the values whatever the order they are seen in,
     * so the first pass goes from the last position down: posts are in id
     * order, which is mostly publication order, and with recs@2's recency the
     * best are near the end, so the bar is high early and few posts are
     * inserted (bench-recs --model, cold: this pass + the next 2.7 -> 2.1 us).
     * Both passes are one comparison per post, for most posts false: four posts
     * at a time are compared first, and only a group with one above the bar
     * goes through the per-post test (the same test: the same best[] and the
     * same list, in position order; tests/unit/recs/model_exact_test.c checks
     * it against the one-post-at-a-time code). */
    while (p > 0 && nb < k)
        best_insert(approx, skip, --p, k, best, &nb);
    for (; p >= 4; p -= 4) {
        v4f s, t = { best[k - 1], best[k - 1], best[k - 1], best[k - 1] };
        memcpy(&s, approx + p - 4, sizeof s);
        if (any4(s > t))
            for (int q = p - 1; q >= p - 4; q--)
                best_insert(approx, skip, q, k, best, &nb);
    }
    while (p > 0)
        best_insert(approx, skip, --p, k, best, &nb);
    double lo = nb == k ? (double)best[k - 1] - 2 * margin : -HUGE_VAL;
    /* A float bar at or below lo: a post whose approx (as a double) is >= lo
     * passes it, so a group none of whose posts pass it has none in the list. */
    float lof = (float)lo;
    if ((double)lof > lo)
        lof = nextafterf(lof, -HUGE_VALF);
    v4f lov = { lof, lof, lof, lof };
    for (p = 0; p + 4 <= n; p += 4) {
        v4f s;
        memcpy(&s, approx + p, sizeof s);
        if (!any4(s >= lov))
            continue;
        for (int q = p; q < p + 4; q++)
            if (!(skip && skip[q]) && approx[q] >= lo)
                cand[nc++] = q;
    }
    for (; p < n; p++)
        if (!(skip && skip[p]) && approx[p] >= lo)
            cand[nc++] = p;
    return nc;
}
