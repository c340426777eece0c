/* exporter.c - the batch span processor: a bounded queue and the process that
 * empties it into OTLP/HTTP POSTs.
 *
 * cn_span_end() pushes a finished span into a ring of queue_size pointers and
 * returns at once; when the ring is full the span is freed and counted as
 * dropped, so a slow or absent collector never holds a request up. The exporter
 * process (a dedicated stack, started by cn_telemetry_start) sleeps until the
 * ring holds a batch (the push that fills one sends it a wake-up message) or
 * delay_ms passes, then takes up to batch_size spans and, on the blocking pool,
 * encodes them as OTLP/protobuf (otlp_pb.c) or OTLP/JSON (otlp.c) into one buffer reused batch after batch
 * (no allocation, no page faults of a fresh mmap'd body each time) and POSTs them with libcurl (one easy handle,
 * kept alive). A failed POST - no connection, a timeout, 429, 502, 503, 504 - is
 * retried after backoff_ms, doubling, with +-25% jitter, up to max_attempts in all
 * (the OTLP exporter spec's retryable set); any other status, or the last
 * failure, drops the batch and counts its spans as dropped.
 */
#include "telemetry_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct cn__exporter {
    cn__ring_t ring;
    cn_pid_t pid;
    bool running;
    bool wake_sent;       /* a wake-up is in the exporter's mailbox */
    bool stopping;
    cn_pid_t stopper;     /* waits for the flush to finish */
    CURL *curl;
    struct curl_slist *hdrs;
    uint64_t exported, failed_exports;
    char *buf;            /* the export body, reused batch after batch */
    cn__pb_cache_t *pb_cache; /* encoded static attributes (NULL: none) */
    size_t cap;
};

/* ---------------------------------------------------------------------------------
 * The ring
 * ------------------------------------------------------------------------------ */

int cn__ring_init(cn__ring_t *r, uint32_t cap)
{
    memset(r, 0, sizeof(*r));
    r->v = cn__calloc(cap, sizeof(*r->v));
    if (r->v == NULL)
        return -ENOMEM;
    r->cap = cap;
    return 0;
}

bool cn__ring_push(cn__ring_t *r, cn_span_t *s)
{
    if (r->len == r->cap) {
        r->dropped++;
        cn__span_free(s);
        return false;
    }
    r->v[(r->head + r->len) % r->cap] = s;
    r->len++;
    return true;
}

uint32_t cn__ring_take(cn__ring_t *r, cn_span_t **out, uint32_t max)
{
    uint32_t n = 0;
    while (n < max && r->len > 0) {
        out[n++] = r->v[r->head];
        r->head = (r->head + 1) % r->cap;
        r->len--;
    }
    return n;
}

void cn__ring_free(cn__ring_t *r)
{
    cn_span_t *s;
    while (cn__ring_take(r, &s, 1) == 1)
        cn__span_free(s);
    cn__free(r->v);
    r->v = NULL;
}

/* ---------------------------------------------------------------------------------
 * One export on the pool
 * ------------------------------------------------------------------------------ */

typedef struct post_job {
    cn__exporter_t *e;
    const cn__tel_t *t;
    cn_span_t **spans;
    uint32_t n;
    size_t body_len;     /* in e->buf: encoded once, kept across retries; 0: not yet */
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

/* Runs on a pool thread: no libcnode calls. */
static void post_blocking(void *arg)
{
    post_job_t *j = arg;
    if (j->body_len == 0)
        j->body_len = j->t->opts.protocol == CN_OTLP_JSON
                          ? cn__otlp_encode_buf(&j->e->buf, &j->e->cap, j->t->opts.service_name,
                                                j->t->opts.resource_attrs, j->spans, j->n)
                          : cn__otlp_encode_pb_buf(&j->e->buf, &j->e->cap,
                                                   j->t->opts.service_name,
                                                   j->t->opts.resource_attrs, j->spans, j->n,
                                                   j->e->pb_cache);
    j->status = 0;
    j->cc = CURLE_OUT_OF_MEMORY;
    if (j->body_len == 0 || j->e->curl == NULL)
        return;
    CURL *c = j->e->curl;
    curl_easy_setopt(c, CURLOPT_URL, j->t->opts.endpoint);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->e->buf);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)j->body_len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, j->e->hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)j->t->opts.export_timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)j->t->opts.export_timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    j->cc = curl_easy_perform(c);
    if (j->cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &j->status);
}

