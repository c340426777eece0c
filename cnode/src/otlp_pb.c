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
 * resource) gets the bytes its length usually needs reserved (2 for a span: 128
 * to 16383 bytes); the rare one that needs another size is moved. Key/value
 * pairs, the bulk of a span, have lengths known beforehand and are written in
 * one go, their keys copied from a cache. Strings must be UTF-8 in protobuf: a
 * byte that is not part of a valid sequence becomes U+FFFD, as in otlp.c.
 *
 * The exporter encodes each span when it ends (cn__otlp_pb_span) into the batch
 * being filled, after room for the request's opening; the resource and scope
 * are encoded once (cn__otlp_pb_head), and the opening, whose lengths depend on
 * the batch, is written in front of the spans at export (cn__otlp_pb_open).
 * No libcnode calls.
 */
#include "telemetry_int.h"

#include <stdlib.h>
#include <string.h>


enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

static inline size_t varint_size(uint64_t v)
{
    if (v < 0x80) /* most lengths and values of a span */
        return 1;
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
    /* The n bytes, NULs included (valid UTF-8); s[n] is a NUL, so a sequence
     * cut by the end fails its continuation test there and reads no further. */
    const unsigned char *p = (const unsigned char *)s;
    size_t out = i;
    while (i < n) {
        int k = p[i] < 0x80 ? 1 : cn__utf8_len(p + i);
        if (k && i + (size_t)k <= n) {
            i += (size_t)k;
            out += (size_t)k;
        } else {
            *clean = false;
            i++;
            out += 3;
        }
    }
    return out;
}

/* Copy the n_in bytes of s, of encoded size n (str_size_n), to the buffer
 * (reserved by the caller); each byte that is not part of a valid sequence
 * becomes U+FFFD, exactly as str_size_n counted. */
