/* exporter.c - the batch span processor: spans encoded as they end into
 * batches, and the process that POSTs the batches.
 *
 * cn_span_end() hands a finished span to cn__exporter_push(), which encodes it
 * at once (OTLP/protobuf by otlp_pb.c, or OTLP/JSON by otlp.c) at the end of
 * the batch being filled and frees it: the span goes back to the node's free
 * list while its lines are still in the cache, and the next span start reuses
 * it. (Spans kept until export made a working set of megabytes at 100%
 * sampling - a batch of 512 spans of 2 KiB, another in the queue - and the
 * cache misses of writing them at start and reading them on the pool were the
 * larger part of what tracing cost a cached page.) When queue_size spans wait
 * already, the span is dropped and counted, so a slow or absent collector never
 * holds a request up. A batch is full at batch_size spans; the push that fills
 * one sends the exporter process (a dedicated stack, started by
 * cn_telemetry_start) a wake-up, and otherwise it wakes after delay_ms. It then
 * takes the oldest batch, writes the request's opening in front of its spans
 * (the resource and scope are encoded once per exporter) and POSTs it with
 * libcurl's multi-socket interface, parked in cn_wait_fd while curl waits (one
 * easy handle, its connection kept alive). Batch buffers are
 * kept and reused (no allocation, no page faults of a fresh buffer each time).
 * A failed POST - no connection, a timeout, 429, 502, 503, 504 - is retried
 * after backoff_ms, doubling, with +-25% jitter, up to max_attempts in all (the
 * OTLP exporter spec's retryable set); any other status, or the last failure,
 * drops the batch and counts its spans as dropped.
 */
#include "telemetry_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

/* A batch: room for the request's opening, then its spans, encoded. */
typedef struct batch {
    struct batch *next;
    cn__obuf_t b;
    uint32_t n;           /* spans in it */
} batch_t;

struct cn__exporter {
    cn_pid_t pid;
    bool running;
    bool wake_sent;       /* a wake-up is in the exporter's mailbox */
    bool stopping;
    bool json;            /* OTLP/JSON, not protobuf */
    cn_pid_t stopper;     /* waits for the flush to finish */
    batch_t *first, *last; /* waiting, oldest first; the last is being filled */
    batch_t *spare;       /* emptied batches, their buffers kept */
    batch_t *sending;     /* taken by the exporter process, being POSTed */
    uint32_t queued;      /* spans in the waiting batches */
    cn__obuf_t head;      /* the request before its spans, encoded once */
    size_t res_len;       /* protobuf: bytes of the Resource field in head */
    size_t room;          /* bytes before a batch's spans, for its opening */
    CURL *curl;           /* one easy handle, added to multi for each POST */
    CURLM *multi;         /* keeps the connection between POSTs */
    bool added;           /* curl is in multi (a POST under way) */
    int epfd;             /* curl's sockets, waited on as one fd (-1: none) */
    int64_t timer_at;     /* curl's timer: due then (cn__clock_ms), -1 none */
    struct epoll_event evs[8];
    struct curl_slist *hdrs;
    uint64_t exported, dropped, failed_exports;
    cn__pb_cache_t *pb_cache; /* encoded keys and static attributes (NULL: none) */
};

/* ---------------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------------ */

/* A batch to fill: a spare one, or a new one (NULL on ENOMEM). */
static batch_t *batch_new(cn__exporter_t *e)
{
    batch_t *bt = e->spare;
    if (bt)
        e->spare = bt->next;
    else if ((bt = cn__calloc(1, sizeof(*bt))) == NULL)
        return NULL;
    bt->next = NULL;
    bt->n = 0;
    bt->b.oom = false;
    bt->b.len = 0;
    /* The room is reserved now; the opening is written into it at export. */
    if (bt->b.cap < e->room) {
        char *p = realloc(bt->b.p, e->room + 4096);
        if (p == NULL) {
            bt->next = e->spare;
            e->spare = bt;
            return NULL;
        }
        bt->b.p = p;
        bt->b.cap = e->room + 4096;
    }
    bt->b.len = e->room;
    return bt;
}

