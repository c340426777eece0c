/* model_v1.c - recs@1: content-based recommendations with TF-IDF.
 *
 * Build: every post's title, tag names and plaintext are tokenized (tokenize.h).
 * A term's weight in a post is
 *
 *     tf(t) = sum over fields f of w_f * (1 + ln count_f(t))   (fields where it occurs)
 *     w(t)  = tf(t) * idf(t),   idf(t) = ln((1 + N) / (1 + df(t))) + 1
 *
 * and each post's vector is L2-normalised. Vectors are kept sparse twice: per post
 * (terms in id order) and per term (postings in post order), so scoring touches
 * only the terms of the query.
 *
 * Recommend: the query is the sum of the vectors of the reader's recent reads (the
 * first history_max distinct ones, newest first) plus context_weight times the
 * post being read, normalised: the centroid. A post's score is its cosine
 * similarity to the centroid. Posts already read and the context post are left
 * out. Without history or context every score is 0 and the order is by id (a cold
 * start: recs@2 does better there with recency and popularity).
 *
 * Determinism: term ids follow first appearance in index order; the query is
 * accumulated in the order its terms are first touched, and each post's score is
 * summed in that order, so the same input gives the same doubles.
 *
 * Speed: a request first scores every post approximately, within a bound of the
 * doubles: from the similarity rows of the centroid's posts when they are cached
 * (model_rows.c: a dozen rows of floats summed), else from float copies of the
 * postings (half the bytes). Only the posts that can still be in the top k
 * (recs__shortlist) are rescored exactly, with the additions above in the same
 * order (recs__v1_exact), so answers are unchanged bit for bit
 * (tests/unit/recs/model_exact_test.c checks against the full pass).
 */
#include "recs/model_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "recs/tokenize.h"

enum { P_W_TITLE, P_W_TAGS, P_W_BODY, P_HISTORY_MAX, P_CONTEXT_WEIGHT, V1_NPARAMS };

static const recs_param_def_t v1_params[V1_NPARAMS] = {
    { "w_title", 3.0, 0.0, 100.0, "weight of title terms" },
    { "w_tags", 2.0, 0.0, 100.0, "weight of tag-name terms" },
    { "w_body", 1.0, 0.0, 100.0, "weight of body terms" },
    { "history_max", 10, 0, RECS_HISTORY_MAX, "recent reads in the centroid" },
    { "context_weight", 1.0, 0.0, 100.0, "weight of the post being read in the centroid" },
};

typedef struct v1 {
    const recs_index_t *ix;
    int nterms;
    int *doc_off;        /* ix->n + 1: post p's terms are doc_term[doc_off[p]..doc_off[p+1]) */
    int *doc_term;
    double *doc_w;
    int *post_off;       /* nterms + 1: term t's postings */
    int *post_doc;
    double *post_w;
    /* The postings again, compact, for the approximate pass (recs__v1_approx):
     * positions as uint16_t and weights as float, half the bytes of the exact
     * ones. NULL when the index has more than 65,536 posts (exact pass only). */
    uint16_t *post_doc16;
    float *post_wf;
    recs__vectors_t vec;   /* the vectors above, for the rows */
    recs_rows_t *rows;     /* similarity rows (NULL: none fit the cap) */
    uint64_t stamp;        /* requests so far (the rows' LRU clock) */
    /* scratch for one request */
    double *acc;         /* nterms: the centroid, then its normalised weights (q) */
    int *touched;        /* nterms: the centroid's terms, in order of first touch */
    int nt;              /* entries of touched */
    int *rank;           /* nterms, zero between uses: 1 + the term's index in touched */
    double *prod;        /* nterms: one post's products q * w, by rank (rescore) */
    uint64_t *bits;      /* nterms / 64 + 1, zero between uses: which prod are set */
    int used[RECS_HISTORY_MAX + 1]; /* the centroid's posts, in order of addition */
    double usedw[RECS_HISTORY_MAX + 1]; /* and their weights */
    int nused;
    double norm;         /* the centroid's norm (0: empty) */
    double *scores;      /* ix->n */
    float *approx;       /* ix->n */
    int *cand;           /* ix->n: the shortlist */
    unsigned char *skip; /* ix->n */
} v1_t;

