/* model_test.c - recs/model*.c and index.c: the index, TF-IDF similarity, the
 * tie rule, exclusions, parameters, determinism (twice in one process and across
 * processes) and recs@2's recency and popularity effects. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "recs/model.h"

static recs_post_t mkpost(int64_t id, const char *slug, const char *title, const char *tags,
                          const char *body, int64_t published_at)
{
    recs_post_t p = { 0 };
    p.id = id;
    p.slug = xstrdup(slug);
    p.title = xstrdup(title);
    if (tags && *tags) {
        p.tags = xmalloc(sizeof(char *));
        p.tags[0] = xstrdup(tags);
        p.ntags = 1;
    }
    p.plaintext = xstrdup(body);
    p.published_at = published_at;
    return p;
}

#define DAY 86400
#define NOW_S 1800000000LL

/* Five posts: two about Erlang processes, two about SQL databases, one about cats. */
static recs_index_t *small_index(void)
{
    recs_post_t *v = xmalloc(6 * sizeof *v);
    v[0] = mkpost(40, "sqlite-wal", "SQLite WAL mode", "databases",
                  "sqlite write ahead log readers writers database durability", NOW_S - 300 * DAY);
    v[1] = mkpost(10, "beam-processes", "Processes on the BEAM", "erlang",
                  "erlang processes mailbox scheduler lightweight processes", NOW_S - 200 * DAY);
    v[2] = mkpost(30, "gen-server", "A gentle gen_server", "erlang",
                  "gen_server call cast erlang processes supervisor mailbox", NOW_S - 100 * DAY);
    v[3] = mkpost(20, "postgres-pools", "PostgreSQL pools", "databases",
                  "postgresql connection pool database queries writers", NOW_S - 50 * DAY);
    v[4] = mkpost(50, "cats", "Our office cats", "life", "cats sleep on keyboards", NOW_S - 1 * DAY);
    v[5] = mkpost(10, "duplicate-id", "dup", "", "dup", 0); /* dropped: id 10 again */
    return recs_index_new(v, 6);
}

static int rec(recs_model_t *m, const int *hist, int nh, int ctx, int k, const uint32_t *views,
               recs_item_t *out)
{
    recs_input_t in = { hist, nh, ctx, k, NOW_S * 1000, views };
    return recs_model_recommend(m, &in, out);
}

TEST(index_sorts_by_id_drops_duplicates_and_finds_slugs)
{
    recs_index_t *ix = small_index();
    ASSERT_EQ(ix->n, 5);
    for (int i = 1; i < ix->n; i++)
        ASSERT_LT(ix->posts[i - 1].id, ix->posts[i].id);
    ASSERT_EQ(recs_index_find(ix, "beam-processes"), 0);
    ASSERT_EQ(recs_index_find(ix, "cats"), 4);
    ASSERT_EQ(recs_index_find(ix, "duplicate-id"), -1);
    ASSERT_EQ(recs_index_find(ix, "nope"), -1);
    /* The digest is the candidates digest of events/event.c: sha256("slug\n"...). */
    const char *slugs[] = { "beam-processes", "postgres-pools", "gen-server", "sqlite-wal", "cats" };
    char d[RECS_DIGEST_LEN + 1];
    recs_digest_slugs(slugs, 5, d);
    ASSERT_STR_EQ(ix->digest, d);
    ASSERT_EQ(strlen(d), 64u);
    recs_index_free(ix);
}

/* The batched lookup (a request's history) gives recs_index_find's answers, in
 * order, across its batches of 64, for slugs in the index, slugs that are not,
 * a dropped duplicate and NULL; with no index every answer is -1. */
