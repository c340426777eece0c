/* canary.c - canary rollouts of the CMS, decided by each client on its own.
 *
 * CMS nodes announce their version with `cms` in the cluster registry
 * (ONEBLOG_VERSION). The *stable* version is the one set by ONEBLOG_STABLE_VERSION
 * or by `oneblog-ctl canary promote`, else the version most `cms` members run
 * (the lower one on a tie). Every other version is a *canary*.
 *
 * Routing (cms.c's pick asks client_canary_tier): a first try goes to a canary
 * with probability ONEBLOG_CANARY_SHARE %, else to the stable version; a retry
 * always prefers the stable version. Members of the other group are the fallback
 * when the preferred group has no node to offer (all breakers open); a canary
 * that was rolled back comes last, used only when nothing else is left.
 *
 * Judging: every call attempt's outcome and latency land in a sliding window per
 * version (WINDOW_BUCKETS buckets covering ONEBLOG_CANARY_WINDOW_MS; latency as
 * a log histogram, 4 buckets per doubling, for p99). Once a canary has had
 * ONEBLOG_CANARY_MIN_CALLS calls in the window, it is rolled back when
 *   its error rate > the stable's + ONEBLOG_CANARY_ERROR_MARGIN (% points), or
 *   its p99 > the stable's + ONEBLOG_CANARY_P99_MARGIN_MS (when the stable
 *   version has had MIN_CALLS calls too).
 * A rollback stops the share at once and says so three ways: a warn log line
 * ("canary"), the metrics oneblog_canary_rollbacks_total{version,reason} and
 * oneblog_canary_share{version} (0), and a `canary.rollback` event cast to the
 * `events` service.
 *
 * Control: the `canary` gen_server (registered, and joined as cluster service
 * `canary` so that oneblog-ctl finds every client node) answers
 *   status | promote | {promote, V} | abort | {abort, V}
 * with {ok, Text} (a readable report) or {error, Reason}. promote makes V (by
 * default the one canary version in sight) the stable version and lifts a
 * rollback of it; abort rolls V (default: every running canary) back by hand.
 * The state is per client node and in memory: a client that starts later reads
 * ONEBLOG_STABLE_VERSION, so set it in the deployment once a promotion is final.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/cluster.h"
#include "cnode/gen_server.h"
#include "cnode/telemetry.h"
#include "events/event.h"
#include "events/events_server.h"

#define MAX_VERSIONS 8
#define WINDOW_BUCKETS 10
#define LAT_BUCKETS 64          /* upper bounds 100 us * 2^(i/4); the last is +Inf */
#define EVAL_EVERY_MS 100
#define MAX_MEMBERS 64

enum { V_RUNNING = 0, V_ROLLED_BACK };

typedef struct bucket {
    uint64_t start_ms;          /* the slice of the window this bucket holds */
    uint32_t calls, errors;
    uint32_t lat[LAT_BUCKETS];
} bucket_t;

typedef struct vstat {
    char version[CN_CLUSTER_META_MAX];
    int state;                  /* V_* */
    bucket_t b[WINDOW_BUCKETS];
    uint64_t calls, errors;     /* totals since first seen */
    char why[200];              /* the rollback's reason, for status */
    time_t when;                /* of the rollback or promotion */
} vstat_t;

typedef struct window {
    uint32_t calls, errors;
    uint32_t lat[LAT_BUCKETS];
} window_t;

struct client_canary {
    client_t *cl;
    char stable_cfg[CN_CLUSTER_META_MAX]; /* configured or promoted; "" = majority */
    vstat_t v[MAX_VERSIONS];
    int nv;
    uint64_t rng;
    uint64_t last_eval_ms;
    double bound_us[LAT_BUCKETS];
    cn_metric_t *m_rollbacks, *m_share;
    cn_pid_t server;
};

/* ---------------------------------------------------------------------------------
 * Windows
 * ------------------------------------------------------------------------------ */

