/* trace_test.c - traceparent parsing, spans and the current span, context through
 * local gen_server calls and the '$cn_trace' wrapper, HTTP server spans, the
 * export queue's bound and drop count, and a real export to an in-process OTLP
 * receiver (a cn_http server on the same node). */
#include "test.h"

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/gen_server.h"
#include "cnode/http.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/telemetry.h"
#include "telemetry_int.h"

/* ---------------------------------------------------------------------------------
 * traceparent
 * ------------------------------------------------------------------------------ */

#define TP_OK "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

TEST(traceparent_valid)
{
    cn_span_ctx_t c;
    ASSERT_EQ(cn_traceparent_parse(TP_OK, strlen(TP_OK), &c), 0);
    ASSERT(c.valid);
    ASSERT_EQ(c.flags, 1);
    ASSERT_EQ(c.trace_id[0], 0x4b);
    ASSERT_EQ(c.trace_id[15], 0x36);
    ASSERT_EQ(c.span_id[7], 0xb7);
    char out[CN_TRACEPARENT_LEN + 1];
    cn_traceparent_format(&c, out);
    ASSERT_STR_EQ(out, TP_OK);
    /* Not sampled; other flag bits are ignored. */
    const char *tp2 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe";
    ASSERT_EQ(cn_traceparent_parse(tp2, strlen(tp2), &c), 0);
    ASSERT_EQ(c.flags, 0);
    /* A future version may carry more fields after a '-'. */
    const char *tp3 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
    ASSERT_EQ(cn_traceparent_parse(tp3, strlen(tp3), &c), 0);
}

TEST(traceparent_malformed)
{
    static const char *bad[] = {
        "",
        "00",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",          /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",        /* v00 + more */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",         /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",         /* zero trace */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",         /* zero span */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",         /* version ff */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",         /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",         /* not hex */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",        /* no '-' */
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cn_span_ctx_t c;
        memset(&c, 0xaa, sizeof c);
        if (cn_traceparent_parse(bad[i], strlen(bad[i]), &c) != -EINVAL)
            test__fail(__FILE__, __LINE__, "accepted bad traceparent #%zu \"%s\"", i, bad[i]);
        ASSERT(!c.valid);
    }
    cn_span_ctx_t c;
    ASSERT_EQ(cn_traceparent_parse(NULL, 0, &c), -EINVAL);
}

/* Every id digit: each byte value through format and parse, and each
 * position of the ids with each kind of byte that is not a lower-case hex
 * digit, the neighbours of the ranges included. */
TEST(traceparent_every_digit)
{
    cn_span_ctx_t c = { .valid = true, .flags = 1 }, d;
    char tp[CN_TRACEPARENT_LEN + 1];
    for (int v = 0; v < 256; v++) {
        for (int i = 0; i < 16; i++)
            c.trace_id[i] = (uint8_t)(v + 37 * i);
        for (int i = 0; i < 8; i++)
            c.span_id[i] = (uint8_t)(v * 7 + 11 * i + 1);
        cn_traceparent_format(&c, tp);
        for (int i = 0; i < CN_TRACEPARENT_LEN; i++) /* lower-case hex and '-' only */
            ASSERT(strchr("0123456789abcdef-", tp[i]) != NULL && tp[i] != '\0');
        ASSERT_EQ(cn_traceparent_parse(tp, CN_TRACEPARENT_LEN, &d), 0);
        ASSERT_MEM_EQ(d.trace_id, c.trace_id, 16);
        ASSERT_MEM_EQ(d.span_id, c.span_id, 8);
        char want[3];
        snprintf(want, sizeof want, "%02x", (unsigned)c.trace_id[5]);
        ASSERT_MEM_EQ(tp + 3 + 10, want, 2);
    }
    static const unsigned char odd[] = { '/', ':', '@', 'A', 'F', 'G', '`', 'g', ' ', 0x80, 0xb0,
                                         0xe1, 0xff, '\0' };
    cn_traceparent_format(&c, tp);
    for (int pos = 3; pos < 52; pos++) {
        if (pos == 35)
            continue;
        for (size_t k = 0; k < sizeof odd; k++) {
            char t[CN_TRACEPARENT_LEN + 1];
            memcpy(t, tp, sizeof t);
            t[pos] = (char)odd[k];
            if (cn_traceparent_parse(t, CN_TRACEPARENT_LEN, &d) != -EINVAL)
                test__fail(__FILE__, __LINE__, "accepted byte 0x%02x at %d", odd[k], pos);
            ASSERT(!d.valid);
        }
    }
}

