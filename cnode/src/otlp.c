/* otlp.c - spans to an OTLP/HTTP JSON ExportTraceServiceRequest.
 *
 * OTLP/JSON is the protobuf JSON mapping with three exceptions that receivers
 * insist on (opentelemetry-proto, docs/specification.md "JSON Protobuf
 * Encoding"): traceId and spanId are lower-case hex, not base64; enums
 * (kind, status.code) are integers; keys are lowerCamelCase field names. 64-bit
 * integers (times, intValue) are decimal strings, as the protobuf mapping says;
 * doubles that JSON cannot hold are the strings "NaN", "Infinity", "-Infinity".
 *
 *   {"resourceSpans":[{"resource":{"attributes":[...]},
 *     "scopeSpans":[{"scope":{"name":"libcnode","version":"1"},"spans":[...]}]}]}
 *
 * Written straight into one growing buffer: the shape is fixed, so building a
 * tree of JSON values first (as jansson did here) only cost allocations - it was
 * a quarter of a traced node's CPU time at 100% sampling. Strings are escaped
 * and checked for UTF-8 on the way; each byte that is not part of a valid UTF-8
 * sequence becomes U+FFFD, so the output is always valid JSON.
 *
 * The exporter writes the request in pieces: the head once, each span when it
 * ends, the closing at export (cn__otlp_json_head/_span/_tail). This file only
 * builds JSON: no libcnode calls.
 */
#include "telemetry_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Append n bytes (cn__obuf_t, telemetry_int.h). The fast path inline: most
 * writes are a few bytes of a literal, whose memcpy the compiler then turns
 * into a move or two. */
