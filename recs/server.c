/* server.c - the `recs` gen_server (see server.h for what a request does and
 * recs_proto.h for the contract).
 *
 * Processes: the server; one short-lived worker per answered request (appends the
 * event, then replies); one follower that reads page.view events from the log
 * and sends them to the server as {recs_views, LastSeq, [{Reader, Slug}]}. The
 * follower owns its store handle and exits when the server is gone; the server
 * owns the index, the models and the history, and nothing else touches them.
 *
 * Hot upgrades (cnode/code.h, docs/hot-upgrade.md): the callbacks below form the
 * module "recs". The binary links the newest version; the Makefile also builds
 * this file as shared objects (RECS_MODULE, $(B)/lib/modules/recs-VSN.so) that
 * `oneblog-ctl upgrade NODE recs FILE.so` swaps in. recs 1 serves recs@1 to
 * every reader; recs 2 adds recs@2 for the A/B share. The state (srv_t) and the
 * start argument are the ABI between versions: both begin with RECS_SERVER_ABI,
 * which code_change and init check; a version that changes their layout must
 * bump it and convert in code_change. code_change rebuilds the models with the
 * new version's code (the old ones' operation tables live in the old object).
 * Workers and the follower started by an old version finish in the old code,
 * which stays loaded; the follower's message ({recs_views, ...}) is part of the
 * ABI too.
 */
#include "recs/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/code.h"
#include "cnode/proc.h"
#include "cnode/telemetry.h"
#include "common/buf.h"
#include "events/event.h"
#include "events/events_server.h"
#include "events/store.h"
#include "recs/ab.h"
#include "recs/history.h"
#include "recs/index_cms.h"
#include "recs/recs_proto.h"
#include "recs/request_event.h"
#include "recs/snapshot.h"

#define CMS_TIMEOUT_MS 10000
#define APPEND_TIMEOUT_MS 10000
#define REBUILD_DELAY_MS 200   /* debounce of content_changed bursts */
#define RETRY_MS 2000          /* cms unreachable: try again */
#define FOLLOW_CHUNK 4096      /* records per read */

/* The module's version; the build sets it for the shared objects. */
#ifndef RECS_SERVER_VSN
#define RECS_SERVER_VSN "2"
#endif
/* The newest model version this version serves: recs 1 only recs@1. */
#define RECS_SERVED (RECS_SERVER_VSN[0] == '1' ? 1 : 2)
/* Layout of srv_t and start_arg_t, checked across versions. */
#define RECS_SERVER_ABI 0x52430001u

typedef struct srv {
    uint32_t abi;             /* RECS_SERVER_ABI: first, so any version can read it */
    char *cms_node, *events_node, *events_url, *snapshot_dir, *ab_salt;
    double share;
    double params[RECS_VERSIONS + 1][RECS_MAX_PARAMS];
    bool fixed_index;
    recs_index_t *ix;
    recs_model_t *models[RECS_VERSIONS + 1];
    const char **cand;        /* the index's slugs in order: the candidate set */
    uint32_t *views;          /* per index position */
    recs_history_t *hist;
    uint64_t views_from, views_to; /* page.view seqs applied: [from, to] */
    int64_t content_version;
    uint64_t rebuilds, requests, errors;
    bool cms_monitored, timer_armed;
    cn_ref_t cms_mref;
    uint64_t follow_backlog;
    int follow_interval_ms;
} srv_t;

typedef struct start_arg {
    uint32_t abi;             /* RECS_SERVER_ABI */
    recs_server_opts_t o;
    char err[256];
} start_arg_t;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "recs: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static cn_dest_t events_dest(const char *node)
{
    return node ? cn_dest_remote("events", node) : cn_dest_name("events");
}

/* ---------------------------------------------------------------------------------
 * Reading page.view events (the follower and the start-up catch-up)
 * ------------------------------------------------------------------------------ */

typedef struct read_job {
    ev_store_t *store;
    uint64_t from;         /* first seq to read */
    size_t max;
    buf_t pairs;           /* out: reader '\0' slug '\0' ... */
    int npairs;
    uint64_t last;         /* out: last seq read (from - 1 if none) */
    size_t nread;
    int rc;
} read_job_t;

