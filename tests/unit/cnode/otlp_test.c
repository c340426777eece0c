/* otlp_test.c - the OTLP/JSON encoding of spans: hex ids, 64-bit integers as
 * decimal strings, enums as integers, lowerCamelCase keys, and the resource. */
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "telemetry_int.h"

static cn_span_t *mk(const char *name, int kind, bool parent)
{
    cn_span_t *s = calloc(1, sizeof(*s));
    for (int i = 0; i < 16; i++)
        s->ctx.trace_id[i] = (uint8_t)(0xA0 + i);
    for (int i = 0; i < 8; i++)
        s->ctx.span_id[i] = (uint8_t)(0x10 + i);
    if (parent) {
        s->has_parent = true;
        memset(s->parent_id, 0xEF, 8);
    }
    s->recording = true;
    s->kind = (uint8_t)kind;
    s->name = cn__span_str(s, name);
    s->start_ns = 1700000000123456789ull;
    s->end_ns = 1700000000223456789ull;
    return s;
}

TEST(encode_shape)
{
    cn_span_t *a = mk("GET /post/:slug", CN_SPAN_SERVER, false);
    a->attrs[0] = (cn__attr_t){ .key = "http.response.status_code", .type = CN__ATTR_INT, .v.i = 200 };
    a->attrs[1] = (cn__attr_t){ .key = "url.path", .type = CN__ATTR_STR, .v.s = cn__span_str(a, "/post/\xff\"\n") };
    a->attrs[2] = (cn__attr_t){ .key = "sampled.ratio", .type = CN__ATTR_DOUBLE, .v.d = 0.25 };
    a->attrs[3] = (cn__attr_t){ .key = "cache.hit", .type = CN__ATTR_BOOL, .v.b = true };
    a->nattrs = 4;
    a->dropped_attrs = 2;
    a->events[0] = (cn__event_t){ .name = cn__span_str(a, "retry"),
                                  .time_ns = 1700000000200000000ull, .key = "why",
                                  .value = cn__span_str(a, "busy") };
    a->nevents = 1;
    cn_span_t *b = mk("cms/get_post", CN_SPAN_CLIENT, true);
    b->status = CN_STATUS_ERROR;
    b->status_msg = cn__span_str(b, "timed out");
    cn_span_t *v[] = { a, b };
    char *txt = cn__otlp_encode("oneblog-client", "a=1,b=x%2Cy", v, 2);
    ASSERT_PTR_NE(txt, NULL);
    json_error_t e;
    json_t *j = json_loads(txt, 0, &e);
    if (j == NULL)
        fprintf(stderr, "%s at %d: %s\n", e.text, e.position, txt);
    ASSERT_PTR_NE(j, NULL);
    json_t *rs = json_array_get(json_object_get(j, "resourceSpans"), 0);
    json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(ss, "scope"), "name")), "libcnode");
    json_t *spans = json_object_get(ss, "spans");
    ASSERT_EQ(json_array_size(spans), 2);
    json_t *sa = json_array_get(spans, 0), *sb = json_array_get(spans, 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(sa, "traceId")), "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
    ASSERT_STR_EQ(json_string_value(json_object_get(sa, "spanId")), "1011121314151617");
    ASSERT_NULL(json_object_get(sa, "parentSpanId"));
    ASSERT_STR_EQ(json_string_value(json_object_get(sb, "parentSpanId")), "efefefefefefefef");
    ASSERT_EQ(json_integer_value(json_object_get(sa, "kind")), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(sa, "startTimeUnixNano")), "1700000000123456789");
    ASSERT_STR_EQ(json_string_value(json_object_get(sa, "endTimeUnixNano")), "1700000000223456789");
    ASSERT_EQ(json_integer_value(json_object_get(sa, "droppedAttributesCount")), 2);
    json_t *at = json_object_get(sa, "attributes");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(json_array_get(at, 0), "value"), "intValue")), "200");
    /* Bytes that are not UTF-8 are replaced, never make the JSON invalid. */
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(json_array_get(at, 1), "value"), "stringValue")), "/post/\xef\xbf\xbd\"\n");
    ASSERT(json_real_value(json_object_get(json_object_get(json_array_get(at, 2), "value"), "doubleValue")) == 0.25);
    ASSERT(json_is_true(json_object_get(json_object_get(json_array_get(at, 3), "value"), "boolValue")));
    json_t *ev = json_array_get(json_object_get(sa, "events"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(ev, "timeUnixNano")), "1700000000200000000");
    json_t *st = json_object_get(sb, "status");
    ASSERT_EQ(json_integer_value(json_object_get(st, "code")), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(st, "message")), "timed out");
    char *res = json_dumps(json_object_get(rs, "resource"), JSON_COMPACT);
    ASSERT(strstr(res, "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"oneblog-client\"}}"));
    ASSERT(strstr(res, "{\"key\":\"b\",\"value\":{\"stringValue\":\"x,y\"}}"));
    ASSERT(strstr(res, "\"telemetry.sdk.name\""));
    /* No snake_case keys anywhere. */
    ASSERT(strstr(txt, "_") == NULL || strstr(txt, "\"start_time") == NULL);
    ASSERT(strstr(txt, "trace_id") == NULL && strstr(txt, "span_id") == NULL);
    free(res);
    free(txt);
    json_decref(j);
    cn__span_free(a);
    cn__span_free(b);
}

