/* history_test.c - recs/history.c: view counts, each reader's recent reads
 * (newest first, distinct, at most RECS_HISTORY_MAX) and the least-recently-used
 * bound on the readers kept, checked against a plain reference under churn. */
#include "test.h"

#include <stdio.h>
#include <string.h>

#include "recs/history.h"

TEST(recent_reads_newest_first_distinct_and_bounded)
{
    recs_history_t *h = recs_history_new(0);
    const char *out[RECS_HISTORY_MAX];
    ASSERT_EQ(recs_history_view(h, "r1", "a"), 1);
    ASSERT_EQ(recs_history_view(h, "r1", "b"), 1);
    ASSERT_EQ(recs_history_view(h, "r2", "a"), 2);
    ASSERT_EQ(recs_history_view(h, "r1", "a"), 3); /* a read again: to the front */
    ASSERT_EQ(recs_history_get(h, "r1", out, RECS_HISTORY_MAX), 2);
    ASSERT_STR_EQ(out[0], "a");
    ASSERT_STR_EQ(out[1], "b");
    ASSERT_EQ(recs_history_get(h, "r1", out, 1), 1);
    ASSERT_STR_EQ(out[0], "a");
    ASSERT_EQ(recs_history_get(h, "nobody", out, RECS_HISTORY_MAX), 0);
    ASSERT_EQ(recs_history_get(h, NULL, out, RECS_HISTORY_MAX), 0);
    /* An anonymous view counts, no history; an empty slug is nothing. */
    ASSERT_EQ(recs_history_view(h, NULL, "b"), 2);
    ASSERT_EQ(recs_history_view(h, "r1", ""), 0);
    ASSERT_EQ(recs_history_views(h, "a"), 3);
    ASSERT_EQ(recs_history_views(h, "zzz"), 0);
    /* More distinct reads than kept: the oldest fall off. */
    for (int i = 0; i < RECS_HISTORY_MAX + 5; i++) {
        char slug[16];
        snprintf(slug, sizeof slug, "p%d", i);
        recs_history_view(h, "r3", slug);
    }
    ASSERT_EQ(recs_history_get(h, "r3", out, RECS_HISTORY_MAX), RECS_HISTORY_MAX);
    ASSERT_STR_EQ(out[0], "p36");
    ASSERT_STR_EQ(out[RECS_HISTORY_MAX - 1], "p5");
    ASSERT_EQ(recs_history_readers(h), 3);
    recs_history_free(h);
}

TEST(the_least_recently_viewing_reader_makes_room)
{
    recs_history_t *h = recs_history_new(3);
    const char *out[RECS_HISTORY_MAX];
    recs_history_view(h, "a", "x");
    recs_history_view(h, "b", "x");
    recs_history_view(h, "c", "x");
    recs_history_view(h, "a", "y"); /* a is now the most recent, b the oldest */
    recs_history_view(h, "d", "z");
    ASSERT_EQ(recs_history_readers(h), 3);
    ASSERT_EQ(recs_history_evicted(h), 1);
    ASSERT_EQ(recs_history_get(h, "b", out, RECS_HISTORY_MAX), 0);
    ASSERT_EQ(recs_history_get(h, "a", out, RECS_HISTORY_MAX), 2);
    ASSERT_STR_EQ(out[0], "y");
    ASSERT_EQ(recs_history_get(h, "c", out, RECS_HISTORY_MAX), 1);
    ASSERT_EQ(recs_history_get(h, "d", out, RECS_HISTORY_MAX), 1);
    ASSERT_EQ(recs_history_views(h, "x"), 3); /* b's view still counts */
    /* b comes back: a fresh history; c (oldest now) goes. */
    recs_history_view(h, "b", "w");
    ASSERT_EQ(recs_history_get(h, "b", out, RECS_HISTORY_MAX), 1);
    ASSERT_STR_EQ(out[0], "w");
    ASSERT_EQ(recs_history_get(h, "c", out, RECS_HISTORY_MAX), 0);
    recs_history_free(h);
}

/* The reference: readers in an array ordered by last view, histories as arrays
 * of slug numbers. */
#define NREF 60
typedef struct ref_reader {
    int id;
    int recent[RECS_HISTORY_MAX], n;
} ref_reader_t;

static uint64_t rng = 0x243F6A8885A308D3ULL;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

TEST(lru_matches_a_reference_under_churn)
{
    recs_history_t *h = recs_history_new(NREF);
    ref_reader_t ref[NREF]; /* ref[0] the most recent */
    int nref = 0;
    const char *out[RECS_HISTORY_MAX];
    for (int it = 0; it < 60000; it++) {
        /* 400 readers, a few much more active than the rest. */
        int rd = next_rand() % 4 ? (int)(next_rand() % 30) : (int)(next_rand() % 400);
        int post = (int)(next_rand() % 50);
        char reader[16], slug[16];
        snprintf(reader, sizeof reader, "reader-%d", rd);
        snprintf(slug, sizeof slug, "post-%d", post);
        recs_history_view(h, reader, slug);
        /* The reference. */
        int at = -1;
        for (int i = 0; i < nref; i++)
            if (ref[i].id == rd)
                at = i;
        ref_reader_t r = { rd, { 0 }, 0 };
        if (at >= 0) {
            r = ref[at];
            memmove(&ref[1], &ref[0], (size_t)at * sizeof *ref);
        } else {
            if (nref < NREF)
                nref++;
            memmove(&ref[1], &ref[0], (size_t)(nref - 1) * sizeof *ref);
        }
        int pos = r.n < RECS_HISTORY_MAX ? r.n : RECS_HISTORY_MAX - 1;
        for (int i = 0; i < r.n; i++)
            if (r.recent[i] == post)
                pos = i;
        if (pos == r.n)
            r.n++;
        memmove(&r.recent[1], &r.recent[0], (size_t)pos * sizeof *r.recent);
        r.recent[0] = post;
        ref[0] = r;
        if (it % 997 != 0)
            continue;
        /* Every reader: kept with the same history, or not kept. */
        ASSERT_EQ(recs_history_readers(h), nref);
        for (int id = 0; id < 400; id++) {
            snprintf(reader, sizeof reader, "reader-%d", id);
            int n = recs_history_get(h, reader, out, RECS_HISTORY_MAX), want = -1;
            for (int i = 0; i < nref; i++)
                if (ref[i].id == id)
                    want = i;
            if (want < 0) {
                ASSERT_EQ(n, 0);
                continue;
            }
            ASSERT_EQ(n, ref[want].n);
            for (int i = 0; i < n; i++) {
                snprintf(slug, sizeof slug, "post-%d", ref[want].recent[i]);
                ASSERT_STR_EQ(out[i], slug);
            }
        }
    }
    ASSERT(recs_history_evicted(h) > 1000);
    recs_history_free(h);
}
