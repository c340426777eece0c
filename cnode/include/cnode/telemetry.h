/* telemetry.h - traces, metrics and structured logs for libcnode nodes.
 *
 * Three parts, each usable alone, all per node (state hangs off cn_node_t; nothing
 * is shared between schedulers except the log level and output):
 *
 *   Traces   OpenTelemetry spans with attributes, events and a status, exported as
 *            OTLP/HTTP JSON (trace.c, otlp.c, exporter.c). W3C trace context comes
 *            in through the `traceparent` header of the HTTP server, and travels
 *            with every gen_server call to another libcnode node (below), so one
 *            request gives one trace across nodes. Every process has a *current
 *            span*: a span started in a process becomes its current span until it
 *            ends, and spans started meanwhile are its children.
 *   Metrics  counters, gauges and histograms with labels, in the Prometheus text
 *            format (metrics.c); cn_metrics_handler() serves /metrics.
 *   Logs     one JSON line per event with time, level, message, node and the trace
 *            and span ids of the caller's current span (log.c).
 *
 * What libcnode instruments by itself once cn_telemetry_start() ran on a node:
 *   - the HTTP server: a SERVER span per request ("GET /post/:slug", semconv
 *     attributes http.request.method, url.path, http.route, url.scheme,
 *     http.response.status_code, server.address, server.port, client.address,
 *     user_agent.original), parented by a valid incoming `traceparent` (a malformed
 *     one is ignored: the span is a new root); metrics http_server_requests_total
 *     and http_server_request_duration_seconds by method, route and status;
 *   - gen_server calls: a CLIENT span per call ("cms/get_post": rpc.system
 *     "erlang", rpc.service = the registered name, rpc.method = the request's
 *     first atom, server.address = the peer node) and a SERVER span in our server
 *     loop; metrics rpc_client_calls_total and rpc_client_duration_seconds by
 *     method, peer node and outcome (ok, timeout, noproc, down, unreachable,
 *     error), rpc_server_calls_total / rpc_server_duration_seconds by method;
 *   - the node: cnode_processes, cnode_mailbox_messages (sum over processes),
 *     cnode_scheduler_utilization (CPU time of the scheduler thread over wall
 *     time since the previous scrape), cnode_scheduler_cpu_seconds_total,
 *     cnode_dist_connections, and the exporter's own counters.
 *
 * Context across nodes. A call to a server on *another libcnode node* is sent as
 *
 *     {'$gen_call', From, {'$cn_trace', Traceparent, Request}}
 *
 * (Traceparent: the W3C header value as a binary). Our gen_server loop unwraps it
 * before handle_call, always, whether tracing is on or off on the server's node,
 * so handle_call sees Request unchanged. OTP servers would not understand the
 * wrapper, so a caller wraps only when it knows the peer is libcnode:
 *   - the peer node has a member in the cluster registry (cn_cluster_join only
 *     exists in libcnode; erl and Elixir nodes never appear there), or
 *   - the peer was named in ONEBLOG_TRACE_PEERS (comma-separated node names) or
 *     with cn_trace_peer_add().
 * Calls between processes of one node are never wrapped: the server reads the
 * caller's current span directly. Elixir and Erlang callers may send the wrapper
 * themselves to put their call into a trace; a plain Request from them gets a
 * root server span (when sampled) and works as before.
 *
 * Environment (cn_telemetry_opts_from_env; the standard OpenTelemetry names):
 *   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  full URL, e.g. http://127.0.0.1:4318/v1/traces
 *   OTEL_EXPORTER_OTLP_ENDPOINT         base URL; "/v1/traces" is appended
 *                                       (neither set: tracing off)
 *   OTEL_EXPORTER_OTLP_HEADERS          k=v,k2=v2 added to each export request
 *   OTEL_EXPORTER_OTLP_TIMEOUT          ms per export request (10000)
 *   OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL
 *                                       http/protobuf (the default, as the OTLP
 *                                       exporter spec says) or http/json; grpc is
 *                                       not supported (a warning, then protobuf)
 *   OTEL_SERVICE_NAME                   service.name (default: the node's alive part)
 *   OTEL_RESOURCE_ATTRIBUTES            k=v,k2=v2 (percent-decoded)
 *   OTEL_TRACES_SAMPLER                 always_on, always_off, traceidratio,
 *                                       parentbased_always_on (default),
 *                                       parentbased_always_off, parentbased_traceidratio
 *   OTEL_TRACES_SAMPLER_ARG             the ratio, 0..1 (1)
 *   OTEL_TRACES_EXPORTER=none, OTEL_SDK_DISABLED=true   tracing off
 *   OTEL_BSP_MAX_QUEUE_SIZE (2048)  OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512)
 *   OTEL_BSP_SCHEDULE_DELAY (5000 ms)
 *   ONEBLOG_METRICS_ADDR                host:port: cn_telemetry_start() also serves
 *                                       /metrics there (its own small HTTP server)
 *   ONEBLOG_TRACE_PEERS                 node names known to be libcnode (above)
 *   ONEBLOG_LOG_LEVEL                   debug | info | warn | error (info)
 *
 * Threads: every function runs on the node's scheduler thread (from a process,
 * unless it says otherwise); spans and metrics are not locked. The log functions
 * may be called from any thread.
 */