static void put_str_raw(cn__obuf_t *b, const char *s, size_t n_in, size_t n, bool clean)
{
    char *o = b->p + b->len;
    b->len += n;
    if (clean) {
        cn__copy_small(o, s, n);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n_in;) {
        int k = p[i] < 0x80 ? 1 : cn__utf8_len(p + i);
        if (k && i + (size_t)k <= n_in) {
            memcpy(o, p + i, (size_t)k);
            o += k;
            i += (size_t)k;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
}

static void put_str_field(cn__obuf_t *b, unsigned field, const char *s)
{
    bool clean;
    if (s == NULL)
        s = "";
    size_t sn = strlen(s), n = str_size_n(s, sn, &clean);
    if (!cn__obuf_reserve(b, 20 + n))
        return;
    put_varint_raw(b, (uint64_t)field << 3 | WT_LEN);
    put_varint_raw(b, n);
    put_str_raw(b, s, sn, n, clean);
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

/* open_msg(b, 2, 2) for a span, inline: the key and two bytes for the length. */
static inline size_t open_span(cn__obuf_t *b)
{
    if (!cn__obuf_reserve(b, 3))
        return 0;
    b->p[b->len] = 2 << 3 | WT_LEN;
    b->len += 3;
    return b->len;
}

static void close_msg(cn__obuf_t *b, size_t body, size_t guess);

/* close_msg(b, body, 2), inline for the usual span of 128 to 16383 bytes. */
static inline void close_span(cn__obuf_t *b, size_t body)
{
    size_t n = b->len - body;
    if (b->oom || n < 0x80 || n >= 1u << 14) {
        close_msg(b, body, 2);
        return;
    }
    b->p[body - 2] = (char)(n | 0x80);
    b->p[body - 1] = (char)(n >> 7);
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
    size_t kl = strlen(key), vl = vlen ? vlen : strlen(val);
    size_t kn = str_size_n(key, kl, &kc), vn = str_size_n(val, vl, &vc);
    size_t any = 1 + varint_size(vn) + vn;                       /* AnyValue */
    size_t kv = 1 + varint_size(kn) + kn + 1 + varint_size(any) + any;
    if (!cn__obuf_reserve(b, 10 + varint_size(kv) + kv))
        return;
    put_varint_raw(b, (uint64_t)field << 3 | WT_LEN);
    put_varint_raw(b, kv);
    put_varint_raw(b, 1 << 3 | WT_LEN);
    put_varint_raw(b, kn);
    put_str_raw(b, key, kl, kn, kc);
    put_varint_raw(b, 2 << 3 | WT_LEN);
    put_varint_raw(b, any);
    put_varint_raw(b, 1 << 3 | WT_LEN);
    put_varint_raw(b, vn);
    put_str_raw(b, val, vl, vn, vc);
}

/* KeyValue with a scalar value (int64, double, bool): sizes known first too. */
static void put_kv_scalar(cn__obuf_t *b, unsigned field, const cn__attr_t *a)
{
    bool kc;
    size_t kl = strlen(a->key), kn = str_size_n(a->key, kl, &kc);
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
    put_str_raw(b, a->key, kl, kn, kc);
    put_varint_raw(b, 2 << 3 | WT_LEN);
    put_varint_raw(b, any);
    put_varint_raw(b, vfield << 3 | wt);
    if (wt == WT_VARINT) {
        put_varint_raw(b, v);
    } else {
        put_le64(b, v);
    }
}

/* ---------------------------------------------------------------------------------
 * The cache: keys and static attributes
 * ------------------------------------------------------------------------------ */

/* Two direct-mapped tables by pointer. Keys are literals (telemetry.h), so the
 * start of a KeyValue that holds the key (0x0a, its length, its bytes) is the
 * same bytes span after span: copied, not measured and checked again. Static
 * attributes (cn_span_add_static_str: statement texts, constants) are cached
 * whole, tag included, by key and value pointer. */
#define PB_KEY_BITS 7
#define PB_KEY_SLOTS (1 << PB_KEY_BITS)
#define PB_KEY_MAX 64     /* bytes of an encoded key: keys of up to 62 bytes */
#define PB_CACHE_SLOTS 64
#define PB_CACHE_MAX 2048 /* bytes of one static attribute at most */

struct cn__pb_cache {
    struct pb_key {
        const char *key;
        uint32_t len;         /* bytes of enc used */
        char enc[PB_KEY_MAX];
    } k[PB_KEY_SLOTS];
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

/* True when n bytes of s are all below 0x80 (ASCII or NUL: valid UTF-8 as they
 * are), eight at a time. */
static inline bool ascii_n(const char *s, size_t n)
{
    uint64_t acc = 0, w;
    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8) {
            memcpy(&w, s + i, 8);
            acc |= w;
        }
        memcpy(&w, s + n - 8, 8);
        acc |= w;
    } else {
        for (size_t i = 0; i < n; i++)
            acc |= (unsigned char)s[i];
    }
    return (acc & 0x8080808080808080ull) == 0;
}

/* Copy n bytes of s to o (reserved by the caller) and say whether they are
 * all below 0x80, with the same loads: the short strings of a span (a path, an
 * address, a route) take a few moves and no call. */
static inline bool copy_ascii(char *o, const char *s, size_t n)
{
    if (n > 32) {
        memcpy(o, s, n);
        return ascii_n(s, n);
    }
    if (n >= 8) {
        uint64_t w, acc = 0;
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&w, s + i, 8);
            memcpy(o + i, &w, 8);
            acc |= w;
        }
        memcpy(&w, s + n - 8, 8);
        memcpy(o + n - 8, &w, 8);
        acc |= w;
        return (acc & 0x8080808080808080ull) == 0;
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(o, &a, 4);
        memcpy(o + n - 4, &b, 4);
        return ((a | b) & 0x80808080u) == 0;
    }
    if (n == 0)
        return true;
    /* 1 to 3 bytes (a method, a version, the root path): the first, the
     * middle and the last one, which overlap as needed; no loop. */
    unsigned char x = (unsigned char)s[0], y = (unsigned char)s[n / 2],
                  z = (unsigned char)s[n - 1];
    o[0] = (char)x;
    o[n / 2] = (char)y;
    o[n - 1] = (char)z;
    return (x | y | z) < 0x80;
}

