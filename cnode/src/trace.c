/* trace.c - trace context, spans and the per-node telemetry state.
 *
 * Reading order: the W3C traceparent codec (pure), the node's telemetry record
 * (created on first use, freed by cn_node_free), configuration from the OTEL_*
 * environment, then spans: ids from a per-node xoroshiro128+ seeded by
 * getrandom(), the sampler, the current-span chain of each process (p->span),
 * attributes and events, and the end that hands a span to the exporter.
 *
 * A span is one allocation with its attributes and events inline (bounded, as
 * the OpenTelemetry limits are; extra ones are counted as dropped) and its
 * strings in an arena of its own, so recording an attribute is a memcpy, never
 * a malloc. A span is encoded for export when it ends and comes back to a
 * per-node free list at once, so a node under steady load allocates none and
 * reuses a span still in the cache. A span that is not
 * sampled still exists so that its context (with the sampled flag off) travels
 * on, but it records nothing and is freed at its end.
 */
#include "telemetry_int.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cnode/cluster.h"
#include "cnode/dist.h"

/* ---------------------------------------------------------------------------------
 * traceparent
 * ------------------------------------------------------------------------------ */

/* Lower-case hex digit values with bit 4 set, 0 for anything else (upper case
 * is invalid in traceparent): a table, as every traced call parses one. The
 * parse ANDs the entries together and tests bit 4 once at the end, instead
 * of a test per digit. */
static const uint8_t hexv[256] = {
    ['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14,
    ['5'] = 0x15, ['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19,
    ['a'] = 0x1a, ['b'] = 0x1b, ['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e, ['f'] = 0x1f,
};

static int hexval(char c)
{
    uint8_t v = hexv[(unsigned char)c];
    return v ? v & 15 : -1;
}

/* n bytes from 2n hex digits; false on a bad digit or (n > 1) all zeros. */
static bool parse_hex(const char *s, size_t n, uint8_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned ok = 0x10, any = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = hexv[u[2 * i]], lo = hexv[u[2 * i + 1]];
        ok &= hi & lo;
        out[i] = (uint8_t)(hi << 4 | (lo & 15)); /* hi's bit 4 shifts out */
        any |= out[i];
    }
    return ok && (any != 0 || n == 1);
}

int cn_traceparent_parse(const char *s, size_t len, cn_span_ctx_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL || len < CN_TRACEPARENT_LEN)
        return -EINVAL;
    /* Surrounding whitespace is optional whitespace of the header: trimmed by the
     * HTTP server already; anything left here is malformed. */
    uint8_t ver;
    if (!parse_hex(s, 1, &ver) || ver == 0xff || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -EINVAL;
    if (ver == 0 && len != CN_TRACEPARENT_LEN)
        return -EINVAL;
    if (ver > 0 && len > CN_TRACEPARENT_LEN && s[CN_TRACEPARENT_LEN] != '-')
        return -EINVAL; /* a future version may append fields after a '-' */
    if (!parse_hex(s + 3, 16, out->trace_id) || !parse_hex(s + 36, 8, out->span_id)) {
        memset(out, 0, sizeof(*out));
        return -EINVAL;
    }
    uint8_t flags = 0;
    if (hexval(s[53]) < 0 || hexval(s[54]) < 0) {
        memset(out, 0, sizeof(*out));
        return -EINVAL;
    }
    flags = (uint8_t)(hexval(s[53]) << 4 | hexval(s[54]));
    out->flags = flags & 1; /* other bits are not defined in version 00 */
    out->valid = true;
    return 0;
}

/* The two lower-case hex digits of each byte value: one load and one store a
 * byte (a traced call formats a traceparent's 25), where a digit at a time
 * took two of each and the shifts. */
#define HEXD(v) ((v) < 10 ? '0' + (v) : 'a' - 10 + (v))
#define HEX2(b) { HEXD((b) >> 4), HEXD((b) & 15) }
#define HEX2_16(h)                                                                      \
    HEX2(h * 16 + 0), HEX2(h * 16 + 1), HEX2(h * 16 + 2), HEX2(h * 16 + 3),             \
        HEX2(h * 16 + 4), HEX2(h * 16 + 5), HEX2(h * 16 + 6), HEX2(h * 16 + 7),         \
        HEX2(h * 16 + 8), HEX2(h * 16 + 9), HEX2(h * 16 + 10), HEX2(h * 16 + 11),       \
        HEX2(h * 16 + 12), HEX2(h * 16 + 13), HEX2(h * 16 + 14), HEX2(h * 16 + 15)
static const char hex2[256][2] = {
    HEX2_16(0),  HEX2_16(1),  HEX2_16(2),  HEX2_16(3),  HEX2_16(4),  HEX2_16(5),
    HEX2_16(6),  HEX2_16(7),  HEX2_16(8),  HEX2_16(9),  HEX2_16(10), HEX2_16(11),
    HEX2_16(12), HEX2_16(13), HEX2_16(14), HEX2_16(15),
};
#undef HEX2_16
#undef HEX2
#undef HEXD

void cn_hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + 2 * i, hex2[b[i]], 2);
    out[2 * n] = '\0';
}