/* ---------------------------------------------------------------------------------
 * Build
 * ------------------------------------------------------------------------------ */

/* The vocabulary while building: open addressing over term strings in an arena. */
typedef struct vocab {
    buf_t arena;          /* terms, NUL-separated */
    size_t *off;          /* term id -> offset in arena */
    int n, cap;
    int *slots;           /* term id + 1 */
    size_t nslots;
} vocab_t;

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static void vocab_grow(vocab_t *v)
{
    size_t ns = v->nslots ? v->nslots * 2 : 1024;
    int *slots = xcalloc(ns, sizeof *slots);
    for (int t = 0; t < v->n; t++) {
        const char *s = v->arena.data + v->off[t];
        size_t i = hash_bytes(s, strlen(s)) & (ns - 1);
        while (slots[i])
            i = (i + 1) & (ns - 1);
        slots[i] = t + 1;
    }
    free(v->slots);
    v->slots = slots;
    v->nslots = ns;
}

static int vocab_id(vocab_t *v, const char *tok, size_t len)
{
    if ((size_t)(v->n + 1) * 2 > v->nslots)
        vocab_grow(v);
    size_t mask = v->nslots - 1;
    for (size_t i = hash_bytes(tok, len) & mask;; i = (i + 1) & mask) {
        int id = v->slots[i];
        if (id == 0) {
            if (v->n == v->cap) {
                v->cap = v->cap ? 2 * v->cap : 1024;
                v->off = xrealloc(v->off, (size_t)v->cap * sizeof *v->off);
            }
            v->off[v->n] = v->arena.len;
            buf_append(&v->arena, tok, len);
            buf_putc(&v->arena, '\0');
            v->slots[i] = ++v->n;
            return v->n - 1;
        }
        const char *s = v->arena.data + v->off[id - 1];
        if (strncmp(s, tok, len) == 0 && s[len] == '\0')
            return id - 1;
    }
}

/* Tokens of one field of one post, as term ids, appended to a growable list. */
typedef struct tokens {
    vocab_t *vocab;
    int *ids;
    int n, cap;
} tokens_t;

static void on_token(void *arg, const char *tok, size_t len)
{
    tokens_t *t = arg;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->ids = xrealloc(t->ids, (size_t)t->cap * sizeof *t->ids);
    }
    t->ids[t->n++] = vocab_id(t->vocab, tok, len);
}