/* On the pool: read up to max records from `from`; keep page.view (actor, data.post). */
static void do_read(void *arg)
{
    read_job_t *j = arg;
    ev_list_t l = EV_LIST_INIT;
    j->last = j->from - 1;
    j->nread = 0;
    j->npairs = 0;
    j->pairs.len = 0;
    j->rc = ev_store_read(j->store, j->from, j->max, &l);
    for (size_t i = 0; i < l.n; i++) {
        ev_slice_t sl = ev_list_get(&l, i);
        ev_record_t r;
        bson_t b;
        bson_iter_t it;
        /* ev_store_read checked every record it returned (ev_record_parse): its
         * fields are all we need (a third full check of each record cost the
         * follower ~20% of its instructions). */
        if (ev_record_fields(sl.data, sl.len, &r) < 0)
            break;
        j->last = r.seq;
        j->nread++;
        if (strcmp(r.type, "page.view") != 0 || r.actor == NULL ||
            !bson_init_static(&b, sl.data, sl.len) ||
            !bson_iter_init(&it, &b) || !bson_iter_find_descendant(&it, "data.post", &it) ||
            !BSON_ITER_HOLDS_UTF8(&it))
            continue;
        buf_append(&j->pairs, r.actor, strlen(r.actor) + 1);
        const char *slug = bson_iter_utf8(&it, NULL);
        buf_append(&j->pairs, slug, strlen(slug) + 1);
        j->npairs++;
    }
    ev_list_free(&l);
}

typedef struct open_job {
    const char *url;
    ev_store_t *store;
    uint64_t last;
    int rc;
    char err[EV_ERR_LEN];
} open_job_t;

static void do_open(void *arg)
{
    open_job_t *j = arg;
    j->rc = ev_store_open_at_end(j->url, EV_OPEN_READ, &j->store, &j->last, j->err, sizeof j->err);
}

static void do_close(void *arg)
{
    ev_store_close(arg);
}

static void apply_view(srv_t *s, const char *reader, const char *slug)
{
    uint32_t n = recs_history_view(s->hist, reader, slug);
    int pos = recs_index_find(s->ix, slug);
    if (pos >= 0)
        s->views[pos] = n;
}

typedef struct follow {
    cn_pid_t server;
    ev_store_t *store;
    uint64_t next;
    int interval_ms;
    char events_node[256]; /* "" = local */
    read_job_t job;
} follow_t;

static void follow_free(void *arg)
{
    follow_t *f = arg;
    buf_free(&f->job.pairs);
    /* On a normal exit the store was closed on the pool already. */
    if (f->store)
        ev_store_close(f->store);
    free(f);
}

static void follower(void *arg)
{
    follow_t *f = arg;
    cn_on_exit(follow_free, f);
    const char *node = f->events_node[0] ? f->events_node : NULL;
    while (cn_is_alive(f->server)) {
        uint64_t last;
        int rc = events_wait(events_dest(node), f->next - 1, 1000, &last);
        if (rc == -ETIMEDOUT)
            continue;
        if (rc < 0) {
            cn_sleep(1000); /* the events server is restarting or unreachable */
            continue;
        }
        do {
            f->job.store = f->store;
            f->job.from = f->next;
            f->job.max = FOLLOW_CHUNK;
            if (cn_blocking(do_read, &f->job) < 0 || f->job.rc < 0)
                break;
            if (f->job.nread == 0)
                break;
            f->next = f->job.last + 1;
            ei_x_buff x;
            if (cn_x_new(&x) < 0)
                break;
            ei_x_encode_tuple_header(&x, 3);
            ei_x_encode_atom(&x, "recs_views");
            ei_x_encode_ulonglong(&x, f->job.last);
            if (f->job.npairs > 0)
                ei_x_encode_list_header(&x, f->job.npairs);
            const char *p = f->job.pairs.data;
            for (int k = 0; k < f->job.npairs; k++) {
                size_t rl = strlen(p), sl = strlen(p + rl + 1);
                ei_x_encode_tuple_header(&x, 2);
                ei_x_encode_binary(&x, p, (long)rl);
                ei_x_encode_binary(&x, p + rl + 1, (long)sl);
                p += rl + sl + 2;
            }
            ei_x_encode_empty_list(&x);
            cn_send(f->server, &x);
        } while (f->job.nread == FOLLOW_CHUNK);
        /* Each answered request appends an event and wakes us: pause, so that the
         * reads batch up (history is at most this much behind). */
        cn_sleep(f->interval_ms);
    }
    ev_store_t *st = f->store;
    f->store = NULL;
    cn_blocking(do_close, st);
}

/* Start-up: open the store, read back follow_backlog records into the history,
 * then hand the store to a follower. */