void cn_traceparent_format(const cn_span_ctx_t *ctx, char out[CN_TRACEPARENT_LEN + 1])
{
    memcpy(out, "00-", 3);
    cn_hex(ctx->trace_id, 16, out + 3);
    out[35] = '-';
    cn_hex(ctx->span_id, 8, out + 36);
    out[52] = '-';
    cn_hex(&ctx->flags, 1, out + 53);
}

/* ---------------------------------------------------------------------------------
 * Clocks
 * ------------------------------------------------------------------------------ */

uint64_t cn__tel_unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t cn__tel_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Span times are the monotonic clock plus the offset of the real-time clock
 * from it, read again once a second (the OpenTelemetry Java SDK's anchored
 * clock does the same): the hooks read the monotonic clock for their duration
 * metrics anyway, so a span's start and end cost no clock read of their own -
 * a clock_gettime is ~50 ns in our VMs, a percent of a cached page. Times
 * within a second of each other are also consistent when NTP steps the real
 * clock. Process-wide, as cn_trace_now_ns() is called from any thread: a stale
 * offset is harmless, and the two values are atomics of their own. */
_Atomic int64_t cn__span_clock_off;   /* real-time - monotonic, ns */
_Atomic uint64_t cn__span_clock_next; /* monotonic ns when to read it again */

uint64_t cn__tel_span_clock(uint64_t mono_ns)
{
    uint64_t r = cn__tel_unix_ns(), m = cn__tel_mono_ns();
    atomic_store_explicit(&cn__span_clock_off, (int64_t)(r - m), memory_order_relaxed);
    atomic_store_explicit(&cn__span_clock_next, m + 1000000000u, memory_order_relaxed);
    return mono_ns + (uint64_t)(int64_t)(r - m);
}

uint64_t cn__tel_span_now(void)
{
    return cn__tel_span_ns(cn__tel_mono_ns());
}

/* ---------------------------------------------------------------------------------
 * The node's telemetry record
 * ------------------------------------------------------------------------------ */

cn__tel_t *cn__tel_get(cn_node_t *n)
{
    if (n == NULL)
        return NULL;
    if (n->telemetry)
        return n->telemetry;
    cn__tel_t *t = cn__calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->node = n;
    if (getrandom(t->rng, sizeof(t->rng), 0) != (ssize_t)sizeof(t->rng)) {
        t->rng[0] = cn__tel_mono_ns() ^ (uintptr_t)t;
        t->rng[1] = cn__tel_unix_ns() * 0x9e3779b97f4a7c15ull;
    }
    t->rng[0] |= 1;
    if (cn__metrics_new(t) < 0 || cn__metrics_builtin(t) < 0) {
        cn__metrics_free(t->metrics);
        cn__free(t);
        return NULL;
    }
    n->telemetry = t;
    return t;
}

void cn__telemetry_free(cn_node_t *n)
{
    cn__tel_t *t = n ? n->telemetry : NULL;
    if (t == NULL)
        return;
    cn__exporter_free(t);
    while (t->span_free) {
        cn_span_t *s = t->span_free;
        t->span_free = s->prev;
        cn__free(s);
    }
    cn_http_server_free(t->metrics_srv);
    cn__metrics_free(t->metrics);
    for (int i = 0; i < t->npeers; i++)
        cn__free(t->peers[i]);
    cn__free(t->peers);
    cn__free(t->endpoint);
    cn__free(t->headers);
    cn__free(t->service_name);
    cn__free(t->resource_attrs);
    cn__free(t);
    n->telemetry = NULL;
}