/* The wrapper of a traced remote call, written as one block: the bytes libei
 * writes, and unwrapped back to its request and context. */
TEST(call_wrapper_bytes)
{
    cn__tel_call_t tc;
    memset(&tc, 0, sizeof tc);
    memcpy(tc.tp, TP_OK, CN_TRACEPARENT_LEN + 1);
    ei_x_buff a, b;
    ASSERT_EQ(cn_x_new(&a), 0);
    ASSERT_EQ(cn_x_new(&b), 0);
    ASSERT_EQ(cn__tel_call_wrap(&tc, &a), 0);
    ei_x_encode_tuple_header(&b, 3);
    ei_x_encode_atom(&b, "$cn_trace");
    ei_x_encode_binary(&b, TP_OK, CN_TRACEPARENT_LEN);
    ASSERT_EQ(a.index, b.index);
    ASSERT_MEM_EQ(a.buff, b.buff, (size_t)a.index);
    int inner = a.index;
    ei_x_encode_atom(&a, "ping");
    cn_term_t req = { a.buff, 1, a.index }; /* after the version byte */
    cn_span_ctx_t ctx;
    ASSERT(cn__tel_unwrap(&req, &ctx));
    ASSERT_EQ(req.index, inner);
    ASSERT(ctx.valid);
    ASSERT_EQ(ctx.trace_id[0], 0x4b);
    ASSERT_EQ(ctx.span_id[7], 0xb7);
    /* The wrapper alone, no request after it: not a wrapped call. */
    cn_term_t cut = { b.buff, 1, b.index };
    ASSERT(!cn__tel_unwrap(&cut, &ctx));
    ei_x_free(&a);
    ei_x_free(&b);
}

/* ---------------------------------------------------------------------------------
 * An in-process OTLP receiver: POST /v1/traces bodies are kept as JSON
 * ------------------------------------------------------------------------------ */

typedef struct world {
    json_t *spans;          /* every span received, flattened */
    json_t *resource;       /* the last resource seen */
    int posts;
    int fail_first;         /* answer 503 to this many POSTs first */
    cn_http_server_t *recv;
    cn_http_server_t *app;
    uint16_t recv_port, app_port;
    void (*scenario)(struct world *w);
    int64_t delay_ms;
    uint32_t queue_size, batch_size;
    bool no_endpoint;
    uint64_t exported, dropped, failed;
} world_t;

static world_t *W;

static int on_traces(cn_http_req_t *req, void *ud)
{
    world_t *w = ud;
    w->posts++;
    if (w->fail_first > 0) {
        w->fail_first--;
        return cn_http_reply_text(req, 503, "busy\n");
    }
    json_error_t e;
    json_t *j = json_loadb(req->body, req->body_len, 0, &e);
    if (j == NULL)
        return cn_http_reply_text(req, 400, "bad json\n");
    json_t *rs = json_object_get(j, "resourceSpans");
    size_t i;
    json_t *r;
    json_array_foreach(rs, i, r) {
        json_decref(w->resource);
        w->resource = json_incref(json_object_get(r, "resource"));
        size_t k;
        json_t *ss;
        json_array_foreach(json_object_get(r, "scopeSpans"), k, ss) {
            size_t m;
            json_t *sp;
            json_array_foreach(json_object_get(ss, "spans"), m, sp)
                json_array_append(w->spans, sp);
        }
    }
    json_decref(j);
    return cn_http_reply_json(req, 200, "{}");
}

static void world_main(void *arg)
{
    world_t *w = arg;
    static const cn_http_route_t routes[] = { { "POST", "/v1/traces", on_traces, NULL } };
    cn_http_route_t r[1] = { routes[0] };
    r[0].udata = w;
    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.routes = r;
    cfg.nroutes = 1;
    cfg.max_body_bytes = 16 << 20;
    ASSERT_EQ(cn_http_server_start(cn_node_self(), &cfg, &w->recv), 0);
    w->recv_port = cn_http_server_port(w->recv);
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%u/v1/traces", w->recv_port);
    cn_telemetry_opts_t o = { 0 };
    o.endpoint = w->no_endpoint ? NULL : ep;
    o.service_name = "trace-test";
    o.protocol = CN_OTLP_JSON; /* this receiver reads JSON; otlp_test.c checks protobuf */
    o.resource_attrs = "deployment.environment=test,team=blog%20team";
    o.delay_ms = w->delay_ms ? w->delay_ms : 50;
    o.queue_size = w->queue_size;
    o.batch_size = w->batch_size;
    o.backoff_ms = 10;
    ASSERT_EQ(cn_telemetry_start(cn_node_self(), &o), 0);
    ASSERT_EQ(cn_telemetry_start(cn_node_self(), &o), -EALREADY);
    w->scenario(w);
    cn_telemetry_stop(cn_node_self(), 5000);
    cn_trace_stats(cn_node_self(), &w->exported, &w->dropped, &w->failed, NULL);
    cn_http_server_stop(w->recv);
    if (w->app)
        cn_http_server_stop(w->app);
}

