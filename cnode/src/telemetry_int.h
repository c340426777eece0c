/* telemetry_int.h - private structures of the telemetry module (trace.c, otlp.c,
 * exporter.c, metrics.c, telemetry_hooks.c) and the hooks the core calls.
 *
 * Reading order: a span as it is kept until it ends, the per-node telemetry state
 * (n->telemetry), then the hooks: the core calls them only when n->telemetry is
 * set, so a node without telemetry pays one pointer test per request or call.
 */
#ifndef CNODE_TELEMETRY_INT_H
#define CNODE_TELEMETRY_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <ei.h>

#include "cnode/gen_server.h"
#include "cnode/telemetry.h"
#include "cnode_int.h"

/* ---------------------------------------------------------------------------------
 * Spans
 * ------------------------------------------------------------------------------ */

enum { CN__ATTR_STR = 1, CN__ATTR_INT, CN__ATTR_DOUBLE, CN__ATTR_BOOL };

typedef struct cn__attr {
    const char *key;           /* borrowed (a literal) */
    uint8_t type;              /* CN__ATTR_* */
    bool fixed;                /* v.s is static (cn_span_add_static_str): the
                                  exporter may cache its encoding by pointer */
    uint16_t slen;             /* bytes of v.s without the NUL; 0: not known
                                  (strlen), as in spans made by hand */
    union {
        const char *s;         /* in the span's arena */
        int64_t i;
        double d;
        bool b;
    } v;
} cn__attr_t;

typedef struct cn__event {
    const char *name;          /* in the span's arena */
    uint64_t time_ns;          /* unix ns */
    const char *key;           /* borrowed, or NULL */
    const char *value;         /* in the span's arena, or NULL */
} cn__event_t;

/* Bytes of strings a span holds (name, string attributes, events, status): one
 * allocation per span, none per attribute. A value that does not fit is cut
 * (as OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT would); when nothing fits, the attribute
 * is dropped and counted. A typical HTTP span uses about 200 bytes. */
#define CN__SPAN_ARENA 1024

struct cn__tel;

/* The HTTP server span's own attributes, as its request's strings: recorded by
 * cn__tel_http_begin/_end in a few stores and encoded by the protobuf exporter
 * straight from here (otlp_pb.c, put_http), their keys' encodings constants -
 * half of what recording and encoding them as ten attributes cost. Anything
 * else that would read or change the span's attributes turns them into
 * attributes first (cn__span_http_attrs): the JSON encoder, cn_span_set_*, an
 * attribute added by a handler. Strings are borrowed (the request outlives the
 * span), at most CN__SPAN_BORROW_MAX bytes; host is not NUL-terminated (its
 * port is cut off: host[host_len] is the ':', still readable, as the UTF-8
 * checks read one byte past a cut sequence), the others are. */
typedef struct cn__span_http {
    const char *method, *path, *query, *host, *ua, *peer, *route; /* NULL: absent */
    const char *version;       /* network.protocol.version: "1.0" or "1.1" */
    uint16_t method_len, path_len, query_len, host_len, ua_len, peer_len, route_len;
    int32_t port;              /* server.port; -1: none */
    int32_t status;            /* http.response.status_code; 0: not set yet */
} cn__span_http_t;

struct cn_span {
    cn_span_ctx_t ctx;
    uint8_t parent_id[8];
    bool has_parent;
    bool recording;            /* sampled: attributes kept, exported */
    uint8_t kind;              /* enum cn_span_kind */
    uint8_t status;            /* enum cn_span_status */
    const char *status_msg;    /* in the arena, or NULL */
    const char *name;          /* in the arena */
    uint16_t name_len;         /* bytes of name; 0: not known (strlen), as in
                                  spans made by hand */
    uint64_t start_ns, end_ns; /* unix ns */
    cn_span_t *prev;           /* the owner process's previous current span */
    cn_pid_t owner;            /* process whose current span this is (nil: none) */
    uint16_t nattrs, dropped_attrs;
    uint16_t nevents, dropped_events;
    bool http;                 /* h holds attributes not in attrs yet */
    cn__attr_t attrs[CN_SPAN_MAX_ATTRS];
    cn__event_t events[CN_SPAN_MAX_EVENTS];
    cn__span_http_t h;         /* valid while http (not cleared at start) */
    struct cn__tel *tel;       /* whose free list takes it back; NULL: free() */
    uint16_t arena_len;        /* bytes of arena used */
    char arena[CN__SPAN_ARENA];
};