static int start_follow(srv_t *s, cn_pid_t self, char *err, size_t errlen)
{
    open_job_t oj = { s->events_url, NULL, 0, 0, "" };
    int rc;
    if ((rc = cn_blocking(do_open, &oj)) < 0 || (rc = oj.rc) < 0) {
        snprintf(err, errlen, "events store: %s", oj.err[0] ? oj.err : cn_strerror(rc));
        return rc;
    }
    follow_t *f = xcalloc(1, sizeof *f);
    f->server = self;
    f->store = oj.store;
    f->interval_ms = s->follow_interval_ms;
    if (s->events_node)
        snprintf(f->events_node, sizeof f->events_node, "%s", s->events_node);
    f->next = oj.last >= s->follow_backlog ? oj.last - s->follow_backlog + 1 : 1;
    s->views_from = f->next;
    s->views_to = f->next - 1;
    while (f->next <= oj.last) {
        f->job.store = f->store;
        f->job.from = f->next;
        f->job.max = FOLLOW_CHUNK;
        if (cn_blocking(do_read, &f->job) < 0 || f->job.rc < 0 || f->job.nread == 0)
            break;
        const char *p = f->job.pairs.data;
        for (int k = 0; k < f->job.npairs; k++) {
            size_t rl = strlen(p);
            apply_view(s, p, p + rl + 1);
            p += rl + strlen(p + rl + 1) + 2;
        }
        f->next = f->job.last + 1;
        s->views_to = f->job.last;
    }
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK, .stack_size = 64 * 1024 };
    if ((rc = cn_spawn(cn_node_self(), follower, f, &so, NULL)) < 0) {
        follow_free(f);
        snprintf(err, errlen, "spawning the follower: %s", cn_strerror(rc));
    }
    return rc;
}

/* ---------------------------------------------------------------------------------
 * The index
 * ------------------------------------------------------------------------------ */

typedef struct snap_job {
    const recs_index_t *ix;
    const char *dir;
    int rc;
    char err[256];
} snap_job_t;

static void do_snapshot(void *arg)
{
    snap_job_t *j = arg;
    j->rc = recs_snapshot_write(j->ix, j->dir, j->err, sizeof j->err);
}

static void drop_index(srv_t *s)
{
    for (int v = 1; v <= RECS_VERSIONS; v++) {
        recs_model_free(s->models[v]);
        s->models[v] = NULL;
    }
    recs_index_free(s->ix);
    s->ix = NULL;
    free(s->cand);
    s->cand = NULL;
    free(s->views);
    s->views = NULL;
}

/* Take ownership of ix: build every version's model, write the snapshot. */
static int install_index(srv_t *s, recs_index_t *ix, int64_t version)
{
    recs_model_t *m[RECS_VERSIONS + 1] = { NULL };
    for (int v = 1; v <= RECS_SERVED; v++) {
        int rc = recs_model_new(v, ix, s->params[v], &m[v]);
        if (rc < 0) {
            for (int k = 1; k < v; k++)
                recs_model_free(m[k]);
            recs_index_free(ix);
            return rc;
        }
    }
    drop_index(s);
    s->ix = ix;
    memcpy(s->models, m, sizeof m);
    s->cand = xmalloc((size_t)(ix->n ? ix->n : 1) * sizeof *s->cand);
    for (int i = 0; i < ix->n; i++)
        s->cand[i] = ix->posts[i].slug;
    s->views = xcalloc((size_t)(ix->n ? ix->n : 1), sizeof *s->views);
    recs_history_fill_views(s->hist, ix, s->views);
    s->content_version = version;
    s->rebuilds++;
    if (s->snapshot_dir && s->snapshot_dir[0]) {
        snap_job_t j = { ix, s->snapshot_dir, 0, "" };
        if (cn_blocking(do_snapshot, &j) < 0 || j.rc < 0)
            logf_("snapshot %s: %s", ix->digest, j.err); /* replay of it will fail */
    }
    return 0;
}

static void arm_timer(srv_t *s, int64_t ms)
{
    ei_x_buff x;
    if (s->timer_armed || cn_x_new(&x) < 0)
        return;
    ei_x_encode_atom(&x, "recs_rebuild");
    s->timer_armed = cn_send_after(ms, cn_self(), &x, NULL) == 0;
}

static cn_dest_t cms_dest(const srv_t *s)
{
    return s->cms_node ? cn_dest_remote("cms", s->cms_node) : cn_dest_name("cms");
}

/* Subscribe first, then fetch: a change between the two triggers another rebuild
 * instead of being missed. */
