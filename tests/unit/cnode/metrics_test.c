/* metrics_test.c - the metric registry, histogram buckets, the Prometheus text
 * format (checked line by line), the /metrics handler, the node's own gauges,
 * and the JSON log line. */
#include "test.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "cnode/http.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/telemetry.h"
#include "http_int.h"

static void on_node(cn_proc_fn fn)
{
    cn_node_t *node;
    cn_node_opts_t o = { .name = "m@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&o, &node), 0);
    ASSERT_EQ(cn_spawn(node, fn, NULL, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    cn_node_free(node);
}

static char *text_of(void)
{
    char *t;
    size_t len;
    ASSERT_EQ(cn_metrics_format(NULL, &t, &len), 0);
    ASSERT_EQ(strlen(t), len);
    return t;
}

static void has_line(const char *text, const char *line)
{
    size_t l = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[l] == '\n' || p[l] == '\0'))
            return;
    test__fail(__FILE__, __LINE__, "line \"%s\" not in:\n%s", line, text);
}

static void counters_gauges(void *arg)
{
    (void)arg;
    cn_metric_t *c = cn_metric_counter(NULL, "app_hits_total", "Hits, by \"kind\"\nsecond", "kind,code");
    ASSERT_PTR_NE(c, NULL);
    ASSERT_PTR_EQ(cn_metric_counter(NULL, "app_hits_total", "again", "kind,code"), c);
    ASSERT_NULL(cn_metric_gauge(NULL, "app_hits_total", NULL, NULL)); /* type clash */
    ASSERT_NULL(cn_metric_counter(NULL, "bad name", NULL, NULL));
    ASSERT_NULL(cn_metric_counter(NULL, "bad_label", NULL, "ok,1x"));
    const char *a[] = { "page", "200" }, *b[] = { "we\"ird\\val\nue", "500" };
    cn_metric_add(c, a, 1);
    cn_metric_add(c, a, 2);
    cn_metric_add(c, a, -5); /* counters never go down */
    cn_metric_add(c, b, 1);
    ASSERT_EQ(cn_metric_value(c, a), 3);
    ASSERT(isnan(cn_metric_value(c, (const char *[]){ "x", "y" })));
    cn_metric_t *g = cn_metric_gauge(NULL, "app_temp", "Temperature", NULL);
    cn_metric_set(g, NULL, 21.5);
    cn_metric_add(g, NULL, -1.25);
    char *t = text_of();
    has_line(t, "# HELP app_hits_total Hits, by \"kind\"\\nsecond");
    has_line(t, "# TYPE app_hits_total counter");
    has_line(t, "app_hits_total{kind=\"page\",code=\"200\"} 3");
    has_line(t, "app_hits_total{kind=\"we\\\"ird\\\\val\\nue\",code=\"500\"} 1");
    has_line(t, "# TYPE app_temp gauge");
    has_line(t, "app_temp 20.25");
    /* The node's own gauges and the built-in families. */
    has_line(t, "# TYPE cnode_processes gauge");
    has_line(t, "cnode_processes 1");
    has_line(t, "# TYPE http_server_request_duration_seconds histogram");
    has_line(t, "# TYPE rpc_client_calls_total counter");
    free(t);
}

TEST(counters_and_gauges_in_text_format)
{
    on_node(counters_gauges);
}

static void histograms(void *arg)
{
    (void)arg;
    static const double bounds[] = { 0.1, 0.5, 1 };
    cn_metric_t *h = cn_metric_histogram(NULL, "app_latency_seconds", "Latency", "route",
                                         bounds, 3);
    ASSERT_NULL(cn_metric_histogram(NULL, "app_bad_seconds", NULL, NULL,
                                    (const double[]){ 1, 0.5 }, 2)); /* not increasing */
    const char *r[] = { "/a" };
    cn_metric_observe(h, r, 0.05);
    cn_metric_observe(h, r, 0.1);  /* le is inclusive */
    cn_metric_observe(h, r, 0.7);
    cn_metric_observe(h, r, 3);
    cn_metric_observe(h, r, NAN);  /* ignored */
    ASSERT_EQ(cn_metric_value(h, r), 4);
    char *t = text_of();
    has_line(t, "# TYPE app_latency_seconds histogram");
    has_line(t, "app_latency_seconds_bucket{route=\"/a\",le=\"0.1\"} 2");
    has_line(t, "app_latency_seconds_bucket{route=\"/a\",le=\"0.5\"} 2");
    has_line(t, "app_latency_seconds_bucket{route=\"/a\",le=\"1\"} 3");
    has_line(t, "app_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4");
    has_line(t, "app_latency_seconds_sum{route=\"/a\"} 3.8500000000000001");
    has_line(t, "app_latency_seconds_count{route=\"/a\"} 4");
    /* Default buckets: 14 bounds + Inf. */
    cn_metric_t *d = cn_metric_histogram(NULL, "app_default_seconds", NULL, NULL, NULL, 0);
    cn_metric_observe(d, NULL, 0.003);
    free(t);
    t = text_of();
    has_line(t, "app_default_seconds_bucket{le=\"0.0025\"} 0");
    has_line(t, "app_default_seconds_bucket{le=\"0.005\"} 1");
    has_line(t, "app_default_seconds_bucket{le=\"10\"} 1");
    has_line(t, "app_default_seconds_bucket{le=\"+Inf\"} 1");
    /* Every line is a comment or "name[{labels}] value". */
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        char *sp = strrchr(line, ' ');
        ASSERT_PTR_NE(sp, NULL);
        char *end;
        strtod(sp + 1, &end);
        if (*end && strcmp(sp + 1, "+Inf") != 0 && strcmp(sp + 1, "NaN") != 0)
            test__fail(__FILE__, __LINE__, "bad value in \"%s\"", line);
    }
    free(t);
}