static void batch_free_list(batch_t *bt)
{
    while (bt) {
        batch_t *next = bt->next;
        free(bt->b.p);
        cn__free(bt);
        bt = next;
    }
}

void cn__exporter_push(cn__tel_t *t, cn_span_t *s)
{
    cn__exporter_t *e = t->exp;
    batch_t *bt = e->last;
    if (e->queued >= t->opts.queue_size)
        goto drop;
    if (bt == NULL || bt->n >= t->opts.batch_size) {
        if ((bt = batch_new(e)) == NULL)
            goto drop;
        if (e->last)
            e->last->next = bt;
        else
            e->first = bt;
        e->last = bt;
    }
    size_t mark = bt->b.len;
    if (e->json) {
        cn__span_http_attrs(s); /* the JSON encoder reads attributes only */
        cn__otlp_json_span(&bt->b, s, bt->n == 0);
    } else {
        cn__otlp_pb_span(&bt->b, s, e->pb_cache);
    }
    if (bt->b.oom) {
        bt->b.len = mark; /* the buffer is as it was; the next span may fit */
        bt->b.oom = false;
        goto drop;
    }
    bt->n++;
    e->queued++;
    cn__span_free(s);
    if (e->queued >= t->opts.batch_size && !e->wake_sent && e->running) {
        ei_x_buff x;
        if (cn_x_new(&x) == 0 && ei_x_encode_atom(&x, "$cn_tel_wake") == 0 &&
            cn_send(e->pid, &x) == 0)
            e->wake_sent = true;
    }
    return;
drop:
    e->dropped++;
    cn__span_free(s);
}

/* Take the oldest batch into e->sending (the previous one goes to the spares). */
static void batch_take(cn__exporter_t *e)
{
    batch_t *bt = e->first;
    e->first = bt->next;
    if (e->first == NULL)
        e->last = NULL;
    e->queued -= bt->n;
    bt->next = NULL;
    e->sending = bt;
}

/* The request of the batch being sent: its opening written in front of its
 * spans (and for JSON the closing after). NULL on ENOMEM. */
static const char *batch_body(cn__exporter_t *e, size_t *len)
{
    cn__obuf_t *b = &e->sending->b;
    if (e->json) {
        memcpy(b->p, e->head.p, e->head.len); /* room == head.len */
        cn__otlp_json_tail(b);
        *len = b->len;
        return b->oom ? NULL : b->p;
    }
    size_t k = cn__otlp_pb_open(b->p + e->room, e->head.p, e->head.len, e->res_len,
                                b->len - e->room);
    *len = k + b->len - e->room;
    return b->p + e->room - k;
}

/* ---------------------------------------------------------------------------------
 * One export, on the exporter process
 *
 * The POST runs on curl's multi-socket interface from the exporter process:
 * curl's sockets sit in a private epoll set (e->epfd) that the process waits on
 * with cn_wait_fd, as discovery_dns.c does for c-ares. Every call into curl is
 * non-blocking, so the scheduler's thread never waits for the collector. On the
 * blocking pool (curl_easy_perform) each export cost a hand-off to a pool thread,
 * a sleep in poll() for the response and a wake-up, and the completion's eventfd:
 * on a busy node the context switches cost more than the POST itself (bench:
 * 113-165 us of pool-thread CPU per 512-span POST, ~42 us for the same POST
 * alone in a loop).
 * ------------------------------------------------------------------------------ */

typedef struct post_job {
    long status;         /* HTTP status, 0 when there was no response */
    CURLcode cc;
} post_job_t;

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* curl's socket callback: keep e->epfd watching what curl wants of fd. */
static int on_curl_socket(CURL *c, curl_socket_t fd, int what, void *ud, void *sockp)
{
    cn__exporter_t *e = ud;
    (void)c;
    (void)sockp;
    /* CURL_POLL_REMOVE has neither the IN nor the OUT bit: taken out. */
    if (cn__epoll_watch(e->epfd, fd, what & CURL_POLL_IN, what & CURL_POLL_OUT) < 0)
        return -1; /* curl fails the transfer */
    return 0;
}

