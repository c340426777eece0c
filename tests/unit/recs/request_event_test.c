/* request_event_test.c - recs/request_event.c: the recs.request event's bytes are
 * ev_event_encode's for the same fields (the contract replay and every reader of
 * the log rely on), over random shapes: history 0..32, traced or not, with or
 * without a context post, candidates inline or as a digest, 1..50 items, the
 * parameters of either model version. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events/event.h"
#include "recs/model.h"
#include "recs/request_event.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Strings that stay alive for one case. */
static char pool[200][40];

static const char *slug(int i)
{
    snprintf(pool[i], sizeof pool[i], "post-%d-%s", rnd(100000), i % 3 ? "x" : "é");
    return pool[i];
}

/* The same event through the ev_event API. */
static void reference(const recs_request_event_t *e, bson_t *out, char id[EV_ID_LEN + 1])
{
    ev_event_t *ev;
    bson_t params = BSON_INITIALIZER;
    ASSERT_EQ(ev_event_new("recs.request", &ev), 0);
    snprintf(id, EV_ID_LEN + 1, "%s", ev_event_id(ev));
    ASSERT_EQ(ev_event_set_ts_ms(ev, e->ts_ms), 0);
    if (e->trace_id)
        ASSERT_EQ(ev_event_set_trace(ev, e->trace_id, e->span_id), 0);
    ASSERT_EQ(ev_event_set_actor(ev, e->actor), 0);
    ASSERT_EQ(ev_event_set_node(ev, e->node), 0);
    for (int i = 0; i < e->nparams; i++)
        BSON_APPEND_DOUBLE(&params, e->param_names[i], e->params[i]);
    ASSERT_EQ(ev_event_set_model(ev, e->model_name, e->model_version, &params), 0);
    if (e->ncandidates <= EV_MAX_INLINE_CANDIDATES)
        ASSERT_EQ(ev_event_set_input(ev, e->history, (size_t)e->nhistory, e->context_post,
                                     e->candidates, (size_t)e->ncandidates),
                  0);
    else
        ASSERT_EQ(ev_event_set_input_digest(ev, e->history, (size_t)e->nhistory,
                                            e->context_post, e->candidates_digest,
                                            (size_t)e->ncandidates),
                  0);
    for (int i = 0; i < e->nout; i++)
        ASSERT_EQ(ev_event_add_output(ev, e->out_posts[i], e->out_scores[i]), 0);
    ASSERT_EQ(ev_event_set_latency_us(ev, e->latency_us), 0);
    bson_t *d = ev_event_data(ev);
    BSON_APPEND_UTF8(d, "variant", e->variant);
    BSON_APPEND_INT32(d, "k", e->k);
    BSON_APPEND_INT32(d, "bucket", e->bucket);
    BSON_APPEND_DOUBLE(d, "share", e->share);
    BSON_APPEND_UTF8(d, "server_vsn", e->server_vsn);
    BSON_APPEND_UTF8(d, "snapshot", e->snapshot);
    BSON_APPEND_INT64(d, "content_version", e->content_version);
    BSON_APPEND_INT64(d, "views_from", e->views_from);
    BSON_APPEND_INT64(d, "views_to", e->views_to);
    ev_event_encode(ev, out);
    ev_event_free(ev);
    bson_destroy(&params);
}