static const struct pb_key *key_fill(struct pb_key *k, const char *key);

/* The encoded key from the cache, filled on a miss. Open addressing: the slot
 * of the key's hash or one of the next three (keys are literals, few and never
 * removed; when the four are taken, the first is replaced). */
static inline const struct pb_key *key_enc(cn__pb_cache_t *c, const char *key)
{
    /* Fibonacci hashing: literals sit a few bytes apart, and their pointers'
     * low bits alone collide. */
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15ull;
    size_t i = h >> (64 - PB_KEY_BITS);
    for (size_t j = 0; j < 4; j++) {
        struct pb_key *k = &c->k[(i + j) % PB_KEY_SLOTS];
        if (k->key == key)
            return k;
        if (k->key == NULL)
            return key_fill(k, key);
    }
    return key_fill(&c->k[i], key);
}

/* NULL when the key is too long or not ASCII (the caller then takes the
 * general path). */
static const struct pb_key *key_fill(struct pb_key *k, const char *key)
{
    size_t n = strlen(key);
    if (n > PB_KEY_MAX - 2 || !ascii_n(key, n))
        return NULL;
    k->enc[0] = 1 << 3 | WT_LEN;
    k->enc[1] = (char)n;
    memcpy(k->enc + 2, key, n);
    k->len = (uint32_t)n + 2;
    k->key = key;
    return k;
}

/* 8 little-endian bytes at o (a single store on little-endian hosts). */
static inline char *le64_p(char *o, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(o, &v, 8);
#else
    for (int i = 0; i < 8; i++)
        o[i] = (char)(v >> (8 * i));
#endif
    return o + 8;
}

static inline char *varint_p(char *o, uint64_t v)
{
    if (v < 0x80) {
        *o = (char)v;
        return o + 1;
    }
    while (v >= 0x80) {
        *o++ = (char)(v | 0x80);
        v >>= 7;
    }
    *o++ = (char)v;
    return o;
}

/* The usual attribute: a cached key and an ASCII string or a scalar value,
 * written in one go. False (nothing written) when it is not that case. */
static bool put_attr_fast(cn__obuf_t *b, unsigned field, const cn__attr_t *a, cn__pb_cache_t *c)
{
    const struct pb_key *k = key_enc(c, a->key);
    if (k == NULL)
        return false;
    const char *v = NULL;
    size_t vn = 0, any;
    uint64_t x = 0;
    switch (a->type) {
    case CN__ATTR_STR:
        v = a->v.s ? a->v.s : "";
        vn = a->slen ? a->slen : strlen(v);
        any = 1 + varint_size(vn) + vn; /* if it is ASCII: checked as it is copied */
        break;
    case CN__ATTR_INT:
        x = (uint64_t)a->v.i; /* negative: 10 bytes */
        any = 1 + varint_size(x);
        break;
    case CN__ATTR_DOUBLE:
        memcpy(&x, &a->v.d, sizeof x);
        any = 9;
        break;
    default: /* CN__ATTR_BOOL */
        x = a->v.b ? 1 : 0;
        any = 2;
        break;
    }
    size_t kv = k->len + 1 + varint_size(any) + any;
    /* PB_KEY_MAX of slack: the key is copied whole, a constant-size move. */
    if (!cn__obuf_reserve(b, 1 + 10 + kv + PB_KEY_MAX))
        return true;
    char *o = b->p + b->len;
    *o++ = (char)(field << 3 | WT_LEN);
    o = varint_p(o, kv);
    memcpy(o, k->enc, PB_KEY_MAX);
    o += k->len;
    *o++ = 2 << 3 | WT_LEN;
    o = varint_p(o, any);
    switch (a->type) {
    case CN__ATTR_STR:
        *o++ = 1 << 3 | WT_LEN;
        o = varint_p(o, vn);
        if (!copy_ascii(o, v, vn))
            return false; /* b->len unchanged: the general path writes it over */
        o += vn;
        break;
    case CN__ATTR_INT:
        *o++ = 3 << 3 | WT_VARINT;
        o = varint_p(o, x);
        break;
    case CN__ATTR_DOUBLE:
        *o++ = 4 << 3 | WT_I64;
        o = le64_p(o, x);
        break;
    default:
        *o++ = 2 << 3 | WT_VARINT;
        *o++ = (char)x;
        break;
    }
    b->len = (size_t)(o - b->p);
    return true;
}