enum { F_TITLE, F_TAGS, F_BODY, NFIELDS };

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void *v1_build(const recs_index_t *ix, const double *params)
{
    v1_t *m = xcalloc(1, sizeof *m);
    vocab_t vocab = { 0 };
    tokens_t *fields = xcalloc((size_t)(ix->n ? ix->n : 1) * NFIELDS, sizeof *fields);
    const double wf[NFIELDS] = { params[P_W_TITLE], params[P_W_TAGS], params[P_W_BODY] };

    m->ix = ix;
    /* Pass 1: tokens and the vocabulary, in index order (this fixes term ids). */
    for (int p = 0; p < ix->n; p++) {
        const recs_post_t *post = &ix->posts[p];
        tokens_t *f = &fields[p * NFIELDS];
        for (int k = 0; k < NFIELDS; k++)
            f[k].vocab = &vocab;
        if (post->title)
            recs_tokenize(post->title, strlen(post->title), on_token, &f[F_TITLE]);
        for (int i = 0; i < post->ntags; i++)
            recs_tokenize(post->tags[i], strlen(post->tags[i]), on_token, &f[F_TAGS]);
        if (post->plaintext)
            recs_tokenize(post->plaintext, strlen(post->plaintext), on_token, &f[F_BODY]);
    }
    int V = m->nterms = vocab.n;
    /* Pass 2: per post, per field counts -> tf; document frequencies. */
    int *count = xcalloc((size_t)(V ? V : 1) * NFIELDS, sizeof *count);
    double *tf = xcalloc((size_t)(V ? V : 1), sizeof *tf);
    int *df = xcalloc((size_t)(V ? V : 1), sizeof *df);
    int *touched = xmalloc((size_t)(V ? V : 1) * sizeof *touched);
    buf_t dterm = BUF_INIT, dw = BUF_INIT;
    m->doc_off = xmalloc((size_t)(ix->n + 1) * sizeof *m->doc_off);
    int nnz = 0;
    for (int p = 0; p < ix->n; p++) {
        int nt = 0;
        tokens_t *f = &fields[p * NFIELDS];
        for (int k = 0; k < NFIELDS; k++)
            for (int i = 0; i < f[k].n; i++) {
                int t = f[k].ids[i];
                if (tf[t] == 0) { /* first occurrence in this post */
                    touched[nt++] = t;
                    tf[t] = 1;
                }
                count[t * NFIELDS + k]++;
            }
        qsort(touched, (size_t)nt, sizeof *touched, cmp_int);
        m->doc_off[p] = nnz;
        for (int i = 0; i < nt; i++) {
            int t = touched[i];
            double v = 0;
            for (int k = 0; k < NFIELDS; k++) {
                int c = count[t * NFIELDS + k];
                if (c)
                    v += wf[k] * (1.0 + log((double)c));
                count[t * NFIELDS + k] = 0;
            }
            tf[t] = 0;
            df[t]++;
            buf_append(&dterm, (const char *)&t, sizeof t);
            buf_append(&dw, (const char *)&v, sizeof v);
            nnz++;
        }
    }
    m->doc_off[ix->n] = nnz;
    m->doc_term = (int *)buf_take(&dterm);
    m->doc_w = (double *)buf_take(&dw);
    /* idf, normalisation. */
    for (int p = 0; p < ix->n; p++) {
        double norm = 0;
        for (int j = m->doc_off[p]; j < m->doc_off[p + 1]; j++) {
            int t = m->doc_term[j];
            m->doc_w[j] *= log((1.0 + ix->n) / (1.0 + df[t])) + 1.0;
            norm += m->doc_w[j] * m->doc_w[j];
        }
        norm = sqrt(norm);
        for (int j = m->doc_off[p]; j < m->doc_off[p + 1]; j++)
            m->doc_w[j] = norm > 0 ? m->doc_w[j] / norm : 0;
    }
    /* Postings, in post order. */
    m->post_off = xcalloc((size_t)V + 1, sizeof *m->post_off);
    for (int t = 0; t < V; t++)
        m->post_off[t + 1] = m->post_off[t] + df[t];
    m->post_doc = xmalloc((size_t)(nnz ? nnz : 1) * sizeof *m->post_doc);
    m->post_w = xmalloc((size_t)(nnz ? nnz : 1) * sizeof *m->post_w);
    memset(df, 0, (size_t)(V ? V : 1) * sizeof *df); /* reused as fill counters */
    for (int p = 0; p < ix->n; p++)
        for (int j = m->doc_off[p]; j < m->doc_off[p + 1]; j++) {
            int t = m->doc_term[j], at = m->post_off[t] + df[t]++;
            m->post_doc[at] = p;
            m->post_w[at] = m->doc_w[j];
        }
    if (ix->n <= 65536) {
        m->post_doc16 = xmalloc((size_t)(nnz ? nnz : 1) * sizeof *m->post_doc16);
        m->post_wf = xmalloc((size_t)(nnz ? nnz : 1) * sizeof *m->post_wf);
        for (int j = 0; j < nnz; j++) {
            m->post_doc16[j] = (uint16_t)m->post_doc[j];
            m->post_wf[j] = (float)m->post_w[j];
        }
    }
    m->acc = xcalloc((size_t)(V ? V : 1), sizeof *m->acc);
    m->touched = xmalloc((size_t)(V ? V : 1) * sizeof *m->touched);
    m->rank = xcalloc((size_t)(V ? V : 1), sizeof *m->rank);
    m->prod = xmalloc((size_t)(V ? V : 1) * sizeof *m->prod);
    m->bits = xcalloc((size_t)V / 64 + 1, sizeof *m->bits);
    m->scores = xcalloc((size_t)(ix->n ? ix->n : 1), sizeof *m->scores);
    m->approx = xcalloc((size_t)(ix->n ? ix->n : 1), sizeof *m->approx);
    m->cand = xmalloc((size_t)(ix->n ? ix->n : 1) * sizeof *m->cand);
    m->skip = xcalloc((size_t)(ix->n ? ix->n : 1), 1);
    m->vec = (recs__vectors_t){ V, m->doc_off, m->doc_term, m->doc_w,
                                m->post_off, m->post_doc, m->post_w };
    m->rows = recs__rows_new(&m->vec, ix->n);

    for (int i = 0; i < ix->n * NFIELDS; i++)
        free(fields[i].ids);
    free(fields);
    free(count);
    free(tf);
    free(df);
    free(touched);
    buf_free(&vocab.arena);
    free(vocab.off);
    free(vocab.slots);
    return m;
}