static void run_world(world_t *w)
{
    w->spans = json_array();
    W = w;
    cn_node_t *node;
    cn_node_opts_t no = { .name = "trace@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&no, &node), 0);
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    ASSERT_EQ(cn_spawn(node, world_main, w, &so, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    cn_node_free(node);
    cn_http_server_free(w->recv);
    cn_http_server_free(w->app);
}

static void world_free(world_t *w)
{
    json_decref(w->spans);
    json_decref(w->resource);
}

static json_t *span_named(world_t *w, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(w->spans, i, s) {
        if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
            return s;
    }
    test__fail(__FILE__, __LINE__, "no span named %s among %zu", name, json_array_size(w->spans));
}

static const char *sattr(json_t *span, const char *key)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(span, "attributes"), i, a) {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0) {
            json_t *v = json_object_get(a, "value");
            json_t *s = json_object_get(v, "stringValue");
            if (s)
                return json_string_value(s);
            return json_string_value(json_object_get(v, "intValue"));
        }
    }
    return NULL;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* ---------------------------------------------------------------------------------
 * Spans, current span, export
 * ------------------------------------------------------------------------------ */

static void nested(world_t *w)
{
    (void)w;
    ASSERT(cn_tracing_enabled());
    cn_span_t *a = cn_span_start("outer", CN_SPAN_INTERNAL);
    ASSERT_PTR_NE(a, NULL);
    cn_span_set_str(a, "k.str", "v");
    cn_span_set_int(a, "k.int", 1234567890123LL);
    cn_span_set_double(a, "k.dbl", 0.5);
    cn_span_set_bool(a, "k.bool", true);
    cn_span_set_str(a, "k.str", "v2"); /* replaces */
    cn_span_event(a, "something happened", "why", "because");
    cn_span_ctx_t cur;
    ASSERT_EQ(cn_trace_current(&cur), 0);
    ASSERT_MEM_EQ(cur.span_id, a->ctx.span_id, 8);
    cn_span_t *b = cn_span_start("inner", CN_SPAN_CLIENT);
    ASSERT_MEM_EQ(b->ctx.trace_id, a->ctx.trace_id, 16);
    ASSERT_MEM_EQ(b->parent_id, a->ctx.span_id, 8);
    cn_span_set_status(b, CN_STATUS_ERROR, "it broke");
    cn_span_end(b);
    ASSERT_EQ(cn_trace_current(&cur), 0);
    ASSERT_MEM_EQ(cur.span_id, a->ctx.span_id, 8); /* back to the outer one */
    cn_span_end(a);
    ASSERT_EQ(cn_trace_current(&cur), -ENOENT);
    /* A remote parent continues its trace; an unsampled one records nothing. */
    cn_span_ctx_t p;
    ASSERT_EQ(cn_traceparent_parse(TP_OK, strlen(TP_OK), &p), 0);
    cn_span_t *c = cn_span_start_ctx("remote child", CN_SPAN_SERVER, &p);
    cn_span_end(c);
    p.flags = 0;
    cn_span_t *d = cn_span_start_ctx("unsampled", CN_SPAN_SERVER, &p);
    ASSERT_PTR_NE(d, NULL);
    ASSERT_EQ(cn_span_context(d).flags, 0);
    cn_span_t *e = cn_span_start("unsampled child", CN_SPAN_INTERNAL);
    ASSERT_EQ(cn_span_context(e).flags, 0);
    cn_span_end(e);
    cn_span_end(d);
    /* NULL is accepted everywhere. */
    cn_span_set_str(NULL, "a", "b");
    cn_span_event(NULL, "x", NULL, NULL);
    cn_span_end(NULL);
}

TEST(spans_nest_and_export)
{
    world_t w = { .scenario = nested };
    run_world(&w);
    ASSERT_EQ(json_array_size(w.spans), 3);
    json_t *outer = span_named(&w, "outer"), *inner = span_named(&w, "inner");
    json_t *rc = span_named(&w, "remote child");
    ASSERT_STR_EQ(str(inner, "traceId"), str(outer, "traceId"));
    ASSERT_STR_EQ(str(inner, "parentSpanId"), str(outer, "spanId"));
    ASSERT_NULL(json_object_get(outer, "parentSpanId"));
    ASSERT_STR_EQ(str(rc, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
    ASSERT_STR_EQ(str(rc, "parentSpanId"), "00f067aa0ba902b7");
    ASSERT_STR_EQ(sattr(outer, "k.str"), "v2");
    ASSERT_STR_EQ(sattr(outer, "k.int"), "1234567890123"); /* int64 as a string */
    ASSERT_EQ(json_integer_value(json_object_get(inner, "kind")), 3);
    json_t *st = json_object_get(inner, "status");
    ASSERT_EQ(json_integer_value(json_object_get(st, "code")), 2);
    ASSERT_STR_EQ(str(st, "message"), "it broke");
    json_t *ev = json_array_get(json_object_get(outer, "events"), 0);
    ASSERT_STR_EQ(str(ev, "name"), "something happened");
    ASSERT(json_is_string(json_object_get(outer, "startTimeUnixNano")));
    ASSERT_EQ(w.exported, 3);
    ASSERT_EQ(w.dropped, 0);
    /* The resource: service.name and the OTEL_RESOURCE_ATTRIBUTES pairs. */
    char *res = json_dumps(w.resource, JSON_COMPACT);
    ASSERT(strstr(res, "\"service.name\",\"value\":{\"stringValue\":\"trace-test\"}"));
    ASSERT(strstr(res, "\"team\",\"value\":{\"stringValue\":\"blog team\"}"));
    free(res);
    world_free(&w);
}

static void flood(world_t *w)
{
    (void)w;
    for (int i = 0; i < 10; i++)
        cn_span_end(cn_span_start("flood", CN_SPAN_INTERNAL));
    uint32_t queued;
    uint64_t dropped;
    cn_trace_stats(cn_node_self(), NULL, &dropped, NULL, &queued);
    ASSERT_EQ(queued, 4);
    ASSERT_EQ(dropped, 6);
}

TEST(export_queue_is_bounded_and_drops_are_counted)
{
    /* The exporter waits 10 s: nothing leaves the queue during the flood. */
    world_t w = { .scenario = flood, .queue_size = 4, .batch_size = 100, .delay_ms = 10000 };
    run_world(&w);
    ASSERT_EQ(w.dropped, 6);
    ASSERT_EQ(w.exported, 4); /* the stop flushed the rest */
    ASSERT_EQ(json_array_size(w.spans), 4);
    world_free(&w);
}

static void few(world_t *w)
{
    for (int i = 0; i < 3; i++)
        cn_span_end(cn_span_start("retry", CN_SPAN_INTERNAL));
    /* Two refusals, then the post that takes them - waited for, not assumed
     * done after 500 ms: on a loaded machine the stop could otherwise meet the
     * second 503. */
    ASSERT(WAIT_UNTIL(w->posts >= 3, 20000, cn_sleep(10)));
}

TEST(export_retries_after_503)
{
    world_t w = { .scenario = few, .fail_first = 2 };
    run_world(&w);
    /* The receiver's own requests are traced too (it runs on the traced node), so
     * count the scenario's spans by name. */
    ASSERT_GE(w.posts, 3);
    ASSERT_EQ(w.failed, 0);
    int n = 0;
    size_t i;
    json_t *s;
    json_array_foreach(w.spans, i, s) n += strcmp(str(s, "name"), "retry") == 0;
    ASSERT_EQ(n, 3);
    world_free(&w);
}

/* ---------------------------------------------------------------------------------
 * Collectors that do not answer
 * ------------------------------------------------------------------------------ */

typedef struct silent {
    int lfd;                /* listening, never accepted: connects, then no reply */
    int64_t timeout_ms;     /* of one POST */
    int64_t stop_ms;        /* how long cn_telemetry_stop may flush */
    int stop_rc;
    uint64_t exported, dropped, failed;
} silent_t;

/* A listening socket on a kernel-picked loopback port that nobody accepts
 * from: the kernel completes the handshake, takes the request, and no answer
 * ever comes. */
static int silent_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;
    ASSERT_GE(fd, 0);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(fd, 8), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void silent_main(void *arg)
{
    silent_t *s = arg;
    uint16_t port;
    s->lfd = silent_listener(&port);
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%u/v1/traces", port);
    cn_telemetry_opts_t o = { 0 };
    o.endpoint = ep;
    o.delay_ms = 20;
    o.export_timeout_ms = s->timeout_ms;
    o.max_attempts = 2;
    o.backoff_ms = 10;
    ASSERT_EQ(cn_telemetry_start(cn_node_self(), &o), 0);
    for (int i = 0; i < 3; i++)
        cn_span_end(cn_span_start("unheard", CN_SPAN_INTERNAL));
    if (s->stop_ms > 0)
        cn_sleep(100); /* the POST is under way and hangs */
    else
        ASSERT(WAIT_UNTIL((cn_trace_stats(cn_node_self(), NULL, NULL, &s->failed, NULL),
                           s->failed >= 1),
                          20000, cn_sleep(10)));
    s->stop_rc = cn_telemetry_stop(cn_node_self(), s->stop_ms > 0 ? s->stop_ms : 5000);
    cn_trace_stats(cn_node_self(), &s->exported, &s->dropped, &s->failed, NULL);
}

static void run_silent(silent_t *s)
{
    cn_node_t *node;
    cn_node_opts_t no = { .name = "silent@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&no, &node), 0);
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    ASSERT_EQ(cn_spawn(node, silent_main, s, &so, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    cn_node_free(node); /* frees a POST cut short, connection and all */
    close(s->lfd);
}

TEST(export_to_a_silent_collector_times_out_and_drops)
{
    /* Each POST times out (200 ms), the retry too: the batch is dropped and
     * counted, and the node goes on. */
    silent_t s = { .timeout_ms = 200 };
    run_silent(&s);
    ASSERT_EQ(s.stop_rc, 0);
    ASSERT_EQ(s.exported, 0);
    ASSERT_EQ(s.dropped, 3);
    ASSERT_EQ(s.failed, 1);
}

TEST(stop_cuts_a_hung_export_short)
{
    /* The POST would wait 10 s for its answer; the stop gives it 100 ms, kills
     * the exporter in the middle of the POST, and the node frees what curl held
     * (ASan checks that nothing leaks). */
    silent_t s = { .timeout_ms = 10000, .stop_ms = 100 };
    run_silent(&s);
    ASSERT_EQ(s.stop_rc, -ETIMEDOUT);
    ASSERT_EQ(s.exported, 0);
}

static void off(world_t *w)
{
    (void)w;
    ASSERT(!cn_tracing_enabled());
    ASSERT_NULL(cn_span_start("nothing", CN_SPAN_INTERNAL));
}

TEST(no_endpoint_no_tracing)
{
    world_t w = { .scenario = off, .no_endpoint = true };
    run_world(&w);
    ASSERT_EQ(w.posts, 0);
    world_free(&w);
}

/* ---------------------------------------------------------------------------------
 * gen_server: local calls and the wrapper
 * ------------------------------------------------------------------------------ */

static char seen_req[MAXATOMLEN];

static int echo_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)state;
    (void)from;
    int i = req.index, arity;
    char atom[MAXATOMLEN];
    if (ei_decode_tuple_header(req.buf, &i, &arity) == 0)
        ei_decode_atom(req.buf, &i, atom);
    else
        ei_decode_atom(req.buf, &i, atom);
    memcpy(seen_req, atom, sizeof seen_req);
    /* A span inside the handler is a child of the server span. */
    cn_span_end(cn_span_start("db query", CN_SPAN_CLIENT));
    ei_x_encode_atom(reply, "ok");
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t echo_cb = { .handle_call = echo_call };

#define LONG_SERVICE 155 /* + "/get_post": over 159 bytes */

static void calls(world_t *w)
{
    (void)w;
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &echo_cb, NULL,
                                  &(cn_gen_server_opts_t){ .name = "echo" }, NULL), 0);
    cn_span_t *root = cn_span_start("request", CN_SPAN_SERVER);
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "get_post");
    ei_x_encode_binary(&x, "hello", 5);
    ASSERT_EQ(cn_gen_call(cn_dest_name("echo"), &x, 1000, &m, &r), 0);
    cn_msg_free(m);
    ASSERT_STR_EQ(seen_req, "get_post");
    cn_span_end(root);
    /* A wrapped request from another node is unwrapped before handle_call. */
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$cn_trace");
    ei_x_encode_binary(&x, TP_OK, CN_TRACEPARENT_LEN);
    ei_x_encode_atom(&x, "ping");
    ASSERT_EQ(cn_gen_call(cn_dest_name("echo"), &x, 1000, &m, &r), 0);
    cn_msg_free(m);
    ASSERT_STR_EQ(seen_req, "ping");
    /* A local call outside any trace makes no span. */
    cn_x_new(&x);
    ei_x_encode_atom(&x, "untraced");
    ASSERT_EQ(cn_gen_call(cn_dest_name("echo"), &x, 1000, &m, &r), 0);
    cn_msg_free(m);
    cn_gen_server_stop(cn_dest_name("echo"), "normal", 1000);
    /* A server whose name leaves no room for the whole method in the span's
     * name (cut at 159 bytes, as ever): rpc.method is whole all the same. */
    char longname[LONG_SERVICE + 1];
    memset(longname, 's', LONG_SERVICE);
    longname[LONG_SERVICE] = '\0';
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &echo_cb, NULL,
                                  &(cn_gen_server_opts_t){ .name = longname }, NULL), 0);
    root = cn_span_start("long", CN_SPAN_SERVER);
    cn_x_new(&x);
    ei_x_encode_atom(&x, "get_post");
    ASSERT_EQ(cn_gen_call(cn_dest_name(longname), &x, 1000, &m, &r), 0);
    cn_msg_free(m);
    cn_span_end(root);
    cn_gen_server_stop(cn_dest_name(longname), "normal", 1000);
}

