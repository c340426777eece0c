/* metrics.c - the node's metric registry and its Prometheus text exposition.
 *
 * A metric (counter, gauge or histogram) has a name, help text and up to 8 label
 * names; each distinct tuple of label values is a series, created on first use
 * and kept until the node is freed (label values must come from small sets:
 * routes, not paths). Updates find the series by a hash of the values and a
 * linear scan of the metric's series - a handful per metric - with no allocation
 * after the first use of a tuple.
 *
 * The exposition follows the text format 0.0.4: # HELP and # TYPE lines, then one
 * line per series; histograms as cumulative _bucket{le=...} lines ending with
 * le="+Inf", then _sum and _count. Label values escape \\, \" and \n. Collect
 * callbacks run first, to refresh gauges read on demand (the node's own ones:
 * processes, mailbox depth, scheduler utilisation, distribution connections).
 */
#include "telemetry_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/dist.h"

#define MAX_LABELS 8

enum { M_COUNTER = 1, M_GAUGE, M_HISTOGRAM };

typedef struct series {
    uint64_t hash;
    char **vals;            /* nlabels owned strings (one allocation) */
    double value;           /* counter, gauge */
    double sum;             /* histogram */
    uint64_t count;
    uint64_t *buckets;      /* histogram: per bucket (not cumulative), nbounds + 1 */
} series_t;

struct cn_metric {
    int type;
    char *name, *help;
    int nlabels;
    char *labels[MAX_LABELS];
    double *bounds;
    int nbounds;
    series_t **series;
    int nseries, capseries;
};

typedef struct collector {
    cn_metrics_collect_cb cb;
    void *ud;
} collector_t;

struct cn__metrics {
    cn_metric_t **v;
    int n, cap;
    collector_t *cols;
    int ncols, capcols;
};

static const double default_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10 };

/* ---------------------------------------------------------------------------------
 * Registry
 * ------------------------------------------------------------------------------ */

int cn__metrics_new(cn__tel_t *t)
{
    t->metrics = cn__calloc(1, sizeof(*t->metrics));
    return t->metrics ? 0 : -ENOMEM;
}

static void metric_free(cn_metric_t *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < m->nseries; i++) {
        cn__free(m->series[i]->vals);
        cn__free(m->series[i]->buckets);
        cn__free(m->series[i]);
    }
    cn__free(m->series);
    for (int i = 0; i < m->nlabels; i++)
        cn__free(m->labels[i]);
    cn__free(m->bounds);
    cn__free(m->name);
    cn__free(m->help);
    cn__free(m);
}

void cn__metrics_free(cn__metrics_t *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->n; i++)
        metric_free(r->v[i]);
    cn__free(r->v);
    cn__free(r->cols);
    cn__free(r);
}

static char *mdup(const char *s, size_t n)
{
    char *d = cn__malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static bool valid_name(const char *s, bool label)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                     (!label && *p == ':');
        if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
            return false;
    }
    return true;
}