static vstat_t *vstat_find(client_canary_t *c, const char *version, bool create)
{
    for (int i = 0; i < c->nv; i++)
        if (strcmp(c->v[i].version, version) == 0)
            return &c->v[i];
    if (!create)
        return NULL;
    if (c->nv == MAX_VERSIONS) {
        /* Reuse the slot of the version seen least (old versions come and go). */
        int k = 0;
        for (int i = 1; i < c->nv; i++)
            if (c->v[i].calls < c->v[k].calls)
                k = i;
        c->v[k] = c->v[--c->nv];
    }
    vstat_t *v = &c->v[c->nv++];
    memset(v, 0, sizeof(*v));
    snprintf(v->version, sizeof v->version, "%s", version);
    return v;
}

static int bucket_width_ms(const client_canary_t *c)
{
    int w = c->cl->cfg.canary_window_ms / WINDOW_BUCKETS;
    return w > 0 ? w : 1;
}

/* The window of v as of now: the buckets that started within window_ms. */
static void window_sum(const client_canary_t *c, const vstat_t *v, uint64_t now, window_t *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t span = (uint64_t)c->cl->cfg.canary_window_ms;
    for (int i = 0; i < WINDOW_BUCKETS; i++) {
        const bucket_t *b = &v->b[i];
        if (b->calls == 0 || b->start_ms + span <= now)
            continue;
        out->calls += b->calls;
        out->errors += b->errors;
        for (int k = 0; k < LAT_BUCKETS; k++)
            out->lat[k] += b->lat[k];
    }
}

/* The p99 of a window in ms (the upper bound of the bucket holding it). */
static double window_p99_ms(const client_canary_t *c, const window_t *w)
{
    if (w->calls == 0)
        return 0;
    uint64_t want = ((uint64_t)w->calls * 99 + 99) / 100, seen = 0;
    for (int k = 0; k < LAT_BUCKETS; k++) {
        seen += w->lat[k];
        if (seen >= want)
            return k == LAT_BUCKETS - 1 ? c->bound_us[k - 1] / 1000.0 * 2 : c->bound_us[k] / 1000.0;
    }
    return c->bound_us[LAT_BUCKETS - 2] / 1000.0;
}

static double rate(uint32_t errors, uint32_t calls)
{
    return calls ? 100.0 * errors / calls : 0;
}

/* ---------------------------------------------------------------------------------
 * Which version is stable
 * ------------------------------------------------------------------------------ */

/* The stable version among members m[0..n): configured/promoted, else the one
 * run by most members (the lower string on a tie). "" when n == 0. */
static void stable_of(const client_canary_t *c, const cn_cluster_member_t *m, int n,
                      char out[CN_CLUSTER_META_MAX])
{
    if (c->stable_cfg[0]) {
        snprintf(out, CN_CLUSTER_META_MAX, "%s", c->stable_cfg);
        return;
    }
    int best = -1, best_n = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (int j = 0; j < n; j++)
            k += strcmp(m[i].version, m[j].version) == 0;
        if (k > best_n || (k == best_n && strcmp(m[i].version, m[best].version) < 0)) {
            best = i;
            best_n = k;
        }
    }
    snprintf(out, CN_CLUSTER_META_MAX, "%s", best >= 0 ? m[best].version : "");
}

static void current_stable(const client_canary_t *c, char out[CN_CLUSTER_META_MAX])
{
    static cn_cluster_member_t m[MAX_MEMBERS]; /* scheduler thread only, no yield */
    int n = cn_cluster_members("cms", m, MAX_MEMBERS);
    stable_of(c, m, n < 0 ? 0 : n > MAX_MEMBERS ? MAX_MEMBERS : n, out);
}

/* ---------------------------------------------------------------------------------
 * Routing (called by cms.c)
 * ------------------------------------------------------------------------------ */

bool client_canary_roll(client_t *cl)
{
    client_canary_t *c = cl->canary;
    if (c == NULL || cl->cfg.canary_share_pct <= 0)
        return false;
    c->rng ^= c->rng << 13; /* xorshift64 */
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return (int)(c->rng % 100) < cl->cfg.canary_share_pct;
}