TEST(gen_server_call_links_client_and_server_spans)
{
    world_t w = { .scenario = calls };
    run_world(&w);
    json_t *req = span_named(&w, "request"), *cl = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(w.spans, i, s) {
        if (strcmp(str(s, "name"), "echo/get_post") == 0 &&
            json_integer_value(json_object_get(s, "kind")) == 3)
            cl = s;
    }
    ASSERT_PTR_NE(cl, NULL);
    ASSERT_STR_EQ(str(cl, "parentSpanId"), str(req, "spanId"));
    ASSERT_STR_EQ(sattr(cl, "rpc.method"), "get_post");
    ASSERT_STR_EQ(sattr(cl, "rpc.service"), "echo");
    ASSERT_STR_EQ(sattr(cl, "rpc.system"), "erlang");
    /* Server span: same name, kind SERVER, child of the client span. */
    json_t *srv = NULL, *db = NULL, *wrapped = NULL;
    json_array_foreach(w.spans, i, s) {
        if (strcmp(str(s, "name"), "echo/get_post") == 0 &&
            json_integer_value(json_object_get(s, "kind")) == 2)
            srv = s;
        if (strcmp(str(s, "name"), "echo/ping") == 0)
            wrapped = s;
        if (strcmp(str(s, "name"), "db query") == 0 &&
            strcmp(str(s, "traceId"), str(req, "traceId")) == 0)
            db = s;
    }
    ASSERT_PTR_NE(srv, NULL);
    ASSERT_PTR_NE(db, NULL);
    ASSERT_STR_EQ(str(srv, "parentSpanId"), str(cl, "spanId"));
    ASSERT_STR_EQ(str(db, "parentSpanId"), str(srv, "spanId"));
    ASSERT_STR_EQ(str(srv, "traceId"), str(req, "traceId"));
    ASSERT_STR_EQ(sattr(srv, "rpc.method"), "get_post");
    ASSERT_STR_EQ(sattr(srv, "rpc.service"), "echo");
    ASSERT_STR_EQ(sattr(srv, "rpc.system"), "erlang");
    ASSERT_PTR_NE(sattr(srv, "server.address"), NULL);
    ASSERT_STR_EQ(sattr(cl, "server.address"), sattr(srv, "server.address"));
    ASSERT_STR_EQ(sattr(wrapped, "rpc.method"), "ping");
    /* The long-named server's spans: the name cut, the attributes whole. */
    char want[160];
    memset(want, 's', LONG_SERVICE);
    memcpy(want + LONG_SERVICE, "/get", 4); /* "/get_post" cut at 159 bytes */
    want[159] = '\0';
    int nlong = 0;
    json_array_foreach(w.spans, i, s) {
        if (strcmp(str(s, "name"), want) != 0)
            continue;
        nlong++;
        ASSERT_EQ(strlen(str(s, "name")), (size_t)159);
        ASSERT_STR_EQ(sattr(s, "rpc.method"), "get_post");
        ASSERT_EQ(strlen(sattr(s, "rpc.service")), (size_t)LONG_SERVICE);
    }
    ASSERT_EQ(nlong, 2); /* client and server */
    /* The wrapped call's server span continues the wrapper's trace. */
    ASSERT_PTR_NE(wrapped, NULL);
    ASSERT_STR_EQ(str(wrapped, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
    ASSERT_STR_EQ(str(wrapped, "parentSpanId"), "00f067aa0ba902b7");
    json_array_foreach(w.spans, i, s) {
        ASSERT(strstr(str(s, "name"), "untraced") == NULL);
    }
    world_free(&w);
}

static void plain_unwrap(void *arg)
{
    (void)arg;
    /* Tracing off on this node: a wrapped request is still unwrapped. */
    ASSERT_EQ(cn_gen_server_start(cn_node_self(), &echo_cb, NULL,
                                  &(cn_gen_server_opts_t){ .name = "echo" }, NULL), 0);
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$cn_trace");
    ei_x_encode_binary(&x, "not a traceparent", 17);
    ei_x_encode_tuple_header(&x, 1);
    ei_x_encode_atom(&x, "inner");
    ASSERT_EQ(cn_gen_call(cn_dest_name("echo"), &x, 1000, &m, &r), 0);
    cn_msg_free(m);
    ASSERT_STR_EQ(seen_req, "inner");
    cn_gen_server_stop(cn_dest_name("echo"), "normal", 1000);
}

TEST(wrapped_request_is_unwrapped_without_telemetry)
{
    cn_node_t *node;
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    ASSERT_EQ(cn_spawn(node, plain_unwrap, NULL, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    cn_node_free(node);
}

/* ---------------------------------------------------------------------------------
 * HTTP server spans
 * ------------------------------------------------------------------------------ */

static int on_post(cn_http_req_t *req, void *ud)
{
    (void)ud;
    cn_span_ctx_t cur;
    ASSERT_EQ(cn_trace_current(&cur), 0); /* the request's span is current */
    return cn_http_reply_text(req, 200, cn_http_param(req, "slug"));
}

static void http_get(uint16_t port, const char *path, const char *extra_hdr)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "curl -s -o /dev/null %s%s%s http://127.0.0.1:%u%s",
             extra_hdr ? "-H '" : "", extra_hdr ? extra_hdr : "", extra_hdr ? "'" : "", port,
             path);
    ASSERT_EQ(system(cmd), 0);
}

static void curl_job(void *arg)
{
    const char **a = arg;
    http_get((uint16_t)atoi(a[0]), a[1], a[2]);
}

static const char *httpd_port; /* the app's port, as text */

static void httpd(world_t *w)
{
    static const cn_http_route_t routes[] = { { "GET", "/post/:slug", on_post, NULL } };
    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.routes = routes;
    cfg.nroutes = 1;
    ASSERT_EQ(cn_http_server_start(cn_node_self(), &cfg, &w->app), 0);
    static char port[16]; /* read by the test after the world ends */
    snprintf(port, sizeof port, "%u", cn_http_server_port(w->app));
    httpd_port = port;
    const char *a1[] = { port, "/post/hello", "traceparent: " TP_OK };
    const char *a2[] = { port, "/post/bad", "traceparent: 00-zz-bad" };
    const char *a3[] = { port, "/nothing", NULL };
    /* Values too long for the span to borrow from the request: copied. */
    static char longp[400];
    memcpy(longp, "/post/", 6);
    memset(longp + 6, 'x', sizeof longp - 7);
    const char *a4[] = { port, longp, "User-Agent: probe/1.0" };
    /* The Host forms the span splits (found as the head is parsed, in any
     * case), and a query. */
    const char *a5[] = { port, "/post/q?x=1,y=2", "Host: [::1]:8080" };
    const char *a6[] = { port, "/post/up", "USER-AGENT: Shout/2" };
    const char *a7[] = { port, "/post/v6", "host: [::1]" };
    /* Two traceparent fields, the first valid: ambiguous, so a new root (the
     * W3C conformance suite's test_traceparent_duplicated). Two -H options
     * through http_get's quoting. */
    const char *a8[] = { port, "/post/dup",
                         "traceparent: " TP_OK "' -H 'traceparent: "
                         "00-12345678901234567890123456789012-1234567890123456-01" };
    ASSERT_EQ(cn_blocking(curl_job, a1), 0);
    ASSERT_EQ(cn_blocking(curl_job, a2), 0);
    ASSERT_EQ(cn_blocking(curl_job, a3), 0);
    ASSERT_EQ(cn_blocking(curl_job, a4), 0);
    ASSERT_EQ(cn_blocking(curl_job, a5), 0);
    ASSERT_EQ(cn_blocking(curl_job, a6), 0);
    ASSERT_EQ(cn_blocking(curl_job, a7), 0);
    ASSERT_EQ(cn_blocking(curl_job, a8), 0);
}

TEST(http_server_spans)
{
    world_t w = { .scenario = httpd };
    run_world(&w);
    json_t *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL, *s5 = NULL, *s6 = NULL, *s7 = NULL,
           *s8 = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(w.spans, i, s) {
        const char *path = sattr(s, "url.path");
        if (path && strlen(path) == 399 && strncmp(path, "/post/xxx", 9) == 0)
            s4 = s;
        if (path && strcmp(path, "/post/hello") == 0)
            s1 = s;
        if (path && strcmp(path, "/post/bad") == 0)
            s2 = s;
        if (path && strcmp(path, "/nothing") == 0)
            s3 = s;
        if (path && strcmp(path, "/post/q") == 0)
            s5 = s;
        if (path && strcmp(path, "/post/up") == 0)
            s6 = s;
        if (path && strcmp(path, "/post/v6") == 0)
            s7 = s;
        if (path && strcmp(path, "/post/dup") == 0)
            s8 = s;
    }
    ASSERT_PTR_NE(s1, NULL);
    ASSERT_PTR_NE(s2, NULL);
    ASSERT_PTR_NE(s3, NULL);
    ASSERT_STR_EQ(str(s1, "name"), "GET /post/:slug");
    ASSERT_STR_EQ(sattr(s1, "http.route"), "/post/:slug");
    ASSERT_STR_EQ(sattr(s1, "http.request.method"), "GET");
    ASSERT_STR_EQ(sattr(s1, "http.response.status_code"), "200");
    ASSERT_STR_EQ(sattr(s1, "server.address"), "127.0.0.1");
    ASSERT_STR_EQ(sattr(s1, "client.address"), "127.0.0.1");
    ASSERT_EQ(json_integer_value(json_object_get(s1, "kind")), 2);
    ASSERT_STR_EQ(str(s1, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
    ASSERT_STR_EQ(str(s1, "parentSpanId"), "00f067aa0ba902b7");
    /* A malformed traceparent is ignored: a new root. */
    ASSERT_NULL(json_object_get(s2, "parentSpanId"));
    ASSERT(strcmp(str(s2, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736") != 0);
    ASSERT_STR_EQ(sattr(s3, "http.response.status_code"), "404");
    ASSERT_STR_EQ(str(s3, "name"), "GET");
    ASSERT_PTR_NE(s4, NULL);
    ASSERT_STR_EQ(sattr(s4, "user_agent.original"), "probe/1.0");
    ASSERT_STR_EQ(sattr(s4, "http.route"), "/post/:slug");
    ASSERT_STR_EQ(sattr(s4, "http.response.status_code"), "200");
    ASSERT_STR_EQ(sattr(s4, "url.scheme"), "http");
    ASSERT_STR_EQ(sattr(s1, "server.port"), httpd_port);
    ASSERT_NULL(sattr(s1, "url.query"));
    ASSERT_PTR_NE(s5, NULL);
    ASSERT_STR_EQ(sattr(s5, "url.query"), "x=1,y=2");
    ASSERT_STR_EQ(sattr(s5, "server.address"), "[::1]");
    ASSERT_STR_EQ(sattr(s5, "server.port"), "8080");
    ASSERT_PTR_NE(s6, NULL);
    ASSERT_STR_EQ(sattr(s6, "user_agent.original"), "Shout/2");
    ASSERT_STR_EQ(sattr(s6, "network.protocol.version"), "1.1");
    ASSERT_PTR_NE(s7, NULL);
    ASSERT_STR_EQ(sattr(s7, "server.address"), "[::1]");
    ASSERT_NULL(sattr(s7, "server.port"));
    ASSERT_PTR_NE(s8, NULL);
    ASSERT_NULL(json_object_get(s8, "parentSpanId"));
    ASSERT(strcmp(str(s8, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736") != 0);
    ASSERT(strcmp(str(s8, "traceId"), "12345678901234567890123456789012") != 0);
    world_free(&w);
}