TEST(histogram_buckets_are_cumulative)
{
    on_node(histograms);
}

/* The HTTP server counts requests by route and status once telemetry is on. */
static int on_hello(cn_http_req_t *req, void *ud)
{
    (void)ud;
    return cn_http_reply_text(req, 200, "hi\n");
}

static void http_metrics(void *arg)
{
    (void)arg;
    ASSERT_EQ(cn_telemetry_start(cn_node_self(), &(cn_telemetry_opts_t){ 0 }), 0);
    ASSERT(!cn_tracing_enabled());
    static const cn_http_route_t routes[] = {
        { "GET", "/hello/:who", on_hello, NULL },
        { "GET", "/metrics", cn_metrics_handler, NULL },
    };
    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.routes = routes;
    cfg.nroutes = 2;
    cn_http_server_t *s;
    ASSERT_EQ(cn__http_server_new(&cfg, &s), 0);
    const char in[] = "GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /hello/b HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    char *out;
    size_t outlen;
    ASSERT_EQ(cn__http_serve_buffer(s, in, sizeof in - 1, 0, &out, &outlen), 0);
    ASSERT(strstr(out, "Content-Type: text/plain; version=0.0.4"));
    ASSERT(strstr(out, "http_server_requests_total{method=\"GET\",route=\"/hello/:who\",status=\"200\"} 2\n"));
    ASSERT(strstr(out, "http_server_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n"));
    ASSERT(strstr(out, "http_server_request_duration_seconds_count{method=\"GET\",route=\"/hello/:who\",status=\"200\"} 2\n"));
    free(out);
    cn_http_server_free(s);
    cn_telemetry_stop(cn_node_self(), 1000);
}

TEST(http_requests_by_route_and_status)
{
    on_node(http_metrics);
}

/* ---------------------------------------------------------------------------------
 * Logs
 * ------------------------------------------------------------------------------ */

TEST(log_line_is_json)
{
    char buf[4096];
    size_t n = cn_log_format(buf, sizeof buf, CN_LOG_WARN, "store", "disk \"full\"\n\x01");
    ASSERT_EQ(strlen(buf), n);
    json_error_t e;
    json_t *j = json_loads(buf, 0, &e);
    ASSERT_PTR_NE(j, NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "level")), "warn");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "module")), "store");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "msg")), "disk \"full\"\n\x01");
    const char *t = json_string_value(json_object_get(j, "time"));
    ASSERT(t && strlen(t) == 27 && t[10] == 'T' && t[26] == 'Z');
    ASSERT_NULL(json_object_get(j, "trace_id")); /* no node, no span */
    json_decref(j);
    ASSERT_EQ(cn_log_level_parse("debug"), CN_LOG_DEBUG);
    ASSERT_EQ(cn_log_level_parse("WARNING"), CN_LOG_WARN);
    ASSERT_EQ(cn_log_level_parse("loud"), -EINVAL);
}

static void logs_in_span(void *arg)
{
    int *fds = arg;
    cn_span_t *s = cn_span_start("x", CN_SPAN_INTERNAL);
    ASSERT_PTR_EQ(s, NULL); /* tracing is off: no ids in the line */
    cn_log(CN_LOG_INFO, "test", "hello %d", 42);
    cn_log(CN_LOG_DEBUG, "test", "filtered out");
    close(fds[1]);
}

TEST(log_level_filters_and_node_is_logged)
{
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    cn_log_set_fd(fds[1]);
    cn_log_set_level(CN_LOG_INFO);
    cn_node_t *node;
    cn_node_opts_t o = { .name = "logger@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&o, &node), 0);
    ASSERT_EQ(cn_spawn(node, logs_in_span, fds, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(node), 0);
    cn_node_free(node);
    char buf[4096] = "";
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    ASSERT_GT(n, 0);
    buf[n] = '\0';
    ASSERT(strstr(buf, "\"msg\":\"hello 42\""));
    ASSERT(strstr(buf, "\"node\":\"logger@127.0.0.1\""));
    ASSERT(strstr(buf, "filtered") == NULL);
    ASSERT_EQ(strchr(buf, '\n'), buf + n - 1); /* one line */
    close(fds[0]);
}