TEST(index_find_n_gives_the_single_lookups_answers)
{
    recs_index_t *ix = small_index();
    const char *known[] = { "sqlite-wal", "nope", "cats", "duplicate-id", "gen-server",
                            NULL, "beam-processes", "", "postgres-pools", "cat" };
    const char *slugs[150];
    int pos[150], expect[150];
    for (int i = 0; i < 150; i++) {
        slugs[i] = known[(i * 7) % 10];
        expect[i] = slugs[i] ? recs_index_find(ix, slugs[i]) : -1;
    }
    recs_index_find_n(ix, slugs, 150, pos);
    int found = 0;
    for (int i = 0; i < 150; i++) {
        ASSERT_EQ(pos[i], expect[i]);
        found += pos[i] >= 0;
    }
    ASSERT_EQ(found, 75); /* 5 of every 10 */
    ASSERT_EQ(pos[0], 3);  /* sqlite-wal: id 40, fourth by id */
    recs_index_find_n(ix, slugs, 0, pos); /* nothing to do */
    recs_index_find_n(NULL, slugs, 150, pos);
    for (int i = 0; i < 150; i++)
        ASSERT_EQ(pos[i], -1);
    recs_index_free(ix);
}

TEST(v1_ranks_similar_content_first_and_excludes_read_and_context)
{
    recs_index_t *ix = small_index();
    recs_model_t *m;
    recs_item_t out[RECS_K_MAX];
    ASSERT_EQ(recs_model_new(1, ix, NULL, &m), 0);
    int hist[] = { recs_index_find(ix, "beam-processes") };
    int n = rec(m, hist, 1, -1, 4, NULL, out);
    ASSERT_EQ(n, 4);
    ASSERT_STR_EQ(ix->posts[out[0].pos].slug, "gen-server");
    ASSERT(out[0].score > 0.1); /* (ASSERT_GT compares as integers) */
    ASSERT(out[0].score <= 1.0 + 1e-12);
    for (int i = 0; i < n; i++)
        ASSERT_NE(out[i].pos, hist[0]);
    for (int i = 1; i < n; i++)
        ASSERT(out[i - 1].score >= out[i].score);
    /* Having read about PostgreSQL, now on the cats post: SQLite comes first
     * (shares "database" and "writers"), and neither the history nor the context
     * is returned. */
    int h2[] = { recs_index_find(ix, "postgres-pools") };
    int ctx = recs_index_find(ix, "cats");
    n = rec(m, h2, 1, ctx, 5, NULL, out);
    ASSERT_EQ(n, 3);
    ASSERT_STR_EQ(ix->posts[out[0].pos].slug, "sqlite-wal");
    for (int i = 0; i < n; i++)
        ASSERT(out[i].pos != h2[0] && out[i].pos != ctx);
    recs_model_free(m);
    recs_index_free(ix);
}

TEST(v1_cosine_of_a_post_with_itself_is_one_and_cold_start_ties_break_by_id)
{
    recs_index_t *ix = small_index();
    recs_model_t *m;
    recs_item_t out[RECS_K_MAX];
    ASSERT_EQ(recs_model_new(1, ix, NULL, &m), 0);
    int n = rec(m, NULL, 0, -1, 5, NULL, out);
    ASSERT_EQ(n, 5);
    for (int i = 0; i < n; i++) {
        ASSERT(out[i].score == 0.0);
        ASSERT_EQ(out[i].pos, i); /* id order */
    }
    recs_model_free(m);
    recs_index_free(ix);

    recs_post_t *v = xmalloc(2 * sizeof *v);
    v[0] = mkpost(2, "twin-b", "Same words", "t", "identical body text here", 0);
    v[1] = mkpost(1, "twin-a", "Same words", "t", "identical body text here", 0);
    ix = recs_index_new(v, 2);
    ASSERT_EQ(recs_model_new(1, ix, NULL, &m), 0);
    int ctx = 0;
    n = rec(m, NULL, 0, ctx, 1, NULL, out);
    ASSERT_EQ(n, 1);
    ASSERT(fabs(out[0].score - 1.0) < 1e-12);
    recs_model_free(m);
    recs_index_free(ix);
}

