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