/* curl's timer callback: when to call it back with CURL_SOCKET_TIMEOUT (ms from
 * now; -1: no timer). */
static int on_curl_timer(CURLM *m, long timeout_ms, void *ud)
{
    cn__exporter_t *e = ud;
    (void)m;
    e->timer_at = timeout_ms < 0 ? -1 : (int64_t)cn__clock_ms() + timeout_ms;
    return 0;
}

/* POST body, parked in cn_wait_fd until curl is done with it. curl bounds it by
 * CURLOPT_TIMEOUT_MS. */
static void post(cn__exporter_t *e, const char *body, size_t len, post_job_t *j)
{
    CURL *c = e->curl;
    j->status = 0;
    j->cc = CURLE_OUT_OF_MEMORY;
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    if (curl_multi_add_handle(e->multi, c) != CURLM_OK)
        return;
    e->added = true;
    int running = 1;
    while (running) {
        int64_t now = (int64_t)cn__clock_ms();
        if (e->timer_at < 0 || e->timer_at > now) {
            /* Without a timer curl waits for a socket; look again each second. */
            int64_t ms = e->timer_at < 0 || e->timer_at - now > 1000 ? 1000 : e->timer_at - now;
            int rc = cn_wait_fd(e->epfd, CN_READABLE, ms);
            if (rc < 0 && rc != -ETIMEDOUT)
                break; /* -ENOMEM: the transfer is dropped below */
            now = (int64_t)cn__clock_ms();
        }
        if (e->timer_at >= 0 && e->timer_at <= now) {
            e->timer_at = -1;
            curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        /* Hand every ready socket to curl, until none is ready: the process
         * wakes on the set's edge only. */
        for (int n; running && (n = epoll_wait(e->epfd, e->evs, 8, 0)) > 0;) {
            for (int i = 0; i < n; i++) {
                uint32_t ev = e->evs[i].events;
                int flags = (ev & EPOLLIN ? CURL_CSELECT_IN : 0) |
                            (ev & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                            (ev & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
                curl_multi_socket_action(e->multi, e->evs[i].data.fd, flags, &running);
            }
        }
    }
    int left;
    for (CURLMsg *m; (m = curl_multi_info_read(e->multi, &left)) != NULL;)
        if (m->msg == CURLMSG_DONE && m->easy_handle == c)
            j->cc = m->data.result;
    if (j->cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &j->status);
    curl_multi_remove_handle(e->multi, c); /* the connection stays in the multi's cache */
    e->added = false;
}

static bool retryable(const post_job_t *j)
{
    if (j->cc != CURLE_OK)
        return true;
    return j->status == 429 || j->status == 502 || j->status == 503 || j->status == 504;
}

/* POST e->sending, then put it back among the spares. */
static void export_batch(cn__tel_t *t, cn__exporter_t *e)
{
    uint32_t n = e->sending->n;
    post_job_t j = { .cc = CURLE_OUT_OF_MEMORY };
    size_t len;
    const char *body = batch_body(e, &len);
    int64_t backoff = t->opts.backoff_ms;
    bool ok = false;
    for (int attempt = 1; body && attempt <= t->opts.max_attempts; attempt++) {
        post(e, body, len, &j);
        if (j.cc == CURLE_OK && j.status >= 200 && j.status < 300) {
            ok = true;
            break;
        }
        cn_log(CN_LOG_DEBUG, "telemetry", "export of %u spans: %s, HTTP %ld (attempt %d)", n,
               curl_easy_strerror(j.cc), j.status, attempt);
        if (!retryable(&j) || attempt == t->opts.max_attempts || e->stopping)
            break;
        /* Jitter of +-25% keeps many nodes from retrying in step. */
        int64_t jitter = backoff / 2 > 0 ? (int64_t)(rand() % (int)(backoff / 2)) - backoff / 4 : 0;
        cn_sleep(backoff + jitter);
        backoff *= 2;
    }
    if (ok) {
        e->exported += n;
    } else {
        e->failed_exports++;
        e->dropped += n;
        cn_log(CN_LOG_WARN, "telemetry", "dropped %u spans: export to %s failed (%s, HTTP %ld)",
               n, t->opts.endpoint, curl_easy_strerror(j.cc), j.status);
    }
    e->sending->next = e->spare;
    e->spare = e->sending;
    e->sending = NULL;
}

/* ---------------------------------------------------------------------------------
 * The exporter process
 * ------------------------------------------------------------------------------ */

static bool match_exp(const cn_msg_t *m, void *arg)
{
    (void)arg;
    int i = 1;
    return cn_decode_atom_is(m->buf, &i, "$cn_tel_wake");
}

static void on_exporter_exit(void *arg)
{
    cn__exporter_t *e = arg;
    e->running = false;
}

static void exporter_main(void *arg)
{
    cn__tel_t *t = arg;
    cn__exporter_t *e = t->exp;
    if (cn_on_exit(on_exporter_exit, e) < 0) {
        e->running = false;
        return;
    }
    for (;;) {
        cn_msg_t *m = NULL;
        if (!e->stopping && e->queued < t->opts.batch_size)
            cn_receive(match_exp, NULL, t->opts.delay_ms, &m);
        cn_msg_free(m);
        e->wake_sent = false;
        /* Export whole batches while there are; a partial one when the delay has
         * passed, or when stopping. */
        while (e->first && e->queued > 0) {
            batch_take(e);
            export_batch(t, e);
            if (e->queued < t->opts.batch_size && !e->stopping)
                break;
        }
        if (e->stopping)
            break;
    }
    if (e->stopper.num) {
        ei_x_buff x;
        if (cn_x_new(&x) == 0 && ei_x_encode_atom(&x, "$cn_tel_stopped") == 0)
            cn_send(e->stopper, &x);
        else
            ei_x_free(&x);
    }
}

int cn__exporter_start(cn__tel_t *t)
{
    pthread_once(&curl_once, curl_init_once);
    cn__exporter_t *e = cn__calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    t->exp = e;
    e->epfd = -1;
    e->json = t->opts.protocol == CN_OTLP_JSON;
    /* The resource is written into the head only: parsed for it, then let go. */
    cn__resource_t res;
    if (cn__resource_init(&res, t->opts.service_name, t->opts.resource_attrs) < 0) {
        e->head.oom = true; /* ENOMEM, below */
    } else if (e->json) {
        cn__otlp_json_head(&e->head, &res);
        e->room = e->head.len;
    } else {
        cn__otlp_pb_head(&e->head, &res, &e->res_len);
        e->room = e->head.len + CN__OTLP_PB_OPEN_MAX;
    }
    cn__resource_free(&res);
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->timer_at = -1;
    e->multi = curl_multi_init();
    if (e->multi) {
        curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
        curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    }
    e->curl = curl_easy_init();
    /* curl copies a body past 64 KiB into its upload buffer and sends it a
     * buffer at a time: 64 KiB by default, three sends and as many polls for
     * a batch of 512 HTTP spans (150 KB). A buffer for the whole batch costs a
     * fifth less CPU per POST (60 against 76 us on loopback here). Set once:
     * setting it frees the buffer curl has. */
    if (e->curl)
        curl_easy_setopt(e->curl, CURLOPT_UPLOAD_BUFFERSIZE, 1L << 20);
    e->pb_cache = cn__pb_cache_new(); /* NULL: encoded every time */
    e->hdrs = curl_slist_append(NULL, t->opts.protocol == CN_OTLP_JSON
                                          ? "Content-Type: application/json"
                                          : "Content-Type: application/x-protobuf");
    /* No "Expect: 100-continue" (curl adds it to large bodies): a collector
     * takes the batch anyway, and waiting for its go-ahead costs a round trip,
     * or a second with a receiver that never sends one. */
    if (e->hdrs) {
        struct curl_slist *h = curl_slist_append(e->hdrs, "Expect:");
        if (h)
            e->hdrs = h;
    }
    /* OTEL_EXPORTER_OTLP_HEADERS: k=v pairs, comma-separated. */
    for (const char *p = t->opts.headers; p && *p;) {
        size_t l = strcspn(p, ",");
        char line[512];
        const char *eq = memchr(p, '=', l);
        if (eq && l < sizeof(line) - 2) {
            int kl = (int)(eq - p);
            snprintf(line, sizeof(line), "%.*s: %.*s", kl, p, (int)(l - (size_t)kl - 1), eq + 1);
            struct curl_slist *h = curl_slist_append(e->hdrs, line);
            if (h)
                e->hdrs = h;
        }
        p += l;
        p += *p == ',';
    }
    if (e->epfd < 0 || e->multi == NULL || e->curl == NULL || e->hdrs == NULL || e->head.oom) {
        cn__exporter_free(t);
        return -ENOMEM;
    }
    /* What does not change from one POST to the next is set once. */
    curl_easy_setopt(e->curl, CURLOPT_URL, t->opts.endpoint);
    curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, e->hdrs);
    curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)t->opts.export_timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)t->opts.export_timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, discard);
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    int rc = cn_spawn(t->node, exporter_main, t, &so, &e->pid);
    if (rc < 0) {
        cn__exporter_free(t);
        return rc;
    }
    e->running = true;
    return 0;
}