/* Copy str into the span's arena (cut to what is left); the copy, or NULL when
 * the arena is full. For spans made by hand (tests) as well. */
const char *cn__span_str(cn_span_t *s, const char *str);
const char *cn__span_strn(cn_span_t *s, const char *str, size_t len);
/* Attributes of a span just started whose keys it cannot hold yet: appended
 * without looking for an earlier value (the instrumentation's own spans). */
void cn__span_add_str(cn_span_t *s, const char *key, const char *value);
void cn__span_add_strn(cn_span_t *s, const char *key, const char *value, size_t len);
static inline void cn__span_add_int(cn_span_t *s, const char *key, int64_t value);
/* A value that stays valid and unchanged until the node is freed (a literal, the
 * node's name): not copied, and its encoding cached by the exporter. */
static inline void cn__span_add_static(cn_span_t *s, const char *key, const char *value,
                                       size_t len);
/* A value the span borrows: it stays valid and unchanged until the span has
 * ended (and so been encoded), as the HTTP server span's values from its
 * request do, and value[len] is its NUL. Not copied; a value longer than
 * CN__SPAN_BORROW_MAX is copied into the arena, so that it is cut as any
 * other. s is recording. */
#define CN__SPAN_BORROW_MAX 255
static inline void cn__span_add_borrowed(cn_span_t *s, const char *key, const char *value,
                                         size_t len);

/* Turn s->h into attributes (appended; nothing when s->http is false). */
void cn__span_http_attrs(cn_span_t *s);

/* Name the span "a<sep>b", or "a" when b is NULL, copied into the arena at
 * once (no intermediate buffer). */
void cn__span_set_name2(cn_span_t *s, const char *a, char sep, const char *b);
/* The same with the lengths known (al, bl bytes; b NULL: none). */
void cn__span_set_name2n(cn_span_t *s, const char *a, size_t al, char sep, const char *b,
                         size_t bl);

/* Free a span: back to its node's free list (on the node's scheduler thread,
 * where spans are freed: the exporter process, cn_span_end, process exits), or
 * free() when it has no node or the list is full. NULL is allowed. */
void cn__span_free(cn_span_t *s);

/* ---------------------------------------------------------------------------------
 * Per-node state (n->telemetry)
 * ------------------------------------------------------------------------------ */

typedef struct cn__metrics cn__metrics_t;     /* metrics.c */
typedef struct cn__exporter cn__exporter_t;   /* exporter.c */

typedef struct cn__tel {
    cn_node_t *node;
    bool started;              /* cn_telemetry_start ran */
    bool tracing;              /* spans are recorded */
    cn_telemetry_opts_t opts;  /* strings below are owned copies */
    char *endpoint, *headers, *service_name, *resource_attrs;
    uint64_t rng[2];           /* xoroshiro128+ state for ids and sampling */
    char **peers;              /* libcnode node names (ONEBLOG_TRACE_PEERS, add) */
    int npeers, cappeers;
    struct peer_cache {        /* cluster registry answers, 1 s */
        char name[64];
        bool ours;
        uint64_t at_ms;
    } pcache[16];
    int pcache_next;

    cn__metrics_t *metrics;
    cn__exporter_t *exp;
    cn_span_t *span_free;      /* spans to reuse (linked by prev), up to 1024 */
    uint32_t nspan_free;
    cn_http_server_t *metrics_srv;

    /* Built-in metrics (registered at start). */
    cn_metric_t *m_http_req, *m_http_dur;
    cn_metric_t *m_rpc_calls, *m_rpc_dur, *m_rpc_srv_calls, *m_rpc_srv_dur;
    uint64_t sched_cpu_ns, sched_wall_ns; /* at the previous scrape */
} cn__tel_t;

/* The node's telemetry, created on first use (NULL on ENOMEM). */
cn__tel_t *cn__tel_get(cn_node_t *n);
/* Free everything (cn_node_free calls this). NULL is allowed. */
void cn__telemetry_free(cn_node_t *n);