/* OTEL_RESOURCE_ATTRIBUTES values are percent-decoded: %XX with two hex
 * digits, anything else kept as it is (sscanf's %x skipped white space and
 * took "% 41" for 'A', eating a character after it). */
TEST(resource_attributes_percent_decoding)
{
    cn__resource_t r;
    ASSERT_EQ(cn__resource_init(&r, "svc", "a=%41%62,b=x% 41,c=%4,d=100%,e=%\t7z,f=%+1y,g=%4G"), 0);
    const char *want[][2] = { { "a", "Ab" }, { "b", "x% 41" }, { "c", "%4" }, { "d", "100%" },
                              { "e", "%\t7z" }, { "f", "%+1y" }, { "g", "%4G" } };
    ASSERT(r.n >= 7);
    for (size_t k = 0; k < 7; k++) {
        ASSERT_STR_EQ(r.attrs[k].key, want[k][0]);
        ASSERT_STR_EQ(r.attrs[k].value, want[k][1]);
    }
    ASSERT_STR_EQ(r.attrs[7].key, "service.name");
    cn__resource_free(&r);
}

/* Keys and values lose their leading and trailing spaces and tabs, as the
 * OpenTelemetry spec says; an encoded space (%20) is kept, and a key that is only
 * spaces is no key. */
TEST(resource_attributes_trimmed)
{
    cn__resource_t r;
    ASSERT_EQ(cn__resource_init(&r, "svc", " a = 1 ,\tb\t=\tx y\t,c=%20z%20 , =v, service.name =no"), 0);
    const char *want[][2] = { { "a", "1" }, { "b", "x y" }, { "c", " z " } };
    ASSERT(r.n >= 4);
    for (size_t k = 0; k < 3; k++) {
        ASSERT_STR_EQ(r.attrs[k].key, want[k][0]);
        ASSERT_STR_EQ(r.attrs[k].value, want[k][1]);
    }
    ASSERT_STR_EQ(r.attrs[3].key, "service.name");
    ASSERT_STR_EQ(r.attrs[3].value, "svc");
    cn__resource_free(&r);
}

/* A %00 would cut its value short where the encoders read it: that pair is
 * skipped, like one without a key, and the others are kept. */
TEST(resource_attributes_nul_refused)
{
    cn__resource_t r;
    ASSERT_EQ(cn__resource_init(&r, "svc", "a=1,b=x%00y,c=%000,d=2"), 0);
    ASSERT(r.n >= 3);
    ASSERT_STR_EQ(r.attrs[0].key, "a");
    ASSERT_STR_EQ(r.attrs[1].key, "d");
    ASSERT_STR_EQ(r.attrs[1].value, "2");
    ASSERT_STR_EQ(r.attrs[2].key, "service.name");
    cn__resource_free(&r);
}

/* The hand-written encoder against jansson's parser: escapes, UTF-8 kept when
 * valid and replaced byte by byte when not, doubles JSON cannot hold, negative
 * integers; the span arena cuts what does not fit. */