static int rebuild(srv_t *s)
{
    recs_index_t *ix = NULL;
    int64_t version = 0;
    char err[256] = "";
    int rc;
    if (!s->cms_monitored && cn_monitor_name_at("cms", s->cms_node, &s->cms_mref) == 0)
        s->cms_monitored = true;
    if ((rc = recs_cms_subscribe(cms_dest(s), CMS_TIMEOUT_MS)) < 0) {
        snprintf(err, sizeof err, "subscribe: %s", cn_strerror(rc));
    } else if ((rc = recs_index_from_cms(cms_dest(s), CMS_TIMEOUT_MS, &ix, &version, err,
                                         sizeof err)) == 0) {
        rc = install_index(s, ix, version);
        if (rc == 0)
            return 0;
        snprintf(err, sizeof err, "building the models: %s", cn_strerror(rc));
    }
    logf_("index from cms%s%s: %s; retrying in %d ms", s->cms_node ? " at " : "",
          s->cms_node ? s->cms_node : "", err, RETRY_MS);
    arm_timer(s, RETRY_MS);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------ */

typedef struct job {
    cn_from_t from;
    char events_node[256];  /* "" = local */
    uint8_t *ev;
    size_t len;
    ei_x_buff reply;
    cn_span_ctx_t trace;    /* the request's server span (invalid: not traced) */
} job_t;

static void job_free(void *arg)
{
    job_t *j = arg;
    free(j->ev);
    ei_x_free(&j->reply);
    free(j);
}

/* Append the event; reply only once it is durable. */
static void worker(void *arg)
{
    job_t *j = arg;
    uint64_t seq;
    cn_on_exit(job_free, j);
    /* A span of its own in the request's trace (the server span has ended: the
     * reply waits for this append); the call to `events` becomes its child. */
    cn_span_t *span = j->trace.valid
                          ? cn_span_start_ctx("recs append", CN_SPAN_INTERNAL, &j->trace)
                          : NULL;
    int rc = events_append(events_dest(j->events_node[0] ? j->events_node : NULL), j->ev,
                           j->len, APPEND_TIMEOUT_MS, &seq);
    if (rc == 0)
        cn_span_set_int(span, "events.seq", (int64_t)seq);
    else
        cn_span_set_status(span, CN_STATUS_ERROR, cn_strerror(rc));
    cn_span_end(span);
    if (rc < 0) {
        ei_x_free(&j->reply);
        if (cn_x_new(&j->reply) < 0)
            return;
        proto_encode_error(&j->reply, "event_log");
    }
    cn_gen_reply(&j->from, &j->reply);
    j->reply.buff = NULL; /* consumed */
}

/* What a recs.request event records. */
typedef struct event_in {
    const char *id;
    int64_t now_ms;
    const char *reader;
    const recs_req_t *q;
    const recs_model_t *m;
    int version;
    const char *label;
    const char *const *hist;
    int nh;
    const recs_item_t *items;
    int n;
    int64_t latency_us;
    double share;
} event_in_t;

/* The recs.request event (recs/request_event.h: ev_event_encode's layout),
 * into the buffer the worker appends (j->ev, freed by job_free). */
static void encode_event(const srv_t *s, const event_in_t *e, job_t *j)
{
    char trace[33], span[17], ver[12];
    const char *names[RECS_MAX_PARAMS], *posts[RECS_K_MAX];
    double scores[RECS_K_MAX];
    const recs_model_ops_t *ops = e->m->ops;
    bool traced = recs_trace_parse(e->q->trace, trace, span);
    for (int i = 0; i < ops->nparams; i++)
        names[i] = ops->params[i].name;
    for (int i = 0; i < e->n; i++) {
        posts[i] = s->ix->posts[e->items[i].pos].slug;
        scores[i] = e->items[i].score;
    }
    snprintf(ver, sizeof ver, "%d", e->version);
    recs_request_event_t r = {
        .id = e->id,
        .ts_ms = e->now_ms,
        .trace_id = traced ? trace : NULL,
        .span_id = span[0] ? span : "0000000000000000",
        .actor = e->reader,
        .node = cn_node_name(cn_node_self()),
        .model_name = RECS_MODEL_NAME,
        .model_version = ver,
        .param_names = names,
        .params = e->m->params,
        .nparams = ops->nparams,
        .history = e->hist,
        .nhistory = e->nh,
        .context_post = e->q->post[0] ? e->q->post : NULL,
        .candidates = s->cand,
        .candidates_digest = s->ix->digest,
        .ncandidates = s->ix->n,
        .out_posts = posts,
        .out_scores = scores,
        .nout = e->n,
        .latency_us = e->latency_us,
        .variant = e->label,
        .k = e->q->k,
        .bucket = (int32_t)recs_ab_bucket(s->ab_salt, e->reader),
        .share = e->share,
        .server_vsn = RECS_SERVER_VSN, /* the module version (upgrades) */
        .snapshot = s->ix->digest,
        .content_version = s->content_version,
        .views_from = (int64_t)s->views_from,
        .views_to = (int64_t)s->views_to,
    };
    recs_request_event_encode(&r, &j->ev, &j->len);
}

static int on_recommend(srv_t *s, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    uint64_t t0 = mono_us();
    recs_req_t q;
    int i = req.index;
    if (recs_req_decode(req.buf, &i, &q) < 0) {
        proto_encode_error(reply, "bad_request");
        return CN_GS_CONTINUE;
    }
    if (s->ix == NULL) {
        proto_encode_error(reply, "unavailable");
        return CN_GS_CONTINUE;
    }
    s->requests++;
    double share = RECS_SERVED >= 2 ? s->share : 0.0;
    int version = recs_ab_treatment(s->ab_salt, q.reader, share) ? 2 : 1;
    recs_model_t *m = s->models[version];
    const char *hist[RECS_HISTORY_MAX];
    int hpos[RECS_HISTORY_MAX];
    int nh = recs_history_get(s->hist, q.reader, hist, RECS_HISTORY_MAX);
    recs_index_find_n(s->ix, hist, nh, hpos);
    int64_t now = wall_ms();
    recs_input_t in = { hpos, nh, q.post[0] ? recs_index_find(s->ix, q.post) : -1, q.k, now,
                        s->views };
    recs_item_t items[RECS_K_MAX];
    /* Spans only with tracing on (cnode/telemetry.h): the model here, the
     * durable append in the worker. */
    cn_span_ctx_t cur;
    cn_span_t *msp = cn_trace_current(&cur) == 0 ? cn_span_start("recs model", CN_SPAN_INTERNAL)
                                                 : NULL;
    int n = recs_model_recommend(m, &in, items);
    int64_t latency = (int64_t)(mono_us() - t0);
    if (msp) {
        cn_span_set_int(msp, "recs.model.version", version);
        cn_span_set_int(msp, "recs.k", q.k);
        cn_span_set_int(msp, "recs.history", nh);
        cn_span_set_int(msp, "recs.items", n);
        cn_span_set_int(msp, "recs.candidates", (int64_t)s->ix->n);
        cn_span_end(msp);
    }

    /* The event, encoded straight into the buffer the worker appends (the
     * fields of ev_event_encode, in its order: see encode_event). */
    char label[16];
    recs_model_label(version, label, sizeof label);
    job_t *j = xcalloc(1, sizeof *j);
    j->from = *from;
    if (cn_tracing_enabled())
        cn_trace_current(&j->trace);
    if (s->events_node)
        snprintf(j->events_node, sizeof j->events_node, "%s", s->events_node);
    char id[EV_ID_LEN + 1];
    ev_ulid(id);
    event_in_t ei = { id, now, q.reader, &q, m, version, label, hist, nh, items, n,
                      latency, share };
    encode_event(s, &ei, j);
    recs_reply_item_t ri[RECS_K_MAX];
    recs_reply_t r = { .items = ri, .n = n };
    snprintf(r.model, sizeof r.model, "%s", label);
    snprintf(r.event, sizeof r.event, "%s", id);
    for (int k = 0; k < n; k++) {
        const recs_post_t *p = &s->ix->posts[items[k].pos];
        ri[k] = (recs_reply_item_t){ p->id, p->slug, p->title, items[k].score };
    }
    if (cn_x_new(&j->reply) < 0 || recs_reply_encode(&j->reply, &r) < 0 ||
        cn_spawn(cn_node_self(), worker, j, NULL, NULL) < 0) {
        job_free(j);
        s->errors++;
        proto_encode_error(reply, "internal");
        return CN_GS_CONTINUE;
    }
    return CN_GS_NOREPLY;
}

static int on_info(srv_t *s, ei_x_buff *r)
{
    ei_x_encode_tuple_header(r, 2);
    ei_x_encode_atom(r, "ok");
    ei_x_encode_map_header(r, 6);
    ei_x_encode_atom(r, "posts");
    ei_x_encode_long(r, s->ix ? s->ix->n : 0);
    ei_x_encode_atom(r, "digest");
    ei_x_encode_binary(r, s->ix ? s->ix->digest : "", s->ix ? RECS_DIGEST_LEN : 0);
    ei_x_encode_atom(r, "content_version");
    ei_x_encode_longlong(r, s->content_version);
    ei_x_encode_atom(r, "views_seq");
    ei_x_encode_ulonglong(r, s->views_to);
    ei_x_encode_atom(r, "rebuilds");
    ei_x_encode_ulonglong(r, s->rebuilds);
    ei_x_encode_atom(r, "requests");
    ei_x_encode_ulonglong(r, s->requests);
    return CN_GS_CONTINUE;
}

static int srv_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    srv_t *s = state;
    int i = req.index;
    if (cn_decode_atom_is(req.buf, &i, "info"))
        return on_info(s, reply);
    return on_recommend(s, req, from, reply);
}