uint64_t cn__tel_unix_ns(void);
uint64_t cn__tel_mono_ns(void);
/* The span clock (unix ns): of a cn__tel_mono_ns() reading, and now. The
 * former inline (a span's start and end each take one): the offset's reading
 * once a second, cn__tel_span_clock, out of line. */
static inline uint64_t cn__tel_span_ns(uint64_t mono_ns);
uint64_t cn__tel_span_now(void);
extern _Atomic int64_t cn__span_clock_off;
extern _Atomic uint64_t cn__span_clock_next;
uint64_t cn__tel_span_clock(uint64_t mono_ns);

/* metrics.c */
int cn__metrics_new(cn__tel_t *t);
void cn__metrics_free(cn__metrics_t *m);
/* Register the built-in metrics of the core (HTTP, RPC, node). */
int cn__metrics_builtin(cn__tel_t *t);

/* exporter.c */
int cn__exporter_start(cn__tel_t *t);
/* Encode a finished recording span into the batch being filled and free it
 * (ownership taken); drops it when queue_size spans wait already. */
void cn__exporter_push(cn__tel_t *t, cn_span_t *s);
int cn__exporter_stop(cn__tel_t *t, int64_t timeout_ms);
void cn__exporter_free(cn__tel_t *t);
void cn__exporter_stats(cn__tel_t *t, uint64_t *exported, uint64_t *dropped,
                        uint64_t *failed, uint32_t *queued);

/* An export request is the part before the spans (the resource and the scope,
 * the same for every batch of an exporter: encoded once, the "head"), the
 * spans, each encoded when it ends (cn__exporter_push), and the closing. The
 * encoders have no libcnode calls: thread-safe. */

/* otlp_buf.c: the growable output buffer both OTLP encoders write into. A
 * write that does not fit grows it (realloc, doubling from 4 KiB); on ENOMEM oom
 * is set and stays set, and writes that still fit go on into the buffer, whose
 * content the caller then throws away: an encoder checks oom once, at the end,
 * not after every write. p is malloc'd (NULL while cap is 0), owned by whoever
 * holds the struct. */
typedef struct cn__obuf {
    char *p;
    size_t len, cap;           /* bytes written, bytes allocated */
    bool oom;
} cn__obuf_t;

/* Room for n more bytes: false after an ENOMEM. The slow path of
 * cn__obuf_reserve, out of line so that the inline fast path stays small. */
bool cn__obuf_grow(cn__obuf_t *b, size_t n);

/* The instrumentation scope both encoders name, and the SDK version they
 * give in the resource. */
#define CN__OTLP_SCOPE_NAME "libcnode"
#define CN__OTLP_SCOPE_VERSION "1"

/* otlp_resource.c: the resource's attributes, all strings, in the order the
 * encoders write them: the OTEL_RESOURCE_ATTRIBUTES pairs ("k=v,k2=v2"; keys
 * and values without their leading and trailing spaces and tabs, values then
 * percent-decoded; a pair without '=', without a key or with %00 in its
 * value, and service.name, skipped), then service.name
 * (OTEL_SERVICE_NAME, or "unknown_service"), telemetry.sdk.name, .language,
 * .version, and host.name when the host has a name. */
typedef struct cn__resource {
    struct cn__res_attr {
        const char *key, *value;
    } *attrs;                  /* n of them, malloc'd */
    size_t n;
    /* private */
    char *strs;                /* the pairs' keys and values, malloc'd */
    char host[256];
} cn__resource_t;
/* Parse pairs (NULL: none) into *r. service_name (NULL: none) is borrowed
 * until cn__resource_free. 0, or -ENOMEM (then *r holds nothing to free). */
int cn__resource_init(cn__resource_t *r, const char *service_name, const char *pairs);
void cn__resource_free(cn__resource_t *r);

/* otlp.c: an ExportTraceServiceRequest in OTLP/JSON for spans[0..n) of one
 * resource. Returns a malloc'd NUL-terminated string, or NULL on ENOMEM. */
char *cn__otlp_encode(const char *service_name, const char *resource_attrs,
                      cn_span_t *const *spans, uint32_t n);