TEST(encode_strings_numbers_arena)
{
    cn_span_t *a = mk("n\x01\t", CN_SPAN_INTERNAL, false);
    const char *in = "h\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80|\xc0\x80|\xed\xa0\x80|\xe2\x82|\\";
    a->attrs[0] = (cn__attr_t){ .key = "s", .type = CN__ATTR_STR, .v.s = cn__span_str(a, in) };
    a->attrs[1] = (cn__attr_t){ .key = "nan", .type = CN__ATTR_DOUBLE, .v.d = NAN };
    a->attrs[2] = (cn__attr_t){ .key = "neg", .type = CN__ATTR_INT, .v.i = INT64_MIN };
    a->attrs[3] = (cn__attr_t){ .key = "inf", .type = CN__ATTR_DOUBLE, .v.d = -INFINITY };
    a->nattrs = 4;
    cn_span_t *v[] = { a };
    char *txt = cn__otlp_encode(NULL, NULL, v, 1);
    ASSERT_PTR_NE(txt, NULL);
    json_error_t e;
    json_t *j = json_loads(txt, 0, &e);
    if (j == NULL)
        fprintf(stderr, "%s: %s\n", e.text, txt);
    ASSERT_PTR_NE(j, NULL);
    json_t *sp = json_array_get(json_object_get(json_array_get(json_object_get(json_array_get(
                     json_object_get(j, "resourceSpans"), 0), "scopeSpans"), 0), "spans"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(sp, "name")), "n\x01\t");
    json_t *at = json_object_get(sp, "attributes");
#define VAL(i, k) json_object_get(json_object_get(json_array_get(at, i), "value"), k)
    ASSERT_STR_EQ(json_string_value(VAL(0, "stringValue")),
                  "h\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80|\xef\xbf\xbd\xef\xbf\xbd|"
                  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|\\");
    ASSERT_STR_EQ(json_string_value(VAL(1, "doubleValue")), "NaN");
    ASSERT_STR_EQ(json_string_value(VAL(2, "intValue")), "-9223372036854775808");
    ASSERT_STR_EQ(json_string_value(VAL(3, "doubleValue")), "-Infinity");
#undef VAL
    ASSERT(strstr(txt, "unknown_service") != NULL);
    json_decref(j);
    free(txt);
    /* The arena: a long value is cut to what is left, then nothing fits. */
    char big[2 * CN__SPAN_ARENA];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *c = cn__span_str(a, big);
    ASSERT_PTR_NE(c, NULL);
    ASSERT_EQ(a->arena_len, CN__SPAN_ARENA);
    ASSERT_LT(strlen(c), (size_t)CN__SPAN_ARENA);
    ASSERT_NULL(cn__span_str(a, "y"));
    cn__span_free(a);
}

/* ---------------------------------------------------------------------------------
 * OTLP/protobuf (otlp_pb.c), read back with a small wire-format walker: every
 * length must land exactly on the end of its message, so a wrong length prefix
 * (the reserved-then-moved ones in particular) fails here. tests/integ/
 * otel_trace.sh decodes the same bytes with the official generated types.
 * ------------------------------------------------------------------------------ */

typedef struct pbf {
    unsigned field, wt;
    uint64_t v;          /* varint or fixed64 */
    const uint8_t *p;    /* length-delimited: the bytes */
    size_t n;
} pbf_t;

static uint64_t rd_varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        ASSERT_LT(*p, end);
        uint8_t c = *(*p)++;
        v |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80))
            return v;
    }
    test__fail(__FILE__, __LINE__, "varint longer than 10 bytes");
}

/* The fields of a message, in order; returns how many (at most max). */
static int pb_fields(const uint8_t *p, size_t n, pbf_t *out, int max)
{
    const uint8_t *end = p + n;
    int k = 0;
    while (p < end) {
        ASSERT_LT(k, max);
        uint64_t key = rd_varint(&p, end);
        pbf_t *f = &out[k++];
        memset(f, 0, sizeof(*f));
        f->field = (unsigned)(key >> 3);
        f->wt = (unsigned)(key & 7);
        if (f->wt == 0) {
            f->v = rd_varint(&p, end);
        } else if (f->wt == 1) {
            ASSERT(end - p >= 8);
            for (int i = 0; i < 8; i++)
                f->v |= (uint64_t)p[i] << (8 * i);
            p += 8;
        } else {
            ASSERT_EQ(f->wt, 2u);
            f->n = rd_varint(&p, end);
            ASSERT(f->n <= (size_t)(end - p));
            f->p = p;
            p += f->n;
        }
    }
    ASSERT(p == end);
    return k;
}