static cn_metric_t *reg(cn_node_t *node, int type, const char *name, const char *help,
                        const char *labels, const double *bounds, int nbounds)
{
    cn__tel_t *t = cn__tel_get(node ? node : cn__cur_node);
    if (t == NULL || !valid_name(name, false))
        return NULL;
    cn__metrics_t *r = t->metrics;
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->v[i]->name, name) == 0)
            return r->v[i]->type == type ? r->v[i] : NULL;
    if (type == M_HISTOGRAM && bounds == NULL) {
        bounds = default_bounds;
        nbounds = (int)(sizeof(default_bounds) / sizeof(default_bounds[0]));
    }
    for (int i = 1; i < nbounds; i++)
        if (!(bounds[i] > bounds[i - 1]))
            return NULL;
    cn_metric_t *m = cn__calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->type = type;
    m->name = mdup(name, strlen(name));
    m->help = mdup(help ? help : "", help ? strlen(help) : 0);
    if (m->name == NULL || m->help == NULL)
        goto fail;
    for (const char *p = labels; p && *p;) {
        size_t l = strcspn(p, ",");
        if (l > 0) {
            if (m->nlabels == MAX_LABELS || (m->labels[m->nlabels] = mdup(p, l)) == NULL)
                goto fail;
            if (!valid_name(m->labels[m->nlabels++], true))
                goto fail;
        }
        p += l;
        p += *p == ',';
    }
    if (type == M_HISTOGRAM) {
        m->nbounds = nbounds;
        if ((m->bounds = cn__malloc((size_t)(nbounds ? nbounds : 1) * sizeof(double))) == NULL)
            goto fail;
        memcpy(m->bounds, bounds, (size_t)nbounds * sizeof(double));
    }
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 32;
        cn_metric_t **v = cn__realloc(r->v, (size_t)cap * sizeof(*v));
        if (v == NULL)
            goto fail;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = m;
    return m;
fail:
    metric_free(m);
    return NULL;
}

cn_metric_t *cn_metric_counter(cn_node_t *node, const char *name, const char *help,
                               const char *labels)
{
    return reg(node, M_COUNTER, name, help, labels, NULL, 0);
}

cn_metric_t *cn_metric_gauge(cn_node_t *node, const char *name, const char *help,
                             const char *labels)
{
    return reg(node, M_GAUGE, name, help, labels, NULL, 0);
}

cn_metric_t *cn_metric_histogram(cn_node_t *node, const char *name, const char *help,
                                 const char *labels, const double *bounds, int nbounds)
{
    return reg(node, M_HISTOGRAM, name, help, labels, bounds, nbounds);
}

int cn_metrics_on_collect(cn_node_t *node, cn_metrics_collect_cb cb, void *udata)
{
    cn__tel_t *t = cn__tel_get(node ? node : cn__cur_node);
    if (t == NULL)
        return -ENOMEM;
    cn__metrics_t *r = t->metrics;
    if (r->ncols == r->capcols) {
        int cap = r->capcols ? 2 * r->capcols : 4;
        collector_t *c = cn__realloc(r->cols, (size_t)cap * sizeof(*c));
        if (c == NULL)
            return -ENOMEM;
        r->cols = c;
        r->capcols = cap;
    }
    r->cols[r->ncols++] = (collector_t){ cb, udata };
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Series
 * ------------------------------------------------------------------------------ */

static uint64_t hash_vals(const cn_metric_t *m, const char *const *vals)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < m->nlabels; i++) {
        for (const char *p = vals[i] ? vals[i] : ""; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
    }
    return h;
}

static bool same_vals(const cn_metric_t *m, const series_t *s, const char *const *vals)
{
    for (int i = 0; i < m->nlabels; i++)
        if (strcmp(s->vals[i], vals[i] ? vals[i] : "") != 0)
            return false;
    return true;
}