void client_canary_stable(client_t *cl, const cn_cluster_member_t *m, int n, char *out)
{
    if (cl->canary == NULL) {
        out[0] = '\0';
        return;
    }
    stable_of(cl->canary, m, n, out);
}

int client_canary_tier(client_t *cl, const char *version, const char *stable, bool want_canary)
{
    client_canary_t *c = cl->canary;
    if (c == NULL || strcmp(version, stable) == 0)
        return want_canary ? 1 : 0;
    const vstat_t *v = vstat_find(c, version, false);
    if (v && v->state == V_ROLLED_BACK)
        return 2;
    return want_canary ? 0 : 1;
}

/* ---------------------------------------------------------------------------------
 * Rollback
 * ------------------------------------------------------------------------------ */

/* A canary.rollback event to `events` (a cast: never waits; dropped, and logged,
 * when there is no events service). */
static void send_event(client_canary_t *c, const vstat_t *v, const char *stable,
                       const char *reason, const window_t *wc, const window_t *ws)
{
    client_t *cl = c->cl;
    ev_event_t *ev;
    if (ev_event_new("canary.rollback", &ev) < 0)
        return;
    ev_event_set_node(ev, cn_node_name(cl->node));
    ev_event_set_app_version(ev, "oneblog-client/" CLIENT_VERSION);
    bson_t *d = ev_event_data(ev);
    BSON_APPEND_UTF8(d, "service", "cms");
    BSON_APPEND_UTF8(d, "version", v->version);
    BSON_APPEND_UTF8(d, "stable", stable);
    BSON_APPEND_UTF8(d, "reason", reason);
    BSON_APPEND_INT32(d, "window_ms", cl->cfg.canary_window_ms);
    BSON_APPEND_INT64(d, "canary_calls", wc->calls);
    BSON_APPEND_INT64(d, "canary_errors", wc->errors);
    BSON_APPEND_DOUBLE(d, "canary_p99_ms", window_p99_ms(c, wc));
    BSON_APPEND_INT64(d, "stable_calls", ws->calls);
    BSON_APPEND_INT64(d, "stable_errors", ws->errors);
    BSON_APPEND_DOUBLE(d, "stable_p99_ms", window_p99_ms(c, ws));
    bson_t doc;
    cn_dest_t dest;
    cn_cluster_member_t m;
    if (ev_event_encode(ev, &doc) == 0) {
        ev_slice_t s = { .data = bson_get_data(&doc), .len = doc.len };
        if (!client_events_dest(&dest, &m) || events_cast_batch(dest, &s, 1) < 0)
            client_log(CLIENT_LOG_WARN, "canary", "no events service: canary.rollback not recorded");
        bson_destroy(&doc);
    }
    ev_event_free(ev);
}

static void set_share_metric(client_canary_t *c, const char *version, double pct)
{
    const char *lv[] = { version };
    cn_metric_set(c->m_share, lv, pct);
}

static void roll_back(client_canary_t *c, vstat_t *v, const char *stable, const char *reason,
                      const char *why, const window_t *wc, const window_t *ws)
{
    v->state = V_ROLLED_BACK;
    v->when = time(NULL);
    snprintf(v->why, sizeof v->why, "%s", why);
    client_log(CLIENT_LOG_WARN, "canary", "cms %s rolled back (stable %s): %s; no more calls go to it",
               v->version, stable, why);
    const char *lv[] = { v->version, reason };
    cn_metric_add(c->m_rollbacks, lv, 1);
    set_share_metric(c, v->version, 0);
    send_event(c, v, stable, reason, wc, ws);
}

