/* otlp_pb.c - spans to an OTLP/HTTP protobuf ExportTraceServiceRequest, the
 * OTLP exporter spec's default protocol (http/protobuf); otlp.c writes the same
 * request as OTLP/JSON.
 *
 * Hand-written because the message is fixed and small: protobuf-c or nanopb
 * would bring generated code for the whole opentelemetry-proto tree and a tree
 * of structs to fill per span, which is the allocation cost otlp.c dropped
 * when it stopped building JSON trees. The wire format (protobuf "Encoding"):
 * each field is a varint key (field << 3 | wire type) then a varint, 8 little-
 * endian bytes (fixed64, double) or a varint length and that many bytes (strings,
 * bytes, nested messages). Field numbers are those of opentelemetry-proto's
 * collector/trace/v1, trace/v1, common/v1 and resource/v1 .proto files; the
 * receiver used by tests/integ/otel_trace.sh decodes with their generated types.
 *
 *   ExportTraceServiceRequest  1: ResourceSpans
 *   ResourceSpans              1: Resource {1: KeyValue}  2: ScopeSpans
 *   ScopeSpans                 1: InstrumentationScope {1: name, 2: version}  2: Span
 *   Span  1 trace_id, 2 span_id, 4 parent_span_id (bytes), 5 name, 6 kind (varint),
 *         7/8 start/end (fixed64), 9 KeyValue, 10 dropped attributes, 11 Event,
 *         12 dropped events, 15 Status {2 message, 3 code}
 *   Event 1 time (fixed64), 2 name, 3 KeyValue
 *   KeyValue 1 key, 2 AnyValue {1 string, 2 bool, 3 int64, 4 double}
 *
 * A nested message whose length is not known before it is written (a span, the
 * resource, the batch) gets the bytes its length usually needs reserved (2 for a
 * span: 128 to 16383 bytes); the rare one that needs another size is moved. Key/value pairs,
 * the bulk of a span, have lengths known beforehand and are written in one go.
 * Strings must be UTF-8 in protobuf: a byte that is not part of a valid
 * sequence becomes U+FFFD, as in otlp.c.
 *
 * No libcnode calls: the exporter runs this on the blocking pool.
 */
#include "telemetry_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCOPE_NAME "libcnode"
#define SCOPE_VERSION "1"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

static inline size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Callers reserve: at most 10 bytes. */
static inline void put_varint_raw(cn__obuf_t *b, uint64_t v)
{
    char *o = b->p + b->len;
    while (v >= 0x80) {
        *o++ = (char)(v | 0x80);
        v >>= 7;
    }
    *o++ = (char)v;
    b->len = (size_t)(o - b->p);
}

static inline void put_key(cn__obuf_t *b, unsigned field, unsigned wt)
{
    if (cn__obuf_reserve(b, 10))
        put_varint_raw(b, (uint64_t)field << 3 | wt);
}

static void put_varint_field(cn__obuf_t *b, unsigned field, uint64_t v)
{
    if (cn__obuf_reserve(b, 20)) {
        put_varint_raw(b, (uint64_t)field << 3 | WT_VARINT);
        put_varint_raw(b, v);
    }
}

/* 8 little-endian bytes (reserved by the caller). */
static inline void put_le64(cn__obuf_t *b, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(b->p + b->len, &v, 8);
    b->len += 8;
#else
    for (int i = 0; i < 8; i++)
        b->p[b->len++] = (char)(v >> (8 * i));
#endif
}

static void put_fixed64_field(cn__obuf_t *b, unsigned field, uint64_t v)
{
    if (!cn__obuf_reserve(b, 18))
        return;
    put_varint_raw(b, (uint64_t)field << 3 | WT_I64);
    put_le64(b, v);
}

static void put_bytes_field(cn__obuf_t *b, unsigned field, const void *v, size_t n)
{
    if (!cn__obuf_reserve(b, 20 + n))
        return;
    put_varint_raw(b, (uint64_t)field << 3 | WT_LEN);
    put_varint_raw(b, n);
    if (n == 16) /* the ids: constant-size copies, no call */
        memcpy(b->p + b->len, v, 16);
    else if (n == 8)
        memcpy(b->p + b->len, v, 8);
    else
        memcpy(b->p + b->len, v, n);
    b->len += n;
}


