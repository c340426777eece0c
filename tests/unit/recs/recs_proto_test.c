/* recs_proto_test.c - recs/recs_proto.c: the `recs` request and reply codecs.
 * Round trips; every malformed request (wrong shape, unknown key, bad k, empty or
 * oversized reader, wrong types, every truncation) is -EINVAL and leaves the
 * caller's index where it was; trace parsing. */
#include "test.h"

#include <errno.h>
#include <string.h>

#include "cnode/term.h"
#include "recs/recs_proto.h"

static int decode_x(const ei_x_buff *x, recs_req_t *q, int *idx)
{
    *idx = 0;
    int v;
    if (ei_decode_version(x->buff, idx, &v) < 0)
        return -EPROTO;
    return recs_req_decode(x->buff, idx, q);
}

TEST(request_round_trip)
{
    recs_req_t q = { .k = 7 }, out;
    strcpy(q.reader, "0123456789abcdef");
    strcpy(q.post, "hello-world");
    strcpy(q.trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    ei_x_buff x;
    ASSERT_EQ(ei_x_new_with_version(&x), 0);
    ASSERT_EQ(recs_req_encode(&x, &q), 0);
    int idx;
    ASSERT_EQ(decode_x(&x, &out, &idx), 0);
    ASSERT_EQ(idx, x.index);
    ASSERT_EQ(strcmp(out.reader, q.reader), 0);
    ASSERT_EQ(strcmp(out.post, q.post), 0);
    ASSERT_EQ(strcmp(out.trace, q.trace), 0);
    ASSERT_EQ(out.k, 7);

    /* Optional fields: post and trace absent, k defaults. */
    recs_req_t m = { .k = RECS_K_DEFAULT };
    strcpy(m.reader, "r");
    x.index = 0;
    ei_x_encode_version(&x);
    ASSERT_EQ(recs_req_encode(&x, &m), 0);
    ASSERT_EQ(decode_x(&x, &out, &idx), 0);
    ASSERT_EQ(out.post[0], '\0');
    ASSERT_EQ(out.trace[0], '\0');
    ASSERT_EQ(out.k, RECS_K_DEFAULT);
    ei_x_free(&x);
}

/* Build {recommend, #{...}} with one field replaced by `bad`. */
typedef void (*mk_fn)(ei_x_buff *x);

static void m_not_tuple(ei_x_buff *x) { ei_x_encode_atom(x, "recommend"); }
static void m_wrong_tag(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "recommendx");
    ei_x_encode_map_header(x, 1);
    ei_x_encode_atom(x, "reader");
    ei_x_encode_binary(x, "r", 1);
}
static void m_three(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 3);
    ei_x_encode_atom(x, "recommend");
    ei_x_encode_map_header(x, 0);
    ei_x_encode_atom(x, "x");
}
static void m_no_reader(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "recommend");
    ei_x_encode_map_header(x, 1);
    ei_x_encode_atom(x, "k");
    ei_x_encode_long(x, 3);
}
static void one_field(ei_x_buff *x, const char *key, int kind)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "recommend");
    ei_x_encode_map_header(x, 2);
    ei_x_encode_atom(x, "reader");
    ei_x_encode_binary(x, "r", 1);
    ei_x_encode_atom(x, key);
    char big[512];
    memset(big, 'a', sizeof big);
    switch (kind) {
    case 0: ei_x_encode_long(x, 0); break;             /* k = 0 */
    case 1: ei_x_encode_long(x, RECS_K_MAX + 1); break; /* k too big */
    case 2: ei_x_encode_binary(x, "3", 1); break;      /* k not an integer */
    case 3: ei_x_encode_binary(x, big, sizeof big); break; /* too long */
    case 4: ei_x_encode_long(x, 5); break;             /* a string expected */
    case 5: ei_x_encode_double(x, 1.5); break;
    }
}
static void m_k0(ei_x_buff *x) { one_field(x, "k", 0); }
static void m_kbig(ei_x_buff *x) { one_field(x, "k", 1); }
static void m_kbin(ei_x_buff *x) { one_field(x, "k", 2); }
static void m_post_long(ei_x_buff *x) { one_field(x, "post", 3); }
static void m_trace_long(ei_x_buff *x) { one_field(x, "trace", 3); }
static void m_post_int(ei_x_buff *x) { one_field(x, "post", 4); }
static void m_unknown_key(ei_x_buff *x) { one_field(x, "readr", 4); }
static void m_k_float(ei_x_buff *x) { one_field(x, "k", 5); }
static void m_reader_long(ei_x_buff *x)
{
    char big[RECS_READER_MAX + 1];
    memset(big, 'r', sizeof big);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "recommend");
    ei_x_encode_map_header(x, 1);
    ei_x_encode_atom(x, "reader");
    ei_x_encode_binary(x, big, sizeof big);
}
static void m_reader_empty(ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "recommend");
    ei_x_encode_map_header(x, 1);
    ei_x_encode_atom(x, "reader");
    ei_x_encode_binary(x, "", 0);
}

TEST(malformed_requests_are_einval_and_move_nothing)
{
    static const mk_fn bad[] = { m_not_tuple, m_wrong_tag, m_three, m_no_reader, m_k0,
                                 m_kbig, m_kbin, m_post_long, m_trace_long, m_post_int,
                                 m_unknown_key, m_k_float, m_reader_long, m_reader_empty };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ei_x_buff x;
        ASSERT_EQ(ei_x_new_with_version(&x), 0);
        bad[i](&x);
        recs_req_t out;
        int idx = 1; /* after the version byte */
        ASSERT_EQ(recs_req_decode(x.buff, &idx, &out), -EINVAL);
        ASSERT_EQ(idx, 1); /* the caller's index is untouched on failure */
        ei_x_free(&x);
    }
}

