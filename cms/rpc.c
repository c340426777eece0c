/* rpc.c - the `cms` gen_server: the read API of proto.h for the client app (and any
 * Erlang or Elixir node), a few workflow calls for the CMS's own tools, change
 * notifications, and the timer that publishes scheduled posts.
 *
 * Requests are decoded by proto_req_decode() and dispatched through one static
 * table {request atom, arity, handler}. A request that does not decode gets
 * {error, bad_request} and changes nothing. Workflow calls (not part of the reader
 * contract, so not in proto/):
 *
 *   {publish, Id} {unpublish, Id} {delete, Id} {schedule, Id, UnixSeconds}
 *   {restore_revision, PostId, RevisionId}   publish_due   {changed, Version, Paths}
 *
 * each reply {ok, #{version => N}} or {error, not_found | bad_request | conflict |
 * internal}. Every change readers can see is sent to each subscriber as
 * {content_changed, Version, [Path]}; subscribers are monitored and dropped when
 * they die.
 *
 * Reads run beside the server. A reader request (everything of proto.h but
 * subscribe) is queued for a fixed set of reader processes, as many as the store
 * has read connections, and answered by the reader that takes it (the server
 * returns CN_GS_NOREPLY at once); with SQLite the reader does the whole request,
 * store calls and reply encoding, in one blocking-pool job
 * (cms_store_read_batch). So `cms` stays responsive and reads run together, while
 * writes, subscriptions, notifications and the schedule stay serialised in the
 * server. A request whose trace is sampled is answered by the server itself, so
 * that its database spans stay children of the server span. Readers are linked
 * to the server: the server traps exits, stops when a reader dies, and kills its
 * readers and waits for them in terminate().
 *
 * Scheduling: at start the server publishes every overdue post (so a post due
 * while the CMS was down goes live at start), then keeps a timer for the earliest
 * scheduled time (at most 60 s away, so posts scheduled by another node or the
 * CLI are noticed too). The store's conditional update makes each post go live
 * exactly once even with several CMS nodes on one PostgreSQL.
 */
#include "cms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/proc.h"
#include "cnode/telemetry.h"
#include "reply_cache.h"
#include "util.h"

#define RESCHEDULE_MAX_MS 60000
/* Encoded replies kept per content version (reply_cache.h): a post reply is a
 * few KB, so this holds every post of a mid-sized blog. */
#define REPLY_CACHE_BYTES (32u << 20)

typedef struct sub {
    cn_pid_t pid;
    cn_ref_t mref;
} sub_t;

typedef struct readers readers_t;

typedef struct rpc_state {
    cms_store_t *store;
    readers_t *readers; /* NULL in a reader's own copy of the state */
    cms_clock_fn clock;
    sub_t *subs;
    int nsubs, capsubs;
    cn_timer_ref_t timer;
    int fault_error_pct, fault_delay_ms; /* test only: cms_rpc_opts_t */
    uint64_t fault_rng;
} rpc_state_t;

/* ---------------------------------------------------------------------------------
 * Notifications and the schedule timer
 * ------------------------------------------------------------------------------ */

static void notify(rpc_state_t *st, const cms_change_t *chg)
{
    if (chg == NULL || !chg->visible)
        return;
    for (int i = 0; i < st->nsubs; i++) {
        ei_x_buff x;
        if (cn_x_new(&x) < 0)
            continue;
        ei_x_encode_tuple_header(&x, 3);
        ei_x_encode_atom(&x, "content_changed");
        ei_x_encode_longlong(&x, chg->version);
        if (chg->npaths > 0)
            ei_x_encode_list_header(&x, chg->npaths);
        for (int k = 0; k < chg->npaths; k++)
            ei_x_encode_binary(&x, chg->paths[k], (long)strlen(chg->paths[k]));
        ei_x_encode_empty_list(&x);
        cn_send(st->subs[i].pid, &x); /* a dead subscriber's DOWN removes it */
    }
    cms_log(CMS_LOG_DEBUG, "rpc", "content version %lld, %d paths, %d subscribers",
            (long long)chg->version, chg->npaths, st->nsubs);
}

static void arm_timer(rpc_state_t *st)
{
    int64_t at = 0, delay_ms = RESCHEDULE_MAX_MS;
    if (st->timer)
        cn_cancel_timer(st->timer);
    st->timer = 0;
    if (cms_post_next_due(st->store, &at) == 0) {
        int64_t d = (at - st->clock()) * 1000;
        delay_ms = d < 0 ? 0 : d < RESCHEDULE_MAX_MS ? d : RESCHEDULE_MAX_MS;
    }
    ei_x_buff x;
    if (cn_x_new(&x) == 0 && ei_x_encode_atom(&x, "cms_publish_due") == 0)
        cn_send_after(delay_ms, cn_self(), &x, &st->timer);
    else
        ei_x_free(&x);
}

