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
#include <stdio.h>
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

/* One HTTP server span's attributes, kept as strings (cn__span_http_t) from
 * the input's bytes. */
static void http_fill(cn_span_t *s, const uint8_t *data, size_t size, const char *pa,
                      const char *pb, const char *ph)
{
    s->recording = true;
    s->kind = CN_SPAN_SERVER;
    s->ctx.trace_id[0] = 1;
    s->ctx.span_id[0] = 1;
    cn__span_http_t *h = &s->h;
    h->method = size && (data[0] & 1) ? "POST" : "GET";
    h->method_len = (uint16_t)strlen(h->method);
    h->path = pa;
    h->path_len = (uint16_t)strlen(pa);
    h->query = size && (data[0] & 2) ? pb : NULL;
    h->query_len = h->query ? (uint16_t)strlen(pb) : 0;
    h->version = size && (data[0] & 4) ? "1.0" : "1.1";
    h->host = size && (data[0] & 8) ? ph : NULL; /* cut before a ':', as a Host header's */
    h->host_len = h->host ? (uint16_t)(size > 255 ? 255 : size) : 0;
    h->port = size > 1 ? data[1] * 300 : -1;
    h->ua = pb;
    h->ua_len = (uint16_t)strlen(pb);
    h->peer = pa;
    h->peer_len = h->path_len;
    h->route = size && (data[0] & 16) ? pb : NULL;
    h->route_len = h->route ? h->ua_len : 0;
    h->status = size > 2 ? data[2] * 5 : 0;
    s->http = true;
}

/* Written straight by the protobuf encoder, or as attributes: the same bytes. */
static void http_span_same(const uint8_t *data, size_t size, const char *a, const char *b)
{
    char pa[256], pb[256], ph[258];
    snprintf(pa, sizeof pa, "%s", a); /* at most CN__SPAN_BORROW_MAX bytes */
    snprintf(pb, sizeof pb, "%s", b);
    size_t hn = size > 255 ? 255 : size; /* the input's bytes, NULs and all */
    memcpy(ph, data, hn);
    memcpy(ph + hn, ":", 2);
    cn_span_t *s1 = calloc(1, sizeof(*s1)), *s2 = calloc(1, sizeof(*s2));
    if (s1 && s2) {
        http_fill(s1, data, size, pa, pb, ph);
        http_fill(s2, data, size, pa, pb, ph);
        cn__span_http_attrs(s2);
        cn_span_t *v1[] = { s1 }, *v2[] = { s2 };
        char *b1 = NULL, *b2 = NULL;
        size_t c1 = 0, c2 = 0;
        size_t n1 = cn__otlp_encode_pb_buf(&b1, &c1, "svc", NULL, v1, 1, NULL);
        size_t n2 = cn__otlp_encode_pb_buf(&b2, &c2, "svc", NULL, v2, 1, NULL);
        if (n1 == 0 || n1 != n2 || memcmp(b1, b2, n1) != 0 || !walk((const uint8_t *)b1, n1, 0))
            abort();
        free(b1);
        free(b2);
    }
    free(s1);
    free(s2);
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

    /* The bytes as the traceparent of a wrapped gen_server request,
     * {'$cn_trace', <<Bytes>>, req}, in a buffer of its exact size (ASan sees
     * any read past it). The term is well formed, as the dist layer's checks
     * make every request: unwrapped, the request is `req`; 55 bytes are the
     * context as cn_traceparent_parse reads them, others none. */
    size_t bn = size < 200 ? size : 200;
    char *w = malloc(bn + 32);
    if (w == NULL)
        return 0;
    int wi = 0, ri;
    ei_encode_tuple_header(w, &wi, 3);
    ei_encode_atom(w, &wi, "$cn_trace");
    ei_encode_binary(w, &wi, data, (long)bn);
    ri = wi;
    ei_encode_atom(w, &wi, "req");
    cn_term_t req = { .buf = w, .index = 0, .len = wi };
    if (!cn__tel_unwrap(&req, &ctx) || req.index != ri)
        abort();
    cn_span_ctx_t want = { 0 };
    if (bn == CN_TRACEPARENT_LEN)
        cn_traceparent_parse((const char *)data, bn, &want);
    if (memcmp(&want, &ctx, sizeof ctx) != 0)
        abort();
    free(w);

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
        http_span_same(data, size, a, b);
    }
    free(a);
    free(b);
    free(s);
    return 0;
}