static void v1_free(void *state)
{
    v1_t *m = state;
    if (m == NULL)
        return;
    free(m->doc_off);
    free(m->doc_term);
    free(m->doc_w);
    free(m->post_off);
    free(m->post_doc);
    free(m->post_w);
    free(m->post_doc16);
    free(m->post_wf);
    free(m->acc);
    free(m->touched);
    free(m->rank);
    free(m->prod);
    free(m->bits);
    recs__rows_free(m->rows);
    free(m->scores);
    free(m->approx);
    free(m->cand);
    free(m->skip);
    free(m);
}

/* ---------------------------------------------------------------------------------
 * Recommend
 * ------------------------------------------------------------------------------ */

static void add_doc(v1_t *m, int p, double weight, int *nt)
{
    for (int j = m->doc_off[p]; j < m->doc_off[p + 1]; j++) {
        int t = m->doc_term[j];
        /* Weights are >= 0, so a term's sum stays > 0 once touched and each term
         * is listed once (terms of weight 0, from fields weighted 0, are skipped). */
        if (m->doc_w[j] == 0 || weight == 0)
            continue;
        if (m->acc[t] == 0)
            m->touched[(*nt)++] = t;
        m->acc[t] += weight * m->doc_w[j];
    }
}

void recs__v1_prefetch(void *state, const int *pos, int n)
{
    const v1_t *m = state;
    /* Two rounds: every post's offsets, then the lines of every post's terms
     * and weights (a line holds 16 term ids or 8 weights). */
    for (int i = 0; i < n; i++)
        __builtin_prefetch(&m->doc_off[pos[i]]);
    for (int i = 0; i < n; i++) {
        int a = m->doc_off[pos[i]], b = m->doc_off[pos[i] + 1];
        if (a == b)
            continue;
        for (int j = a; j < b; j += 16)
            __builtin_prefetch(&m->doc_term[j]);
        __builtin_prefetch(&m->doc_term[b - 1]);
        for (int j = a; j < b; j += 8)
            __builtin_prefetch(&m->doc_w[j]);
        __builtin_prefetch(&m->doc_w[b - 1]);
    }
}

/* The request's centroid into acc[] (normalised: acc[t] is the query weight q of
 * term t) and touched[0..nt). */
static void centroid(v1_t *m, const double *params, const recs_input_t *in)
{
    int nt = 0, used = 0, hmax = (int)params[P_HISTORY_MAX];
    double norm = 0;

    /* The centroid's posts: distinct recent reads, newest first, up to
     * history_max (the skip array marks those already taken, cleared again
     * below), then the context. They are chosen first and their vectors
     * fetched together (recs__v1_prefetch), then added in that order. */
    for (int i = 0; i < in->nhistory && used < hmax; i++) {
        int p = in->history[i];
        if (p < 0 || p >= m->ix->n || m->skip[p])
            continue;
        m->skip[p] = 1;
        m->used[used] = p;
        m->usedw[used] = 1.0;
        used++;
    }
    for (int i = 0; i < in->nhistory; i++)
        if (in->history[i] >= 0 && in->history[i] < m->ix->n)
            m->skip[in->history[i]] = 0;
    if (in->context >= 0 && params[P_CONTEXT_WEIGHT] > 0) {
        m->used[used] = in->context;
        m->usedw[used] = params[P_CONTEXT_WEIGHT];
        used++;
    }
    m->nused = used;
    recs__v1_prefetch(m, m->used, used);
    for (int u = 0; u < used; u++)
        add_doc(m, m->used[u], m->usedw[u], &nt);
    for (int i = 0; i < nt; i++)
        norm += m->acc[m->touched[i]] * m->acc[m->touched[i]];
    norm = sqrt(norm);
    for (int i = 0; i < nt; i++) {
        int t = m->touched[i];
        m->acc[t] = norm > 0 ? m->acc[t] / norm : 0;
        m->rank[t] = i + 1;
    }
    m->nt = nt;
    m->norm = norm;
}

