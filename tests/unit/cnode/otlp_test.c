/* otlp_test.c - the OTLP/JSON encoding of spans: hex ids, 64-bit integers as
 * decimal strings, enums as integers, lowerCamelCase keys, and the resource. */
#include "test.h"

#include <jansson.h>
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
    s->name = strdup(name);
    s->start_ns = 1700000000123456789ull;
    s->end_ns = 1700000000223456789ull;
    return s;
}

TEST(encode_shape)
{
    cn_span_t *a = mk("GET /post/:slug", CN_SPAN_SERVER, false);
    a->attrs[0] = (cn__attr_t){ .key = "http.response.status_code", .type = CN__ATTR_INT, .v.i = 200 };
    a->attrs[1] = (cn__attr_t){ .key = "url.path", .type = CN__ATTR_STR, .v.s = strdup("/post/\xff") };
    a->attrs[2] = (cn__attr_t){ .key = "sampled.ratio", .type = CN__ATTR_DOUBLE, .v.d = 0.25 };
    a->attrs[3] = (cn__attr_t){ .key = "cache.hit", .type = CN__ATTR_BOOL, .v.b = true };
    a->nattrs = 4;
    a->dropped_attrs = 2;
    a->events[0] = (cn__event_t){ .name = strdup("retry"), .time_ns = 1700000000200000000ull,
                                  .key = "why", .value = strdup("busy") };
    a->nevents = 1;
    cn_span_t *b = mk("cms/get_post", CN_SPAN_CLIENT, true);
    b->status = CN_STATUS_ERROR;
    b->status_msg = strdup("timed out");
    cn_span_t *v[] = { a, b };
    char *txt = cn__otlp_encode("oneblog-client", "a=1,b=x%2Cy", v, 2);
    ASSERT_PTR_NE(txt, NULL);
    json_error_t e;
    json_t *j = json_loads(txt, 0, &e);
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
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(json_array_get(at, 1), "value"), "stringValue")), "\xef\xbf\xbd");
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