/* The byte length of s (n bytes before its NUL) once each invalid byte is
 * replaced by U+FFFD (3 bytes); *clean says whether s is valid UTF-8 as it is.
 * The usual case, ASCII, is a test of eight bytes at a time for a high bit. */
static size_t str_size_n(const char *s, size_t n, bool *clean)
{
    size_t i = 0;
    *clean = true;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull)
            break;
    }
    while (i < n && (unsigned char)s[i] < 0x80)
        i++;
    if (i == n)
        return n;
    const unsigned char *p = (const unsigned char *)s + i;
    for (;;) {
        while (*p && *p < 0x80) {
            p++;
            i++;
        }
        if (*p == '\0')
            return i;
        int k = cn__utf8_len(p);
        if (k) {
            p += k;
            i += (size_t)k;
        } else {
            *clean = false;
            p++;
            i += 3;
        }
    }
}

static size_t str_size(const char *s, bool *clean)
{
    return str_size_n(s, strlen(s), clean);
}

/* memcpy for the short strings of a span without a call: two overlapping
 * 8-byte moves for 8..16 bytes, a byte loop under 8. */
static inline void copy_short(char *o, const char *s, size_t n)
{
    if (n > 16) {
        memcpy(o, s, n);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(o, &a, 8);
        memcpy(o + n - 8, &b, 8);
    } else {
        for (size_t i = 0; i < n; i++)
            o[i] = s[i];
    }
}

/* Copy s of encoded size n (str_size) to the buffer (reserved by the caller). */
static void put_str_raw(cn__obuf_t *b, const char *s, size_t n, bool clean)
{
    char *o = b->p + b->len;
    b->len += n;
    if (clean) {
        copy_short(o, s, n);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int k = *p < 0x80 ? 1 : cn__utf8_len(p);
        if (k) {
            memcpy(o, p, (size_t)k);
            o += k;
            p += k;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        }
    }
}

static void put_str_field(cn__obuf_t *b, unsigned field, const char *s)
{
    bool clean;
    size_t n = str_size(s ? s : "", &clean);
    if (!cn__obuf_reserve(b, 20 + n))
        return;
    put_varint_raw(b, (uint64_t)field << 3 | WT_LEN);
    put_varint_raw(b, n);
    put_str_raw(b, s ? s : "", n, clean);
}

/* A message of unknown length: the key, `guess` bytes for its length (the
 * varint size the caller expects: 2 for a span, 3 for a batch), then the body;
 * close_msg() writes the length and, when the guess was wrong, moves the body
 * by the difference. Returns the body's offset. */
static size_t open_msg(cn__obuf_t *b, unsigned field, size_t guess)
{
    put_key(b, field, WT_LEN);
    if (!cn__obuf_reserve(b, guess))
        return 0;
    b->len += guess;
    return b->len;
}

static void close_msg(cn__obuf_t *b, size_t body, size_t guess)
{
    if (b->oom)
        return;
    size_t n = b->len - body, k = varint_size(n);
    if (k > guess && !cn__obuf_reserve(b, k - guess))
        return;
    char *at = b->p + body - guess;
    if (k != guess)
        memmove(at + k, b->p + body, n);
    b->len = body - guess;
    put_varint_raw(b, n);
    b->len += n;
}

/* KeyValue (field `field` of its parent) with a string value: both lengths are
 * known first, so it is written straight through. */
static void put_kv_str(cn__obuf_t *b, unsigned field, const char *key, const char *val, size_t vlen)
{
    bool kc, vc;
    if (val == NULL)
        val = "";
    size_t kn = str_size(key, &kc), vn = str_size_n(val, vlen ? vlen : strlen(val), &vc);
    size_t any = 1 + varint_size(vn) + vn;                       /* AnyValue */
    size_t kv = 1 + varint_size(kn) + kn + 1 + varint_size(any) + any;
    if (!cn__obuf_reserve(b, 10 + varint_size(kv) + kv))
        return;
    put_varint_raw(b, (uint64_t)field << 3 | WT_LEN);
    put_varint_raw(b, kv);
    put_varint_raw(b, 1 << 3 | WT_LEN);
    put_varint_raw(b, kn);
    put_str_raw(b, key, kn, kc);
    put_varint_raw(b, 2 << 3 | WT_LEN);
    put_varint_raw(b, any);
    put_varint_raw(b, 1 << 3 | WT_LEN);
    put_varint_raw(b, vn);
    put_str_raw(b, val, vn, vc);
}