/* ---------------------------------------------------------------------------------
 * Messages: views from the follower, content changes, timers, the cms going down
 * ------------------------------------------------------------------------------ */

static void on_views(srv_t *s, const char *buf, int i)
{
    unsigned long long last;
    int n;
    if (ei_decode_ulonglong(buf, &i, &last) < 0 || ei_decode_list_header(buf, &i, &n) < 0)
        return;
    for (int k = 0; k < n; k++) {
        char reader[RECS_READER_MAX + 1], slug[PROTO_SLUG_MAX + 1];
        int arity, type, size;
        long len;
        if (ei_decode_tuple_header(buf, &i, &arity) < 0 || arity != 2)
            return;
        /* Oversized ids are skipped, not truncated (they would merge readers). */
        bool ok = true;
        if (ei_get_type(buf, &i, &type, &size) < 0 || type != ERL_BINARY_EXT)
            return;
        if (size > RECS_READER_MAX) {
            ok = false;
            ei_skip_term(buf, &i);
        } else {
            ei_decode_binary(buf, &i, reader, &len);
            reader[len] = '\0';
        }
        if (ei_get_type(buf, &i, &type, &size) < 0 || type != ERL_BINARY_EXT)
            return;
        if (size > PROTO_SLUG_MAX) {
            ok = false;
            ei_skip_term(buf, &i);
        } else {
            ei_decode_binary(buf, &i, slug, &len);
            slug[len] = '\0';
        }
        if (ok)
            apply_view(s, reader, slug);
    }
    s->views_to = last;
}