static inline __attribute__((always_inline)) void put(cn__obuf_t *b, const char *s, size_t n)
{
    if (__builtin_expect(b->len + n <= b->cap, 1) || cn__obuf_grow(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

#define PUTS(b, lit) put((b), (lit), sizeof(lit) - 1)


/* Bytes that go into a JSON string as they are: printable ASCII but '"' and
 * '\\' (NUL, controls and bytes >= 0x80 are 0). */
static const unsigned char plain[256] = {
    [0x20 ... 0x21] = 1, /* '"' is 0x22 */ [0x23 ... 0x5b] = 1, /* '\\' is 0x5c */
    [0x5d ... 0x7f] = 1,
};

/* A JSON string. NUL-terminated input: a continuation byte test never reads
 * past the terminator, which is not a continuation byte. */
static void put_str(cn__obuf_t *b, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)(str ? str : "");
    PUTS(b, "\"");
    while (*p) {
        const unsigned char *q = p;
        while (plain[*q])
            q++;
        put(b, (const char *)p, (size_t)(q - p));
        p = q;
        if (*p == '\0')
            break;
        if (*p >= 0x80) {
            int n = cn__utf8_len(p);
            if (n) {
                put(b, (const char *)p, (size_t)n);
                p += n;
            } else {
                PUTS(b, "\xef\xbf\xbd");
                p++;
            }
            continue;
        }
        char e[6] = { '\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15] };
        switch (*p) {
        case '"': PUTS(b, "\\\""); break;
        case '\\': PUTS(b, "\\\\"); break;
        case '\n': PUTS(b, "\\n"); break;
        case '\r': PUTS(b, "\\r"); break;
        case '\t': PUTS(b, "\\t"); break;
        default: put(b, e, sizeof e); break;
        }
        p++;
    }
    PUTS(b, "\"");
}

static void put_u64(cn__obuf_t *b, uint64_t v)
{
    char d[20];
    int i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, d + i, sizeof d - (size_t)i);
}

/* A 64-bit integer as the protobuf JSON mapping wants it: a decimal string. */
static void put_u64_str(cn__obuf_t *b, uint64_t v)
{
    PUTS(b, "\"");
    put_u64(b, v);
    PUTS(b, "\"");
}

static void put_i64_str(cn__obuf_t *b, int64_t v)
{
    PUTS(b, "\"");
    if (v < 0) {
        PUTS(b, "-");
        put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(b, (uint64_t)v);
    }
    PUTS(b, "\"");
}

static void put_double(cn__obuf_t *b, double d)
{
    if (isnan(d)) {
        PUTS(b, "\"NaN\"");
    } else if (isinf(d)) {
        if (d > 0)
            PUTS(b, "\"Infinity\"");
        else
            PUTS(b, "\"-Infinity\"");
    } else {
        char t[32];
        int n = snprintf(t, sizeof t, "%.17g", d);
        put(b, t, (size_t)n);
    }
}

/* "<hex>" of n <= 16 bytes, written in place a byte pair at a time. */
static void put_hex(cn__obuf_t *b, const uint8_t *id, size_t n)
{
    static const char d[] = "0123456789abcdef";
    if (!cn__obuf_reserve(b, 2 * n + 2))
        return;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        *o++ = d[id[i] >> 4];
        *o++ = d[id[i] & 15];
    }
    *o = '"';
    b->len += 2 * n + 2;
}

/* {"key":K,"value":{"stringValue":V}} */
static void kv_str(cn__obuf_t *b, const char *key, const char *val)
{
    PUTS(b, "{\"key\":");
    put_str(b, key);
    PUTS(b, ",\"value\":{\"stringValue\":");
    put_str(b, val);
    PUTS(b, "}}");
}

static void attr_json(cn__obuf_t *b, const cn__attr_t *a)
{
    switch (a->type) {
    case CN__ATTR_STR:
        kv_str(b, a->key, a->v.s);
        return;
    case CN__ATTR_INT:
        PUTS(b, "{\"key\":");
        put_str(b, a->key);
        PUTS(b, ",\"value\":{\"intValue\":");
        put_i64_str(b, a->v.i);
        break;
    case CN__ATTR_DOUBLE:
        PUTS(b, "{\"key\":");
        put_str(b, a->key);
        PUTS(b, ",\"value\":{\"doubleValue\":");
        put_double(b, a->v.d);
        break;
    default: /* CN__ATTR_BOOL */
        PUTS(b, "{\"key\":");
        put_str(b, a->key);
        PUTS(b, ",\"value\":{\"boolValue\":");
        if (a->v.b)
            PUTS(b, "true");
        else
            PUTS(b, "false");
        break;
    }
    PUTS(b, "}}");
}

static void resource_json(cn__obuf_t *b, const cn__resource_t *res)
{
    PUTS(b, "{\"attributes\":[");
    for (size_t i = 0; i < res->n; i++) {
        if (i)
            PUTS(b, ",");
        kv_str(b, res->attrs[i].key, res->attrs[i].value);
    }
    PUTS(b, "]}");
}

static void span_json(cn__obuf_t *b, const cn_span_t *s)
{
    PUTS(b, "{\"traceId\":");
    put_hex(b, s->ctx.trace_id, 16);
    PUTS(b, ",\"spanId\":");
    put_hex(b, s->ctx.span_id, 8);
    if (s->has_parent) {
        PUTS(b, ",\"parentSpanId\":");
        put_hex(b, s->parent_id, 8);
    }
    PUTS(b, ",\"name\":");
    put_str(b, s->name ? s->name : "span");
    PUTS(b, ",\"kind\":");
    put_u64(b, s->kind);
    PUTS(b, ",\"startTimeUnixNano\":");
    put_u64_str(b, s->start_ns);
    PUTS(b, ",\"endTimeUnixNano\":");
    put_u64_str(b, s->end_ns);
    PUTS(b, ",\"attributes\":[");
    for (uint16_t i = 0; i < s->nattrs; i++) {
        if (i)
            PUTS(b, ",");
        attr_json(b, &s->attrs[i]);
    }
    PUTS(b, "]");
    if (s->dropped_attrs) {
        PUTS(b, ",\"droppedAttributesCount\":");
        put_u64(b, s->dropped_attrs);
    }
    if (s->nevents) {
        PUTS(b, ",\"events\":[");
        for (uint16_t i = 0; i < s->nevents; i++) {
            const cn__event_t *e = &s->events[i];
            if (i)
                PUTS(b, ",");
            PUTS(b, "{\"timeUnixNano\":");
            put_u64_str(b, e->time_ns);
            PUTS(b, ",\"name\":");
            put_str(b, e->name ? e->name : "event");
            PUTS(b, ",\"attributes\":[");
            if (e->key)
                kv_str(b, e->key, e->value);
            PUTS(b, "]}");
        }
        PUTS(b, "]");
    }
    if (s->dropped_events) {
        PUTS(b, ",\"droppedEventsCount\":");
        put_u64(b, s->dropped_events);
    }
    PUTS(b, ",\"status\":{\"code\":");
    put_u64(b, s->status);
    if (s->status_msg) {
        PUTS(b, ",\"message\":");
        put_str(b, s->status_msg);
    }
    PUTS(b, "}}");
}

void cn__otlp_json_head(cn__obuf_t *b, const cn__resource_t *res)
{
    PUTS(b, "{\"resourceSpans\":[{\"resource\":");
    resource_json(b, res);
    PUTS(b, ",\"scopeSpans\":[{\"scope\":{\"name\":\"" CN__OTLP_SCOPE_NAME
             "\",\"version\":\"" CN__OTLP_SCOPE_VERSION "\"},\"spans\":[");
}

void cn__otlp_json_span(cn__obuf_t *b, const cn_span_t *s, bool first)
{
    if (!first)
        PUTS(b, ",");
    span_json(b, s);
}

void cn__otlp_json_tail(cn__obuf_t *b)
{
    PUTS(b, "]}]}]}");
}

static void encode(cn__obuf_t *b, const char *service_name, const char *resource_attrs,
                   cn_span_t *const *spans, uint32_t n)
{
    /* About 700 bytes a span; a reused buffer is big enough after the first. */
    cn__obuf_reserve(b, 512 + (size_t)n * 768);
    cn__resource_t res;
    if (cn__resource_init(&res, service_name, resource_attrs) < 0) {
        b->oom = true;
        return;
    }
    cn__otlp_json_head(b, &res);
    cn__resource_free(&res);
    for (uint32_t i = 0; i < n; i++) {
        cn__span_http_attrs(spans[i]); /* read as attributes */
        cn__otlp_json_span(b, spans[i], i == 0);
    }
    cn__otlp_json_tail(b);
    put(b, "", 1);
}

size_t cn__otlp_encode_buf(char **buf, size_t *cap, const char *service_name,
                           const char *resource_attrs, cn_span_t *const *spans, uint32_t n)
{
    cn__obuf_t b = { .p = *buf, .len = 0, .cap = *cap };
    encode(&b, service_name, resource_attrs, spans, n);
    *buf = b.p;
    *cap = b.cap;
    return b.oom ? 0 : b.len - 1;
}

char *cn__otlp_encode(const char *service_name, const char *resource_attrs,
                      cn_span_t *const *spans, uint32_t n)
{
    cn__obuf_t b = { 0 };
    encode(&b, service_name, resource_attrs, spans, n);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