TEST(field_weights_are_params)
{
    /* Query post shares its title words with A and its body words with B. */
    recs_post_t *v = xmalloc(3 * sizeof *v);
    v[0] = mkpost(1, "q", "supervisor restarts", "", "flamingo umbrella", 0);
    v[1] = mkpost(2, "a", "supervisor restarts", "", "nothing common", 0);
    v[2] = mkpost(3, "b", "other heading", "", "flamingo umbrella", 0);
    recs_index_t *ix = recs_index_new(v, 3);
    recs_model_t *m;
    recs_item_t out[4];
    double p[RECS_MAX_PARAMS];
    recs_params_default(1, p);
    ASSERT_EQ(recs_model_new(1, ix, p, &m), 0);
    int h[] = { 0 };
    ASSERT_EQ(rec(m, h, 1, -1, 2, NULL, out), 2);
    ASSERT_STR_EQ(ix->posts[out[0].pos].slug, "a"); /* title weighs 3, body 1 */
    recs_model_free(m);
    char err[128];
    ASSERT_EQ(recs_params_parse(1, "w_title=0.5,w_body=4", p, err, sizeof err), 0);
    ASSERT_EQ(recs_model_new(1, ix, p, &m), 0);
    ASSERT_EQ(rec(m, h, 1, -1, 2, NULL, out), 2);
    ASSERT_STR_EQ(ix->posts[out[0].pos].slug, "b");
    recs_model_free(m);
    ASSERT_EQ(recs_params_parse(1, "w_nope=1", p, err, sizeof err), -EINVAL);
    ASSERT_EQ(recs_params_parse(1, "w_title=-1", p, err, sizeof err), -EINVAL);
    ASSERT_EQ(recs_params_parse(2, "w_sim=2", p, err, sizeof err), -EINVAL);
    ASSERT_EQ(recs_params_parse(1, "w_title", p, err, sizeof err), -EINVAL);
    ASSERT(p[0] == 0.5); /* failed parses changed nothing */
    recs_index_free(ix);
}

/* A bigger synthetic corpus: deterministic pseudo-random words. */
static recs_index_t *synthetic_index(int n)
{
    static const char *words[] = {
        "erlang", "process", "mailbox", "supervisor", "restart", "sqlite", "postgres",
        "index", "query", "latency", "cache", "theme", "template", "feed", "markdown",
        "schedule", "timezone", "deploy", "canary", "rollback", "cluster", "gossip",
        "cookie", "handshake", "epmd", "scheduler", "stack", "memory", "fsync", "segment",
        "hash", "chain", "replay", "model", "cosine", "vector", "caf\xc3\xa9", "na\xc3\xafve",
    };
    const int nw = (int)(sizeof words / sizeof *words);
    uint64_t s = 12345;
    recs_post_t *v = xmalloc((size_t)n * sizeof *v);
    for (int i = 0; i < n; i++) {
        buf_t body = BUF_INIT, title = BUF_INIT;
        char slug[32], tag[32];
        for (int w = 0; w < 60; w++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            buf_printf(&body, "%s ", words[(s >> 33) % (uint64_t)nw]);
            if (w < 4)
                buf_printf(&title, "%s ", words[(s >> 40) % (uint64_t)nw]);
        }
        snprintf(slug, sizeof slug, "post-%d", i);
        snprintf(tag, sizeof tag, "%s", words[i % nw]);
        v[i] = mkpost(1000 + (int64_t)((i * 7919) % n), slug, title.data, tag, body.data,
                      NOW_S - (int64_t)i * DAY);
        buf_free(&body);
        buf_free(&title);
    }
    return recs_index_new(v, n);
}