static bool match_stopped(const cn_msg_t *m, void *arg)
{
    (void)arg;
    int i = 1;
    return cn_decode_atom_is(m->buf, &i, "$cn_tel_stopped");
}

int cn__exporter_stop(cn__tel_t *t, int64_t timeout_ms)
{
    cn__exporter_t *e = t->exp;
    if (e == NULL || !e->running)
        return 0;
    cn_node_t *n = t->node;
    if (n->current == NULL)
        return -EINVAL;
    e->stopping = true;
    e->stopper = n->current->pid;
    ei_x_buff x;
    if (cn_x_new(&x) == 0 && ei_x_encode_atom(&x, "$cn_tel_wake") == 0)
        cn_send(e->pid, &x);
    cn_msg_t *m;
    int rc = cn_receive(match_stopped, NULL, timeout_ms, &m);
    if (rc < 0) {
        /* A hung export: kill the exporter; what it held is dropped. */
        e->stopper = (cn_pid_t){ 0, 0, 0, 0 };
        cn_exit_pid(e->pid, "kill");
        return -ETIMEDOUT;
    }
    cn_msg_free(m);
    return 0;
}

void cn__exporter_free(cn__tel_t *t)
{
    cn__exporter_t *e = t->exp;
    if (e == NULL)
        return;
    batch_free_list(e->first);
    batch_free_list(e->spare);
    batch_free_list(e->sending);
    /* A POST cut short by a kill (cn__exporter_stop) left curl in the multi. */
    if (e->added)
        curl_multi_remove_handle(e->multi, e->curl);
    if (e->curl)
        curl_easy_cleanup(e->curl);
    if (e->multi)
        curl_multi_cleanup(e->multi); /* closes the connection: uses epfd */
    if (e->epfd >= 0)
        cn_fd_close(e->epfd);
    curl_slist_free_all(e->hdrs);
    free(e->head.p);
    cn__pb_cache_free(e->pb_cache);
    cn__free(e);
    t->exp = NULL;
}

void cn__exporter_stats(cn__tel_t *t, uint64_t *exported, uint64_t *dropped, uint64_t *failed,
                        uint32_t *queued)
{
    cn__exporter_t *e = t->exp;
    if (e == NULL)
        return;
    if (exported)
        *exported = e->exported;
    if (dropped)
        *dropped = e->dropped;
    if (failed)
        *failed = e->failed_exports;
    if (queued)
        *queued = e->queued;
}
