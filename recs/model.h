/* model.h - recommendation models: the content index they read, the interface every
 * model version implements, and the versions we have.
 *
 * A model is a pure function of its inputs, so that a logged request can be
 * replayed (oneblog-events replay) and give the same answer bit for bit:
 *
 *     ranked items = recommend(version, params, index, input)
 *
 *   - the index: a content snapshot (recs_index_t: posts with id, slug, title,
 *     tags, plaintext, published_at), identified by its digest;
 *   - the params: one double per parameter of the version (recs_param_def_t);
 *   - the input: the reader's recent reads (newest first), the post being read,
 *     k, the request time and, for v2, page-view counts per post.
 *
 * Determinism: no randomness, no clock, no hash-table iteration order; floating
 * sums are taken in an order fixed by the index (terms in order of first
 * appearance, posts in id order). Ties are broken by post id, ascending.
 *
 * Versions:
 *   recs@1  content-based: TF-IDF over title, tags and body (field weights are
 *           params), cosine similarity of each post to the centroid of the
 *           reader's recent reads and the context post (model_v1.c).
 *   recs@2  recs@1's cosine blended with recency (exponential decay of the age
 *           since publication, half-life a param) and popularity (page views,
 *           log-scaled) (model_v2.c).
 *
 * Threading: a built model keeps scratch buffers, so one thread at a time uses it.
 * Memory: allocation through common/buf.h (aborts on exhaustion).
 */
#ifndef ONEBLOG_RECS_MODEL_H
#define ONEBLOG_RECS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECS_MODEL_NAME "recs"
#define RECS_VERSIONS 2        /* versions 1..RECS_VERSIONS exist */
#define RECS_MAX_PARAMS 16
#define RECS_K_MAX 50          /* items in one answer */
#define RECS_HISTORY_MAX 32    /* recent reads a caller may pass */
#define RECS_DIGEST_LEN 64     /* hex SHA-256 */

/* ---------------------------------------------------------------------------------
 * The content index (index.c)
 * ------------------------------------------------------------------------------ */

typedef struct recs_post {
    int64_t id;
    char *slug, *title;
    char **tags;          /* tag names, in the CMS's order */
    int ntags;
    char *plaintext;      /* the body without markup */
    int64_t published_at; /* s since the epoch; 0 = unknown */
} recs_post_t;

typedef struct recs_index {
    recs_post_t *posts;   /* sorted by id, ascending; ids and slugs unique */
    int n;
    /* SHA-256 (hex) of the slugs in index order, each followed by '\n': the same
     * digest events/event.c logs as input.candidates_digest, so a logged request
     * names its content snapshot. */
    char digest[RECS_DIGEST_LEN + 1];
    /* private */
    int *slots;           /* open addressing: slug -> position + 1 */
    size_t nslots;
} recs_index_t;

/* Build an index from n posts. Takes ownership of the array and the posts' strings
 * (everything freed by recs_index_free). Posts are sorted by id; a post whose id
 * or slug repeats an earlier one, or without a slug, is dropped. Returns the index
 * (never NULL). */
recs_index_t *recs_index_new(recs_post_t *posts, int n);
void recs_index_free(recs_index_t *ix); /* NULL allowed */

/* Position of the post with this slug, or -1. */
int recs_index_find(const recs_index_t *ix, const char *slug);
/* pos[i] = recs_index_find(ix, slugs[i]) for i < n, with the memory loads of the
 * lookups overlapped (faster when the index is not in cache). */
void recs_index_find_n(const recs_index_t *ix, const char *const *slugs, int n, int *pos);

/* Free the strings of one post (not the struct itself). */
void recs_post_clear(recs_post_t *p);

/* The digest of a list of slugs (as recs_index_t.digest). */
void recs_digest_slugs(const char *const *slugs, size_t n, char out[RECS_DIGEST_LEN + 1]);

/* ---------------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------------ */

typedef struct recs_param_def {
    const char *name;
    double def, min, max;
    const char *doc;
} recs_param_def_t;

/* A model's input. Positions are indexes into recs_index_t.posts. */
typedef struct recs_input {
    const int *history;     /* recent reads, newest first (duplicates allowed) */
    int nhistory;
    int context;            /* the post being read, or -1 */
    int k;                  /* 1..RECS_K_MAX */
    int64_t now_ms;         /* the request's time (v2: recency) */
    const uint32_t *views;  /* page views per position (v2: popularity); NULL = none */
} recs_input_t;

typedef struct recs_item {
    int pos;        /* position in the index */
    double score;
} recs_item_t;

typedef struct recs_model_ops {
    const char *name;  /* RECS_MODEL_NAME */
    int version;
    const recs_param_def_t *params;
    int nparams;
    /* Build the model's state over ix (borrowed for the state's lifetime). */
    void *(*build)(const recs_index_t *ix, const double *params);
    void (*free)(void *state);
    /* Rank: fill out[0..*nout) with at most in->k items, best first. */
    void (*recommend)(void *state, const double *params, const recs_input_t *in,
                      recs_item_t *out, int *nout);
} recs_model_ops_t;

typedef struct recs_model {
    const recs_model_ops_t *ops;
    const recs_index_t *ix;           /* borrowed */
    double params[RECS_MAX_PARAMS];   /* ops->nparams values */
    /* private */
    void *state;
} recs_model_t;

extern const recs_model_ops_t recs_model_v1;
extern const recs_model_ops_t recs_model_v2;

/* The ops of a version, or NULL. */
const recs_model_ops_t *recs_model_ops(int version);

/* Default params of a version into params[0..nparams). Returns nparams or -EINVAL. */
int recs_params_default(int version, double *params);

/* Apply "name=value,name=value" overrides (e.g. from ONEBLOG_RECS_V2_PARAMS) to
 * params. Returns 0, or -EINVAL with a message in err (unknown name, a value out
 * of the parameter's range, bad syntax); params are unchanged then. */
int recs_params_parse(int version, const char *text, double *params, char *err, size_t errlen);

/* Build a model of `version` over ix (borrowed: it must outlive the model) with
 * params (NULL: the defaults). Returns 0 and *out, or -EINVAL (no such version,
 * a param out of range). */
int recs_model_new(int version, const recs_index_t *ix, const double *params,
                   recs_model_t **out);
void recs_model_free(recs_model_t *m); /* NULL allowed */

/* Rank for `in`; out has room for in->k items (k is clamped to 1..RECS_K_MAX).
 * Returns the number of items. Never includes in->context or a post of the
 * history. Deterministic: same model, index and input -> same output. */
int recs_model_recommend(recs_model_t *m, const recs_input_t *in, recs_item_t *out);

/* The memory recs@1 (and recs@2's recs@1 part) may use per model for similarity
 * rows (model_rows.c): models built afterwards keep every row when n * n * 4
 * bytes fit, else a cache of the most recently used rows, else none. Only speed
 * depends on it, never an answer. Default RECS_ROW_CACHE_DEFAULT (per model: a
 * server holds one per version); 0 turns the rows off. Not thread-safe: call it
 * before building models. Building every row costs about 4.5 ms per model for
 * 1,000 posts (it grows as the square of the posts). */
#define RECS_ROW_CACHE_DEFAULT ((size_t)32 << 20)
void recs_model_set_row_cache(size_t bytes);

/* "recs@2" into out (at least 16 bytes). */
void recs_model_label(int version, char *out, size_t len);

/* Parse "recs@N" (or "N"). Returns N or -EINVAL. */
int recs_model_parse_label(const char *s);

#endif /* ONEBLOG_RECS_MODEL_H */