/* Judge every running canary against the stable version. */
static void evaluate(client_canary_t *c, uint64_t now)
{
    const client_config_t *cfg = &c->cl->cfg;
    char stable[CN_CLUSTER_META_MAX];
    current_stable(c, stable);
    vstat_t *s = vstat_find(c, stable, false);
    window_t ws = { 0 };
    if (s)
        window_sum(c, s, now, &ws);
    for (int i = 0; i < c->nv; i++) {
        vstat_t *v = &c->v[i];
        if (v == s || v->state != V_RUNNING || strcmp(v->version, stable) == 0)
            continue;
        set_share_metric(c, v->version, cfg->canary_share_pct);
        window_t wc;
        window_sum(c, v, now, &wc);
        if ((int)wc.calls < cfg->canary_min_calls)
            continue;
        double ec = rate(wc.errors, wc.calls), es = rate(ws.errors, ws.calls);
        char why[200];
        if (ec > es + cfg->canary_error_margin_pct) {
            snprintf(why, sizeof why, "error rate %.1f%% > stable's %.1f%% + %d points over %u calls "
                     "in %d ms", ec, es, cfg->canary_error_margin_pct, wc.calls,
                     cfg->canary_window_ms);
            roll_back(c, v, stable, "error_rate", why, &wc, &ws);
            continue;
        }
        if ((int)ws.calls < cfg->canary_min_calls)
            continue;
        double pc = window_p99_ms(c, &wc), ps = window_p99_ms(c, &ws);
        if (pc > ps + cfg->canary_p99_margin_ms) {
            snprintf(why, sizeof why, "p99 %.1f ms > stable's %.1f ms + %d ms over %u calls in %d ms",
                     pc, ps, cfg->canary_p99_margin_ms, wc.calls, cfg->canary_window_ms);
            roll_back(c, v, stable, "p99_latency", why, &wc, &ws);
        }
    }
}

void client_canary_record(client_t *cl, const char *version, bool ok, uint64_t latency_us)
{
    client_canary_t *c = cl->canary;
    if (c == NULL)
        return;
    uint64_t now = cn_now_ms();
    vstat_t *v = vstat_find(c, version, true);
    int w = bucket_width_ms(c);
    bucket_t *b = &v->b[(now / (uint64_t)w) % WINDOW_BUCKETS];
    uint64_t start = now - now % (uint64_t)w;
    if (b->start_ms != start) {
        memset(b, 0, sizeof(*b));
        b->start_ms = start;
    }
    int k = 0;
    while (k < LAT_BUCKETS - 1 && (double)latency_us > c->bound_us[k])
        k++;
    b->lat[k]++;
    b->calls++;
    v->calls++;
    if (!ok) {
        b->errors++;
        v->errors++;
    }
    if (now - c->last_eval_ms >= EVAL_EVERY_MS) {
        c->last_eval_ms = now;
        evaluate(c, now);
    }
}

/* ---------------------------------------------------------------------------------
 * The `canary` control server
 * ------------------------------------------------------------------------------ */