/* The commonest attribute of all, a string or an int whose KeyValue is under
 * 128 bytes (every length one byte), written with no size computation and no
 * branch per field. False (nothing written) when it is not that one. */
static inline bool put_attr_short(cn__obuf_t *b, unsigned field, const cn__attr_t *a,
                                  cn__pb_cache_t *c)
{
    if (a->type == CN__ATTR_STR ? a->v.s == NULL : a->type != CN__ATTR_INT)
        return false;
    const struct pb_key *k = key_enc(c, a->key);
    if (k == NULL || !cn__obuf_reserve(b, 2 + 128 + PB_KEY_MAX))
        return false;
    char *o = b->p + b->len;
    o[0] = (char)(field << 3 | WT_LEN);
    memcpy(o + 2, k->enc, PB_KEY_MAX);
    char *v = o + 2 + k->len; /* the AnyValue's field */
    size_t kv;
    if (a->type == CN__ATTR_STR) {
        size_t vn = a->slen ? a->slen : strlen(a->v.s);
        kv = k->len + 4 + vn;
        if (kv >= 128 || !copy_ascii(v + 4, a->v.s, vn))
            return false;
        v[0] = 2 << 3 | WT_LEN;
        v[1] = (char)(vn + 2);
        v[2] = 1 << 3 | WT_LEN;
        v[3] = (char)vn;
    } else {
        if (a->v.i < 0 || a->v.i >= 1 << 14)
            return false; /* status codes and ports: one or two bytes */
        uint64_t x = (uint64_t)a->v.i;
        size_t xn = x < 0x80 ? 1 : 2;
        kv = k->len + 3 + xn;
        v[0] = 2 << 3 | WT_LEN;
        v[1] = (char)(xn + 1);
        v[2] = 3 << 3 | WT_VARINT;
        varint_p(v + 3, x);
    }
    o[1] = (char)kv;
    b->len += 2 + kv;
    return true;
}

static void put_attr(cn__obuf_t *b, unsigned field, const cn__attr_t *a, cn__pb_cache_t *c)
{
    struct pb_entry *e = NULL, *set = NULL;
    if (c && a->fixed && a->type == CN__ATTR_STR) {
        /* Sets of two entries, the newer first: two attributes whose
         * pointers hash alike (each statement span's three, say) would
         * otherwise take one slot in turn, and each span would miss. */
        uintptr_t h = ((uintptr_t)a->key >> 3) * 31 + ((uintptr_t)a->v.s >> 3);
        set = &c->e[(h ^ h >> 7) % (PB_CACHE_SLOTS / 2) * 2];
        e = &set[0];
        if (e->key != a->key || e->val != a->v.s)
            e = &set[1]; /* on a miss, the entry replaced */
        if (e->key == a->key && e->val == a->v.s) {
            /* Most are short: a constant-size copy (the entry has PB_KEY_MAX
             * bytes at least, the buffer as much of slack), no call. */
            if (cn__obuf_reserve(b, e->len + PB_KEY_MAX)) {
                if (e->len <= PB_KEY_MAX)
                    memcpy(b->p + b->len, e->bytes, PB_KEY_MAX);
                else
                    memcpy(b->p + b->len, e->bytes, e->len);
                b->len += e->len;
            }
            return;
        }
    }
    size_t at = b->len;
    if (c == NULL || (!put_attr_short(b, field, a, c) && !put_attr_fast(b, field, a, c))) {
        if (a->type == CN__ATTR_STR)
            put_kv_str(b, field, a->key, a->v.s, a->slen);
        else
            put_kv_scalar(b, field, a);
    }
    size_t n = b->len - at;
    if (e == NULL || b->oom || n > PB_CACHE_MAX)
        return;
    char *bytes = realloc(e->bytes, n < PB_KEY_MAX ? PB_KEY_MAX : n);
    if (bytes == NULL)
        return; /* the old entry stays valid */
    memcpy(bytes, b->p + at, n);
    e->key = a->key;
    e->val = a->v.s;
    e->len = (uint32_t)n;
    e->bytes = bytes;
    struct pb_entry newer = set[1]; /* e is set[1]: it goes first */
    set[1] = set[0];
    set[0] = newer;
}