/* ---------------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------------ */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int env_u32(const char *name, uint32_t *out)
{
    const char *v = env(name);
    if (v == NULL)
        return 0;
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (*end || x == 0 || x > 1000000)
        return -EINVAL;
    *out = (uint32_t)x;
    return 0;
}

static int env_ms(const char *name, int64_t *out)
{
    const char *v = env(name);
    if (v == NULL)
        return 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end || x <= 0 || x > 3600000)
        return -EINVAL;
    *out = x;
    return 0;
}

int cn_telemetry_opts_from_env(cn_telemetry_opts_t *o)
{
    int rc = 0;
    memset(o, 0, sizeof(*o));
    o->ratio = 1.0;
    /* Traces endpoint: the signal-specific URL is used as it is; the base one gets
     * /v1/traces (the OTLP exporter spec). The base URL is kept in a static buffer
     * per thread: opts borrow their strings. */
    static __thread char base[512];
    const char *ep = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if (ep == NULL && (ep = env("OTEL_EXPORTER_OTLP_ENDPOINT")) != NULL) {
        size_t l = strlen(ep);
        while (l > 0 && ep[l - 1] == '/')
            l--;
        if (l + 11 > sizeof(base))
            rc = -EINVAL;
        else {
            memcpy(base, ep, l);
            memcpy(base + l, "/v1/traces", 11);
            ep = base;
        }
    }
    const char *exp = env("OTEL_TRACES_EXPORTER"), *dis = env("OTEL_SDK_DISABLED");
    if ((exp && strcmp(exp, "none") == 0) || (dis && strcmp(dis, "true") == 0))
        ep = NULL;
    o->endpoint = ep;
    o->headers = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS");
    if (o->headers == NULL)
        o->headers = env("OTEL_EXPORTER_OTLP_HEADERS");
    o->service_name = env("OTEL_SERVICE_NAME");
    o->resource_attrs = env("OTEL_RESOURCE_ATTRIBUTES");
    const char *proto = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
    if (proto == NULL)
        proto = env("OTEL_EXPORTER_OTLP_PROTOCOL");
    if (proto && strcmp(proto, "http/json") == 0)
        o->protocol = CN_OTLP_JSON;
    else if (proto && strcmp(proto, "http/protobuf") != 0 && ep)
        cn_log(CN_LOG_WARN, "telemetry",
               "OTEL_EXPORTER_OTLP_PROTOCOL=%s: not supported (http/protobuf, http/json); "
               "using http/protobuf", proto);

    static const struct { const char *name; int v; } samplers[] = {
        { "parentbased_always_on", CN_SAMPLER_PARENT_ON },
        { "always_on", CN_SAMPLER_ALWAYS_ON },
        { "always_off", CN_SAMPLER_ALWAYS_OFF },
        { "traceidratio", CN_SAMPLER_RATIO },
        { "parentbased_always_off", CN_SAMPLER_PARENT_OFF },
        { "parentbased_traceidratio", CN_SAMPLER_PARENT_RATIO },
    };
    const char *s = env("OTEL_TRACES_SAMPLER");
    if (s) {
        size_t k;
        for (k = 0; k < sizeof(samplers) / sizeof(samplers[0]); k++)
            if (strcmp(s, samplers[k].name) == 0)
                break;
        if (k < sizeof(samplers) / sizeof(samplers[0]))
            o->sampler = samplers[k].v;
        else
            rc = -EINVAL;
    }
    const char *arg = env("OTEL_TRACES_SAMPLER_ARG");
    if (arg) {
        char *end;
        double r = strtod(arg, &end);
        if (*end || !(r >= 0.0 && r <= 1.0))
            rc = -EINVAL;
        else
            o->ratio = r;
    }
    if (env_u32("OTEL_BSP_MAX_QUEUE_SIZE", &o->queue_size) < 0 ||
        env_u32("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &o->batch_size) < 0 ||
        env_ms("OTEL_BSP_SCHEDULE_DELAY", &o->delay_ms) < 0 ||
        env_ms("OTEL_EXPORTER_OTLP_TIMEOUT", &o->export_timeout_ms) < 0)
        rc = -EINVAL;
    o->metrics_addr = env("ONEBLOG_METRICS_ADDR");
    o->trace_peers = env("ONEBLOG_TRACE_PEERS");
    return rc;
}

static char *dup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t l = strlen(s) + 1;
    char *d = cn__malloc(l);
    if (d)
        memcpy(d, s, l);
    return d;
}