static void status_text(client_canary_t *c, buf_t *out)
{
    static cn_cluster_member_t m[MAX_MEMBERS];
    int n = cn_cluster_members("cms", m, MAX_MEMBERS);
    n = n < 0 ? 0 : n > MAX_MEMBERS ? MAX_MEMBERS : n;
    char stable[CN_CLUSTER_META_MAX];
    stable_of(c, m, n, stable);
    const client_config_t *cfg = &c->cl->cfg;
    uint64_t now = cn_now_ms();
    buf_printf(out, "node %s: stable %s (%s); canary share %d%%, window %d ms, min %d calls, "
               "margins %d points / %d ms\n", cn_node_name(c->cl->node), stable[0] ? stable : "-",
               c->stable_cfg[0] ? "set" : "most nodes", cfg->canary_share_pct,
               cfg->canary_window_ms, cfg->canary_min_calls, cfg->canary_error_margin_pct,
               cfg->canary_p99_margin_ms);
    /* Every version in sight: those of live members, then those only in the stats. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < (pass ? c->nv : n); i++) {
            const char *ver = pass ? c->v[i].version : m[i].version;
            bool dup = false;
            for (int j = 0; j < (pass ? n : i) && !dup; j++)
                dup = strcmp(m[j].version, ver) == 0;
            if (dup)
                continue;
            int nodes = 0;
            for (int j = 0; j < n; j++)
                nodes += strcmp(m[j].version, ver) == 0;
            const vstat_t *v = vstat_find(c, ver, false);
            window_t w = { 0 };
            if (v)
                window_sum(c, v, now, &w);
            const char *role = strcmp(ver, stable) == 0 ? "stable"
                             : v && v->state == V_ROLLED_BACK ? "rolled-back" : "canary";
            buf_printf(out, "  %-12s %-11s nodes %d  window: calls %u, errors %.1f%%, p99 %.1f ms"
                       "  total: calls %llu, errors %llu%s%s\n", ver[0] ? ver : "\"\"", role,
                       nodes, w.calls, rate(w.errors, w.calls), window_p99_ms(c, &w),
                       (unsigned long long)(v ? v->calls : 0),
                       (unsigned long long)(v ? v->errors : 0), v && v->why[0] ? "  - " : "",
                       v ? v->why : "");
        }
}

/* The version named by {Cmd, V}, or the default: for promote the one canary
 * version in sight, for abort "" (= every running canary). */
static int arg_version(client_canary_t *c, cn_term_t req, bool promote, char out[CN_CLUSTER_META_MAX])
{
    int i = req.index, arity, type, size;
    long len;
    out[0] = '\0';
    if (ei_decode_tuple_header(req.buf, &i, &arity) == 0) {
        if (arity != 2 || ei_skip_term(req.buf, &i) < 0 ||
            ei_get_type(req.buf, &i, &type, &size) < 0 || type != ERL_BINARY_EXT ||
            size >= CN_CLUSTER_META_MAX || ei_decode_binary(req.buf, &i, out, &len) < 0)
            return -EINVAL;
        out[len] = '\0';
        return 0;
    }
    if (!promote)
        return 0;
    static cn_cluster_member_t m[MAX_MEMBERS];
    int n = cn_cluster_members("cms", m, MAX_MEMBERS);
    n = n < 0 ? 0 : n > MAX_MEMBERS ? MAX_MEMBERS : n;
    char stable[CN_CLUSTER_META_MAX];
    stable_of(c, m, n, stable);
    for (int k = 0; k < n; k++) {
        if (strcmp(m[k].version, stable) == 0)
            continue;
        if (out[0] && strcmp(out, m[k].version) != 0)
            return -EEXIST; /* several canary versions: name one */
        snprintf(out, CN_CLUSTER_META_MAX, "%s", m[k].version);
    }
    return out[0] ? 0 : -ENOENT;
}

static void reply_text(ei_x_buff *r, const char *atom, const char *text)
{
    ei_x_encode_tuple_header(r, 2);
    ei_x_encode_atom(r, atom);
    ei_x_encode_binary(r, text, (long)strlen(text));
}

static int canary_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)from;
    client_canary_t *c = state;
    int i = req.index, arity = 0;
    char cmd[MAXATOMLEN_UTF8] = "";
    if (ei_decode_tuple_header(req.buf, &i, &arity) < 0)
        i = req.index;
    if (ei_decode_atom(req.buf, &i, cmd) < 0)
        cmd[0] = '\0';
    buf_t b = BUF_INIT;
    char ver[CN_CLUSTER_META_MAX];
    if (strcmp(cmd, "status") == 0) {
        status_text(c, &b);
        reply_text(reply, "ok", b.data ? b.data : "");
    } else if (strcmp(cmd, "promote") == 0) {
        int rc = arg_version(c, req, true, ver);
        if (rc < 0) {
            reply_text(reply, "error", rc == -EEXIST ? "several canary versions: name one"
                                       : rc == -ENOENT ? "no canary version in sight"
                                       : "bad request");
        } else {
            snprintf(c->stable_cfg, sizeof c->stable_cfg, "%s", ver);
            vstat_t *v = vstat_find(c, ver, true);
            v->state = V_RUNNING;
            v->when = time(NULL);
            snprintf(v->why, sizeof v->why, "promoted by hand");
            client_log(CLIENT_LOG_WARN, "canary", "cms %s promoted to stable by oneblog-ctl", ver);
            set_share_metric(c, ver, 100 - c->cl->cfg.canary_share_pct);
            buf_printf(&b, "%s: %s is the stable version\n", cn_node_name(c->cl->node), ver);
            reply_text(reply, "ok", b.data);
        }
    } else if (strcmp(cmd, "abort") == 0) {
        char stable[CN_CLUSTER_META_MAX];
        current_stable(c, stable);
        if (arg_version(c, req, false, ver) < 0) {
            reply_text(reply, "error", "bad request");
        } else {
            static cn_cluster_member_t m[MAX_MEMBERS];
            int n = cn_cluster_members("cms", m, MAX_MEMBERS);
            n = n < 0 ? 0 : n > MAX_MEMBERS ? MAX_MEMBERS : n;
            int done = 0;
            for (int k = 0; k < n; k++) {
                if (strcmp(m[k].version, stable) == 0 || (ver[0] && strcmp(ver, m[k].version)))
                    continue;
                vstat_t *v = vstat_find(c, m[k].version, true);
                if (v->state == V_ROLLED_BACK)
                    continue;
                window_t wc, ws = { 0 };
                window_sum(c, v, cn_now_ms(), &wc);
                const vstat_t *s = vstat_find(c, stable, false);
                if (s)
                    window_sum(c, s, cn_now_ms(), &ws);
                roll_back(c, v, stable, "manual", "aborted by oneblog-ctl", &wc, &ws);
                buf_printf(&b, "%s: %s rolled back\n", cn_node_name(c->cl->node), v->version);
                done++;
            }
            if (done == 0)
                buf_printf(&b, "%s: no running canary\n", cn_node_name(c->cl->node));
            reply_text(reply, "ok", b.data);
        }
    } else {
        reply_text(reply, "error", "usage: status | promote | {promote, V} | abort | {abort, V}");
    }
    buf_free(&b);
    return CN_GS_CONTINUE;
}