#ifndef CNODE_TELEMETRY_H
#define CNODE_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cnode/dist.h" /* CN_LOG_ERROR .. CN_LOG_DEBUG (0..3) */
#include "cnode/http.h"
#include "cnode/node.h"

/* ---------------------------------------------------------------------------------
 * Trace context (W3C Trace Context level 1)
 * ------------------------------------------------------------------------------ */

#define CN_TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */

typedef struct cn_span_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;      /* bit 0: sampled */
    bool valid;         /* false: no context */
} cn_span_ctx_t;

/* Parse a traceparent value of len bytes (version 00 exactly 55 bytes; a higher
 * version may carry more after a '-', as the spec says). Rejects upper-case hex,
 * all-zero ids, version ff, and anything else malformed. Returns 0 and *out, or
 * -EINVAL (then *out is invalid). Pure and reentrant. */
int cn_traceparent_parse(const char *s, size_t len, cn_span_ctx_t *out);

/* Format a valid context as "00-<trace>-<span>-<flags>" into out (56 bytes, NUL
 * included). Pure and reentrant. */
void cn_traceparent_format(const cn_span_ctx_t *ctx, char out[CN_TRACEPARENT_LEN + 1]);

/* Lower-case hex of n bytes into out (2n + 1 bytes). Pure. */
void cn_hex(const uint8_t *b, size_t n, char *out);

/* ---------------------------------------------------------------------------------
 * Starting and stopping
 * ------------------------------------------------------------------------------ */

enum cn_otlp_protocol {
    CN_OTLP_PROTOBUF = 0,       /* http/protobuf (the default) */
    CN_OTLP_JSON,               /* http/json */
};

enum cn_sampler {
    CN_SAMPLER_PARENT_ON = 0,   /* parentbased_always_on (the default) */
    CN_SAMPLER_ALWAYS_ON,
    CN_SAMPLER_ALWAYS_OFF,
    CN_SAMPLER_RATIO,           /* traceidratio */
    CN_SAMPLER_PARENT_OFF,      /* parentbased_always_off */
    CN_SAMPLER_PARENT_RATIO,    /* parentbased_traceidratio */
};

typedef struct cn_telemetry_opts {
    const char *endpoint;       /* OTLP/HTTP traces URL; NULL: tracing off */
    const char *headers;        /* "k=v,k2=v2" for export requests, or NULL */
    const char *service_name;   /* NULL: the node name's alive part */
    const char *resource_attrs; /* "k=v,k2=v2" (values percent-decoded), or NULL */
    int protocol;               /* enum cn_otlp_protocol */
    int sampler;                /* enum cn_sampler */
    double ratio;               /* for the ratio samplers, 0..1 */
    uint32_t queue_size;        /* finished spans held for export; 0 = 2048 */
    uint32_t batch_size;        /* spans per export request; 0 = 512 */
    int64_t delay_ms;           /* export at least this often; 0 = 5000 */
    int64_t export_timeout_ms;  /* one POST; 0 = 10000 */
    int max_attempts;           /* POSTs per batch before it is dropped; 0 = 5 */
    int64_t backoff_ms;         /* first retry delay, doubling, +-25% jitter;
                                   0 = 100 */
    const char *metrics_addr;   /* "host:port": serve /metrics there; NULL: no */
    const char *trace_peers;    /* "a@h,b@h": libcnode nodes (see above) */
} cn_telemetry_opts_t;

/* Fill *o from the environment (see the top of this file); strings are borrowed
 * from it. Returns 0, or -EINVAL for a malformed value (*o keeps the default for
 * it). Callable from any thread. */
int cn_telemetry_opts_from_env(cn_telemetry_opts_t *o);

/* Turn telemetry on for `node` (opts NULL: from the environment). Metrics and the
 * built-in instrumentation start at once; tracing too when an endpoint is set, with
 * the exporter process (a dedicated stack) that keeps the node running until
 * cn_telemetry_stop(). Call from a process of the node or its thread before
 * cn_node_run. opts is copied. Returns 0, -EALREADY, -EINVAL (bad endpoint or
 * address), -ENOMEM, or the metrics server's bind error. */