TEST(every_truncation_of_a_request_is_refused)
{
    recs_req_t q = { .k = 3 }, out;
    strcpy(q.reader, "0123456789abcdef");
    strcpy(q.post, "a-post");
    strcpy(q.trace, "0af7651916cd43dd8448eb211c80319c");
    ei_x_buff x;
    ASSERT_EQ(ei_x_new(&x), 0);
    ASSERT_EQ(recs_req_encode(&x, &q), 0);
    /* libei decoders do not know the buffer's end, so the truncated copy is
     * padded with a byte that cannot continue any term (an invalid tag). */
    for (int len = 0; len < x.index; len++) {
        char buf[1024];
        memcpy(buf, x.buff, (size_t)len);
        memset(buf + len, 0xff, sizeof buf - (size_t)len);
        int idx = 0;
        ASSERT_EQ(recs_req_decode(buf, &idx, &out), -EINVAL);
    }
    int idx = 0;
    ASSERT_EQ(recs_req_decode(x.buff, &idx, &out), 0);
    ei_x_free(&x);
}

TEST(reply_round_trip_and_errors)
{
    recs_reply_item_t it[2] = { { 1, "a", "A", 0.5 }, { 2, "b", "B", 0.25 } };
    recs_reply_t r = { .items = it, .n = 2 };
    strcpy(r.model, "recs@2");
    strcpy(r.event, "01J0000000000000000000000A");
    ei_x_buff x;
    ASSERT_EQ(ei_x_new(&x), 0);
    ASSERT_EQ(recs_reply_encode(&x, &r), 0);
    recs_reply_t out;
    char reason[32];
    int idx = 0;
    ASSERT_EQ(recs_reply_decode(x.buff, &idx, &out, reason, sizeof reason), PROTO_OK);
    ASSERT_EQ(out.n, 2);
    ASSERT_EQ(strcmp(out.model, "recs@2"), 0);
    ASSERT_EQ(strcmp(out.event, r.event), 0);
    ASSERT_EQ(out.items[1].id, 2);
    ASSERT_EQ(strcmp(out.items[0].slug, "a"), 0);
    ASSERT(out.items[1].score == 0.25);
    recs_reply_clear(&out);
    ei_x_free(&x);

    ASSERT_EQ(ei_x_new(&x), 0);
    proto_encode_error(&x, "unavailable");
    idx = 0;
    ASSERT_EQ(recs_reply_decode(x.buff, &idx, &out, reason, sizeof reason), PROTO_ERROR);
    ASSERT_EQ(strcmp(reason, "unavailable"), 0);
    ei_x_free(&x);
}

/* The reply with every atom through ei_x_encode_atom: what recs_reply_encode
 * wrote before it kept its atoms pre-encoded. */
static void reply_reference(ei_x_buff *x, const recs_reply_t *r)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "ok");
    ei_x_encode_map_header(x, 3);
    ei_x_encode_atom(x, "model");
    ei_x_encode_binary(x, r->model, (long)strlen(r->model));
    ei_x_encode_atom(x, "event");
    ei_x_encode_binary(x, r->event, (long)strlen(r->event));
    ei_x_encode_atom(x, "items");
    if (r->n > 0)
        ei_x_encode_list_header(x, r->n);
    for (int k = 0; k < r->n; k++) {
        ei_x_encode_map_header(x, 4);
        ei_x_encode_atom(x, "id");
        ei_x_encode_longlong(x, r->items[k].id);
        ei_x_encode_atom(x, "slug");
        ei_x_encode_binary(x, r->items[k].slug, (long)strlen(r->items[k].slug));
        ei_x_encode_atom(x, "title");
        ei_x_encode_binary(x, r->items[k].title, (long)strlen(r->items[k].title));
        ei_x_encode_atom(x, "score");
        ei_x_encode_double(x, r->items[k].score);
    }
    ei_x_encode_empty_list(x);
}

TEST(reply_bytes_are_libei_s)
{
    recs_reply_item_t it[3] = { { 1, "a", "A", 0.5 }, { 70000, "bb", "B b", -0.25 },
                                { 3, "c", "", 1e-300 } };
    for (int n = 0; n <= 3; n++) {
        recs_reply_t r = { .items = it, .n = n };
        strcpy(r.model, "recs@1");
        strcpy(r.event, "01J0000000000000000000000A");
        ei_x_buff a, b;
        ASSERT_EQ(ei_x_new(&a), 0);
        ASSERT_EQ(ei_x_new(&b), 0);
        ASSERT_EQ(recs_reply_encode(&a, &r), 0);
        reply_reference(&b, &r);
        ASSERT_EQ(a.index, b.index);
        ASSERT_EQ(memcmp(a.buff, b.buff, (size_t)a.index), 0);
        ei_x_free(&a);
        ei_x_free(&b);
    }
}

TEST(trace_ids)
{
    char t[33], s[17];
    ASSERT(recs_trace_parse("0af7651916cd43dd8448eb211c80319c", t, s));
    ASSERT_EQ(s[0], '\0');
    ASSERT(recs_trace_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", t, s));
    ASSERT_EQ(strcmp(t, "0af7651916cd43dd8448eb211c80319c"), 0);
    ASSERT_EQ(strcmp(s, "b7ad6b7169203331"), 0);
    ASSERT(!recs_trace_parse("", t, s));
    ASSERT(!recs_trace_parse("0AF7651916CD43DD8448EB211C80319C", t, s));
    ASSERT(!recs_trace_parse("xyz", t, s));
}