static int srv_info(void *state, cn_term_t msg)
{
    srv_t *s = state;
    const char *buf = msg.buf;
    int i = msg.index, arity;
    if (cn_decode_atom_is(buf, &i, "recs_rebuild")) {
        s->timer_armed = false;
        if (!s->fixed_index)
            rebuild(s);
        return CN_GS_CONTINUE;
    }
    if (ei_decode_tuple_header(buf, &i, &arity) < 0)
        return CN_GS_CONTINUE;
    if (arity == 3 && cn_decode_atom_is(buf, &i, "recs_views")) {
        on_views(s, buf, i);
    } else if (arity == 3 && cn_decode_atom_is(buf, &i, "content_changed")) {
        long long version;
        /* Debounced: an import publishing 100 posts rebuilds once. */
        if (ei_decode_longlong(buf, &i, &version) == 0 && version != s->content_version)
            arm_timer(s, REBUILD_DELAY_MS);
    } else if (arity == 5 && cn_decode_atom_is(buf, &i, "DOWN")) {
        cn_ref_t ref;
        if (s->cms_monitored && cn_decode_ref(buf, &i, &ref) == 0 &&
            cn_ref_eq(&ref, &s->cms_mref)) {
            /* The cms went away: our subscription went with it. Keep answering
             * from the current index; rebuild and resubscribe when it is back. */
            s->cms_monitored = false;
            logf_("cms is down; keeping the current index, retrying every %d ms", RETRY_MS);
            arm_timer(s, RETRY_MS);
        }
    }
    return CN_GS_CONTINUE;
}

/* ---------------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void srv_free(srv_t *s)
{
    if (s == NULL)
        return;
    drop_index(s);
    recs_history_free(s->hist);
    free(s->cms_node);
    free(s->events_node);
    free(s->events_url);
    free(s->snapshot_dir);
    free(s->ab_salt);
    free(s);
}

static int srv_init(void *arg, void **state)
{
    start_arg_t *a = arg;
    if (a->abi != RECS_SERVER_ABI) /* started by a host of another layout */
        return -EINVAL;
    const recs_server_opts_t *o = &a->o;
    srv_t *s = xcalloc(1, sizeof *s);
    recs_index_t *ix = o->index;
    int rc = 0;

    s->abi = RECS_SERVER_ABI;
    a->o.index = NULL; /* ours now */
    s->cms_node = dup_or_null(o->cms_node);
    s->events_node = dup_or_null(o->events_node);
    s->events_url = dup_or_null(o->events_url ? o->events_url : getenv("EVENTS_URL"));
    s->snapshot_dir = xstrdup(o->snapshot_dir ? o->snapshot_dir : "./data/recs/snapshots");
    s->ab_salt = xstrdup(o->ab_salt ? o->ab_salt : "recs-ab-1");
    s->share = o->v2_share;
    s->follow_backlog = o->follow_backlog ? o->follow_backlog : 1000000;
    s->follow_interval_ms = o->follow_interval_ms > 0 ? o->follow_interval_ms : 20;
    s->hist = recs_history_new(0);
    s->fixed_index = ix != NULL;
    for (int v = 1; v <= RECS_VERSIONS; v++) {
        recs_params_default(v, s->params[v]);
        const recs_model_ops_t *ops = recs_model_ops(v);
        if (o->params[v])
            for (int k = 0; k < ops->nparams; k++) {
                if (!(o->params[v][k] >= ops->params[k].min &&
                      o->params[v][k] <= ops->params[k].max)) {
                    snprintf(a->err, sizeof a->err, "recs@%d: %s out of range", v,
                             ops->params[k].name);
                    rc = -EINVAL;
                }
                s->params[v][k] = o->params[v][k];
            }
    }
    if (!(s->share >= 0 && s->share <= 1)) {
        snprintf(a->err, sizeof a->err, "the recs@2 share must be within 0..1");
        rc = -EINVAL;
    }
    if (rc == 0 && (!s->events_url || s->events_url[0]))
        rc = start_follow(s, cn_self(), a->err, sizeof a->err);
    if (rc == 0 && ix) {
        rc = install_index(s, ix, 0);
        ix = NULL;
        if (rc < 0)
            snprintf(a->err, sizeof a->err, "building the models: %s", cn_strerror(rc));
    } else if (rc == 0) {
        rebuild(s); /* on failure it retries on a timer */
    }
    recs_index_free(ix);
    if (rc < 0) {
        srv_free(s);
        return rc;
    }
    *state = s;
    return 0;
}