/* KeyValue with a scalar value (int64, double, bool): sizes known first too. */
static void put_kv_scalar(cn__obuf_t *b, unsigned field, const cn__attr_t *a)
{
    bool kc;
    size_t kn = str_size(a->key, &kc);
    unsigned vfield, wt;
    uint64_t v;
    size_t vlen;
    switch (a->type) {
    case CN__ATTR_INT:
        vfield = 3, wt = WT_VARINT, v = (uint64_t)a->v.i; /* negative: 10 bytes */
        vlen = varint_size(v);
        break;
    case CN__ATTR_DOUBLE:
        vfield = 4, wt = WT_I64, vlen = 8;
        memcpy(&v, &a->v.d, sizeof v);
        break;
    default: /* CN__ATTR_BOOL */
        vfield = 2, wt = WT_VARINT, v = a->v.b ? 1 : 0, vlen = 1;
        break;
    }
    size_t any = 1 + vlen;
    size_t kv = 1 + varint_size(kn) + kn + 1 + varint_size(any) + any;
    if (!cn__obuf_reserve(b, 10 + varint_size(kv) + kv))
        return;
    put_varint_raw(b, (uint64_t)field << 3 | WT_LEN);
    put_varint_raw(b, kv);
    put_varint_raw(b, 1 << 3 | WT_LEN);
    put_varint_raw(b, kn);
    put_str_raw(b, a->key, kn, kc);
    put_varint_raw(b, 2 << 3 | WT_LEN);
    put_varint_raw(b, any);
    put_varint_raw(b, vfield << 3 | wt);
    if (wt == WT_VARINT) {
        put_varint_raw(b, v);
    } else {
        put_le64(b, v);
    }
}

/* The cache of static key/values: direct-mapped by the two pointers; an entry
 * holds the whole encoded KeyValue of a span attribute (field 9), tag included.
 * Statement texts and constants are the same bytes span after span: copying
 * them is cheaper than measuring, checking and writing them again. */
#define PB_CACHE_SLOTS 64
#define PB_CACHE_MAX 2048 /* bytes of one entry at most */

struct cn__pb_cache {
    struct pb_entry {
        const char *key, *val;
        uint32_t len;
        char *bytes;
    } e[PB_CACHE_SLOTS];
};

cn__pb_cache_t *cn__pb_cache_new(void)
{
    return calloc(1, sizeof(cn__pb_cache_t));
}

void cn__pb_cache_free(cn__pb_cache_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < PB_CACHE_SLOTS; i++)
        free(c->e[i].bytes);
    free(c);
}

static void put_attr(cn__obuf_t *b, unsigned field, const cn__attr_t *a, cn__pb_cache_t *c)
{
    if (a->type != CN__ATTR_STR) {
        put_kv_scalar(b, field, a);
        return;
    }
    if (!a->fixed || c == NULL) {
        put_kv_str(b, field, a->key, a->v.s, a->slen);
        return;
    }
    uintptr_t h = ((uintptr_t)a->key >> 3) * 31 + ((uintptr_t)a->v.s >> 3);
    struct pb_entry *e = &c->e[(h ^ h >> 7) % PB_CACHE_SLOTS];
    if (e->key == a->key && e->val == a->v.s) {
        if (cn__obuf_reserve(b, e->len)) {
            memcpy(b->p + b->len, e->bytes, e->len);
            b->len += e->len;
        }
        return;
    }
    size_t at = b->len;
    put_kv_str(b, field, a->key, a->v.s, a->slen);
    size_t n = b->len - at;
    if (b->oom || n > PB_CACHE_MAX)
        return;
    char *bytes = realloc(e->bytes, n);
    if (bytes == NULL)
        return; /* the old entry stays valid */
    memcpy(bytes, b->p + at, n);
    e->key = a->key;
    e->val = a->v.s;
    e->len = (uint32_t)n;
    e->bytes = bytes;
}