void recs__v1_done(void *state)
{
    v1_t *m = state;
    for (int i = 0; i < m->nt; i++) {
        m->acc[m->touched[i]] = 0;
        m->rank[m->touched[i]] = 0;
    }
    m->nt = 0;
    m->nused = 0;
}

/* Every post's score: per term of the centroid, in touched order, add q times
 * the post's weight to the post's sum. This order of additions is the reference
 * (recs@1 as logged); recs__v1_exact reproduces it for one post. */
static void full_scores(v1_t *m, double *scores)
{
    memset(scores, 0, (size_t)m->ix->n * sizeof *scores);
    for (int i = 0; i < m->nt; i++) {
        int t = m->touched[i];
        double q = m->acc[t];
        if (q == 0)
            continue;
        for (int j = m->post_off[t]; j < m->post_off[t + 1]; j++)
            scores[m->post_doc[j]] += q * m->post_w[j];
    }
}

void recs__v1_scores(void *state, const double *params, const recs_input_t *in, double *scores)
{
    v1_t *m = state;
    centroid(m, params, in);
    full_scores(m, scores);
    recs__v1_done(m);
}

/* The approximate pass from similarity rows: post c's score is
 *
 *     (sum over the centroid's posts u of weight(u) * S[u][c]) / norm
 *
 * with S the float rows. Every term is >= 0 (weights, rows) and the true value
 * is a cosine (<= 1), so the float roundings (one per row entry, one per
 * addition, the weight over the norm and the product: at most nused + 5 of
 * them, each relative 2^-24) and the doubles' own (far smaller) add up to less
 * than (nused + 8) 2^-22 in absolute value; 2^-100 covers float underflow. */
typedef float v4f __attribute__((vector_size(16)));

static void rows_approx(v1_t *m, double *margin)
{
    int n = m->ix->n;
    float *restrict a = m->approx;
    m->stamp++;
    *margin = (m->nused + 8) * 0x1p-22 + 0x1p-100;
    if (m->nused == 0 || m->norm == 0) {
        memset(a, 0, (size_t)n * sizeof *a);
        return;
    }
    /* 1 / norm folded into each row's weight: one rounding more per row, no
     * pass of its own. All rows are walked together, four posts at a time (GCC
     * vector extension: SSE on x86-64, plain code elsewhere), so their misses
     * overlap when the rows are not in cache (a node idle between requests). */
    const float *rows[RECS_HISTORY_MAX + 1];
    v4f w[RECS_HISTORY_MAX + 1];
    int nu = m->nused, c = 0;
    for (int u = 0; u < nu; u++) {
        rows[u] = recs__rows_get(m->rows, m->used[u], m->stamp);
        float wu = (float)(m->usedw[u] / m->norm);
        w[u] = (v4f){ wu, wu, wu, wu };
    }
    for (; c + 4 <= n; c += 4) {
        v4f s = { 0, 0, 0, 0 }, r;
        for (int u = 0; u < nu; u++) {
            memcpy(&r, rows[u] + c, sizeof r);
            s += w[u] * r;
        }
        memcpy(a + c, &s, sizeof s);
    }
    for (; c < n; c++) {
        float s = 0;
        for (int u = 0; u < nu; u++)
            s += w[u][0] * rows[u][c];
        a[c] = s;
    }
}