/* ---------------------------------------------------------------------------------
 * The HTTP server span's own attributes (cn__span_http_t)
 * ------------------------------------------------------------------------------ */

/* A Span's KeyValue (field 9) of a literal key of kl < 64 bytes and an ASCII
 * string value of n <= CN__SPAN_BORROW_MAX bytes, at o (reserved by the
 * caller); the key's length is a constant where this is inlined, so its copy is
 * a few moves. NULL (o is left as it was written) when the value is not ASCII.
 * The usual value is short enough for every length to take one byte: then
 * the framing is four constant bytes around the key and two computed ones,
 * with no varint loop. */
static inline __attribute__((always_inline)) char *kv_lit_str(char *o, const char *key,
                                                              size_t kl, const char *v,
                                                              size_t n)
{
    if (n + kl + 6 < 0x80) { /* kv = kl + n + 6 bytes: all lengths one byte */
        o[0] = 9 << 3 | WT_LEN;
        o[1] = (char)(kl + n + 6);
        o[2] = 1 << 3 | WT_LEN;
        o[3] = (char)kl;
        memcpy(o + 4, key, kl);
        char *a = o + 4 + kl;
        a[0] = 2 << 3 | WT_LEN;
        a[1] = (char)(n + 2);
        a[2] = 1 << 3 | WT_LEN;
        a[3] = (char)n;
        return copy_ascii(a + 4, v, n) ? a + 4 + n : NULL;
    }
    size_t any = 1 + varint_size(n) + n, kv = 2 + kl + 1 + varint_size(any) + any;
    *o++ = 9 << 3 | WT_LEN;
    o = varint_p(o, kv);
    *o++ = 1 << 3 | WT_LEN;
    *o++ = (char)kl;
    memcpy(o, key, kl);
    o += kl;
    *o++ = 2 << 3 | WT_LEN;
    o = varint_p(o, any);
    *o++ = 1 << 3 | WT_LEN;
    o = varint_p(o, n);
    if (!copy_ascii(o, v, n))
        return NULL;
    return o + n;
}

/* The same with an int value of 0 <= x < 2^21 (a port, a status code). */
static inline __attribute__((always_inline)) char *kv_lit_int(char *o, const char *key,
                                                              size_t kl, uint32_t x)
{
    size_t xn = varint_size(x), kv = 2 + kl + 2 + 1 + xn;
    *o++ = 9 << 3 | WT_LEN;
    *o++ = (char)kv;
    *o++ = 1 << 3 | WT_LEN;
    *o++ = (char)kl;
    memcpy(o, key, kl);
    o += kl;
    *o++ = 2 << 3 | WT_LEN;
    *o++ = (char)(1 + xn);
    *o++ = 3 << 3 | WT_VARINT;
    return varint_p(o, x);
}

/* Bytes one of them takes at most: a value of CN__SPAN_BORROW_MAX, a key of
 * up to 25 and the KeyValue's framing (8); and all of them (11 at most). */
#define HTTP_KV_MAX (CN__SPAN_BORROW_MAX + 40)
#define HTTP_ALL_MAX (11 * HTTP_KV_MAX)

/* A string attribute at o: in one go when it is ASCII, else through
 * put_kv_str, which replaces what is not UTF-8 as for any attribute (n > 0
 * there: an empty value is ASCII), after which the room is reserved again. */