static const pbf_t *pb_get(const pbf_t *f, int n, unsigned field, int nth)
{
    for (int i = 0; i < n; i++)
        if (f[i].field == field && nth-- == 0)
            return &f[i];
    return NULL;
}

static bool pb_str_is(const pbf_t *f, const char *s)
{
    return f && f->wt == 2 && f->n == strlen(s) && memcmp(f->p, s, f->n) == 0;
}

/* KeyValue -> its key and the AnyValue field inside. */
static void pb_kv(const pbf_t *kvf, const pbf_t **key, pbf_t *val)
{
    static pbf_t kv[4];
    int n = pb_fields(kvf->p, kvf->n, kv, 4);
    *key = pb_get(kv, n, 1, 0);
    const pbf_t *any = pb_get(kv, n, 2, 0);
    ASSERT_PTR_NE(any, NULL);
    pbf_t a[2];
    ASSERT_EQ(pb_fields(any->p, any->n, a, 2), 1);
    *val = a[0];
}

/* The fields of the one span in an export of one span (request -> ResourceSpans ->
 * ScopeSpans -> Span), as pb_fields puts them in sp; returns their count. */
static int pb_only_span(const char *buf, size_t len, pbf_t *sp, int max)
{
    static pbf_t top[4], rs[8], ss[4];
    ASSERT_EQ(pb_fields((const uint8_t *)buf, len, top, 4), 1);
    int nrs = pb_fields(top[0].p, top[0].n, rs, 8);
    const pbf_t *ssf = pb_get(rs, nrs, 2, 0);
    ASSERT_PTR_NE(ssf, NULL);
    ASSERT_EQ(pb_fields(ssf->p, ssf->n, ss, 4), 2);
    return pb_fields(ss[1].p, ss[1].n, sp, max);
}