static int publish_due(rpc_state_t *st, int *published)
{
    cms_change_t chg = { 0 };
    char err[CMS_ERR_LEN] = "";
    int rc = cms_post_publish_due(st->store, st->clock(), published, &chg, err);
    if (rc < 0)
        cms_log(CMS_LOG_ERROR, "scheduler", "publishing scheduled posts: %s", err);
    notify(st, &chg);
    cms_change_clear(&chg);
    arm_timer(st);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------------ */

static const char *error_atom(int rc)
{
    switch (rc) {
    case -ENOENT:
        return "not_found";
    case -EINVAL:
        return "bad_request";
    case -EEXIST:
        return "conflict";
    default:
        return "internal";
    }
}

static int reply_error(ei_x_buff *r, int rc)
{
    proto_encode_error(r, error_atom(rc));
    return CN_GS_CONTINUE;
}

static int reply_post(ei_x_buff *r, int rc, proto_post_t *p, char *redirect)
{
    if (rc == -EAGAIN && redirect)
        proto_encode_redirect(r, redirect);
    else if (rc < 0)
        proto_encode_error(r, error_atom(rc));
    else if (proto_encode_ok_header(r) == 0)
        proto_encode_post(r, p, false);
    free(redirect);
    proto_post_clear(p);
    return CN_GS_CONTINUE;
}

static int reply_list(ei_x_buff *r, int rc, proto_post_t *v, int n, int64_t total, int page,
                      int per_page)
{
    if (rc < 0) {
        proto_posts_free(v, n);
        return reply_error(r, rc);
    }
    proto_pagination_t pg = { page, per_page, (int)((total + per_page - 1) / per_page), total };
    if (proto_encode_ok_header(r) == 0)
        proto_encode_post_list(r, v, n, &pg);
    proto_posts_free(v, n);
    return CN_GS_CONTINUE;
}

static int reply_version(rpc_state_t *st, ei_x_buff *r)
{
    int64_t v = 0;
    int rc = cms_content_version(st->store, &v);
    if (rc < 0)
        return reply_error(r, rc);
    proto_encode_ok_header(r);
    proto_encode_version(r, v);
    return CN_GS_CONTINUE;
}

/* ---------------------------------------------------------------------------------
 * Read handlers (the proto.h contract)
 * ------------------------------------------------------------------------------ */

typedef int (*handler_fn)(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r);

static int on_get_post(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)raw;
    proto_post_t p = { 0 };
    char *redirect = NULL;
    int type = q->kind == PROTO_REQ_GET_PAGE ? PROTO_PAGE : PROTO_POST;
    int rc = cms_post_find(st->store, type, q->slug, &p, &redirect, NULL);
    return reply_post(r, rc, &p, redirect);
}

static int on_get_preview(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)raw;
    proto_post_t p = { 0 };
    return reply_post(r, cms_post_by_preview(st->store, q->slug, &p, NULL), &p, NULL);
}

static int site_per_page(rpc_state_t *st)
{
    proto_settings_t s = { 0 };
    int n = cms_settings_get(st->store, &s, NULL) == 0 ? s.posts_per_page : 10;
    proto_settings_clear(&s);
    return n > 0 && n <= PROTO_PER_PAGE_MAX ? n : 10;
}

static int on_list_posts(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)raw;
    proto_post_t *v = NULL;
    int n = 0;
    int64_t total = 0;
    int per = q->opts.per_page ? q->opts.per_page : site_per_page(st);
    cms_list_q_t lq = { .page = q->opts.page, .per_page = per,
                        .tag = q->opts.tag[0] ? q->opts.tag : NULL,
                        .author = q->opts.author[0] ? q->opts.author : NULL,
                        .featured = q->opts.featured, .status = -1 };
    int rc = cms_post_list(st->store, &lq, &v, &n, &total, NULL);
    return reply_list(r, rc, v, n, total, q->opts.page, per);
}

static int on_search(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)raw;
    proto_post_t *v = NULL;
    int n = 0;
    int64_t total = 0;
    int per = q->opts.per_page ? q->opts.per_page : site_per_page(st);
    int rc = cms_post_search(st->store, q->query, q->opts.page, per, &v, &n, &total, NULL);
    return reply_list(r, rc, v, n, total, q->opts.page, per);
}

static int on_get_posts(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)raw;
    proto_post_t *v = NULL;
    int n = 0;
    int rc = cms_post_get_many(st->store, q->ids, q->nids, &v, &n, NULL);
    if (rc < 0) {
        proto_posts_free(v, n);
        return reply_error(r, rc);
    }
    proto_encode_ok_header(r);
    proto_encode_post_list(r, v, n, NULL);
    proto_posts_free(v, n);
    return CN_GS_CONTINUE;
}