static series_t *find(cn_metric_t *m, const char *const *vals, bool create)
{
    uint64_t h = hash_vals(m, vals);
    for (int i = 0; i < m->nseries; i++) {
        series_t *s = m->series[i];
        if (s->hash == h && same_vals(m, s, vals)) {
            if (i > 0 && create) {
                /* Move towards the front: hot series are found in a step or two. */
                m->series[i] = m->series[i - 1];
                m->series[i - 1] = s;
            }
            return s;
        }
    }
    if (!create)
        return NULL;
    if (m->nseries == m->capseries) {
        int cap = m->capseries ? 2 * m->capseries : 8;
        series_t **v = cn__realloc(m->series, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        m->series = v;
        m->capseries = cap;
    }
    size_t need = (size_t)m->nlabels * sizeof(char *);
    for (int i = 0; i < m->nlabels; i++)
        need += strlen(vals[i] ? vals[i] : "") + 1;
    series_t *s = cn__calloc(1, sizeof(*s));
    char **sv = need ? cn__malloc(need) : NULL;
    uint64_t *b = m->type == M_HISTOGRAM ? cn__calloc((size_t)m->nbounds + 1, sizeof(*b)) : NULL;
    if (s == NULL || (need && sv == NULL) || (m->type == M_HISTOGRAM && b == NULL)) {
        cn__free(s);
        cn__free(sv);
        cn__free(b);
        return NULL;
    }
    char *p = (char *)(sv + m->nlabels);
    for (int i = 0; i < m->nlabels; i++) {
        const char *v = vals[i] ? vals[i] : "";
        size_t l = strlen(v) + 1;
        memcpy(p, v, l);
        sv[i] = p;
        p += l;
    }
    s->hash = h;
    s->vals = sv;
    s->buckets = b;
    m->series[m->nseries++] = s;
    return s;
}

void cn_metric_add(cn_metric_t *m, const char *const *values, double v)
{
    if (m == NULL || m->type == M_HISTOGRAM || (m->type == M_COUNTER && !(v >= 0)))
        return;
    series_t *s = find(m, values, true);
    if (s)
        s->value += v;
}

void cn_metric_set(cn_metric_t *m, const char *const *values, double v)
{
    if (m == NULL || m->type != M_GAUGE)
        return;
    series_t *s = find(m, values, true);
    if (s)
        s->value = v;
}

void cn_metric_observe(cn_metric_t *m, const char *const *values, double v)
{
    if (m == NULL || m->type != M_HISTOGRAM || isnan(v))
        return;
    series_t *s = find(m, values, true);
    if (s == NULL)
        return;
    int i = 0;
    while (i < m->nbounds && v > m->bounds[i])
        i++;
    s->buckets[i]++;
    s->sum += v;
    s->count++;
}

double cn_metric_value(cn_metric_t *m, const char *const *values)
{
    series_t *s = m ? find(m, values, false) : NULL;
    if (s == NULL)
        return NAN;
    return m->type == M_HISTOGRAM ? (double)s->count : s->value;
}

/* ---------------------------------------------------------------------------------
 * Built-in metrics of the core
 * ------------------------------------------------------------------------------ */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A counter that mirrors a total kept elsewhere. The series exists from the
 * first scrape (value NaN before: adding a difference with NaN added nothing, so
 * these counters never appeared). */
static void mirror(cn_metric_t *m, uint64_t total)
{
    double have = cn_metric_value(m, NULL);
    if (isnan(have))
        cn_metric_add(m, NULL, (double)total);
    else if ((double)total > have)
        cn_metric_add(m, NULL, (double)total - have);
}

/* Node gauges, read at scrape time on the scheduler thread. */
static void collect_node(cn_node_t *n, void *ud)
{
    cn__tel_t *t = ud;
    cn_metric_set(cn_metric_gauge(n, "cnode_processes", NULL, NULL), NULL,
                  (double)n->nprocs);
    double mbox = 0;
    for (uint32_t i = 1; i < n->nslots; i++)
        if (n->procs[i])
            mbox += n->procs[i]->mq_len;
    cn_metric_set(cn_metric_gauge(n, "cnode_mailbox_messages", NULL, NULL), NULL, mbox);
    /* Utilisation: CPU time of the scheduler thread over wall time since the last
     * scrape (busy polling counts as busy, as BEAM's scheduler_wall_time does). */
    uint64_t cpu = thread_cpu_ns(), wall = cn__tel_mono_ns();
    if (t->sched_wall_ns && wall > t->sched_wall_ns)
        cn_metric_set(cn_metric_gauge(n, "cnode_scheduler_utilization", NULL, NULL), NULL,
                      (double)(cpu - t->sched_cpu_ns) / (double)(wall - t->sched_wall_ns));
    cn_metric_t *c = cn_metric_counter(n, "cnode_scheduler_cpu_seconds_total", NULL, NULL);
    cn_metric_add(c, NULL, (double)(cpu - t->sched_cpu_ns) / 1e9); /* from 0 the first time */
    t->sched_cpu_ns = cpu;
    t->sched_wall_ns = wall;
    int conns = 0;
    if (n->dist_ops)
        for (uint32_t i = 1; i < n->nnode_names; i++)
            conns += n->node_names[i] && cn_dist_is_connected(n->node_names[i]);
    cn_metric_set(cn_metric_gauge(n, "cnode_dist_connections", NULL, NULL), NULL, conns);
    uint64_t exported = 0, dropped = 0, failed = 0;
    uint32_t queued = 0;
    cn__exporter_stats(t, &exported, &dropped, &failed, &queued);
    mirror(cn_metric_counter(n, "cnode_trace_spans_exported_total", NULL, NULL), exported);
    mirror(cn_metric_counter(n, "cnode_trace_spans_dropped_total", NULL, NULL), dropped);
    mirror(cn_metric_counter(n, "cnode_trace_export_failures_total", NULL, NULL), failed);
    cn_metric_set(cn_metric_gauge(n, "cnode_trace_queue_spans", NULL, NULL), NULL, queued);
}

int cn__metrics_builtin(cn__tel_t *t)
{
    cn_node_t *n = t->node;
    n->telemetry = t; /* reg() looks the record up through the node */
    t->m_http_req = cn_metric_counter(n, "http_server_requests_total",
                                      "HTTP requests served, by method, route and status",
                                      "method,route,status");
    t->m_http_dur = cn_metric_histogram(
        n, "http_server_request_duration_seconds",
        "Time from the first byte of a request to its response, by method, route and status",
        "method,route,status", NULL, 0);
    t->m_rpc_calls = cn_metric_counter(n, "rpc_client_calls_total",
                                       "gen_server calls made, by request name, peer node and outcome",
                                       "method,peer,outcome");
    t->m_rpc_dur = cn_metric_histogram(n, "rpc_client_duration_seconds",
                                       "gen_server call latency, by request name, peer and outcome",
                                       "method,peer,outcome", NULL, 0);
    t->m_rpc_srv_calls = cn_metric_counter(n, "rpc_server_calls_total",
                                           "gen_server calls handled, by server and request name",
                                           "service,method");
    t->m_rpc_srv_dur = cn_metric_histogram(n, "rpc_server_duration_seconds",
                                           "handle_call time, by server and request name",
                                           "service,method", NULL, 0);
    bool ok = t->m_http_req && t->m_http_dur && t->m_rpc_calls && t->m_rpc_dur &&
              t->m_rpc_srv_calls && t->m_rpc_srv_dur;
    ok = ok && cn_metric_gauge(n, "cnode_processes", "Live processes on the node", NULL) &&
         cn_metric_gauge(n, "cnode_mailbox_messages",
                         "Messages waiting in all mailboxes of the node", NULL) &&
         cn_metric_gauge(n, "cnode_scheduler_utilization",
                         "Scheduler thread CPU time over wall time since the previous scrape",
                         NULL) &&
         cn_metric_counter(n, "cnode_scheduler_cpu_seconds_total",
                           "CPU time used by the scheduler thread", NULL) &&
         cn_metric_gauge(n, "cnode_dist_connections", "Connected distribution peers", NULL) &&
         cn_metric_counter(n, "cnode_trace_spans_exported_total", "Spans exported over OTLP",
                           NULL) &&
         cn_metric_counter(n, "cnode_trace_spans_dropped_total",
                           "Spans dropped: queue full or export failed", NULL) &&
         cn_metric_counter(n, "cnode_trace_export_failures_total",
                           "Export batches given up after retries", NULL) &&
         cn_metric_gauge(n, "cnode_trace_queue_spans", "Finished spans waiting for export",
                         NULL) &&
         cn_metrics_on_collect(n, collect_node, t) == 0;
    n->telemetry = NULL; /* cn__tel_get sets it when everything is ready */
    return ok ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------------------------
 * Exposition
 * ------------------------------------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void putf(buf_t *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_num(buf_t *b, double v)
{
    if (isnan(v))
        puts_(b, "NaN");
    else if (isinf(v))
        puts_(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        putf(b, "%.0f", v);
    else
        putf(b, "%.17g", v);
}

/* Escape a label value (\\, \", \n) or help text (\\, \n). */
static void put_escaped(buf_t *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            puts_(b, "\\\\");
        else if (*s == '\n')
            puts_(b, "\\n");
        else if (quote && *s == '"')
            puts_(b, "\\\"");
        else
            put(b, s, 1);
    }
}

static void put_labels(buf_t *b, const cn_metric_t *m, const series_t *s, const char *le)
{
    if (m->nlabels == 0 && le == NULL)
        return;
    puts_(b, "{");
    for (int i = 0; i < m->nlabels; i++) {
        if (i)
            puts_(b, ",");
        puts_(b, m->labels[i]);
        puts_(b, "=\"");
        put_escaped(b, s->vals[i], true);
        puts_(b, "\"");
    }
    if (le) {
        puts_(b, m->nlabels ? ",le=\"" : "le=\"");
        puts_(b, le);
        puts_(b, "\"");
    }
    puts_(b, "}");
}

int cn_metrics_format(cn_node_t *node, char **out, size_t *len)
{
    cn__tel_t *t = cn__tel_get(node ? node : cn__cur_node);
    *out = NULL;
    *len = 0;
    if (t == NULL)
        return -ENOMEM;
    cn__metrics_t *r = t->metrics;
    for (int i = 0; i < r->ncols; i++)
        r->cols[i].cb(t->node, r->cols[i].ud);
    buf_t b = { 0 };
    static const char *types[] = { "", "counter", "gauge", "histogram" };
    for (int i = 0; i < r->n; i++) {
        const cn_metric_t *m = r->v[i];
        if (m->help[0]) {
            putf(&b, "# HELP %s ", m->name);
            put_escaped(&b, m->help, false);
            puts_(&b, "\n");
        }
        putf(&b, "# TYPE %s %s\n", m->name, types[m->type]);
        for (int k = 0; k < m->nseries; k++) {
            const series_t *s = m->series[k];
            if (m->type != M_HISTOGRAM) {
                puts_(&b, m->name);
                put_labels(&b, m, s, NULL);
                puts_(&b, " ");
                put_num(&b, s->value);
                puts_(&b, "\n");
                continue;
            }
            uint64_t cum = 0;
            for (int j = 0; j <= m->nbounds; j++) {
                char le[32];
                if (j < m->nbounds)
                    snprintf(le, sizeof le, "%g", m->bounds[j]);
                else
                    snprintf(le, sizeof le, "+Inf");
                cum += s->buckets[j];
                puts_(&b, m->name);
                puts_(&b, "_bucket");
                put_labels(&b, m, s, le);
                putf(&b, " %llu\n", (unsigned long long)cum);
            }
            puts_(&b, m->name);
            puts_(&b, "_sum");
            put_labels(&b, m, s, NULL);
            puts_(&b, " ");
            put_num(&b, s->sum);
            puts_(&b, "\n");
            puts_(&b, m->name);
            puts_(&b, "_count");
            put_labels(&b, m, s, NULL);
            putf(&b, " %llu\n", (unsigned long long)s->count);
        }
    }
    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    if (b.p == NULL)
        put(&b, "", 0);
    *out = b.p;
    *len = b.len;
    return b.oom ? -ENOMEM : 0;
}

int cn_metrics_handler(cn_http_req_t *req, void *udata)
{
    (void)udata;
    char *text;
    size_t len;
    int rc = cn_metrics_format(NULL, &text, &len);
    if (rc < 0)
        return rc;
    rc = cn_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return rc;
}