TEST(encode_protobuf)
{
    cn_span_t *a = mk("GET /post/:slug", CN_SPAN_SERVER, false);
    a->attrs[0] = (cn__attr_t){ .key = "http.response.status_code", .type = CN__ATTR_INT, .v.i = 200 };
    a->attrs[1] = (cn__attr_t){ .key = "url.path", .type = CN__ATTR_STR, .v.s = cn__span_str(a, "/p\xff\xe2\x9c\x93") };
    a->attrs[2] = (cn__attr_t){ .key = "ratio", .type = CN__ATTR_DOUBLE, .v.d = 0.25 };
    a->attrs[3] = (cn__attr_t){ .key = "hit", .type = CN__ATTR_BOOL, .v.b = true };
    a->attrs[4] = (cn__attr_t){ .key = "neg", .type = CN__ATTR_INT, .v.i = -2 };
    a->attrs[5] = (cn__attr_t){ .key = "db.query.text", .type = CN__ATTR_STR, .fixed = true,
                                .v.s = "SELECT 1", .slen = 8 };
    a->nattrs = 6;
    a->dropped_attrs = 3;
    a->events[0] = (cn__event_t){ .name = cn__span_str(a, "retry"),
                                  .time_ns = 1700000000200000000ull, .key = "why",
                                  .value = cn__span_str(a, "busy") };
    a->nevents = 1;
    cn_span_t *b = mk("cms/get_post", CN_SPAN_CLIENT, true);
    b->status = CN_STATUS_ERROR;
    b->status_msg = cn__span_str(b, "timed out");
    /* A span past 127 bytes and a batch past 16 KiB: length prefixes of 2 and 3 bytes. */
    enum { N = 300 };
    cn_span_t *v[N] = { a, b };
    for (int i = 2; i < N; i++) {
        v[i] = mk("filler", CN_SPAN_INTERNAL, true);
        v[i]->attrs[0] = (cn__attr_t){ .key = "i", .type = CN__ATTR_INT, .v.i = i };
        v[i]->nattrs = 1;
    }
    v[2]->status = CN_STATUS_ERROR; /* a code without a message */
    char *buf = NULL;
    size_t cap = 0;
    cn__pb_cache_t *pc = cn__pb_cache_new();
    ASSERT_PTR_NE(pc, NULL);
    size_t len = cn__otlp_encode_pb_buf(&buf, &cap, "oneblog-client", "a=1,b=x%2Cy,service.name=no",
                                        v, N, pc);
    ASSERT_GT(len, (size_t)16384);
    static pbf_t top[4], rs[8], ss[N + 4], res[16], sp[32], st[4], ev[4];
    ASSERT_EQ(pb_fields((const uint8_t *)buf, len, top, 4), 1); /* one ResourceSpans */
    int nrs = pb_fields(top[0].p, top[0].n, rs, 8);
    ASSERT_EQ(nrs, 2);
    /* Resource: extra attributes first (percent-decoded, service.name from them
     * ignored), then service.name and the SDK's. */
    int nres = pb_fields(pb_get(rs, nrs, 1, 0)->p, pb_get(rs, nrs, 1, 0)->n, res, 16);
    const pbf_t *key;
    pbf_t val;
    pb_kv(&res[1], &key, &val);
    ASSERT(pb_str_is(key, "b") && pb_str_is(&val, "x,y"));
    pb_kv(&res[2], &key, &val);
    ASSERT(pb_str_is(key, "service.name") && pb_str_is(&val, "oneblog-client"));
    ASSERT_GE(nres, 6);
    /* ScopeSpans: the scope, then the spans in order. */
    const pbf_t *ssf = pb_get(rs, nrs, 2, 0);
    int nss = pb_fields(ssf->p, ssf->n, ss, N + 4);
    ASSERT_EQ(nss, N + 1);
    ASSERT_EQ(ss[0].field, 1u);
    int nsp = pb_fields(ss[1].p, ss[1].n, sp, 32);
    ASSERT_EQ(pb_get(sp, nsp, 1, 0)->n, 16u);
    ASSERT_EQ(memcmp(pb_get(sp, nsp, 1, 0)->p, a->ctx.trace_id, 16), 0);
    ASSERT_EQ(memcmp(pb_get(sp, nsp, 2, 0)->p, a->ctx.span_id, 8), 0);
    ASSERT_NULL(pb_get(sp, nsp, 4, 0));
    ASSERT(pb_str_is(pb_get(sp, nsp, 5, 0), "GET /post/:slug"));
    ASSERT_EQ(pb_get(sp, nsp, 6, 0)->v, (uint64_t)CN_SPAN_SERVER);
    ASSERT_EQ(pb_get(sp, nsp, 7, 0)->wt, 1u);
    ASSERT_EQ(pb_get(sp, nsp, 7, 0)->v, 1700000000123456789ull);
    ASSERT_EQ(pb_get(sp, nsp, 8, 0)->v, 1700000000223456789ull);
    pb_kv(pb_get(sp, nsp, 9, 0), &key, &val);
    ASSERT(pb_str_is(key, "http.response.status_code") && val.field == 3 && val.v == 200);
    pb_kv(pb_get(sp, nsp, 9, 1), &key, &val);
    ASSERT(pb_str_is(key, "url.path") && pb_str_is(&val, "/p\xef\xbf\xbd\xe2\x9c\x93"));
    pb_kv(pb_get(sp, nsp, 9, 2), &key, &val);
    double d;
    memcpy(&d, &val.v, sizeof d);
    ASSERT(val.field == 4 && val.wt == 1 && d == 0.25);
    pb_kv(pb_get(sp, nsp, 9, 3), &key, &val);
    ASSERT(val.field == 2 && val.v == 1);
    pb_kv(pb_get(sp, nsp, 9, 4), &key, &val);
    ASSERT(val.field == 3 && (int64_t)val.v == -2);
    pb_kv(pb_get(sp, nsp, 9, 5), &key, &val);
    ASSERT(pb_str_is(key, "db.query.text") && pb_str_is(&val, "SELECT 1"));
    ASSERT_EQ(pb_get(sp, nsp, 10, 0)->v, 3u);
    const pbf_t *e = pb_get(sp, nsp, 11, 0);
    ASSERT_PTR_NE(e, NULL);
    int nev = pb_fields(e->p, e->n, ev, 4);
    ASSERT_EQ(pb_get(ev, nev, 1, 0)->v, 1700000000200000000ull);
    ASSERT(pb_str_is(pb_get(ev, nev, 2, 0), "retry"));
    pb_kv(pb_get(ev, nev, 3, 0), &key, &val);
    ASSERT(pb_str_is(key, "why") && pb_str_is(&val, "busy"));
    /* The second span: parent, status code and message. */
    nsp = pb_fields(ss[2].p, ss[2].n, sp, 32);
    ASSERT_EQ(memcmp(pb_get(sp, nsp, 4, 0)->p, b->parent_id, 8), 0);
    const pbf_t *s = pb_get(sp, nsp, 15, 0);
    int nst = pb_fields(s->p, s->n, st, 4);
    ASSERT(pb_str_is(pb_get(st, nst, 2, 0), "timed out"));
    ASSERT_EQ(pb_get(st, nst, 3, 0)->v, (uint64_t)CN_STATUS_ERROR);
    nsp = pb_fields(ss[3].p, ss[3].n, sp, 32);
    s = pb_get(sp, nsp, 15, 0);
    nst = pb_fields(s->p, s->n, st, 4);
    ASSERT_EQ(nst, 1);
    ASSERT_EQ(pb_get(st, nst, 3, 0)->v, (uint64_t)CN_STATUS_ERROR);
    /* The last filler span carries its index. */
    nsp = pb_fields(ss[N].p, ss[N].n, sp, 32);
    pb_kv(pb_get(sp, nsp, 9, 0), &key, &val);
    ASSERT_EQ(val.v, (uint64_t)(N - 1));
    /* The static attribute again, now from the cache, and with no cache at all:
     * the same bytes. */
    char *copy = malloc(len);
    memcpy(copy, buf, len);
    ASSERT_EQ(cn__otlp_encode_pb_buf(&buf, &cap, "oneblog-client", "a=1,b=x%2Cy,service.name=no",
                                     v, N, pc), len);
    ASSERT_EQ(memcmp(copy, buf, len), 0);
    ASSERT_EQ(cn__otlp_encode_pb_buf(&buf, &cap, "oneblog-client", "a=1,b=x%2Cy,service.name=no",
                                     v, N, NULL), len);
    ASSERT_EQ(memcmp(copy, buf, len), 0);
    free(copy);
    cn__pb_cache_free(pc);
    /* A resource past 16 KiB: more length bytes than reserved, the body moves up. */
    size_t big = 24000;
    char *attrs = malloc(big + 16);
    memcpy(attrs, "k=", 2);
    memset(attrs + 2, 'v', big);
    strcpy(attrs + 2 + big, ",z=1");
    size_t len3 = cn__otlp_encode_pb_buf(&buf, &cap, "svc", attrs, v, 2, NULL);
    ASSERT_GT(len3, big);
    ASSERT_EQ(pb_fields((const uint8_t *)buf, len3, top, 4), 1);
    nrs = pb_fields(top[0].p, top[0].n, rs, 8);
    nres = pb_fields(pb_get(rs, nrs, 1, 0)->p, pb_get(rs, nrs, 1, 0)->n, res, 16);
    pb_kv(&res[0], &key, &val);
    ASSERT(pb_str_is(key, "k") && val.n == big);
    pb_kv(&res[1], &key, &val);
    ASSERT(pb_str_is(key, "z") && pb_str_is(&val, "1"));
    ssf = pb_get(rs, nrs, 2, 0);
    ASSERT_EQ(pb_fields(ssf->p, ssf->n, ss, N + 4), 3);
    free(attrs);
    /* The buffer is reused: a second, smaller batch encodes into it. */
    size_t len2 = cn__otlp_encode_pb_buf(&buf, &cap, NULL, NULL, v, 1, NULL);
    ASSERT_GT(len2, 0u);
    ASSERT_LT(len2, len);
    ASSERT_EQ(pb_fields((const uint8_t *)buf, len2, top, 4), 1);
    free(buf);
    for (int i = 0; i < N; i++)
        cn__span_free(v[i]);
}