/* The same into *buf (capacity *cap, grown with realloc and kept by the caller
 * for the next batch). Returns the length (without the NUL), or 0 on ENOMEM. */
size_t cn__otlp_encode_buf(char **buf, size_t *cap, const char *service_name,
                           const char *resource_attrs, cn_span_t *const *spans, uint32_t n);
/* The pieces: the request up to the spans' array, appended to b; one span
 * (first: no comma before it); the closing. */
void cn__otlp_json_head(cn__obuf_t *b, const cn__resource_t *res);
void cn__otlp_json_span(cn__obuf_t *b, const cn_span_t *s, bool first);
void cn__otlp_json_tail(cn__obuf_t *b);

/* otlp_pb.c: the same request in OTLP/protobuf (http/protobuf) into *buf, grown
 * with realloc and kept by the caller. Returns the length, or 0 on ENOMEM. */
typedef struct cn__pb_cache cn__pb_cache_t;
size_t cn__otlp_encode_pb_buf(char **buf, size_t *cap, const char *service_name,
                              const char *resource_attrs, cn_span_t *const *spans, uint32_t n,
                              cn__pb_cache_t *cache);
/* The pieces. The head: the Resource field of ResourceSpans (*res_len bytes)
 * then the scope field of ScopeSpans, appended to b. A span: field 2 of
 * ScopeSpans, appended to b. The opening: written so that it ends at `end`,
 * for spans_len bytes of spans that follow; returns its length, at most
 * head_len + CN__OTLP_PB_OPEN_MAX. */
void cn__otlp_pb_head(cn__obuf_t *b, const cn__resource_t *res, size_t *res_len);
void cn__otlp_pb_span(cn__obuf_t *b, const cn_span_t *s, cn__pb_cache_t *cache);
#define CN__OTLP_PB_OPEN_MAX 22 /* two keys and two varint lengths */
size_t cn__otlp_pb_open(char *end, const char *head, size_t head_len, size_t res_len,
                        size_t spans_len);
/* Encodings of keys and of static attributes, by pointer: one per exporter,
 * used by one encoding at a time. NULL on ENOMEM (then no caching). */
cn__pb_cache_t *cn__pb_cache_new(void);
void cn__pb_cache_free(cn__pb_cache_t *c);

/* ---------------------------------------------------------------------------------
 * Hooks of the core (telemetry_hooks.c)
 * ------------------------------------------------------------------------------ */

/* gen_server caller side. */
typedef struct cn__tel_call {
    cn_span_t *span;           /* NULL: not traced */
    bool wrap;                 /* send {'$cn_trace', TP, Req} */
    uint64_t t0_ns;
    char method[64];
    char peer[64];
    char tp[CN_TRACEPARENT_LEN + 1];
} cn__tel_call_t;

void cn__tel_call_begin(cn_node_t *n, cn_dest_t dest, const ei_x_buff *req,
                        cn__tel_call_t *tc);
/* Encode the opening of the wrapper, {'$cn_trace', <<TP>>, ... (the request
 * follows). 0 or -ENOMEM. */
int cn__tel_call_wrap(const cn__tel_call_t *tc, ei_x_buff *x);
void cn__tel_call_end(cn_node_t *n, cn__tel_call_t *tc, int rc);

/* gen_server server side: if req is {'$cn_trace', TP, Inner}, move req->index to
 * Inner and fill *ctx from TP (invalid when malformed). Cheap; always called.
 * req must be a whole, already checked term (every message the dist layer
 * delivers is; local sends are built by libei): lengths inside it are trusted. */
bool cn__tel_unwrap(cn_term_t *req, cn_span_ctx_t *ctx);
/* Start the server span of a call (NULL when not traced). method
 * (CN__TEL_METHOD_MAX bytes, the caller's, for both calls) gets the request's
 * name when traced, "" otherwise; cn__tel_serve_end fills it then, so that the
 * request is decoded once either way. */
#define CN__TEL_METHOD_MAX 64
cn_span_t *cn__tel_serve_begin(cn_node_t *n, cn_term_t req, const cn_from_t *from,
                               const cn_span_ctx_t *wrapped, uint64_t *t0_ns, char *method);
void cn__tel_serve_end(cn_node_t *n, cn_span_t *s, cn_term_t req, uint64_t t0_ns, int rc,
                       char *method);