static int canary_init(void *arg, void **state)
{
    *state = arg;
    return 0;
}

static const cn_gen_server_t canary_server = {
    .init = canary_init,
    .handle_call = canary_call,
};

/* Started by client_canary_start: runs the server and announces it (both must
 * be done from a process, after the cluster is up). */
static void canary_boot(void *arg)
{
    client_canary_t *c = arg;
    cn_gen_server_opts_t go = { .name = "canary" };
    int rc = cn_gen_server_start(cn_node_self(), &canary_server, c, &go, &c->server);
    if (rc == 0)
        rc = cn_cluster_join("canary", c->server, CLIENT_VERSION);
    if (rc < 0)
        client_log(CLIENT_LOG_ERROR, "canary", "control server: %s (oneblog-ctl cannot reach "
                   "this node; routing and rollbacks still work)", cn_strerror(rc));
}

int client_canary_start(client_t *cl)
{
    client_canary_t *c = xcalloc(1, sizeof(*c));
    c->cl = cl;
    snprintf(c->stable_cfg, sizeof c->stable_cfg, "%s", cl->cfg.stable_version);
    c->rng = (uint64_t)cn_now_ms() * 0x9E3779B97F4A7C15ull | 1;
    double b = 100; /* us */
    for (int k = 0; k < LAT_BUCKETS; k++) {
        c->bound_us[k] = b;
        b *= 1.189207115; /* 2^(1/4) */
    }
    c->m_rollbacks = cn_metric_counter(cl->node, "oneblog_canary_rollbacks_total",
                                       "CMS canary versions rolled back by this client",
                                       "version,reason");
    c->m_share = cn_metric_gauge(cl->node, "oneblog_canary_share",
                                 "share of first tries routed to a CMS version (%)", "version");
    cl->canary = c;
    return cn_spawn(cl->node, canary_boot, c, NULL, NULL);
}

void client_canary_free(client_t *cl)
{
    free(cl->canary);
    cl->canary = NULL;
}