static int on_get_tag(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)raw;
    proto_tag_t t = { 0 };
    int rc = cms_tag_get(st->store, q->slug, false, &t, NULL);
    if (rc < 0)
        return reply_error(r, rc);
    proto_encode_ok_header(r);
    proto_encode_tag(r, &t);
    proto_tag_clear(&t);
    return CN_GS_CONTINUE;
}

static int on_list_tags(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)q, (void)raw;
    proto_tag_t *v = NULL;
    int n = 0, rc = cms_tag_list(st->store, false, &v, &n, NULL);
    if (rc < 0)
        return reply_error(r, rc);
    proto_encode_ok_header(r);
    ei_x_encode_map_header(r, 1);
    ei_x_encode_atom(r, "tags");
    if (n > 0)
        ei_x_encode_list_header(r, n);
    for (int i = 0; i < n; i++)
        proto_encode_tag(r, &v[i]);
    ei_x_encode_empty_list(r);
    cms_tags_free(v, n);
    return CN_GS_CONTINUE;
}

static int on_get_author(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)raw;
    proto_author_t a = { 0 };
    int rc = cms_author_get(st->store, q->slug, &a, NULL);
    if (rc < 0)
        return reply_error(r, rc);
    proto_encode_ok_header(r);
    proto_encode_author(r, &a);
    proto_author_clear(&a);
    return CN_GS_CONTINUE;
}

static int on_list_authors(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)q, (void)raw;
    proto_author_t *v = NULL;
    int n = 0, rc = cms_author_list(st->store, &v, &n, NULL);
    if (rc < 0)
        return reply_error(r, rc);
    proto_encode_ok_header(r);
    ei_x_encode_map_header(r, 1);
    ei_x_encode_atom(r, "authors");
    if (n > 0)
        ei_x_encode_list_header(r, n);
    for (int i = 0; i < n; i++)
        proto_encode_author(r, &v[i]);
    ei_x_encode_empty_list(r);
    cms_authors_free(v, n);
    return CN_GS_CONTINUE;
}

static int on_get_settings(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)q, (void)raw;
    proto_settings_t s = { 0 };
    int rc = cms_settings_get(st->store, &s, NULL);
    if (rc < 0)
        return reply_error(r, rc);
    proto_encode_ok_header(r);
    proto_encode_settings(r, &s);
    proto_settings_clear(&s);
    return CN_GS_CONTINUE;
}

static int on_sitemap(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)q, (void)raw;
    proto_sitemap_entry_t *v = NULL;
    int n = 0, rc = cms_sitemap(st->store, &v, &n, NULL);
    if (rc < 0)
        return reply_error(r, rc);
    proto_encode_ok_header(r);
    ei_x_encode_map_header(r, 1);
    ei_x_encode_atom(r, "entries");
    if (n > 0)
        ei_x_encode_list_header(r, n);
    for (int i = 0; i < n; i++) {
        char iso[32];
        cms_time_iso(v[i].lastmod, iso);
        ei_x_encode_map_header(r, 3);
        ei_x_encode_atom(r, "path");
        ei_x_encode_binary(r, v[i].path, (long)strlen(v[i].path));
        ei_x_encode_atom(r, "lastmod");
        ei_x_encode_binary(r, iso, (long)strlen(iso));
        ei_x_encode_atom(r, "kind");
        ei_x_encode_atom(r, v[i].kind);
    }
    ei_x_encode_empty_list(r);
    cms_sitemap_free(v, n);
    return CN_GS_CONTINUE;
}

static int on_content_version(rpc_state_t *st, const proto_req_t *q, cn_term_t raw,
                              ei_x_buff *r)
{
    (void)q, (void)raw;
    return reply_version(st, r);
}

static int on_subscribe(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)raw;
    for (int i = 0; i < st->nsubs; i++)
        if (cn_pid_eq(st->subs[i].pid, q->pid))
            return reply_version(st, r); /* once is enough */
    if (st->nsubs == st->capsubs) {
        st->capsubs = st->capsubs ? 2 * st->capsubs : 8;
        st->subs = xrealloc(st->subs, (size_t)st->capsubs * sizeof(sub_t));
    }
    sub_t *s = &st->subs[st->nsubs];
    if (cn_monitor(q->pid, &s->mref) < 0)
        return reply_error(r, -ENOMEM);
    s->pid = q->pid;
    st->nsubs++;
    return reply_version(st, r);
}

/* ---------------------------------------------------------------------------------
 * Workflow handlers (decode their own arguments from `raw`)
 * ------------------------------------------------------------------------------ */