static bool retryable(const post_job_t *j)
{
    if (j->cc != CURLE_OK)
        return j->cc != CURLE_OUT_OF_MEMORY || j->body_len != 0;
    return j->status == 429 || j->status == 502 || j->status == 503 || j->status == 504;
}

static void export_batch(cn__tel_t *t, cn__exporter_t *e, cn_span_t **spans, uint32_t n)
{
    post_job_t j = { .e = e, .t = t, .spans = spans, .n = n };
    int64_t backoff = t->opts.backoff_ms;
    bool ok = false;
    for (int attempt = 1; attempt <= t->opts.max_attempts; attempt++) {
        if (cn_blocking(post_blocking, &j) < 0)
            break;
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
        e->ring.dropped += n;
        cn_log(CN_LOG_WARN, "telemetry", "dropped %u spans: export to %s failed (%s, HTTP %ld)",
               n, t->opts.endpoint, curl_easy_strerror(j.cc), j.status);
    }
    for (uint32_t i = 0; i < n; i++)
        cn__span_free(spans[i]);
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
    cn_span_t **batch = cn__calloc(t->opts.batch_size, sizeof(*batch));
    if (batch == NULL) {
        e->running = false;
        return;
    }
    for (;;) {
        cn_msg_t *m = NULL;
        if (!e->stopping && e->ring.len < t->opts.batch_size)
            cn_receive(match_exp, NULL, t->opts.delay_ms, &m);
        cn_msg_free(m);
        e->wake_sent = false;
        /* Export whole batches while there are; a partial one when the delay has
         * passed, or when stopping. */
        while (e->ring.len > 0) {
            uint32_t n = cn__ring_take(&e->ring, batch, t->opts.batch_size);
            export_batch(t, e, batch, n);
            if (e->ring.len < t->opts.batch_size && !e->stopping)
                break;
        }
        if (e->stopping)
            break;
    }
    cn__free(batch);
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
    if (cn__ring_init(&e->ring, t->opts.queue_size) < 0) {
        cn__free(e);
        return -ENOMEM;
    }
    e->curl = curl_easy_init();
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
    if (e->curl == NULL || e->hdrs == NULL) {
        t->exp = e;
        cn__exporter_free(t);
        return -ENOMEM;
    }
    t->exp = e;
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    int rc = cn_spawn(t->node, exporter_main, t, &so, &e->pid);
    if (rc < 0) {
        cn__exporter_free(t);
        return rc;
    }
    e->running = true;
    return 0;
}

void cn__exporter_push(cn__tel_t *t, cn_span_t *s)
{
    cn__exporter_t *e = t->exp;
    cn__ring_push(&e->ring, s);
    if (e->ring.len >= t->opts.batch_size && !e->wake_sent && e->running) {
        ei_x_buff x;
        if (cn_x_new(&x) == 0 && ei_x_encode_atom(&x, "$cn_tel_wake") == 0 &&
            cn_send(e->pid, &x) == 0)
            e->wake_sent = true;
    }
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
    cn__ring_free(&e->ring);
    if (e->curl)
        curl_easy_cleanup(e->curl);
    curl_slist_free_all(e->hdrs);
    free(e->buf);
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
        *dropped = e->ring.dropped;
    if (failed)
        *failed = e->failed_exports;
    if (queued)
        *queued = e->ring.len;
}