static void srv_terminate(void *state, cn_term_t reason)
{
    (void)reason;
    srv_free(state); /* the follower sees us gone and closes its store */
}

/* ---------------------------------------------------------------------------------
 * Code change and the module
 * ------------------------------------------------------------------------------ */

/* code_change(OldVsn, State, Extra) of this version. Takes over a state made by
 * any version with the same state layout, up or down: the models are rebuilt
 * with this version's code, for the model versions it serves. On failure the
 * state is left exactly as it was (the old version keeps running on it). */
static int srv_code_change(const char *old_vsn, void **state, cn_term_t extra, char *err,
                           size_t errlen)
{
    (void)extra;
    srv_t *s = *state;
    recs_model_t *m[RECS_VERSIONS + 1] = { NULL };
#ifdef RECS_BAD_CODE_CHANGE
    /* A test build (recs-bad.so): proves a failed code_change leaves the old
     * version serving and reaches the operator with its reason. */
    snprintf(err, errlen, "recs %s refuses to take over from recs %s (a test build whose "
             "code_change always fails)", RECS_SERVER_VSN, old_vsn);
    return -ECANCELED;
#endif
    if (s == NULL || s->abi != RECS_SERVER_ABI) {
        snprintf(err, errlen, "recs %s cannot read the state of recs %s (layout %#x, expected %#x)",
                 RECS_SERVER_VSN, old_vsn, s ? s->abi : 0, RECS_SERVER_ABI);
        return -EINVAL;
    }
    for (int v = 1; s->ix && v <= RECS_SERVED; v++) {
        int rc = recs_model_new(v, s->ix, s->params[v], &m[v]);
        if (rc < 0) {
            for (int k = 1; k < v; k++)
                recs_model_free(m[k]);
            snprintf(err, errlen, "building recs@%d: %s", v, cn_strerror(rc));
            return rc;
        }
    }
    for (int v = 1; v <= RECS_VERSIONS; v++) {
        recs_model_free(s->models[v]); /* the old version's code frees its own */
        s->models[v] = m[v];
    }
    logf_("code change %s -> %s: serving recs@1%s (%d posts)", old_vsn, RECS_SERVER_VSN,
          RECS_SERVED >= 2 ? " and recs@2" : "", s->ix ? s->ix->n : 0);
    return 0;
}

/* sys:get_state/1: #{module, vsn, posts, content_version, requests, served}. */
static int srv_format_state(void *state, ei_x_buff *x)
{
    srv_t *s = state;
    ei_x_encode_map_header(x, 6);
    ei_x_encode_atom(x, "module");
    ei_x_encode_binary(x, RECS_MODEL_NAME, (long)strlen(RECS_MODEL_NAME));
    ei_x_encode_atom(x, "vsn");
    ei_x_encode_binary(x, RECS_SERVER_VSN, (long)strlen(RECS_SERVER_VSN));
    ei_x_encode_atom(x, "posts");
    ei_x_encode_long(x, s->ix ? s->ix->n : 0);
    ei_x_encode_atom(x, "content_version");
    ei_x_encode_longlong(x, s->content_version);
    ei_x_encode_atom(x, "requests");
    ei_x_encode_ulonglong(x, s->requests);
    ei_x_encode_atom(x, "served");
    ei_x_encode_list_header(x, RECS_SERVED);
    for (int v = 1; v <= RECS_SERVED; v++) {
        char label[16];
        recs_model_label(v, label, sizeof label);
        ei_x_encode_binary(x, label, (long)strlen(label));
    }
    ei_x_encode_empty_list(x);
    return 0;
}