/* The integer arguments of {Atom, I1[, I2]} into v[0..n). */
static int decode_ints(cn_term_t raw, int64_t *v, int n)
{
    int i = raw.index, arity;
    if (ei_decode_tuple_header(raw.buf, &i, &arity) < 0 || arity != n + 1 ||
        ei_skip_term(raw.buf, &i) < 0)
        return -EINVAL;
    for (int k = 0; k < n; k++) {
        long long x;
        if (ei_decode_longlong(raw.buf, &i, &x) < 0)
            return -EINVAL;
        v[k] = x;
    }
    return 0;
}

static int finish_write(rpc_state_t *st, int rc, cms_change_t *chg, ei_x_buff *r)
{
    if (rc == 0) {
        notify(st, chg);
        arm_timer(st);
    }
    cms_change_clear(chg);
    if (rc < 0)
        return reply_error(r, rc);
    return reply_version(st, r);
}

static int on_workflow(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    int64_t a[2] = { 0, 0 };
    cms_change_t chg = { 0 };
    int rc;
    int64_t now = st->clock();
    if (strcmp(q->name, "publish") == 0 || strcmp(q->name, "unpublish") == 0 ||
        strcmp(q->name, "delete") == 0) {
        if (decode_ints(raw, a, 1) < 0)
            return reply_error(r, -EINVAL);
        if (q->name[0] == 'p')
            rc = cms_post_publish(st->store, a[0], now, &chg, NULL);
        else if (q->name[0] == 'u')
            rc = cms_post_unpublish(st->store, a[0], now, &chg, NULL);
        else
            rc = cms_post_delete(st->store, a[0], &chg, NULL);
    } else if (strcmp(q->name, "schedule") == 0) {
        if (decode_ints(raw, a, 2) < 0)
            return reply_error(r, -EINVAL);
        rc = cms_post_schedule(st->store, a[0], a[1], now, &chg, NULL);
    } else { /* restore_revision */
        if (decode_ints(raw, a, 2) < 0)
            return reply_error(r, -EINVAL);
        cms_save_opts_t o = { .role = CMS_ROLE_EDITOR, .now = now };
        rc = cms_revision_restore(st->store, a[0], a[1], &o, &chg, NULL);
    }
    return finish_write(st, rc, &chg, r);
}

static int on_publish_due(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)q, (void)raw;
    int published = 0, rc = publish_due(st, &published);
    if (rc < 0)
        return reply_error(r, rc);
    proto_encode_ok_header(r);
    ei_x_encode_map_header(r, 1);
    ei_x_encode_atom(r, "published");
    ei_x_encode_long(r, published);
    return CN_GS_CONTINUE;
}

/* {changed, Version, [Path]}: a process of this node wrote to the store itself
 * (the admin API, an import while serving) and asks for the notification. */
static int on_changed(rpc_state_t *st, const proto_req_t *q, cn_term_t raw, ei_x_buff *r)
{
    (void)q;
    int i = raw.index, arity, n;
    long long version;
    cms_change_t chg = { .visible = true };
    if (ei_decode_tuple_header(raw.buf, &i, &arity) < 0 || arity != 3 ||
        ei_skip_term(raw.buf, &i) < 0 || ei_decode_longlong(raw.buf, &i, &version) < 0 ||
        ei_decode_list_header(raw.buf, &i, &n) < 0 || n > 1000)
        return reply_error(r, -EINVAL);
    chg.version = version;
    for (int k = 0; k < n; k++) {
        char path[PROTO_SLUG_MAX + 32];
        int type, size;
        long len;
        if (ei_get_type(raw.buf, &i, &type, &size) < 0 || type != ERL_BINARY_EXT ||
            size >= (int)sizeof path || ei_decode_binary(raw.buf, &i, path, &len) < 0) {
            cms_change_clear(&chg);
            return reply_error(r, -EINVAL);
        }
        path[len] = '\0';
        chg.paths = xrealloc(chg.paths, (size_t)(chg.npaths + 1) * sizeof(char *));
        chg.paths[chg.npaths++] = xstrdup(path);
    }
    notify(st, &chg);
    cms_change_clear(&chg);
    proto_encode_ok_header(r);
    proto_encode_version(r, version);
    return CN_GS_CONTINUE;
}

/* ---------------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------------ */

enum {
    RAW = 1,  /* not a proto.h request: the handler decodes its arguments */
    READ = 2, /* reads only the store: answered by a reader process */
    /* The reply depends only on the request and content the version covers (not on
     * users, drafts or the clock): kept in the reply cache. */
    CACHE = 4,
};