int cn_telemetry_start(cn_node_t *node, const cn_telemetry_opts_t *opts);

/* Flush what the exporter holds (up to timeout_ms), stop it and the metrics server.
 * Metrics stay readable. From a process. Returns 0, -ETIMEDOUT, -ENOENT (not
 * started). Everything else is freed by cn_node_free(). */
int cn_telemetry_stop(cn_node_t *node, int64_t timeout_ms);

/* True when spans are recorded on the calling thread's node. Cheap. */
bool cn_tracing_enabled(void);

/* True when cn_telemetry_start() ran on the calling thread's node: services test
 * it before updating their own metrics, so that nodes without telemetry (unit
 * tests, tools) pay nothing. Cheap. */
bool cn_telemetry_on(void);

/* Declare `node_name` a libcnode node: calls to it carry the trace context. */
int cn_trace_peer_add(const char *node_name);

/* Exporter counters since start (any may be NULL). */
void cn_trace_stats(cn_node_t *node, uint64_t *exported, uint64_t *dropped,
                    uint64_t *failed_exports, uint32_t *queued);

/* ---------------------------------------------------------------------------------
 * Spans
 * ------------------------------------------------------------------------------ */

typedef struct cn_span cn_span_t;

enum cn_span_kind {     /* the OTLP SpanKind numbers */
    CN_SPAN_INTERNAL = 1,
    CN_SPAN_SERVER = 2,
    CN_SPAN_CLIENT = 3,
    CN_SPAN_PRODUCER = 4,
    CN_SPAN_CONSUMER = 5,
};

enum cn_span_status {   /* the OTLP StatusCode numbers */
    CN_STATUS_UNSET = 0,
    CN_STATUS_OK = 1,
    CN_STATUS_ERROR = 2,
};

#define CN_SPAN_MAX_ATTRS 24  /* more are counted as dropped */
#define CN_SPAN_MAX_EVENTS 8

/* Start a span, child of the calling process's current span (a root when there is
 * none), and make it the current span. Returns NULL when tracing is off on this
 * node or on ENOMEM; every span function accepts NULL and does nothing, so
 * instrumented code needs no checks. A span that is not sampled is returned as
 * well (it carries the context onward) but records nothing. `name` is copied. */
cn_span_t *cn_span_start(const char *name, int kind);

/* As cn_span_start with an explicit parent (from a traceparent): a valid parent
 * context continues its trace; NULL or invalid starts a new trace. */
cn_span_t *cn_span_start_ctx(const char *name, int kind, const cn_span_ctx_t *parent);

/* For work timed elsewhere (a blocking-pool job): a span, child of the calling
 * process's current span, that started at start_ns (cn_trace_now_ns() taken
 * then), ended with cn_span_end_at(). cn_trace_now_ns() may be called from any
 * thread; the span functions as above. */
uint64_t cn_trace_now_ns(void);
cn_span_t *cn_span_start_at(const char *name, int kind, uint64_t start_ns);
/* The same with an explicit parent (as cn_span_start_ctx); it becomes the calling
 * process's current span. */
cn_span_t *cn_span_start_ctx_at(const char *name, int kind, const cn_span_ctx_t *parent,
                                uint64_t start_ns);
void cn_span_end_at(cn_span_t *s, uint64_t end_ns);

/* Attributes. Keys are borrowed for the span's life (use literals); string values
 * are copied. A key set twice keeps the last value. */
void cn_span_set_str(cn_span_t *s, const char *key, const char *value);
void cn_span_set_int(cn_span_t *s, const char *key, int64_t value);
void cn_span_set_double(cn_span_t *s, const char *key, double value);
void cn_span_set_bool(cn_span_t *s, const char *key, bool value);
void cn_span_set_name(cn_span_t *s, const char *name);
/* For a key the span does not hold yet - instrumentation that sets each of its
 * keys once on a span it just started: appended, without the search for an
 * earlier value (setting an existing key this way would export it twice). */
void cn_span_add_str(cn_span_t *s, const char *key, const char *value);
void cn_span_add_int(cn_span_t *s, const char *key, int64_t value);
/* As cn_span_add_str, but the value is not copied: it must stay valid and
 * unchanged until the node is freed (a literal, a static table such as a
 * store's SQL texts), since the exporter caches its encoding by pointer. */
void cn_span_add_static_str(cn_span_t *s, const char *key, const char *value);

/* An event now, with an optional string attribute (key and value may be NULL). */
void cn_span_event(cn_span_t *s, const char *name, const char *key, const char *value);