/* Output of both versions for a few inputs, as bytes (positions and scores). */
static void run_all(buf_t *out)
{
    recs_index_t *ix = synthetic_index(1000);
    uint32_t *views = xcalloc((size_t)ix->n, sizeof *views);
    for (int i = 0; i < ix->n; i++)
        views[i] = (uint32_t)((i * 37) % 101);
    for (int ver = 1; ver <= 2; ver++) {
        recs_model_t *m;
        recs_item_t items[RECS_K_MAX];
        ASSERT_EQ(recs_model_new(ver, ix, NULL, &m), 0);
        for (int r = 0; r < 20; r++) {
            int hist[5] = { r, r * 3 + 1, r * 7 + 2, r, 999 - r };
            int n = rec(m, hist, r % 6, r % 3 ? r * 11 : -1, 10, views, items);
            /* Field by field: the struct's padding bytes are not part of it. */
            buf_append(out, (const char *)&n, sizeof n);
            for (int i = 0; i < n; i++) {
                buf_append(out, (const char *)&items[i].pos, sizeof items[i].pos);
                buf_append(out, (const char *)&items[i].score, sizeof items[i].score);
            }
        }
        recs_model_free(m);
    }
    free(views);
    recs_index_free(ix);
}

TEST(deterministic_twice_in_one_process_and_across_processes)
{
    buf_t a = BUF_INIT, b = BUF_INIT, c = BUF_INIT;
    run_all(&a);
    run_all(&b);
    ASSERT_EQ(a.len, b.len);
    ASSERT(memcmp(a.data, b.data, a.len) == 0);
    /* Another process: a fresh address space builds the model again. */
    int fd[2];
    ASSERT_EQ(pipe(fd), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        buf_t o = BUF_INIT;
        run_all(&o);
        size_t off = 0;
        while (off < o.len) {
            ssize_t w = write(fd[1], o.data + off, o.len - off);
            if (w <= 0)
                _exit(1);
            off += (size_t)w;
        }
        _exit(0);
    }
    close(fd[1]);
    char tmp[65536];
    ssize_t r;
    while ((r = read(fd[0], tmp, sizeof tmp)) > 0)
        buf_append(&c, tmp, (size_t)r);
    close(fd[0]);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_EQ(c.len, a.len);
    ASSERT(memcmp(a.data, c.data, a.len) == 0);
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
}

TEST(ties_are_broken_by_id_whatever_the_input_order)
{
    recs_post_t *v = xmalloc(4 * sizeof *v);
    v[0] = mkpost(9, "d", "same", "", "same words", 0);
    v[1] = mkpost(3, "b", "same", "", "same words", 0);
    v[2] = mkpost(7, "c", "same", "", "same words", 0);
    v[3] = mkpost(1, "a", "query", "", "same words", 0);
    recs_index_t *ix = recs_index_new(v, 4);
    recs_model_t *m;
    recs_item_t out[4];
    ASSERT_EQ(recs_model_new(1, ix, NULL, &m), 0);
    int h[] = { recs_index_find(ix, "a") };
    ASSERT_EQ(rec(m, h, 1, -1, 3, NULL, out), 3);
    ASSERT(out[0].score == out[1].score && out[1].score == out[2].score);
    ASSERT_EQ(ix->posts[out[0].pos].id, 3);
    ASSERT_EQ(ix->posts[out[1].pos].id, 7);
    ASSERT_EQ(ix->posts[out[2].pos].id, 9);
    recs_model_free(m);
    recs_index_free(ix);
}