static const struct route {
    const char *name;
    int arity; /* 0: a bare atom */
    handler_fn fn;
    int flags;
} routes[] = {
    { "get_post", 2, on_get_post, READ | CACHE },
    { "get_page", 2, on_get_post, READ | CACHE },
    { "get_preview", 2, on_get_preview, READ },
    { "list_posts", 2, on_list_posts, READ | CACHE },
    { "get_tag", 2, on_get_tag, READ | CACHE },
    { "list_tags", 0, on_list_tags, READ | CACHE },
    { "get_author", 2, on_get_author, READ },
    { "list_authors", 0, on_list_authors, READ },
    { "get_settings", 0, on_get_settings, READ | CACHE },
    { "search", 3, on_search, READ },
    { "sitemap", 0, on_sitemap, READ },
    { "get_posts", 2, on_get_posts, READ },
    { "content_version", 0, on_content_version, READ },
    { "subscribe", 2, on_subscribe, 0 },
    /* workflow: arguments decoded by the handler */
    { "publish", 2, on_workflow, RAW },
    { "unpublish", 2, on_workflow, RAW },
    { "delete", 2, on_workflow, RAW },
    { "schedule", 3, on_workflow, RAW },
    { "restore_revision", 3, on_workflow, RAW },
    { "publish_due", 0, on_publish_due, RAW },
    { "changed", 3, on_changed, RAW },
};

static const struct route *find_route(const char *name, int arity)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(routes[i].name, name) == 0 && routes[i].arity == arity)
            return &routes[i];
    return NULL;
}

/* Test-only fault injection (ONEBLOG_FAULT_*): wait, then maybe fail. True when
 * the reply is an injected {error, internal}. */
static bool inject_fault(rpc_state_t *st, ei_x_buff *reply)
{
    if (st->fault_delay_ms > 0)
        cn_sleep(st->fault_delay_ms);
    st->fault_rng ^= st->fault_rng << 13; /* xorshift64 */
    st->fault_rng ^= st->fault_rng >> 7;
    st->fault_rng ^= st->fault_rng << 17;
    if ((int)(st->fault_rng % 100) >= st->fault_error_pct)
        return false;
    proto_encode_error(reply, "internal");
    return true;
}

/* ---------------------------------------------------------------------------------
 * Readers
 * ------------------------------------------------------------------------------ */

typedef struct read_job {
    struct read_job *next;
    handler_fn fn;
    cn_from_t from;
    proto_req_t q;
    cn_span_ctx_t trace; /* the server span when sampled (else invalid) */
    char *key;           /* a CACHE route: the encoded request (else NULL) */
    size_t klen;         /* bytes */
} read_job_t;

typedef struct reader {
    readers_t *rd;
    cn_pid_t pid;
    read_job_t *job; /* in hand (a chain of up to READ_BATCH_MAX); freed if the
                        reader dies with it */
} reader_t;

/* Requests one reader answers in one pool job: the hand-off to the pool (a
 * futex wake and two thread switches) and the content version's statement are
 * shared by them. */
#define READ_BATCH_MAX 16

/* Shared by the server and its readers, all on one scheduler thread, so plain
 * fields need no lock. Freed by whichever of them lets go last. */
struct readers {
    int refs;                 /* the server + each live reader */
    bool closed;              /* the server is stopping: readers exit */
    cms_store_t *store;
    cms_clock_fn clock;
    cms_reply_cache_t *cache; /* encoded replies of CACHE routes */
    read_job_t *head, **tail; /* requests not yet taken */
    int nqueued;              /* how many */
    cn_pid_t *idle;           /* readers parked for a wake-up, at most n */
    int nidle;
    reader_t *v;
    int n;
};

static void free_jobs(read_job_t *j)
{
    while (j) {
        read_job_t *next = j->next;
        free(j->key);
        free(j);
        j = next;
    }
}

static void readers_unref(readers_t *rd)
{
    if (--rd->refs > 0)
        return;
    free_jobs(rd->head);
    rd->head = NULL;
    cms_reply_cache_free(rd->cache);
    free(rd->idle);
    free(rd->v);
    free(rd);
}

static void drop_idle(readers_t *rd, cn_pid_t pid)
{
    for (int i = 0; i < rd->nidle; i++)
        if (cn_pid_eq(rd->idle[i], pid)) {
            rd->idle[i] = rd->idle[--rd->nidle];
            return;
        }
}

static void on_reader_exit(void *arg)
{
    reader_t *me = arg;
    free_jobs(me->job);
    me->job = NULL;
    drop_idle(me->rd, me->pid);
    me->pid = (cn_pid_t){ 0 };
    readers_unref(me->rd);
}

static bool match_wake(const cn_msg_t *m, void *arg)
{
    (void)arg;
    cn_term_t t = cn_msg_term(m);
    int i = t.index;
    return cn_decode_atom_is(t.buf, &i, "cms_read");
}