/* HTTP server: around the handler of one request (the route is known after). */
struct cn__http_conn;
cn_span_t *cn__tel_http_begin(struct cn__http_conn *c, uint64_t *t0_ns);
void cn__tel_http_end(struct cn__http_conn *c, cn_span_t *s, uint64_t t0_ns);

/* Room for n more bytes at b->p + b->len, false after an ENOMEM. Inline, as
 * the encoders' fast path: the room is there, one compare. */
static inline bool cn__obuf_reserve(cn__obuf_t *b, size_t n)
{
    return b->len + n <= b->cap ? !b->oom : cn__obuf_grow(b, n);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0; p is NUL-terminated, and NUL is no
 * continuation byte, so nothing past it is read. Both OTLP encoders use it. */
static inline int cn__utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c >= 0xc2 && c <= 0xdf)
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4
                                                                                          : 0;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Inline bodies: the HTTP hook adds most of a span's attributes, and a call
 * per attribute was a third of what adding them cost.
 * ------------------------------------------------------------------------------ */

/* The next attribute slot of a recording span, or NULL (not recording, or full:
 * counted as dropped). */
/* n bytes from s to d: for the few bytes of a method, a route or a span's short
 * strings, loads and stores in place of a call to memcpy (overlapping moves of
 * 8, 4 or 1 bytes; memcpy past 16). Used by trace.c and otlp_pb.c. */
static inline void cn__copy_small(char *d, const char *s, size_t n)
{
    if (n > 16) {
        memcpy(d, s, n);
    } else if (n >= 8) {
        uint64_t x, y;
        memcpy(&x, s, 8);
        memcpy(&y, s + n - 8, 8);
        memcpy(d, &x, 8);
        memcpy(d + n - 8, &y, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        memcpy(d, &x, 4);
        memcpy(d + n - 4, &y, 4);
    } else if (n > 0) { /* the first, middle and last byte: overlapping as needed */
        char x = s[0], y = s[n / 2], z = s[n - 1];
        d[0] = x;
        d[n / 2] = y;
        d[n - 1] = z;
    }
}

static inline cn__attr_t *cn__span_attr_next(cn_span_t *s, const char *key)
{
    if (s == NULL || !s->recording)
        return NULL;
    if (s->http) /* an HTTP span's own ones come first, and count */
        cn__span_http_attrs(s);
    if (s->nattrs == CN_SPAN_MAX_ATTRS) {
        s->dropped_attrs++;
        return NULL;
    }
    cn__attr_t *a = &s->attrs[s->nattrs++];
    a->key = key;
    a->fixed = false;
    return a;
}

static inline void cn__span_add_int(cn_span_t *s, const char *key, int64_t value)
{
    cn__attr_t *a = cn__span_attr_next(s, key);
    if (a) {
        a->type = CN__ATTR_INT;
        a->v.i = value;
    }
}

static inline void cn__span_add_static(cn_span_t *s, const char *key, const char *value,
                                       size_t len)
{
    cn__attr_t *a = cn__span_attr_next(s, key);
    if (a == NULL)
        return;
    a->type = CN__ATTR_STR;
    a->fixed = true;
    a->v.s = value;
    a->slen = len <= UINT16_MAX ? (uint16_t)len : 0; /* 0: the encoder measures it */
}

static inline void cn__span_add_borrowed(cn_span_t *s, const char *key, const char *value,
                                         size_t len)
{
    if (len > CN__SPAN_BORROW_MAX) {
        cn__span_add_strn(s, key, value, len);
        return;
    }
    cn__attr_t *a = cn__span_attr_next(s, key);
    if (a == NULL)
        return;
    a->type = CN__ATTR_STR;
    a->v.s = value;
    a->slen = (uint16_t)len;
}

static inline uint64_t cn__tel_span_ns(uint64_t mono_ns)
{
    if (mono_ns >= atomic_load_explicit(&cn__span_clock_next, memory_order_relaxed))
        return cn__tel_span_clock(mono_ns);
    return mono_ns + (uint64_t)atomic_load_explicit(&cn__span_clock_off, memory_order_relaxed);
}

#endif /* CNODE_TELEMETRY_INT_H */