/* A value's bytes are its length's, NULs included: an invalid byte after a NUL
 * becomes U+FFFD like any other (the protobuf writer once stopped at the NUL
 * while the length counted on, leaving stale bytes in the export), with and
 * without the exporter's cache. */
TEST(protobuf_value_with_nul_and_invalid_byte)
{
    static const char raw[] = { '/', 'a', '\0', 'b', (char)0xff, 'c' };
    cn_span_t *s = mk("n", CN_SPAN_SERVER, false);
    cn__span_add_strn(s, "url.path", raw, sizeof raw);
    cn_span_t *v[] = { s };
    cn__pb_cache_t *pc = cn__pb_cache_new();
    for (int k = 0; k < 2; k++) {
        char *buf = NULL;
        size_t cap = 0;
        size_t len = cn__otlp_encode_pb_buf(&buf, &cap, "svc", NULL, v, 1, k ? pc : NULL);
        static pbf_t sp[16];
        int nsp = pb_only_span(buf, len, sp, 16);
        const pbf_t *key;
        pbf_t val;
        pb_kv(pb_get(sp, nsp, 9, 0), &key, &val);
        static const char want[] = { '/', 'a', '\0', 'b', (char)0xef, (char)0xbf, (char)0xbd, 'c' };
        ASSERT(pb_str_is(key, "url.path"));
        ASSERT_EQ(val.n, sizeof want);
        ASSERT_MEM_EQ(val.p, want, sizeof want);
        free(buf);
    }
    cn__pb_cache_free(pc);
    cn__span_free(s);
}