static bool match_down(const cn_msg_t *m, void *arg)
{
    (void)arg;
    cn_term_t t = cn_msg_term(m);
    int i = t.index, arity;
    return ei_decode_tuple_header(t.buf, &i, &arity) == 0 && arity == 5 &&
           cn_decode_atom_is(t.buf, &i, "DOWN");
}

typedef struct read_ctx {
    rpc_state_t *st;
    read_job_t *jobs;   /* a chain of n */
    ei_x_buff *replies; /* one per job */
    int n;
    cms_reply_cache_t *cache;
    cms_batch_part_t *parts; /* one per job: its trace */
} read_ctx_t;

/* True when buf[i..] is {ok, _}: only those replies are cached (an error may be
 * a passing database failure). */
static bool is_ok_reply(const char *buf, int i)
{
    char atom[MAXATOMLEN];
    int arity;
    return ei_decode_tuple_header(buf, &i, &arity) == 0 && arity == 2 &&
           ei_decode_atom(buf, &i, atom) == 0 && strcmp(atom, "ok") == 0;
}

/* The handlers of a batch; with SQLite on a pool thread (no libcnode calls in read
 * handlers). If any is a CACHE route, the content version is read first (one small
 * statement, once for the batch: every request in it arrived before that read, so
 * a reply of that version is not older than its request), and those requests are
 * answered from the reply cache when they can: measured in make bench-cms (SQLite,
 * 64 callers) this took cms_calls_per_s_64_vs_direct_sqlite from 0.55 to 0.9 (see
 * docs/ARCHITECTURE.md). */
static void run_reads(void *arg)
{
    read_ctx_t *c = arg;
    int64_t version = 0;
    bool keyed = false;
    for (read_job_t *j = c->jobs; j && !keyed; j = j->next)
        keyed = j->key != NULL;
    bool have_version = keyed && c->cache && cms_content_version(c->st->store, &version) == 0;
    int i = 0;
    for (read_job_t *j = c->jobs; j; j = j->next, i++) {
        ei_x_buff *reply = &c->replies[i];
        cms_store_batch_part(c->parts, i);
        bool cacheable = j->key && have_version;
        if (cacheable && cms_reply_cache_get(c->cache, version, j->key, j->klen, reply))
            continue;
        int start = reply->index;
        j->fn(c->st, &j->q, (cn_term_t){ NULL, 0, 0 }, reply);
        if (cacheable && is_ok_reply(reply->buff, start))
            cms_reply_cache_put(c->cache, version, j->key, j->klen, reply->buff + start,
                                (size_t)(reply->index - start));
    }
}

/* Take the requests this reader answers next: the first in the queue, and after
 * it up to READ_BATCH_MAX - 1 more, leaving a share for the readers parked idle
 * (each runs on a pool thread of its own). Traced requests are batched like the
 * others: each gets its own `cms read` span over its part of the batch
 * (cms_store_read_batch_parts). Returns a chain of *n jobs. */
static read_job_t *take_jobs(readers_t *rd, int *n)
{
    int want = (rd->nqueued + rd->nidle) / (rd->nidle + 1);
    if (want > READ_BATCH_MAX)
        want = READ_BATCH_MAX;
    read_job_t *first = rd->head, *last = first;
    *n = 1;
    while (*n < want && last->next) {
        last = last->next;
        (*n)++;
    }
    if ((rd->head = last->next) == NULL)
        rd->tail = &rd->head;
    last->next = NULL;
    rd->nqueued -= *n;
    return first;
}

static void reader_main(void *arg)
{
    reader_t *me = arg;
    readers_t *rd = me->rd;
    me->pid = cn_self();
    if (cn_on_exit(on_reader_exit, me) < 0) {
        readers_unref(rd);
        cn_exit("no_memory");
    }
    /* The handlers only use the store and the clock of the state. */
    rpc_state_t st = { .store = rd->store, .clock = rd->clock };
    for (;;) {
        while (rd->head == NULL && !rd->closed) {
            cn_msg_t *m = NULL;
            rd->idle[rd->nidle++] = me->pid;
            cn_receive(match_wake, NULL, CN_INFINITY, &m);
            cn_msg_free(m);
        }
        if (rd->closed)
            return;
        int n;
        read_job_t *jobs = take_jobs(rd, &n);
        me->job = jobs;
        ei_x_buff xs[READ_BATCH_MAX];
        int ok = 0;
        while (ok < n && cn_x_new(&xs[ok]) == 0)
            ok++;
        if (ok == n) {
            cms_batch_part_t parts[READ_BATCH_MAX];
            int k = 0;
            for (read_job_t *j = jobs; j; j = j->next, k++) {
                parts[k].parent = j->trace;
                parts[k].name = j->q.name;
            }
            read_ctx_t c = { &st, jobs, xs, n, rd->cache, parts };
            /* Each traced request: a `cms read` span under its server span, over its
             * part of the batch, its statements' spans under it. */
            cms_store_read_batch_parts(st.store, run_reads, &c, parts, n);
            int i = 0;
            for (read_job_t *j = jobs; j; j = j->next)
                cn_gen_reply(&j->from, &xs[i++]); /* consumes it; the caller may be gone */
        } else {
            /* out of memory: the callers time out, as with a lost message */
            for (int i = 0; i < ok; i++)
                ei_x_free(&xs[i]);
        }
        me->job = NULL;
        free_jobs(jobs);
    }
}