int recs__v1_approx(void *state, const double *params, const recs_input_t *in, double *exact,
                    const float **approx, double *margin)
{
    v1_t *m = state;
    int n = m->ix->n;
    centroid(m, params, in);
    *approx = m->approx;
    if (m->rows) {
        rows_approx(m, margin);
        return 0;
    }
    /* The float sum of nt products of floats rounded from doubles is within
     * gamma(nt + 3) * sum |q w| of the real sum, and so is the double one (much
     * closer); sum |q w| = sum q w <= |q| |w| ~ 1 (both unit vectors). Twice
     * that, plus float underflow, is a safe bound on |approx - exact|. */
    double err = (m->nt + 8) * 0x1p-22;
    if (m->post_doc16 == NULL || err > 0x1p-8) {
        full_scores(m, exact);
        *approx = NULL;
        *margin = 0;
        return 1;
    }
    float *a = m->approx;
    memset(a, 0, (size_t)n * sizeof *a);
    for (int i = 0; i < m->nt; i++) {
        int t = m->touched[i];
        float q = (float)m->acc[t];
        const uint16_t *doc = m->post_doc16;
        const float *w = m->post_wf;
        for (int j = m->post_off[t]; j < m->post_off[t + 1]; j++)
            a[doc[j]] += q * w[j];
    }
    *margin = err + 0x1p-100;
    return 0;
}

double recs__v1_exact(void *state, int p)
{
    v1_t *m = state;
    double s = 0;
    /* full_scores' additions for p, in the same order: the centroid's terms in
     * touched order, each adding q * w. A term the post lacks adds q * 0 = +0,
     * which leaves a sum >= +0 unchanged, so only the post's own terms that the
     * centroid touched are added: their products, placed by rank, are summed in
     * rank order by walking the bitmap of the ranks set. */
    for (int j = m->doc_off[p]; j < m->doc_off[p + 1]; j++) {
        int r = m->rank[m->doc_term[j]];
        if (r == 0)
            continue;
        r--;
        m->prod[r] = m->acc[m->doc_term[j]] * m->doc_w[j];
        m->bits[r >> 6] |= (uint64_t)1 << (r & 63);
    }
    for (int wi = 0; wi <= (m->nt - 1) >> 6 && m->nt > 0; wi++) {
        uint64_t b = m->bits[wi];
        m->bits[wi] = 0;
        while (b) {
            s += m->prod[(wi << 6) + __builtin_ctzll(b)];
            b &= b - 1;
        }
    }
    return s;
}

recs_rows_t *recs__v1_rows(void *state)
{
    return ((v1_t *)state)->rows;
}

int *recs__v1_cand(void *state)
{
    return ((v1_t *)state)->cand;
}

void recs__v1_mark(void *state, const recs_input_t *in, unsigned char on)
{
    v1_t *m = state;
    for (int i = 0; i < in->nhistory; i++)
        if (in->history[i] >= 0 && in->history[i] < m->ix->n)
            m->skip[in->history[i]] = on;
    if (in->context >= 0)
        m->skip[in->context] = on;
}

unsigned char *recs__v1_skip(void *state)
{
    return ((v1_t *)state)->skip;
}

double *recs__v1_scratch(void *state)
{
    return ((v1_t *)state)->scores;
}

static void v1_recommend(void *state, const double *params, const recs_input_t *in,
                         recs_item_t *out, int *nout)
{
    v1_t *m = state;
    double margin;
    const float *approx;
    int exact = recs__v1_approx(m, params, in, m->scores, &approx, &margin);
    recs__v1_mark(m, in, 1);
    if (exact) {
        *nout = recs__top_k(m->ix, m->scores, m->skip, in->k, out);
    } else {
        /* Rescore the shortlist exactly, then rank it as the full list would be. */
        int nc = recs__shortlist(m->ix, approx, m->skip, in->k, margin, m->cand);
        int ahead = nc < RECS_PREFETCH_AHEAD ? nc : RECS_PREFETCH_AHEAD;
        recs__v1_prefetch(m, m->cand, ahead);
        for (int c = 0; c < nc; c++) {
            if (c + ahead < nc)
                recs__v1_prefetch(m, &m->cand[c + ahead], 1);
            m->scores[m->cand[c]] = recs__v1_exact(m, m->cand[c]);
        }
        *nout = recs__top_k_list(m->ix, m->scores, m->cand, nc, in->k, out);
    }
    recs__v1_mark(m, in, 0);
    recs__v1_done(m);
}

const recs_model_ops_t recs_model_v1 = {
    .name = RECS_MODEL_NAME,
    .version = 1,
    .params = v1_params,
    .nparams = V1_NPARAMS,
    .build = v1_build,
    .free = v1_free,
    .recommend = v1_recommend,
};