/* An HTTP server span as cn__tel_http_begin/_end record it (its attributes as
 * the request's strings, written by the protobuf encoder straight from them):
 * the same bytes as once they are turned into attributes and encoded as any,
 * for the usual request and for the rarer shapes (a query, a user agent that is
 * not UTF-8, an IPv6 host, no Host, HTTP/1.0, a status code of two bytes). */
static void http_span(cn_span_t *s, int shape)
{
    cn__span_http_t *h = &s->h;
    memset(h, 0, sizeof *h);
    h->method = shape == 2 ? "POST" : "GET";
    h->method_len = (uint16_t)strlen(h->method);
    h->path = shape == 1 ? "/search" : "/";
    h->path_len = (uint16_t)strlen(h->path);
    if (shape == 1) {
        h->query = "q=otel&page=2";
        h->query_len = 13;
    }
    h->version = shape == 3 ? "1.0" : "1.1";
    static const char host4[] = "blog.example.org:8080", host6[] = "[::1]:443";
    h->port = -1;
    if (shape != 3) {
        h->host = shape == 2 ? host6 : host4;
        h->host_len = shape == 2 ? 5 : 16;
        h->port = shape == 2 ? 443 : 8080;
    }
    if (shape != 0) {
        h->ua = shape == 2 ? "curl/8 \xff\xfe" : "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0";
        h->ua_len = (uint16_t)strlen(h->ua);
    }
    if (shape == 4) { /* values whose lengths take two bytes */
        static char ua[201], path[131];
        memset(ua, 'u', sizeof ua - 1);
        memset(path, 'p', sizeof path - 1);
        path[0] = '/';
        h->ua = ua;
        h->ua_len = (uint16_t)strlen(ua);
        h->path = path;
        h->path_len = (uint16_t)strlen(path);
    }
    h->peer = shape == 2 ? "::1" : "127.0.0.1";
    h->peer_len = (uint16_t)strlen(h->peer);
    h->route = shape == 3 ? NULL : "/post/:slug";
    h->route_len = h->route ? (uint16_t)strlen(h->route) : 0;
    h->status = shape == 2 ? 503 : 200;
    s->http = true;
}