/* Status; msg (copied) only goes with CN_STATUS_ERROR. */
void cn_span_set_status(cn_span_t *s, int code, const char *msg);

/* End the span: it leaves the process's current-span chain and goes to the export
 * queue (or is dropped and counted when the queue is full). Never blocks. The
 * span must not be used afterwards. */
void cn_span_end(cn_span_t *s);

/* The span's context. NULL span: an invalid context. */
cn_span_ctx_t cn_span_context(const cn_span_t *s);

/* The calling process's current span context: 0 and *out, or -ENOENT. */
int cn_trace_current(cn_span_ctx_t *out);

/* ---------------------------------------------------------------------------------
 * Metrics
 * ------------------------------------------------------------------------------ */

typedef struct cn_metric cn_metric_t;

/* Register a metric on `node` (NULL: the calling thread's node), or return the
 * one already registered under that name (of the same type). `labels` names the
 * labels, comma-separated ("method,route,status"; NULL or "" for none, at most
 * 8). Names follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*); counters should
 * end in _total. Histogram `bounds` are the bucket upper limits, increasing
 * (NULL: 0.0005 .. 10 seconds, 14 buckets); +Inf is implicit. Returns NULL on
 * -EINVAL (bad name, type clash) or -ENOMEM; the update functions accept NULL.
 * Registering also turns the node's instrumentation on, as cn_telemetry_start. */
cn_metric_t *cn_metric_counter(cn_node_t *node, const char *name, const char *help,
                               const char *labels);
cn_metric_t *cn_metric_gauge(cn_node_t *node, const char *name, const char *help,
                             const char *labels);
cn_metric_t *cn_metric_histogram(cn_node_t *node, const char *name, const char *help,
                                 const char *labels, const double *bounds, int nbounds);

/* Update the series with these label values (as many as the metric has labels,
 * copied on first use; NULL when it has none). add: counters (v >= 0) and gauges;
 * set: gauges; observe: histograms. */
void cn_metric_add(cn_metric_t *m, const char *const *values, double v);
void cn_metric_set(cn_metric_t *m, const char *const *values, double v);
void cn_metric_observe(cn_metric_t *m, const char *const *values, double v);

/* The current value of a counter or gauge series, or a histogram's count (NaN if
 * the series does not exist). For tests and health checks. */
double cn_metric_value(cn_metric_t *m, const char *const *values);

/* Called on every exposition before the text is made, to refresh gauges that are
 * cheaper to read than to keep up to date (pool sizes, queue depths). */
typedef void (*cn_metrics_collect_cb)(cn_node_t *node, void *udata);
int cn_metrics_on_collect(cn_node_t *node, cn_metrics_collect_cb cb, void *udata);

/* The node's metrics in the Prometheus text format 0.0.4 into a malloc'd *out
 * (the caller frees) of *len bytes. Returns 0 or -ENOMEM. */
int cn_metrics_format(cn_node_t *node, char **out, size_t *len);

/* An HTTP handler serving cn_metrics_format() of the calling node as
 * text/plain; version=0.0.4. udata is unused. */
int cn_metrics_handler(cn_http_req_t *req, void *udata);

/* ---------------------------------------------------------------------------------
 * Logs
 * ------------------------------------------------------------------------------ */

/* Levels are dist.h's: CN_LOG_ERROR (0) < WARN < INFO < DEBUG (3), more severe
 * first, so an event is written when its level <= the configured level. */
enum { CN_LOG_OFF = -1 };

/* Write one JSON line: {"time":"2024-05-01T12:00:00.123456Z","level":"info",
 * "module":M,"msg":MSG,"node":N,"trace_id":T,"span_id":S} (node, trace_id and
 * span_id only when known) - if level <= the configured level, which
 * is checked before formatting. Messages are cut at 2 KiB;
 * each is written with one write(2), so lines from threads do not interleave.
 * Callable from any thread (trace ids only on a scheduler thread). */
void cn_log(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The configured level: ONEBLOG_LOG_LEVEL at first use (info if unset), or the
 * last cn_log_set_level(). */
int cn_log_level(void);
void cn_log_set_level(int level);
/* "debug", "info", "warn"/"warning", "error", "off" -> level; -EINVAL otherwise. */
int cn_log_level_parse(const char *s);
/* Where lines go: an fd (default 2, stderr). */
void cn_log_set_fd(int fd);
/* Format the line cn_log would write into buf (no newline); returns its length. */
size_t cn_log_format(char *buf, size_t cap, int level, const char *module, const char *msg);

#endif /* CNODE_TELEMETRY_H */