static int readers_start(rpc_state_t *st)
{
    readers_t *rd = xcalloc(1, sizeof(*rd));
    int n = cms_store_read_slots(st->store);
    rd->refs = 1;
    rd->store = st->store;
    rd->clock = st->clock;
    rd->tail = &rd->head;
    rd->cache = cms_reply_cache_new(REPLY_CACHE_BYTES);
    rd->n = n > 0 ? n : 1;
    rd->v = xcalloc((size_t)rd->n, sizeof(reader_t));
    rd->idle = xcalloc((size_t)rd->n, sizeof(cn_pid_t));
    st->readers = rd;
    /* Own stacks: readers use the store (see store.h). */
    cn_spawn_opts_t so = { .flags = CN_SPAWN_LINK | CN_SPAWN_OWN_STACK };
    for (int i = 0; i < rd->n; i++) {
        rd->v[i].rd = rd;
        rd->refs++;
        int rc = cn_spawn(cn_node_self(), reader_main, &rd->v[i], &so, &rd->v[i].pid);
        if (rc < 0) {
            rd->refs--;
            return rc;
        }
    }
    return 0;
}

/* Kill the readers; in the server process (a stop) also wait until they are gone,
 * so that no reader still uses the store when the caller closes it. A reader in a
 * blocking-pool job dies when the job returns. */
static void readers_stop(readers_t *rd)
{
    if (rd == NULL)
        return;
    rd->closed = true;
    bool in_process = cn_is_alive(cn_self());
    int waiting = 0;
    for (int i = 0; i < rd->n; i++) {
        cn_pid_t pid = rd->v[i].pid;
        cn_ref_t ref;
        if (!cn_is_alive(pid))
            continue;
        if (in_process && cn_monitor(pid, &ref) == 0)
            waiting++;
        cn_exit_pid(pid, "kill");
    }
    uint64_t deadline = cn_now_ms() + 30000;
    while (in_process && waiting > 0) {
        uint64_t now = cn_now_ms();
        cn_msg_t *m = NULL;
        if (now >= deadline || cn_receive(match_down, NULL, (int64_t)(deadline - now), &m) < 0)
            break;
        cn_msg_free(m);
        waiting--;
    }
    readers_unref(rd);
}

/* Queue a read for the readers and wake one that is parked. */
static int dispatch_read(rpc_state_t *st, const struct route *rt, const proto_req_t *q,
                         cn_term_t req, const cn_from_t *from)
{
    readers_t *rd = st->readers;
    read_job_t *j = xmalloc(sizeof(*j));
    j->next = NULL;
    j->fn = rt->fn;
    j->from = *from;
    j->q = *q;
    j->key = NULL;
    j->klen = 0;
    int end = req.index;
    if ((rt->flags & CACHE) && ei_skip_term(req.buf, &end) == 0) {
        /* The request term is the key: equal requests encode alike. */
        j->klen = (size_t)(end - req.index);
        j->key = xmalloc(j->klen);
        memcpy(j->key, req.buf + req.index, j->klen);
    }
    j->trace.valid = false;
    if (cn_tracing_enabled() && cn_trace_current(&j->trace) == 0 && !(j->trace.flags & 1))
        j->trace.valid = false;
    *rd->tail = j;
    rd->tail = &j->next;
    rd->nqueued++;
    while (rd->nidle > 0) {
        cn_pid_t pid = rd->idle[--rd->nidle];
        ei_x_buff x;
        if (cn_x_new(&x) == 0 && ei_x_encode_atom(&x, "cms_read") == 0 && cn_send(pid, &x) == 0)
            break;
    }
    return CN_GS_NOREPLY;
}