int cn_trace_peer_add(const char *node_name)
{
    cn__tel_t *t = cn__tel_get(cn__cur_node);
    if (t == NULL)
        return -ENOMEM;
    if (node_name == NULL || *node_name == '\0')
        return -EINVAL;
    for (int i = 0; i < t->npeers; i++)
        if (strcmp(t->peers[i], node_name) == 0)
            return 0;
    if (t->npeers == t->cappeers) {
        int cap = t->cappeers ? 2 * t->cappeers : 8;
        char **p = cn__realloc(t->peers, (size_t)cap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        t->peers = p;
        t->cappeers = cap;
    }
    if ((t->peers[t->npeers] = dup_or_null(node_name)) == NULL)
        return -ENOMEM;
    t->npeers++;
    return 0;
}

/* Serve /metrics on addr ("host:port") with a server of its own. */
static int start_metrics_server(cn__tel_t *t, const char *addr)
{
    static const cn_http_route_t routes[] = { { "GET", "/metrics", cn_metrics_handler, NULL } };
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -EINVAL;
    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.host = host[0] ? host : "127.0.0.1";
    cfg.port = (uint16_t)port;
    cfg.routes = routes;
    cfg.nroutes = 1;
    cfg.gzip = false;
    cfg.conn_spawn_flags = 0; /* shared stacks: scrapes are short */
    return cn_http_server_start(t->node, &cfg, &t->metrics_srv);
}

int cn_telemetry_start(cn_node_t *node, const cn_telemetry_opts_t *opts)
{
    cn_telemetry_opts_t o;
    if (opts == NULL)
        cn_telemetry_opts_from_env(&o); /* a bad value keeps its default */
    else
        o = *opts;
    cn_node_t *prev = cn__cur_node;
    cn__cur_node = node;
    cn__tel_t *t = cn__tel_get(node);
    int rc = 0;
    if (t == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (t->started) {
        rc = -EALREADY;
        goto out;
    }
    if (o.queue_size == 0)
        o.queue_size = 2048;
    if (o.batch_size == 0)
        o.batch_size = 512;
    if (o.batch_size > o.queue_size)
        o.batch_size = o.queue_size;
    if (o.delay_ms <= 0)
        o.delay_ms = 5000;
    if (o.export_timeout_ms <= 0)
        o.export_timeout_ms = 10000;
    if (o.max_attempts <= 0)
        o.max_attempts = 5;
    if (o.backoff_ms <= 0)
        o.backoff_ms = 100;
    if (o.endpoint && strncmp(o.endpoint, "http://", 7) != 0 &&
        strncmp(o.endpoint, "https://", 8) != 0) {
        rc = -EINVAL;
        goto out;
    }
    if (!isfinite(o.ratio) || o.ratio < 0)
        o.ratio = 0;
    if (o.ratio > 1)
        o.ratio = 1;
    /* service.name defaults to the alive part of the node name. */
    char svc[128];
    if (o.service_name == NULL) {
        const char *nm = cn_node_name(node);
        size_t l = strcspn(nm, "@");
        if (l >= sizeof(svc))
            l = sizeof(svc) - 1;
        memcpy(svc, nm, l);
        svc[l] = '\0';
        o.service_name = svc;
    }
    t->endpoint = dup_or_null(o.endpoint);
    t->headers = dup_or_null(o.headers);
    t->service_name = dup_or_null(o.service_name);
    t->resource_attrs = dup_or_null(o.resource_attrs);
    if ((o.endpoint && !t->endpoint) || (o.headers && !t->headers) || !t->service_name ||
        (o.resource_attrs && !t->resource_attrs)) {
        rc = -ENOMEM;
        goto out;
    }
    o.endpoint = t->endpoint;
    o.headers = t->headers;
    o.service_name = t->service_name;
    o.resource_attrs = t->resource_attrs;
    o.metrics_addr = NULL;
    o.trace_peers = NULL;
    t->opts = o;
    if (opts == NULL || opts->trace_peers) {
        const char *p = opts ? opts->trace_peers : env("ONEBLOG_TRACE_PEERS");
        while (p && *p) {
            size_t l = strcspn(p, ", ");
            if (l > 0 && l < 256) {
                char nm[256];
                memcpy(nm, p, l);
                nm[l] = '\0';
                if ((rc = cn_trace_peer_add(nm)) < 0)
                    goto out;
            }
            p += l;
            p += strspn(p, ", ");
        }
    }
    if (o.endpoint) {
        if ((rc = cn__exporter_start(t)) < 0)
            goto out;
        t->tracing = true;
    }
    const char *maddr = opts ? opts->metrics_addr : env("ONEBLOG_METRICS_ADDR");
    if (maddr && (rc = start_metrics_server(t, maddr)) < 0)
        goto out;
    t->started = true;
out:
    cn__cur_node = prev;
    return rc;
}

int cn_telemetry_stop(cn_node_t *node, int64_t timeout_ms)
{
    cn__tel_t *t = node ? node->telemetry : NULL;
    if (t == NULL || !t->started)
        return -ENOENT;
    int rc = 0;
    t->tracing = false;
    if (t->exp)
        rc = cn__exporter_stop(t, timeout_ms);
    if (t->metrics_srv)
        cn_http_server_stop(t->metrics_srv);
    t->started = false;
    return rc;
}

bool cn_telemetry_on(void)
{
    cn_node_t *n = cn__cur_node;
    return n && n->telemetry && ((cn__tel_t *)n->telemetry)->started;
}

bool cn_tracing_enabled(void)
{
    cn_node_t *n = cn__cur_node;
    return n && n->telemetry && ((cn__tel_t *)n->telemetry)->tracing;
}

void cn_trace_stats(cn_node_t *node, uint64_t *exported, uint64_t *dropped, uint64_t *failed,
                    uint32_t *queued)
{
    cn__tel_t *t = node ? node->telemetry : NULL;
    if (exported)
        *exported = 0;
    if (dropped)
        *dropped = 0;
    if (failed)
        *failed = 0;
    if (queued)
        *queued = 0;
    if (t)
        cn__exporter_stats(t, exported, dropped, failed, queued);
}

/* ---------------------------------------------------------------------------------
 * Spans
 * ------------------------------------------------------------------------------ */

static uint64_t rnd(cn__tel_t *t)
{
    uint64_t s0 = t->rng[0], s1 = t->rng[1], r = s0 + s1;
    s1 ^= s0;
    t->rng[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    t->rng[1] = (s1 << 37) | (s1 >> 27);
    return r;
}

/* n (8 or 16) random bytes, not all zero (an all-zero id is invalid). */
static void rnd_bytes(cn__tel_t *t, uint8_t *b, size_t n)
{
    uint64_t r[2];
    do {
        r[0] = rnd(t);
        r[1] = n > 8 ? rnd(t) : 0;
    } while ((r[0] | r[1]) == 0);
    memcpy(b, r, n);
}

/* The ratio sampler's decision is a function of the trace id (its last 8 bytes),
 * so every node that sees the trace decides the same. */
static bool ratio_says(const uint8_t *trace_id, double ratio)
{
    if (ratio >= 1.0)
        return true;
    uint64_t x = 0;
    for (int i = 8; i < 16; i++)
        x = x << 8 | trace_id[i];
    x >>= 1; /* 63 bits */
    return (double)x < ratio * 9223372036854775808.0;
}

static bool sample(const cn__tel_t *t, const cn_span_ctx_t *parent, const uint8_t *trace_id)
{
    int s = t->opts.sampler;
    bool parent_based = s == CN_SAMPLER_PARENT_ON || s == CN_SAMPLER_PARENT_OFF ||
                        s == CN_SAMPLER_PARENT_RATIO;
    if (parent_based && parent && parent->valid)
        return parent->flags & 1;
    switch (s) {
    case CN_SAMPLER_ALWAYS_OFF:
    case CN_SAMPLER_PARENT_OFF:
        return false;
    case CN_SAMPLER_RATIO:
    case CN_SAMPLER_PARENT_RATIO:
        return ratio_says(trace_id, t->opts.ratio);
    default:
        return true;
    }
}

const char *cn__span_str(cn_span_t *s, const char *str)
{
    size_t room = CN__SPAN_ARENA - s->arena_len;
    if (room == 0)
        return NULL;
    if (str == NULL)
        str = "";
    size_t l = strnlen(str, room - 1);
    char *d = s->arena + s->arena_len;
    memcpy(d, str, l);
    d[l] = '\0';
    s->arena_len = (uint16_t)(s->arena_len + l + 1);
    return d;
}

/* As cn__span_str for len bytes of str (not NUL-terminated). */
const char *cn__span_strn(cn_span_t *s, const char *str, size_t len)
{
    size_t room = CN__SPAN_ARENA - s->arena_len;
    if (room == 0)
        return NULL;
    if (len > room - 1)
        len = room - 1;
    char *d = s->arena + s->arena_len;
    memcpy(d, str, len);
    d[len] = '\0';
    s->arena_len = (uint16_t)(s->arena_len + len + 1);
    return d;
}

void cn__span_add_strn(cn_span_t *s, const char *key, const char *value, size_t len)
{
    cn__attr_t *a = cn__span_attr_next(s, key);
    if (a == NULL)
        return;
    a->type = CN__ATTR_STR;
    if ((a->v.s = cn__span_strn(s, value ? value : "", value ? len : 0)) == NULL) {
        s->nattrs--;
        s->dropped_attrs++;
        return;
    }
    a->slen = (uint16_t)(s->arena + s->arena_len - a->v.s - 1);
}

void cn__span_add_str(cn_span_t *s, const char *key, const char *value)
{
    if (s && s->recording)
        cn__span_add_strn(s, key, value ? value : "", value ? strlen(value) : 0);
}

void cn_span_add_str(cn_span_t *s, const char *key, const char *value)
{
    cn__span_add_str(s, key, value);
}

void cn_span_add_static_str(cn_span_t *s, const char *key, const char *value)
{
    /* Length 0, "not known": the exporter caches a static value's encoding
     * by pointer and measures it only on a miss (a statement's text is a few
     * hundred bytes, measured at every span before). */
    if (s && s->recording)
        cn__span_add_static(s, key, value ? value : "", 0);
}

void cn_span_add_int(cn_span_t *s, const char *key, int64_t value)
{
    cn__span_add_int(s, key, value);
}

void cn__span_http_attrs(cn_span_t *s)
{
    if (!s->http)
        return;
    s->http = false; /* first: the appends below would come back here */
    const cn__span_http_t *h = &s->h;
    /* The order cn__tel_http_begin and _end record them in. */
    cn__span_add_static(s, "http.request.method", h->method, h->method_len);
    cn__span_add_borrowed(s, "url.path", h->path, h->path_len);
    if (h->query)
        cn__span_add_borrowed(s, "url.query", h->query, h->query_len);
    cn__span_add_static(s, "url.scheme", "http", 4);
    cn__span_add_static(s, "network.protocol.version", h->version, 3);
    if (h->host) {
        if (h->port >= 0)
            cn__span_add_int(s, "server.port", h->port);
        cn__span_add_strn(s, "server.address", h->host, h->host_len);
    }
    if (h->ua)
        cn__span_add_borrowed(s, "user_agent.original", h->ua, h->ua_len);
    if (h->peer)
        cn__span_add_borrowed(s, "client.address", h->peer, h->peer_len);
    if (h->route)
        cn__span_add_borrowed(s, "http.route", h->route, h->route_len);
    if (h->status)
        cn__span_add_int(s, "http.response.status_code", h->status);
}

#define SPAN_FREE_MAX 1024

/* A span started at start_ns (span clock; 0: now). */
static cn_span_t *span_new(cn__tel_t *t, const char *name, int kind, const cn_span_ctx_t *parent,
                           uint64_t start_ns)
{
    cn_span_t *s = t->span_free;
    if (s) {
        t->span_free = s->prev;
        t->nspan_free--;
        /* No prefetch of the next one: spans come back to the list at their
         * end (encoded for export then), so its head is the span that ended
         * last, still in the cache. */
    } else if ((s = cn__malloc(sizeof(*s))) == NULL) {
        return NULL;
    }
    /* Only the header is cleared: attrs/events are filled up to their counts. */
    memset(s, 0, offsetof(cn_span_t, attrs));
    s->tel = t;
    s->arena_len = 0;
    if (parent && parent->valid) {
        memcpy(s->ctx.trace_id, parent->trace_id, 16);
        memcpy(s->parent_id, parent->span_id, 8);
        s->has_parent = true;
    } else {
        rnd_bytes(t, s->ctx.trace_id, 16);
    }
    rnd_bytes(t, s->ctx.span_id, 8);
    s->recording = sample(t, parent, s->ctx.trace_id);
    s->ctx.flags = s->recording ? 1 : 0;
    s->ctx.valid = true;
    s->kind = (uint8_t)kind;
    /* The arena is empty: the name fits. NULL: named later (the HTTP span,
     * whose name waits for its route). */
    if (s->recording && name) {
        s->name = cn__span_str(s, name);
        s->name_len = (uint16_t)(s->arena_len - 1); /* the arena was empty */
    }
    s->start_ns = !s->recording ? 0 : start_ns ? start_ns : cn__tel_span_now();
    /* It becomes the calling process's current span. */
    cn_node_t *n = t->node;
    if (n->current) {
        s->owner = n->current->pid;
        s->prev = n->current->span;
        n->current->span = s;
    }
    return s;
}

static cn__tel_t *tracing_tel(void)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->telemetry == NULL)
        return NULL;
    cn__tel_t *t = n->telemetry;
    return t->tracing ? t : NULL;
}

cn_span_t *cn_span_start_ctx(const char *name, int kind, const cn_span_ctx_t *parent)
{
    cn__tel_t *t = tracing_tel();
    return t ? span_new(t, name, kind, parent, 0) : NULL;
}

/* A child of the calling process's current span (a root without one). */
static cn_span_t *start_in_current(cn__tel_t *t, const char *name, int kind, uint64_t start_ns)
{
    cn_node_t *n = t->node;
    cn_span_t *cur = n->current ? n->current->span : NULL;
    return span_new(t, name, kind, cur ? &cur->ctx : NULL, start_ns);
}

cn_span_t *cn_span_start(const char *name, int kind)
{
    cn__tel_t *t = tracing_tel();
    return t ? start_in_current(t, name, kind, 0) : NULL;
}

uint64_t cn_trace_now_ns(void)
{
    return cn__tel_span_now();
}

cn_span_t *cn_span_start_at(const char *name, int kind, uint64_t start_ns)
{
    cn__tel_t *t = tracing_tel();
    return t ? start_in_current(t, name, kind, start_ns) : NULL;
}

cn_span_t *cn_span_start_ctx_at(const char *name, int kind, const cn_span_ctx_t *parent,
                                uint64_t start_ns)
{
    cn__tel_t *t = tracing_tel();
    return t ? span_new(t, name, kind, parent, start_ns) : NULL;
}

int cn_trace_current(cn_span_ctx_t *out)
{
    cn_node_t *n = cn__cur_node;
    cn_span_t *cur = n && n->current ? n->current->span : NULL;
    if (cur == NULL) {
        memset(out, 0, sizeof(*out));
        return -ENOENT;
    }
    *out = cur->ctx;
    return 0;
}

cn_span_ctx_t cn_span_context(const cn_span_t *s)
{
    cn_span_ctx_t c;
    if (s)
        return s->ctx;
    memset(&c, 0, sizeof(c));
    return c;
}

static cn__attr_t *attr_slot(cn_span_t *s, const char *key)
{
    if (s == NULL || !s->recording || key == NULL)
        return NULL;
    if (s->http) /* the key may be one of them: a new value replaces it */
        cn__span_http_attrs(s);
    for (uint16_t i = 0; i < s->nattrs; i++)
        if (s->attrs[i].key == key ||
            (s->attrs[i].key[0] == key[0] && strcmp(s->attrs[i].key, key) == 0)) {
            s->attrs[i].fixed = false; /* a new value, copied by the caller */
            return &s->attrs[i];
        }
    return cn__span_attr_next(s, key); /* not there: a new one (or dropped) */
}

void cn_span_set_str(cn_span_t *s, const char *key, const char *value)
{
    cn__attr_t *a = attr_slot(s, key);
    if (a == NULL)
        return;
    a->type = CN__ATTR_STR;
    if ((a->v.s = cn__span_str(s, value)) == NULL) {
        s->nattrs--; /* it was the last one or a replaced one: drop it */
        if (a != &s->attrs[s->nattrs])
            *a = s->attrs[s->nattrs];
        s->dropped_attrs++;
        return;
    }
    a->slen = (uint16_t)(s->arena + s->arena_len - a->v.s - 1);
}

void cn_span_set_int(cn_span_t *s, const char *key, int64_t value)
{
    cn__attr_t *a = attr_slot(s, key);
    if (a) {
        a->type = CN__ATTR_INT;
        a->v.i = value;
    }
}

void cn_span_set_double(cn_span_t *s, const char *key, double value)
{
    cn__attr_t *a = attr_slot(s, key);
    if (a) {
        a->type = CN__ATTR_DOUBLE;
        a->v.d = value;
    }
}

void cn_span_set_bool(cn_span_t *s, const char *key, bool value)
{
    cn__attr_t *a = attr_slot(s, key);
    if (a) {
        a->type = CN__ATTR_BOOL;
        a->v.b = value;
    }
}

void cn_span_set_name(cn_span_t *s, const char *name)
{
    if (s == NULL || !s->recording)
        return;
    const char *d = cn__span_str(s, name);
    if (d) {
        s->name = d;
        s->name_len = (uint16_t)(s->arena + s->arena_len - d - 1);
    }
}

void cn__span_set_name2n(cn_span_t *s, const char *a, size_t al, char sep, const char *b,
                         size_t bl)
{
    if (s == NULL || !s->recording)
        return;
    size_t room = CN__SPAN_ARENA - s->arena_len, n = al + (b ? 1 + bl : 0);
    if (n >= room)
        return; /* the name it had stays */
    char *d = s->arena + s->arena_len;
    cn__copy_small(d, a, al);
    if (b) {
        d[al] = sep;
        cn__copy_small(d + al + 1, b, bl);
    }
    d[n] = '\0';
    s->arena_len = (uint16_t)(s->arena_len + n + 1);
    s->name = d;
    s->name_len = (uint16_t)n;
}

void cn__span_set_name2(cn_span_t *s, const char *a, char sep, const char *b)
{
    if (s && s->recording)
        cn__span_set_name2n(s, a, strlen(a), sep, b, b ? strlen(b) : 0);
}

void cn_span_event(cn_span_t *s, const char *name, const char *key, const char *value)
{
    if (s == NULL || !s->recording)
        return;
    if (s->nevents == CN_SPAN_MAX_EVENTS) {
        s->dropped_events++;
        return;
    }
    cn__event_t *e = &s->events[s->nevents];
    uint16_t mark = s->arena_len;
    e->name = cn__span_str(s, name);
    e->time_ns = cn__tel_span_now();
    e->key = key && value ? key : NULL;
    e->value = e->key ? cn__span_str(s, value) : NULL;
    if (e->name == NULL || (e->key && e->value == NULL)) {
        s->arena_len = mark;
        s->dropped_events++;
        return;
    }
    s->nevents++;
}

void cn_span_set_status(cn_span_t *s, int code, const char *msg)
{
    if (s == NULL || !s->recording)
        return;
    /* OK is final (the spec: instrumentation should not override an OK). */
    if (s->status == CN_STATUS_OK)
        return;
    s->status = (uint8_t)code;
    s->status_msg = code == CN_STATUS_ERROR && msg ? cn__span_str(s, msg) : NULL;
}

void cn__span_free(cn_span_t *s)
{
    if (s == NULL)
        return;
    cn__tel_t *t = s->tel;
    if (t && t->nspan_free < SPAN_FREE_MAX) {
        s->prev = t->span_free;
        t->span_free = s;
        t->nspan_free++;
        return;
    }
    cn__free(s);
}

void cn_span_end(cn_span_t *s)
{
    if (s == NULL)
        return;
    cn_node_t *n = cn__cur_node;
    /* Leave the owner's chain. Spans normally end in the reverse order of their
     * start; one that ends out of order is unlinked where it is. */
    if (n && s->owner.num) {
        /* Usually the process ending it is the owner: no lookup then. */
        cn_proc_t *p = n->current && cn_pid_eq(n->current->pid, s->owner)
                           ? n->current
                           : cn__proc_get(n, s->owner);
        if (p) {
            cn_span_t **pp = &p->span;
            while (*pp && *pp != s)
                pp = &(*pp)->prev;
            if (*pp == s)
                *pp = s->prev;
        }
    }
    s->prev = NULL;
    cn__tel_t *t = n ? n->telemetry : NULL;
    if (!s->recording || t == NULL || t->exp == NULL) {
        cn__span_free(s);
        return;
    }
    if (s->end_ns == 0)
        s->end_ns = cn__tel_span_now();
    if (s->end_ns < s->start_ns) /* the clock's offset was read again between */
        s->end_ns = s->start_ns;
    cn__exporter_push(t, s);
}

void cn_span_end_at(cn_span_t *s, uint64_t end_ns)
{
    if (s && s->recording)
        s->end_ns = end_ns;
    cn_span_end(s);
}

void cn__tel_proc_exit(cn_proc_t *p)
{
    /* Spans still open when their process dies (killed mid-request) are freed
     * without export: their end time is unknown. */
    while (p->span) {
        cn_span_t *s = p->span;
        p->span = s->prev;
        cn__span_free(s);
    }
}