static void put_resource(cn__obuf_t *b, const char *service_name, const char *extra)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    size_t res = open_msg(b, 1, 2);
    /* OTEL_RESOURCE_ATTRIBUTES first; service.name from OTEL_SERVICE_NAME wins. */
    if (extra) {
        char *copy = strdup(extra), *save = NULL;
        if (copy == NULL)
            b->oom = true;
        for (char *p = copy ? strtok_r(copy, ",", &save) : NULL; p; p = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(p, '=');
            if (eq == NULL || eq == p)
                continue;
            *eq = '\0';
            while (*p == ' ')
                p++;
            cn__otlp_pct_decode(eq + 1);
            if (strcmp(p, "service.name") == 0)
                continue;
            put_kv_str(b, 1, p, eq + 1, 0);
        }
        free(copy);
    }
    put_kv_str(b, 1, "service.name", service_name ? service_name : "unknown_service", 0);
    put_kv_str(b, 1, "telemetry.sdk.name", "libcnode", 0);
    put_kv_str(b, 1, "telemetry.sdk.language", "c", 0);
    put_kv_str(b, 1, "telemetry.sdk.version", SCOPE_VERSION, 0);
    if (host[0])
        put_kv_str(b, 1, "host.name", host, 0);
    close_msg(b, res, 2);
}

static void put_span(cn__obuf_t *b, const cn_span_t *s, cn__pb_cache_t *c)
{
    size_t span = open_msg(b, 2, 2);
    put_bytes_field(b, 1, s->ctx.trace_id, 16);
    put_bytes_field(b, 2, s->ctx.span_id, 8);
    if (s->has_parent)
        put_bytes_field(b, 4, s->parent_id, 8);
    put_str_field(b, 5, s->name ? s->name : "span");
    put_varint_field(b, 6, s->kind);
    put_fixed64_field(b, 7, s->start_ns);
    put_fixed64_field(b, 8, s->end_ns);
    for (uint16_t i = 0; i < s->nattrs; i++)
        put_attr(b, 9, &s->attrs[i], c);
    if (s->dropped_attrs)
        put_varint_field(b, 10, s->dropped_attrs);
    for (uint16_t i = 0; i < s->nevents; i++) {
        const cn__event_t *e = &s->events[i];
        size_t ev = open_msg(b, 11, 1);
        put_fixed64_field(b, 1, e->time_ns);
        put_str_field(b, 2, e->name ? e->name : "event");
        if (e->key)
            put_kv_str(b, 3, e->key, e->value, 0);
        close_msg(b, ev, 1);
    }
    if (s->dropped_events)
        put_varint_field(b, 12, s->dropped_events);
    /* Status is always written, as otlp.c does: code 0 (unset) is then explicit. */
    if (s->status_msg == NULL) {
        if (cn__obuf_reserve(b, 4)) {
            put_varint_raw(b, 15 << 3 | WT_LEN);
            put_varint_raw(b, s->status ? 2 : 0);
            if (s->status) {
                put_varint_raw(b, 3 << 3 | WT_VARINT);
                put_varint_raw(b, s->status);
            }
        }
    } else {
        size_t st = open_msg(b, 15, 1);
        put_str_field(b, 2, s->status_msg);
        if (s->status)
            put_varint_field(b, 3, s->status);
        close_msg(b, st, 1);
    }
    close_msg(b, span, 2);
}

size_t cn__otlp_encode_pb_buf(char **buf, size_t *cap, const char *service_name,
                              const char *resource_attrs, cn_span_t *const *spans, uint32_t n,
                              cn__pb_cache_t *cache)
{
    cn__obuf_t b = { .p = *buf, .len = 0, .cap = *cap };
    /* About 300 bytes a span: a reused buffer is big enough after the first. */
    cn__obuf_reserve(&b, 512 + (size_t)n * 384);
    size_t rs = open_msg(&b, 1, 3);
    put_resource(&b, service_name, resource_attrs);
    size_t ss = open_msg(&b, 2, 3);
    size_t scope = open_msg(&b, 1, 1);
    put_str_field(&b, 1, SCOPE_NAME);
    put_str_field(&b, 2, SCOPE_VERSION);
    close_msg(&b, scope, 1);
    for (uint32_t i = 0; i < n; i++)
        put_span(&b, spans[i], cache);
    close_msg(&b, ss, 3);
    close_msg(&b, rs, 3);
    *buf = b.p;
    *cap = b.cap;
    return b.oom ? 0 : b.len;
}