TEST(protobuf_http_span_as_attributes)
{
    cn__pb_cache_t *pc = cn__pb_cache_new();
    ASSERT_PTR_NE(pc, NULL);
    for (int shape = 0; shape < 5; shape++) {
        cn_span_t *a = mk("GET /post/:slug", CN_SPAN_SERVER, shape == 1);
        cn_span_t *b = mk("GET /post/:slug", CN_SPAN_SERVER, shape == 1);
        http_span(a, shape);
        http_span(b, shape);
        cn__span_http_attrs(b);
        ASSERT(!b->http);
        ASSERT_EQ(b->nattrs, shape == 0 ? 9 : shape == 1 ? 11 : shape == 3 ? 7 : 10);
        /* An attribute added after them turns them into attributes first. */
        cn_span_t *c = mk("GET /post/:slug", CN_SPAN_SERVER, false);
        http_span(c, shape);
        cn__span_add_int(c, "extra", 1);
        ASSERT(!c->http);
        ASSERT_EQ(c->nattrs, b->nattrs + 1);
        ASSERT_STR_EQ(c->attrs[b->nattrs].key, "extra");
        cn__span_free(c);
        char *ba = NULL, *bb = NULL;
        size_t ca = 0, cb = 0;
        cn_span_t *va[] = { a }, *vb[] = { b };
        size_t la = cn__otlp_encode_pb_buf(&ba, &ca, "svc", NULL, va, 1, pc);
        size_t lb = cn__otlp_encode_pb_buf(&bb, &cb, "svc", NULL, vb, 1, pc);
        ASSERT_GT(la, (size_t)0);
        ASSERT_EQ(la, lb);
        ASSERT_MEM_EQ(ba, bb, la);
        /* The attributes are there: the status code, last. */
        static pbf_t sp[32];
        int nsp = pb_only_span(ba, la, sp, 32);
        const pbf_t *key, *last = NULL;
        pbf_t val;
        for (int k = 0; pb_get(sp, nsp, 9, k); k++)
            last = pb_get(sp, nsp, 9, k);
        ASSERT_PTR_NE(last, NULL);
        pb_kv(last, &key, &val);
        ASSERT(pb_str_is(key, "http.response.status_code"));
        free(ba);
        free(bb);
        /* JSON reads them as attributes. */
        http_span(a, shape);
        char *txt = cn__otlp_encode("svc", NULL, va, 1);
        ASSERT_PTR_NE(txt, NULL);
        ASSERT(!a->http);
        ASSERT_PTR_NE(strstr(txt, "\"key\":\"client.address\""), NULL);
        ASSERT_EQ(strstr(txt, "\"key\":\"url.query\"") != NULL, shape == 1);
        free(txt);
        cn__span_free(a);
        cn__span_free(b);
    }
    cn__pb_cache_free(pc);
}

/* More static attributes than the exporter's cache holds, in an order that
 * makes entries of one set take turns: every encoding the same bytes as with
 * no cache (hits, misses, entries moved within their set). */
TEST(protobuf_static_cache_turns)
{
    enum { NV = 150, NS = 40 };
    static const char *const keys[] = { "db.system.name", "db.operation.name", "db.query.text" };
    static char vals[NV][12];
    for (int i = 0; i < NV; i++)
        snprintf(vals[i], sizeof vals[i], i % 7 ? "v%d" : "", i); /* some empty */
    cn__pb_cache_t *pc = cn__pb_cache_new();
    ASSERT_PTR_NE(pc, NULL);
    cn_span_t *v[NS];
    for (int k = 0; k < NS; k++) {
        v[k] = mk("SELECT sqlite", CN_SPAN_CLIENT, true);
        for (int j = 0; j < 6; j++) { /* values i, i+1 ... of spans k and k+1 overlap */
            int i = (k * 5 + j * 11) % NV;
            cn_span_add_static_str(v[k], keys[j % 3], vals[i]);
        }
    }
    char *want = NULL, *got = NULL;
    size_t cw = 0, cg = 0;
    size_t lw = cn__otlp_encode_pb_buf(&want, &cw, "svc", NULL, v, NS, NULL);
    ASSERT_GT(lw, (size_t)0);
    for (int round = 0; round < 3; round++) {
        ASSERT_EQ(cn__otlp_encode_pb_buf(&got, &cg, "svc", NULL, v, NS, pc), lw);
        ASSERT_MEM_EQ(got, want, lw);
    }
    free(want);
    free(got);
    for (int k = 0; k < NS; k++)
        cn__span_free(v[k]);
    cn__pb_cache_free(pc);
}
