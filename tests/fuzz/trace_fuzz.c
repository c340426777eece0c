/* trace_fuzz.c - libFuzzer target for the telemetry's text inputs: W3C
 * traceparent values (from HTTP headers and from the '$cn_trace' wrapper of
 * remote calls) and the bytes that end up in span attributes (paths, user agents,
 * query strings: anything a client sends), encoded to OTLP/protobuf and JSON.
 *   - a traceparent the parser accepts formats back to its ids, as version 00
 *     with the flags cut to the sampled bit;
 *   - an attribute value of any bytes gives protobuf whose every length lands on
 *     the end of its message and JSON with no raw control or invalid byte.
 * Seeds: tests/fuzz/corpus/trace_fuzz/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walk a protobuf message: false when a length or varint runs past its end. */
static bool walk(const uint8_t *p, size_t n, int depth)
{
    const uint8_t *end = p + n;
    while (p < end) {
        uint64_t key = 0, v = 0;
        for (int sh = 0;; sh += 7) {
            if (p >= end || sh > 63)
                return false;
            key |= (uint64_t)(*p & 0x7f) << sh;
            if (!(*p++ & 0x80))
                break;
        }
        switch (key & 7) {
        case 0:
            for (int sh = 0;; sh += 7) {
                if (p >= end || sh > 63)
                    return false;
                if (!(*p++ & 0x80))
                    break;
            }
            break;
        case 1:
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 2:
            for (int sh = 0;; sh += 7) {
                if (p >= end || sh > 63)
                    return false;
                v |= (uint64_t)(*p & 0x7f) << sh;
                if (!(*p++ & 0x80))
                    break;
            }
            if (v > (uint64_t)(end - p))
                return false;
            /* Nested messages of the request (not strings or bytes): fields 1 and 2
             * at the top levels, tried as messages when they parse as such. */
            if (depth < 3 && ((key >> 3) == 1 || (key >> 3) == 2) && !walk(p, (size_t)v, depth + 1) &&
                depth < 2)
                return false;
            p += v;
            break;
        default:
            return false;
        }
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* traceparent */
    cn_span_ctx_t ctx;
    if (cn_traceparent_parse((const char *)data, size, &ctx) == 0) {
        char tp[CN_TRACEPARENT_LEN + 1];
        cn_traceparent_format(&ctx, tp);
        int last = data[54] <= '9' ? data[54] - '0' : data[54] - 'a' + 10;
        /* Version 00 out, the ids as they came, flags cut to the sampled bit. */
        if (!ctx.valid || memcmp(tp, "00", 2) != 0 || memcmp(tp + 2, data + 2, 51) != 0 ||
            tp[53] != '0' || tp[54] != (char)('0' + (last & 1)) || (ctx.flags & 1) != (last & 1))
            abort();
    }

    /* The same bytes as a span's name and attribute values. */
    cn_span_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return 0;
    s->recording = true;
    s->kind = CN_SPAN_SERVER;
    s->ctx.trace_id[0] = 1;
    s->ctx.span_id[0] = 1;
    s->start_ns = 1;
    s->end_ns = 2;
    size_t half = size / 2;
    char *a = malloc(half + 1), *b = malloc(size - half + 1);
    if (a && b) {
        memcpy(a, data, half);
        a[half] = '\0';
        memcpy(b, data + half, size - half);
        b[size - half] = '\0';
        s->name = cn__span_str(s, a);
        cn__span_add_strn(s, "url.path", (const char *)data, size);
        cn__span_add_str(s, "user_agent.original", b);
        cn__span_add_static(s, "url.scheme", a, strlen(a));
        int64_t iv = (int64_t)size - 100;
        if (size >= 8)
            memcpy(&iv, data, 8);
        cn__span_add_int(s, "server.port", iv); /* short and long varints, negative */
        s->status_msg = cn__span_str(s, b);
        cn_span_t *v[] = { s };
        char *buf = NULL;
        size_t cap = 0;
        size_t n = cn__otlp_encode_pb_buf(&buf, &cap, a, b, v, 1, NULL);
        if (n == 0 || !walk((const uint8_t *)buf, n, 0))
            abort();
        /* With the exporter's cache (encoded keys, the written-in-one-go
         * paths for the usual attributes): the same bytes, twice. */
        cn__pb_cache_t *pc = cn__pb_cache_new();
        char *buf2 = NULL;
        size_t cap2 = 0;
        for (int k = 0; pc && k < 2; k++)
            if (cn__otlp_encode_pb_buf(&buf2, &cap2, a, b, v, 1, pc) != n ||
                memcmp(buf, buf2, n) != 0)
                abort();
        cn__pb_cache_free(pc);
        free(buf2);
        free(buf);
        char *json = cn__otlp_encode(a, b, v, 1);
        if (json == NULL)
            abort();
        for (const unsigned char *p = (const unsigned char *)json; *p; p++)
            if (*p < 0x20)
                abort(); /* control bytes are escaped */
        free(json);
    }
    free(a);
    free(b);
    free(s);
    return 0;
}