#define HTTP_STR(lit, v, n)                                                              \
    do {                                                                                 \
        char *o2_ = kv_lit_str(o, lit, sizeof(lit) - 1, v, n);                           \
        if (o2_) {                                                                       \
            o = o2_;                                                                     \
        } else {                                                                         \
            b->len = (size_t)(o - b->p);                                                 \
            put_kv_str(b, 9, lit, v, n);                                                 \
            if (!cn__obuf_reserve(b, HTTP_ALL_MAX))                                      \
                return;                                                                  \
            o = b->p + b->len;                                                           \
        }                                                                                \
    } while (0)

#define HTTP_INT(lit, x) (o = kv_lit_int(o, lit, sizeof(lit) - 1, x))

/* Written as cn__span_http_attrs would add them, in the same order, with the
 * same values (the encodings are the same bytes): keys are constants here,
 * not looked up, and no attribute is recorded before. The room for all of
 * them is reserved once; url.scheme and network.protocol.version are
 * literals, which the compiler turns into stores of constants. */
static void put_http(cn__obuf_t *b, const cn__span_http_t *h)
{
    _Static_assert(CN__SPAN_BORROW_MAX < 16384, "two-byte lengths at most");
    if (!cn__obuf_reserve(b, HTTP_ALL_MAX))
        return;
    char *o = b->p + b->len;
    HTTP_STR("http.request.method", h->method, h->method_len);
    HTTP_STR("url.path", h->path, h->path_len);
    if (h->query)
        HTTP_STR("url.query", h->query, h->query_len);
    HTTP_STR("url.scheme", "http", 4);
    if (h->version[2] == '1') /* "1.1" or "1.0" */
        HTTP_STR("network.protocol.version", "1.1", 3);
    else
        HTTP_STR("network.protocol.version", "1.0", 3);
    if (h->host) {
        if (h->port >= 0)
            HTTP_INT("server.port", (uint32_t)h->port);
        HTTP_STR("server.address", h->host, h->host_len);
    }
    if (h->ua)
        HTTP_STR("user_agent.original", h->ua, h->ua_len);
    if (h->peer)
        HTTP_STR("client.address", h->peer, h->peer_len);
    if (h->route)
        HTTP_STR("http.route", h->route, h->route_len);
    if (h->status)
        HTTP_INT("http.response.status_code", (uint32_t)h->status);
    b->len = (size_t)(o - b->p);
}

/* ---------------------------------------------------------------------------------
 * The request
 * ------------------------------------------------------------------------------ */

static void put_resource(cn__obuf_t *b, const cn__resource_t *r)
{
    size_t res = open_msg(b, 1, 2);
    for (size_t i = 0; i < r->n; i++)
        put_kv_str(b, 1, r->attrs[i].key, r->attrs[i].value, 0);
    close_msg(b, res, 2);
}

void cn__otlp_pb_head(cn__obuf_t *b, const cn__resource_t *res, size_t *res_len)
{
    size_t at = b->len;
    put_resource(b, res);
    *res_len = b->len - at;
    size_t scope = open_msg(b, 1, 1);
    put_str_field(b, 1, CN__OTLP_SCOPE_NAME);
    put_str_field(b, 2, CN__OTLP_SCOPE_VERSION);
    close_msg(b, scope, 1);
}

size_t cn__otlp_pb_open(char *end, const char *head, size_t head_len, size_t res_len,
                        size_t spans_len)
{
    /* ExportTraceServiceRequest {1: ResourceSpans {1: Resource, 2: ScopeSpans
     * {1: scope, 2: spans...}}}: the two lengths are known now. */
    size_t scope_len = head_len - res_len, ss = scope_len + spans_len;
    size_t rs = res_len + 1 + varint_size(ss) + ss;
    size_t n = 1 + varint_size(rs) + res_len + 1 + varint_size(ss) + scope_len;
    char *o = end - n;
    *o++ = 1 << 3 | WT_LEN;
    o = varint_p(o, rs);
    memcpy(o, head, res_len);
    o += res_len;
    *o++ = 2 << 3 | WT_LEN;
    o = varint_p(o, ss);
    memcpy(o, head + res_len, scope_len);
    return n;
}