static int rpc_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    rpc_state_t *st = state;
    proto_req_t q;
    int i = req.index;
    if (proto_req_decode(req.buf, &i, &q) == 0) {
        const struct route *rt = find_route(q.name, q.arity);
        if (rt && (st->fault_error_pct || st->fault_delay_ms) && q.kind != PROTO_REQ_SUBSCRIBE &&
            inject_fault(st, reply))
            return CN_GS_CONTINUE;
        /* Traced reads too: answering them in the server (so that their statement
         * spans were children of its span) made 100% sampling cost 3x the
         * throughput (bench/trace.sh); a reader makes one `cms read` span. */
        if (rt && (rt->flags & READ) && st->readers)
            return dispatch_read(st, rt, &q, req, from);
        if (rt)
            return rt->fn(st, &q, req, reply);
    } else {
        /* Not a reader request: maybe a workflow call, which decodes its own
         * arguments. Only its name and arity are read here. */
        char name[MAXATOMLEN_UTF8];
        int arity = 0, type, size;
        i = req.index;
        if (ei_get_type(req.buf, &i, &type, &size) == 0 &&
            (type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT))
            ei_decode_tuple_header(req.buf, &i, &arity);
        if (ei_decode_atom(req.buf, &i, name) == 0) {
            const struct route *rt = find_route(name, arity);
            if (rt && (rt->flags & RAW)) {
                memset(&q, 0, sizeof q);
                q.name = rt->name;
                q.arity = arity;
                return rt->fn(st, &q, req, reply);
            }
        }
    }
    proto_encode_error(reply, "bad_request");
    return CN_GS_CONTINUE;
}

static int rpc_info(void *state, cn_term_t msg)
{
    rpc_state_t *st = state;
    int i = msg.index, arity;
    if (cn_decode_atom_is(msg.buf, &i, "cms_publish_due")) {
        int published = 0;
        st->timer = 0;
        publish_due(st, &published);
        return CN_GS_CONTINUE;
    }
    /* {'EXIT', Pid, Reason}: a reader died (the server traps exits). */
    i = msg.index;
    cn_pid_t pid;
    if (ei_decode_tuple_header(msg.buf, &i, &arity) == 0 && arity == 3 &&
        cn_decode_atom_is(msg.buf, &i, "EXIT") && cn_decode_pid(msg.buf, &i, &pid) == 0) {
        for (int k = 0; st->readers && k < st->readers->n; k++)
            if (cn_pid_eq(st->readers->v[k].pid, pid)) {
                cms_log(CMS_LOG_ERROR, "rpc", "a reader exited: stopping `cms`");
                cn_gen_server_set_reason("reader_exit");
                return CN_GS_STOP;
            }
        return CN_GS_CONTINUE;
    }
    /* {'DOWN', Ref, process, Pid, Reason}: a subscriber died. */
    i = msg.index;
    cn_ref_t ref;
    if (ei_decode_tuple_header(msg.buf, &i, &arity) == 0 && arity == 5 &&
        cn_decode_atom_is(msg.buf, &i, "DOWN") && cn_decode_ref(msg.buf, &i, &ref) == 0) {
        for (int k = 0; k < st->nsubs; k++)
            if (cn_ref_eq(&st->subs[k].mref, &ref)) {
                st->subs[k] = st->subs[--st->nsubs];
                break;
            }
    }
    return CN_GS_CONTINUE;
}

static int rpc_init(void *arg, void **state)
{
    const cms_rpc_opts_t *o = arg;
    rpc_state_t *st = xcalloc(1, sizeof(*st));
    int published = 0;
    st->store = o->store;
    st->clock = o->clock ? o->clock : cms_time_now;
    st->fault_error_pct = o->fault_error_pct;
    st->fault_delay_ms = o->fault_delay_ms;
    st->fault_rng = (uint64_t)cn_now_ms() * 2654435761u | 1;
    *state = st;
    int rc = readers_start(st);
    if (rc < 0)
        return rc; /* terminate() stops those that started */
    /* Overdue posts go live now (the CMS may have been down when they were due). */
    publish_due(st, &published);
    if (published > 0)
        cms_log(CMS_LOG_INFO, "scheduler", "published %d overdue posts at start", published);
    return 0;
}

static void rpc_terminate(void *state, cn_term_t reason)
{
    (void)reason;
    rpc_state_t *st = state;
    if (st == NULL)
        return;
    if (st->timer)
        cn_cancel_timer(st->timer);
    readers_stop(st->readers);
    free(st->subs);
    free(st);
}

static const cn_gen_server_t rpc_server = {
    .init = rpc_init,
    .handle_call = rpc_call,
    .handle_info = rpc_info,
    .terminate = rpc_terminate,
};

int cms_rpc_start(const cms_rpc_opts_t *o, cn_pid_t *out)
{
    cn_gen_server_opts_t go = {
        .name = o->name ? o->name : "cms",
        .link = o->link,
        .timeout_ms = 30000, /* init publishes overdue posts */
        .trap_exit = true,   /* readers are linked; terminate() waits for them */
        /* The server uses the store: its own stack (see store.h). */
        .spawn = { .flags = CN_SPAWN_OWN_STACK },
    };
    return cn_gen_server_start(cn_node_self(), &rpc_server, (void *)o, &go, out);
}