TEST(bytes_are_ev_event_encode_s)
{
    static const char digest[] =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for (int c = 0; c < 500; c++) {
        int version = 1 + (int)rnd(2);
        const recs_model_ops_t *ops = recs_model_ops(version);
        const char *names[RECS_MAX_PARAMS], *hist[RECS_HISTORY_MAX], *cand[64];
        const char *posts[RECS_K_MAX];
        double params[RECS_MAX_PARAMS], scores[RECS_K_MAX];
        int s = 0;
        for (int i = 0; i < ops->nparams; i++) {
            names[i] = ops->params[i].name;
            params[i] = (double)rnd(1000) / 7.0 - 50;
        }
        int nh = (int)rnd(RECS_HISTORY_MAX + 1), nout = 1 + (int)rnd(RECS_K_MAX);
        for (int i = 0; i < nh; i++)
            hist[i] = slug(s++);
        bool inline_cands = rnd(2);
        int64_t ncand = inline_cands ? (int64_t)rnd(65) : 65 + (int64_t)rnd(100000);
        for (int i = 0; inline_cands && i < ncand; i++)
            cand[i] = slug(s++);
        for (int i = 0; i < nout; i++) {
            posts[i] = slug(s++);
            scores[i] = rnd(3) ? (double)rnd(1u << 30) / (1u << 30) : -1e-300 * rnd(5);
        }
        char label[16];
        recs_model_label(version, label, sizeof label);
        recs_request_event_t e = {
            .ts_ms = 1700000000000 + rnd(1u << 30),
            .trace_id = rnd(2) ? "0af7651916cd43dd8448eb211c80319c" : NULL,
            .span_id = rnd(2) ? "b7ad6b7169203331" : "0000000000000000",
            .actor = rnd(2) ? "reader-1" : "ünïcode reader",
            .node = "recs@127.0.0.1",
            .model_name = RECS_MODEL_NAME,
            .model_version = version == 1 ? "1" : "2",
            .param_names = names,
            .params = params,
            .nparams = ops->nparams,
            .history = hist,
            .nhistory = nh,
            .context_post = rnd(2) ? slug(s++) : NULL,
            .candidates = cand,
            .candidates_digest = digest,
            .ncandidates = ncand,
            .out_posts = posts,
            .out_scores = scores,
            .nout = nout,
            .latency_us = rnd(100000),
            .variant = label,
            .k = 1 + (int32_t)rnd(50),
            .bucket = (int32_t)rnd(10000),
            .share = rnd(2) ? 0.5 : 0.0,
            .server_vsn = "2",
            .snapshot = digest,
            .content_version = rnd(1000),
            .views_from = 1 + rnd(10),
            .views_to = rnd(1000000),
        };
        bson_t ref;
        char id[EV_ID_LEN + 1];
        reference(&e, &ref, id);
        e.id = id;
        uint8_t *got;
        size_t len;
        recs_request_event_encode(&e, &got, &len);
        ASSERT_EQ(len, (size_t)ref.len);
        ASSERT_EQ(memcmp(got, bson_get_data(&ref), len), 0);
        ASSERT_EQ(ev_event_validate(got, len), 0);
        free(got);
        bson_destroy(&ref);
    }
}

TEST(no_item_is_an_empty_output_array)
{
    const char *names[1] = { "w" };
    double params[1] = { 1 };
    recs_request_event_t e = {
        .id = "01J00000000000000000000000", .ts_ms = 1, .actor = "r", .node = "n@h",
        .model_name = RECS_MODEL_NAME, .model_version = "1", .param_names = names,
        .params = params, .nparams = 1, .ncandidates = 0, .nout = 0, .variant = "recs@1",
        .server_vsn = "2", .snapshot = "",
    };
    uint8_t *got;
    size_t len;
    recs_request_event_encode(&e, &got, &len);
    ASSERT_EQ(ev_event_validate(got, len), 0);
    bson_t b;
    bson_iter_t it, sub;
    ASSERT(bson_init_static(&b, got, len));
    ASSERT(bson_iter_init_find(&it, &b, "output"));
    ASSERT(BSON_ITER_HOLDS_ARRAY(&it));
    ASSERT(bson_iter_recurse(&it, &sub));
    ASSERT(!bson_iter_next(&sub));
    ASSERT(bson_iter_init_find(&it, &b, "input"));
    ASSERT(bson_iter_recurse(&it, &sub));
    ASSERT(bson_iter_find(&sub, "candidates"));
    free(got);
}