TEST(v2_recency_favours_new_posts)
{
    /* Same content, different ages: v1 ties (id order), v2 puts the newest first. */
    recs_post_t *v = xmalloc(4 * sizeof *v);
    v[0] = mkpost(1, "old", "topic words", "", "alpha beta gamma", NOW_S - 400 * DAY);
    v[1] = mkpost(2, "mid", "topic words", "", "alpha beta gamma", NOW_S - 40 * DAY);
    v[2] = mkpost(3, "new", "topic words", "", "alpha beta gamma", NOW_S - 1 * DAY);
    v[3] = mkpost(4, "ctx", "topic words", "", "alpha beta gamma", NOW_S);
    recs_index_t *ix = recs_index_new(v, 4);
    recs_model_t *m1, *m2;
    recs_item_t out[4];
    ASSERT_EQ(recs_model_new(1, ix, NULL, &m1), 0);
    ASSERT_EQ(recs_model_new(2, ix, NULL, &m2), 0);
    ASSERT_EQ(rec(m1, NULL, 0, 3, 3, NULL, out), 3);
    ASSERT_STR_EQ(ix->posts[out[0].pos].slug, "old");
    ASSERT_EQ(rec(m2, NULL, 0, 3, 3, NULL, out), 3);
    ASSERT_STR_EQ(ix->posts[out[0].pos].slug, "new");
    ASSERT_STR_EQ(ix->posts[out[1].pos].slug, "mid");
    ASSERT_STR_EQ(ix->posts[out[2].pos].slug, "old");
    /* The new post's recency is 2^(-1/30): score = 0.6 * 1 + 0.2 * that. */
    ASSERT(fabs(out[0].score - (0.6 + 0.2 * exp2(-1.0 / 30))) < 1e-9);
    recs_model_free(m1);
    recs_model_free(m2);
    recs_index_free(ix);
}

TEST(v2_popularity_from_views)
{
    recs_post_t *v = xmalloc(4 * sizeof *v);
    v[0] = mkpost(1, "a", "topic words", "", "alpha beta gamma", NOW_S - 10 * DAY);
    v[1] = mkpost(2, "b", "topic words", "", "alpha beta gamma", NOW_S - 10 * DAY);
    v[2] = mkpost(3, "c", "topic words", "", "alpha beta gamma", NOW_S - 10 * DAY);
    v[3] = mkpost(4, "ctx", "topic words", "", "alpha beta gamma", NOW_S);
    recs_index_t *ix = recs_index_new(v, 4);
    recs_model_t *m2;
    recs_item_t out[4];
    ASSERT_EQ(recs_model_new(2, ix, NULL, &m2), 0);
    uint32_t views[4] = { 1, 100, 10, 0 };
    ASSERT_EQ(rec(m2, NULL, 0, 3, 3, views, out), 3);
    ASSERT_STR_EQ(ix->posts[out[0].pos].slug, "b");
    ASSERT_STR_EQ(ix->posts[out[1].pos].slug, "c");
    ASSERT_STR_EQ(ix->posts[out[2].pos].slug, "a");
    /* Popularity weight 0: back to the id order. */
    double p[RECS_MAX_PARAMS];
    char err[128];
    recs_params_default(2, p);
    ASSERT_EQ(recs_params_parse(2, "w_popularity=0", p, err, sizeof err), 0);
    recs_model_free(m2);
    ASSERT_EQ(recs_model_new(2, ix, p, &m2), 0);
    ASSERT_EQ(rec(m2, NULL, 0, 3, 3, views, out), 3);
    ASSERT_STR_EQ(ix->posts[out[0].pos].slug, "a");
    recs_model_free(m2);
    recs_index_free(ix);
}

TEST(labels_and_k_limits)
{
    char l[16];
    recs_model_label(2, l, sizeof l);
    ASSERT_STR_EQ(l, "recs@2");
    ASSERT_EQ(recs_model_parse_label("recs@1"), 1);
    ASSERT_EQ(recs_model_parse_label("2"), 2);
    ASSERT_EQ(recs_model_parse_label("recs@3"), -EINVAL);
    ASSERT_EQ(recs_model_parse_label("foo@1"), -EINVAL);
    recs_index_t *ix = synthetic_index(100);
    recs_model_t *m;
    recs_item_t out[RECS_K_MAX];
    ASSERT_EQ(recs_model_new(2, ix, NULL, &m), 0);
    ASSERT_EQ(rec(m, NULL, 0, -1, 1000, NULL, out), RECS_K_MAX);
    ASSERT_EQ(rec(m, NULL, 0, -1, 0, NULL, out), 1);
    recs_model_free(m);
    ASSERT_EQ(recs_model_new(3, ix, NULL, &m), -EINVAL);
    recs_index_free(ix);
}