static const cn_gen_server_t recs_cb = {
    .init = srv_init,
    .handle_call = srv_call,
    .handle_info = srv_info,
    .terminate = srv_terminate,
    .code_change = srv_code_change,
    .format_state = srv_format_state,
};

static const cn_module_t recs_module = {
    CN_MODULE_ABI, sizeof(cn_module_t), RECS_MODEL_NAME, RECS_SERVER_VSN, &recs_cb,
};

#ifdef RECS_MODULE
CN_MODULE_DEFINE(recs_module)
#endif

int recs_server_start(const recs_server_opts_t *opts, cn_pid_t *out, char *err, size_t errlen)
{
    /* The version to run: the one an upgrade installed on this node (so a
     * restart keeps it), else the configured file, else the one linked in. */
    const cn_module_t *mod = cn_code_current(RECS_MODEL_NAME);
    if (mod == NULL && opts->module_path && opts->module_path[0]) {
        char why[CN_CODE_ERR_LEN];
        int rc = cn_code_load(opts->module_path, &mod, why, sizeof why);
        if (rc == 0 && strcmp(mod->name, RECS_MODEL_NAME) != 0) {
            snprintf(why, sizeof why, "%s holds module '%s', not '%s'", opts->module_path,
                     mod->name, RECS_MODEL_NAME);
            rc = -EINVAL;
        }
        if (rc == 0)
            rc = cn_code_set_current(mod);
        if (rc < 0) {
            if (err)
                snprintf(err, errlen, "ONEBLOG_RECS_MODULE: %s", why);
            recs_index_free(opts->index);
            return rc;
        }
    }
    if (mod == NULL)
        mod = &recs_module;
    start_arg_t *a = xcalloc(1, sizeof *a);
    cn_gen_server_opts_t go = { 0 };
    a->abi = RECS_SERVER_ABI;
    a->o = *opts;
    go.name = opts->name ? opts->name : "recs";
    go.link = opts->link;
    go.timeout_ms = 120000; /* the start-up reads the view backlog and the content */
    go.spawn.flags = CN_SPAWN_OWN_STACK;
    int rc = cn_gen_server_start_module(cn_node_self(), mod, a, &go, out);
    if (rc < 0 && err)
        snprintf(err, errlen, "%s", a->err[0] ? a->err : cn_strerror(rc));
    /* init took the index (or never ran: then it is still ours to free). */
    recs_index_free(a->o.index);
    free(a);
    return rc;
}

int recs_server_opts_from_env(recs_server_opts_t *o,
                              double params[RECS_VERSIONS + 1][RECS_MAX_PARAMS], char *err,
                              size_t errlen)
{
    const char *v;
    char *end;
    memset(o, 0, sizeof *o);
    o->cms_node = getenv("ONEBLOG_RECS_CMS_NODE");
    if (o->cms_node == NULL)
        o->cms_node = "cms@127.0.0.1";
    o->events_node = getenv("ONEBLOG_RECS_EVENTS_NODE");
    o->snapshot_dir = getenv("ONEBLOG_RECS_SNAPSHOTS");
    o->ab_salt = getenv("ONEBLOG_RECS_AB_SALT");
    o->v2_share = 0.5;
    if ((v = getenv("ONEBLOG_RECS_V2_SHARE")) && *v) {
        o->v2_share = strtod(v, &end);
        if (*end || !(o->v2_share >= 0 && o->v2_share <= 1)) {
            snprintf(err, errlen, "ONEBLOG_RECS_V2_SHARE: '%s' is not a number in 0..1", v);
            return -EINVAL;
        }
    }
    if ((v = getenv("ONEBLOG_RECS_FOLLOW_BACKLOG")) && *v)
        o->follow_backlog = strtoull(v, NULL, 10);
    o->module_path = getenv("ONEBLOG_RECS_MODULE");
    for (int ver = 1; ver <= RECS_VERSIONS; ver++) {
        char name[64], msg[200];
        recs_params_default(ver, params[ver]);
        snprintf(name, sizeof name, "ONEBLOG_RECS_V%d_PARAMS", ver);
        if ((v = getenv(name)) && *v &&
            recs_params_parse(ver, v, params[ver], msg, sizeof msg) < 0) {
            snprintf(err, errlen, "%s: %s", name, msg);
            return -EINVAL;
        }
        o->params[ver] = params[ver];
    }
    return 0;
}