/* The fields before the attributes in one go, when the name (nn < 128 bytes)
 * is ASCII, as it nearly always is (a method and a route, a service and a
 * call). False (nothing written) otherwise. */
static bool put_span_fixed(cn__obuf_t *b, const cn_span_t *s, const char *name, size_t nn)
{
    if (!cn__obuf_reserve(b, 18 + 10 + 10 + 2 + nn + 11 + 18))
        return true; /* ENOMEM: the batch is dropped */
    char *o = b->p + b->len;
    *o++ = 1 << 3 | WT_LEN;
    *o++ = 16;
    memcpy(o, s->ctx.trace_id, 16);
    o += 16;
    *o++ = 2 << 3 | WT_LEN;
    *o++ = 8;
    memcpy(o, s->ctx.span_id, 8);
    o += 8;
    if (s->has_parent) {
        *o++ = 4 << 3 | WT_LEN;
        *o++ = 8;
        memcpy(o, s->parent_id, 8);
        o += 8;
    }
    *o++ = 5 << 3 | WT_LEN;
    *o++ = (char)nn;
    if (!copy_ascii(o, name, nn))
        return false; /* b->len unchanged: the general path writes over it */
    o += nn;
    *o++ = 6 << 3 | WT_VARINT;
    o = varint_p(o, s->kind);
    *o++ = 7 << 3 | WT_I64;
    o = le64_p(o, s->start_ns);
    *o++ = 8 << 3 | WT_I64;
    o = le64_p(o, s->end_ns);
    b->len = (size_t)(o - b->p);
    return true;
}

void cn__otlp_pb_span(cn__obuf_t *b, const cn_span_t *s, cn__pb_cache_t *c)
{
    size_t span = open_span(b);
    /* The fixed fields in one go when the name is ASCII (it nearly always is:
     * a method and a route, a service and a call). */
    const char *name = s->name ? s->name : "span";
    size_t nn = s->name && s->name_len ? s->name_len : strlen(name);
    if (nn >= 128 || !put_span_fixed(b, s, name, nn)) {
        put_bytes_field(b, 1, s->ctx.trace_id, 16);
        put_bytes_field(b, 2, s->ctx.span_id, 8);
        if (s->has_parent)
            put_bytes_field(b, 4, s->parent_id, 8);
        put_str_field(b, 5, name);
        put_varint_field(b, 6, s->kind);
        put_fixed64_field(b, 7, s->start_ns);
        put_fixed64_field(b, 8, s->end_ns);
    }
    if (s->http)
        put_http(b, &s->h);
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
    close_span(b, span);
}

size_t cn__otlp_encode_pb_buf(char **buf, size_t *cap, const char *service_name,
                              const char *resource_attrs, cn_span_t *const *spans, uint32_t n,
                              cn__pb_cache_t *cache)
{
    /* As the exporter does it: the head apart, the spans after room for the
     * opening, then the opening in front of them; here the request is moved to
     * the buffer's start, as callers expect. */
    cn__obuf_t h = { 0 };
    size_t res_len = 0;
    cn__resource_t res;
    if (cn__resource_init(&res, service_name, resource_attrs) == 0) {
        cn__otlp_pb_head(&h, &res, &res_len);
        cn__resource_free(&res);
    } else {
        h.oom = true;
    }
    size_t room = h.len + CN__OTLP_PB_OPEN_MAX;
    cn__obuf_t b = { .p = *buf, .len = 0, .cap = *cap, .oom = h.oom };
    /* About 300 bytes a span: a reused buffer is big enough after the first. */
    if (cn__obuf_reserve(&b, room + 512 + (size_t)n * 384))
        b.len = room;
    for (uint32_t i = 0; i < n; i++)
        cn__otlp_pb_span(&b, spans[i], cache);
    size_t len = 0;
    if (!b.oom) {
        size_t k = cn__otlp_pb_open(b.p + room, h.p, h.len, res_len, b.len - room);
        len = k + b.len - room;
        memmove(b.p, b.p + room - k, len);
    }
    free(h.p);
    *buf = b.p;
    *cap = b.cap;
    return len;
}
