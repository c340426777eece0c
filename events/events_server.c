/* events_server.c - the `events` gen_server (group commit, waiters) and its client
 * calls. See events_server.h for the protocol.
 *
 * Why cn_blocking and not a dedicated writer thread: the store's append (validating
 * the events, building records, SHA-256, CRC, pwrite, fdatasync) runs on the node's
 * blocking pool while the server process is parked, and the calls that arrive
 * meanwhile become the next batch. A writer thread would let the server stage
 * batch n+1 while batch n syncs, but staging is a memcpy per event, and batch n+1
 * cannot be synced before batch n anyway. Measured with `make bench-events` (1,000
 * appending processes, fsync every 2 ms, 316-byte events, 2 vCPUs): about 240,000
 * durable events/s, p50 4 ms, p99 9-12 ms per append, 1,000 events per batch,
 * more than twice the 100,000/s target, so the simpler design stays. Validation
 * (libbson's UTF-8 check was the top entry of the profile) runs in the pool job,
 * off the scheduler thread. The server runs on its own stack (CN_SPAWN_OWN_STACK)
 * so that pinning it during cn_blocking holds up no process bound to a shared
 * stack.
 *
 * The exception, a lone caller on an idle node (inline_ok): the pool's two
 * wake-ups (the pool thread's, then the scheduler's) cost more than the append
 * itself when the CPUs sleep between requests, so the job runs on the scheduler's
 * thread through cn_blocking_short, which falls back on the pool as soon as any
 * other process, timer or pool job is waiting. Paced recommendations (bench-recs),
 * inline and pool interleaved request by request in one run, p50: fsync=none
 * 98-103 us against 138-148; fsync=2ms (each its own fdatasync) 291-538 against
 * 324-672 on a noisy disk (3 runs each).
 *
 * Telemetry (cnode/telemetry.h), only on a node where it was started: each
 * flush is an "events append" span, child of the server span of the first call
 * in the batch that came in a trace (so of the caller's span, across nodes too);
 * batches of casts only, or of calls outside any trace, make no span. Metrics:
 * events_appends_total{outcome} (events: ok, invalid, error),
 * events_append_batch_size, events_append_seconds (the store's append: validate,
 * write, sync) and events_fsync_seconds (the file store's fdatasync).
 */
#include "events/events_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/proc.h"
#include "cnode/telemetry.h"
#include "common/buf.h"

#define MAX_WAITERS 4096
#define INLINE_MAX_US 1000 /* events_server_opts_t.inline_max_us's default */

typedef struct pend {
    cn_from_t from;   /* who gets the reply */
    size_t first_ev;  /* index of its first event in the staged batch */
    cn_span_ctx_t ctx; /* the call's server span, when traced (else invalid) */
} pend_t;

typedef struct waiter {
    cn_from_t from;
    uint64_t after;
} waiter_t;

typedef struct srv {
    ev_store_t *store;
    size_t max_batch;
    /* The batch being gathered. */
    buf_t staged;          /* the events' bytes, back to back */
    size_t *off, *len;     /* per event */
    size_t nev, capev;
    pend_t *pend;          /* callers to answer when the batch is committed */
    size_t npend, cappend;
    ev_slice_t *slices;    /* built at flush time */
    uint64_t *seq_of;      /* per staged event, filled by the append job */
    size_t capslices;
    /* Followers. */
    waiter_t *waiters;
    size_t nwait;
    uint64_t last_seq;
    uint64_t last_flush_ms; /* start of the previous flush (fsync=Nms window) */
    bool loaded;           /* the previous flush had company: more than one caller,
                              or calls waiting when it ended (fsync=Nms: window on) */
    bool timer_armed;
    uint64_t inline_max_ns; /* 0: never inline (not the file log, or turned off) */
    uint64_t append_avg_ns; /* moving average of the appends' own time (weight 1/8) */
    /* Stats. */
    uint64_t appended, batches, errors, dropped, inlined;
} srv_t;

typedef struct start_arg {
    int refs;            /* the starter and init each drop one (same thread) */
    bool init_done;      /* init ran to its end (and dropped its reference) */
    char *url;
    size_t max_batch;
    int inline_max_us;
    char err[EV_ERR_LEN];
    char io_note[sizeof ((ev_store_t *)0)->io_note]; /* the store's, from init */
} start_arg_t;

static void start_arg_unref(start_arg_t *a)
{
    if (--a->refs == 0) {
        free(a->url);
        free(a);
    }
}

/* ---------------------------------------------------------------------------------
 * Work on the blocking pool
 * ------------------------------------------------------------------------------ */

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
    j->rc = ev_store_open_at_end(j->url, EV_OPEN_WRITE, &j->store, &j->last, j->err, sizeof j->err);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct append_job {
    ev_store_t *store;
    ev_slice_t *evs;     /* in: the staged events; compacted to the valid ones */
    size_t n;
    uint64_t *seq_of;    /* out: each staged event's seq, 0 if it was invalid */
    uint64_t first;
    int rc;
    uint64_t ns;         /* out: how long the job took (validation, write, sync) */
} append_job_t;

/* On the pool: validate (libbson's UTF-8 check is the costliest step of an
 * append, so it stays off the scheduler thread), drop invalid events, append. */
static void do_append(void *arg)
{
    append_job_t *j = arg;
    size_t nvalid = 0;
    uint64_t t0 = mono_ns();
    for (size_t i = 0; i < j->n; i++) {
        if (ev_event_validate(j->evs[i].data, j->evs[i].len) == 0) {
            j->seq_of[i] = ++nvalid;  /* rank for now */
            j->evs[nvalid - 1] = j->evs[i];
        } else {
            j->seq_of[i] = 0;
        }
    }
    j->rc = nvalid ? ev__store_append_trusted(j->store, j->evs, nvalid, &j->first) : 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->seq_of[i])
            j->seq_of[i] = j->rc == 0 ? j->first + j->seq_of[i] - 1 : 0;
    j->ns = mono_ns() - t0;
}

static void do_close(void *arg)
{
    ev_store_close(arg);
}

/* ---------------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------------ */

static const char *err_atom(int rc)
{
    switch (-rc) {
    case EINVAL: return "einval";
    case ENOSPC: return "enospc";
    case EIO: return "eio";
    case EBADMSG: return "ebadmsg";
    case ECONNREFUSED: return "econnrefused";
    case EHOSTUNREACH: return "ehostunreach";
    case ETIMEDOUT: return "etimedout";
    case EPERM: return "eperm";
    case EBUSY: return "ebusy";
    default: return "error";
    }
}

static int atom_err(const char *a)
{
    static const int codes[] = { EINVAL, ENOSPC, EIO, EBADMSG, ECONNREFUSED, EHOSTUNREACH,
                                 ETIMEDOUT, EPERM, EBUSY };
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(a, err_atom(-codes[i])) == 0)
            return -codes[i];
    return -EIO;
}

/* Append {ok, N} or {error, Reason} to x. */
static void enc_result(ei_x_buff *x, int rc, uint64_t n)
{
    ei_x_encode_tuple_header(x, 2);
    if (rc < 0) {
        cn_x_encode_atom(x, "error");
        cn_x_encode_atom(x, err_atom(rc));
    } else {
        cn_x_encode_atom(x, "ok");
        ei_x_encode_ulonglong(x, n);
    }
}

static void reply_later(const cn_from_t *from, int rc, uint64_t n)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return; /* out of memory: the caller times out */
    enc_result(&x, rc, n);
    cn_gen_reply(from, &x);
}

/* ---------------------------------------------------------------------------------
 * The batch
 * ------------------------------------------------------------------------------ */

/* Stage one event. `full`: validate it now (-EINVAL if it is not a valid event);
 * otherwise only its framing is checked here and the append job validates it. */
static int stage(srv_t *s, const char *buf, int *index, bool full)
{
    int type, size;
    long got;
    if (ei_get_type(buf, index, &type, &size) < 0 || type != ERL_BINARY_EXT || size <= 0 ||
        (size_t)size > EV_MAX_RECORD)
        return -EINVAL;
    if (s->nev == s->capev) {
        s->capev = s->capev ? 2 * s->capev : 256;
        s->off = xrealloc(s->off, s->capev * sizeof *s->off);
        s->len = xrealloc(s->len, s->capev * sizeof *s->len);
    }
    buf_reserve(&s->staged, (size_t)size);
    if (ei_decode_binary(buf, index, s->staged.data + s->staged.len, &got) < 0)
        return -EINVAL;
    const uint8_t *p = (uint8_t *)s->staged.data + s->staged.len;
    if (got < 5 || (uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24) != got ||
        p[got - 1] != 0)
        return -EINVAL;
    if (full && ev_event_validate(p, (size_t)got) < 0)
        return -EINVAL;
    s->off[s->nev] = s->staged.len;
    s->len[s->nev] = (size_t)got;
    s->staged.len += (size_t)got;
    s->nev++;
    return 0;
}

/* Stage every binary of a list; on an invalid one, unstage the whole list. */
static int stage_list(srv_t *s, const char *buf, int *index, size_t *count)
{
    int arity, rc = 0;
    size_t nev0 = s->nev, len0 = s->staged.len;
    *count = 0;
    if (ei_decode_list_header(buf, index, &arity) < 0)
        return -EINVAL;
    for (int i = 0; i < arity && rc == 0; i++)
        rc = stage(s, buf, index, true);
    if (rc < 0 || arity == 0) {
        s->nev = nev0;
        s->staged.len = len0;
        return -EINVAL;
    }
    *count = (size_t)arity;
    return 0;
}

static void add_pend(srv_t *s, const cn_from_t *from, size_t first_ev)
{
    if (s->npend == s->cappend) {
        s->cappend = s->cappend ? 2 * s->cappend : 64;
        s->pend = xrealloc(s->pend, s->cappend * sizeof *s->pend);
    }
    s->pend[s->npend].from = *from;
    s->pend[s->npend].first_ev = first_ev;
    s->pend[s->npend].ctx.valid = false;
    if (cn_tracing_enabled())
        cn_trace_current(&s->pend[s->npend].ctx);
    s->npend++;
}

static void wake_waiters(srv_t *s)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->nwait; i++) {
        if (s->last_seq > s->waiters[i].after)
            reply_later(&s->waiters[i].from, 0, s->last_seq);
        else
            s->waiters[keep++] = s->waiters[i];
    }
    s->nwait = keep;
}

/* ---------------------------------------------------------------------------------
 * Telemetry of a flush
 * ------------------------------------------------------------------------------ */

/* The batch's span: child of the first traced and sampled call in it, else none. */
static cn_span_t *append_span(const srv_t *s)
{
    for (size_t i = 0; i < s->npend; i++) {
        const cn_span_ctx_t *c = &s->pend[i].ctx;
        if (c->valid && (c->flags & 1)) {
            cn_span_t *sp = cn_span_start_ctx("events append", CN_SPAN_INTERNAL, c);
            cn_span_set_int(sp, "events.batch.events", (int64_t)s->nev);
            cn_span_set_int(sp, "events.batch.calls", (int64_t)s->npend);
            cn_span_set_str(sp, "events.store", s->store->ops->scheme);
            return sp;
        }
    }
    return NULL;
}

static void append_metrics(const srv_t *s, int rc, size_t appended, uint64_t ns)
{
    static const double sizes[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 };
    static const double secs[] = { 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                   0.01,    0.025,  0.05,    0.1,    0.25,   0.5,    1 };
    int nsecs = (int)(sizeof secs / sizeof *secs);
    cn_metric_t *n = cn_metric_counter(NULL, "events_appends_total",
                                       "Events appended (ok), refused (invalid) or lost to a "
                                       "store error (error)", "outcome");
    cn_metric_add(n, (const char *[]){ "ok" }, (double)appended);
    if (rc < 0)
        cn_metric_add(n, (const char *[]){ "error" }, (double)s->nev);
    else if (s->nev > appended)
        cn_metric_add(n, (const char *[]){ "invalid" }, (double)(s->nev - appended));
    cn_metric_observe(cn_metric_histogram(NULL, "events_append_batch_size",
                                          "Events per store append (group commit)", NULL,
                                          sizes, (int)(sizeof sizes / sizeof *sizes)),
                      NULL, (double)s->nev);
    cn_metric_observe(cn_metric_histogram(NULL, "events_append_seconds",
                                          "One store append: validation, write and sync",
                                          NULL, secs, nsecs),
                      NULL, (double)ns / 1e9);
    if (rc == 0 && appended && s->store->sync_ns)
        cn_metric_observe(cn_metric_histogram(NULL, "events_fsync_seconds",
                                              "fdatasync of the file store's append", NULL,
                                              secs, nsecs),
                          NULL, (double)s->store->sync_ns / 1e9);
}

/* May this batch's append run on the scheduler's thread when the node is idle?
 * Only a lone caller's (under load the pool lets the next batch gather while
 * this one syncs), only on the file log (MongoDB's and PostgreSQL's appends are
 * network round trips), and not while appends are slow (a busy disk). Why at
 * all: on an idle node the pool costs two thread wake-ups per append, about a
 * third of a paced recommendation's own time on a VM (docs/ARCHITECTURE.md);
 * Redis's appendfsync always also writes and syncs on its event loop. */
static bool inline_ok(const srv_t *s)
{
    return s->inline_max_ns && s->npend == 1 && !s->loaded &&
           s->append_avg_ns <= s->inline_max_ns;
}

/* Write the staged batch through the store (on the pool) and answer its callers. */
static void flush(srv_t *s)
{
    append_job_t j = { s->store, NULL, s->nev, NULL, 0, 0, 0 };
    size_t appended = 0;

    if (s->nev == 0)
        return;
    bool tel = cn_telemetry_on();
    cn_span_t *span = tel ? append_span(s) : NULL;
    if (s->capslices < s->nev) {
        s->capslices = s->capev;
        s->slices = xrealloc(s->slices, s->capslices * sizeof *s->slices);
        s->seq_of = xrealloc(s->seq_of, s->capslices * sizeof *s->seq_of);
    }
    j.seq_of = s->seq_of;
    for (size_t i = 0; i < s->nev; i++)
        s->slices[i] = (ev_slice_t){ (uint8_t *)s->staged.data + s->off[i], s->len[i] };
    j.evs = s->slices;
    s->last_flush_ms = cn_now_ms();
    int where = inline_ok(s) ? cn_blocking_short(do_append, &j) : cn_blocking(do_append, &j);
    if (where < 0)
        j.rc = -ENOMEM;
    s->inlined += where == 1;
    /* The job's own time, not the hand-off's (a pool thread slow to wake on a
     * busy machine says nothing about the disk), averaged: one append held up
     * by a preemption does not send the next ones to the pool, a busy disk does. */
    s->append_avg_ns = s->append_avg_ns - s->append_avg_ns / 8 + j.ns / 8;
    s->batches++;
    for (size_t i = 0; i < s->nev; i++) {
        if (s->seq_of[i]) {
            appended++;
            s->last_seq = s->seq_of[i];
        }
    }
    s->appended += appended;
    s->dropped += j.rc == 0 ? s->nev - appended : 0;
    if (j.rc < 0)
        s->errors++;
    if (tel) {
        append_metrics(s, j.rc, appended, j.ns);
        cn_span_set_int(span, "events.appended", (int64_t)appended);
        if (j.rc == 0 && appended)
            cn_span_set_int(span, "events.first_seq", (int64_t)j.first);
        if (j.rc < 0)
            cn_span_set_status(span, CN_STATUS_ERROR, err_atom(j.rc));
        cn_span_end(span);
    }
    for (size_t i = 0; i < s->npend; i++) {
        uint64_t seq = s->seq_of[s->pend[i].first_ev];
        reply_later(&s->pend[i].from, j.rc < 0 ? j.rc : seq ? 0 : -EINVAL, seq);
    }
    /* Load, for the next batch's window: this batch gathered several callers, or
     * more calls arrived while it was written. */
    s->loaded = s->npend > 1 || cn_mbox_len() > 0;
    s->nev = s->npend = 0;
    s->staged.len = 0;
    if (j.rc == 0 && appended)
        wake_waiters(s);
}

/* Called after every message: flush now, later (timer), or when more arrived. */
static void maybe_flush(srv_t *s)
{
    if (s->nev == 0)
        return;
    if (s->nev < s->max_batch && cn_mbox_len() > 0)
        return; /* more calls waiting: let them join this batch */
    /* fsync=Nms bounds the syncs per second under load. A caller that is alone
     * (nobody else in this batch's mailbox, and the previous flush had no
     * company) gains nothing from waiting for company: commit at once. */
    if (s->store->sync == EV_SYNC_INTERVAL && s->nev < s->max_batch && s->loaded) {
        uint64_t now = cn_now_ms(), due = s->last_flush_ms + (uint64_t)s->store->sync_interval_ms;
        if (now < due) {
            if (!s->timer_armed) {
                ei_x_buff x;
                if (cn_x_new(&x) == 0) {
                    ei_x_encode_atom(&x, "$events_flush");
                    s->timer_armed = cn_send_after((int64_t)(due - now), cn_self(), &x, NULL) == 0;
                }
                if (!s->timer_armed)
                    flush(s); /* no timer: do not leave callers waiting */
            }
            return;
        }
    }
    flush(s);
}

/* ---------------------------------------------------------------------------------
 * Callbacks
 * ------------------------------------------------------------------------------ */

static int srv_init(void *arg, void **state)
{
    start_arg_t *a = arg;
    /* The pool thread gets its own copy of the URL: if the start times out, the
     * starter frees `a` while the open may still run (then this copy leaks). */
    char *url = a->url ? xstrdup(a->url) : NULL;
    open_job_t j = { url, NULL, 0, 0, "" };
    int rc;

    if ((rc = cn_blocking(do_open, &j)) == 0)
        rc = j.rc;
    free(url);
    a->init_done = true;
    if (rc < 0) {
        snprintf(a->err, sizeof a->err, "%s", j.err);
        start_arg_unref(a);
        return rc;
    }
    srv_t *s = xcalloc(1, sizeof *s);
    s->store = j.store;
    s->last_seq = j.last;
    s->max_batch = a->max_batch ? a->max_batch : 4096;
    memcpy(a->io_note, j.store->io_note, sizeof a->io_note);
    if (strcmp(s->store->ops->scheme, "file") == 0 && a->inline_max_us >= 0)
        s->inline_max_ns = (uint64_t)(a->inline_max_us ? a->inline_max_us : INLINE_MAX_US) * 1000;
    start_arg_unref(a);
    *state = s;
    return 0;
}

static int srv_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    srv_t *s = state;
    const char *buf = req.buf;
    int i = req.index, arity, rc = CN_GS_CONTINUE;
    uint64_t after;

    if (cn_decode_atom_is(buf, &i, "last_seq")) {
        enc_result(reply, 0, s->last_seq);
        goto out;
    }
    if (cn_decode_atom_is(buf, &i, "stats")) {
        ei_x_encode_tuple_header(reply, 2);
        ei_x_encode_atom(reply, "ok");
        ei_x_encode_map_header(reply, 5);
        ei_x_encode_atom(reply, "appended");
        ei_x_encode_ulonglong(reply, s->appended);
        ei_x_encode_atom(reply, "batches");
        ei_x_encode_ulonglong(reply, s->batches);
        ei_x_encode_atom(reply, "errors");
        ei_x_encode_ulonglong(reply, s->errors);
        ei_x_encode_atom(reply, "dropped");
        ei_x_encode_ulonglong(reply, s->dropped);
        ei_x_encode_atom(reply, "inline");
        ei_x_encode_ulonglong(reply, s->inlined);
        goto out;
    }
    if (ei_decode_tuple_header(buf, &i, &arity) < 0 || arity != 2)
        goto bad;
    if (cn_decode_atom_is(buf, &i, "append")) {
        size_t at = s->nev;
        if (stage(s, buf, &i, false) < 0)
            goto bad;
        add_pend(s, from, at);
        rc = CN_GS_NOREPLY;
    } else if (cn_decode_atom_is(buf, &i, "append_batch")) {
        size_t at = s->nev, n;
        if (stage_list(s, buf, &i, &n) < 0)
            goto bad;
        add_pend(s, from, at);
        rc = CN_GS_NOREPLY;
    } else if (cn_decode_atom_is(buf, &i, "wait")) {
        if (ei_decode_ulonglong(buf, &i, (unsigned long long *)&after) < 0)
            goto bad;
        if (s->last_seq > after) {
            enc_result(reply, 0, s->last_seq);
        } else if (s->nwait == MAX_WAITERS) {
            enc_result(reply, -EBUSY, 0);
        } else {
            if (s->waiters == NULL)
                s->waiters = xmalloc(MAX_WAITERS * sizeof *s->waiters);
            s->waiters[s->nwait].from = *from;
            s->waiters[s->nwait].after = after;
            s->nwait++;
            rc = CN_GS_NOREPLY;
        }
    } else {
        goto bad;
    }
out:
    maybe_flush(s);
    return rc;
bad:
    enc_result(reply, -EINVAL, 0);
    rc = CN_GS_CONTINUE;
    goto out;
}

static int srv_cast(void *state, cn_term_t req)
{
    srv_t *s = state;
    int i = req.index, arity;
    size_t n;
    if (ei_decode_tuple_header(req.buf, &i, &arity) == 0 && arity == 2 &&
        cn_decode_atom_is(req.buf, &i, "append_batch")) {
        if (stage_list(s, req.buf, &i, &n) < 0)
            s->dropped++;
    } else {
        s->dropped++;
    }
    maybe_flush(s);
    return CN_GS_CONTINUE;
}

static int srv_info(void *state, cn_term_t msg)
{
    srv_t *s = state;
    int i = msg.index;
    if (cn_decode_atom_is(msg.buf, &i, "$events_flush")) {
        s->timer_armed = false;
        if (cn_mbox_len() == 0 || s->nev >= s->max_batch)
            flush(s);
    }
    maybe_flush(s);
    return CN_GS_CONTINUE;
}

static void srv_terminate(void *state, cn_term_t reason)
{
    srv_t *s = state;
    (void)reason;
    if (s == NULL)
        return;
    /* On a stop we run in the server process and may block: commit what was
     * staged so its callers get their answer. Killed, we cannot (no process to
     * park); those callers see the server go down, and nothing was acknowledged. */
    if (!cn_pid_is_nil(cn_self())) {
        flush(s);
        cn_blocking(do_close, s->store);
    } else {
        ev_store_close(s->store);
    }
    buf_free(&s->staged);
    free(s->off);
    free(s->len);
    free(s->pend);
    free(s->slices);
    free(s->seq_of);
    free(s->waiters);
    free(s);
}

static const cn_gen_server_t events_cb = {
    .init = srv_init,
    .handle_call = srv_call,
    .handle_cast = srv_cast,
    .handle_info = srv_info,
    .terminate = srv_terminate,
};

int events_server_start(cn_node_t *node, const events_server_opts_t *opts, cn_pid_t *out,
                        char *err, size_t errlen)
{
    start_arg_t *a = xcalloc(1, sizeof *a);
    cn_gen_server_opts_t go = { 0 };
    int rc;

    a->refs = 2;
    a->url = opts && opts->url ? xstrdup(opts->url) : NULL;
    a->max_batch = opts ? opts->max_batch : 0;
    a->inline_max_us = opts ? opts->inline_max_us : 0;
    go.name = opts && opts->name ? opts->name : "events";
    go.link = opts ? opts->link : false;
    go.trap_exit = true;
    go.timeout_ms = 120000; /* recovery scans the last segment */
    go.spawn.flags = CN_SPAWN_OWN_STACK;
    rc = cn_gen_server_start(node, &events_cb, a, &go, out);
    if (rc < 0 && err)
        snprintf(err, errlen, "%s", a->err[0] ? a->err : cn_strerror(rc));
    if (rc == 0 && opts && opts->io_note && opts->io_note_len)
        snprintf(opts->io_note, opts->io_note_len, "%s", a->io_note);
    if (!a->init_done)
        a->refs--; /* init never ran or will not finish: drop its reference too */
    start_arg_unref(a);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Client calls
 * ------------------------------------------------------------------------------ */

/* The Reason of {error, Reason} at *i as an errno. Out of line: its atom buffer
 * (1 KB, the longest atom) stays out of call_n's frame, which is on the stack
 * while the caller waits for the reply and is copied with a process on a
 * shared stack at every switch. */
static __attribute__((noinline)) int decode_err(const char *buf, int *i)
{
    char atom[MAXATOMLEN_UTF8];
    return ei_decode_atom(buf, i, atom) == 0 ? atom_err(atom) : -EPROTO;
}

/* Call and decode {ok, N} / {error, Atom}. */
static int call_n(cn_dest_t dest, ei_x_buff *req, int64_t timeout_ms, uint64_t *n)
{
    cn_msg_t *msg = NULL;
    cn_term_t t;
    int rc, i, arity;

    if ((rc = cn_gen_call(dest, req, timeout_ms, &msg, &t)) < 0)
        goto out;
    i = t.index;
    rc = -EPROTO;
    if (ei_decode_tuple_header(t.buf, &i, &arity) < 0 || arity != 2)
        goto out;
    if (cn_decode_atom_is(t.buf, &i, "ok")) {
        unsigned long long v;
        if (ei_decode_ulonglong(t.buf, &i, &v) == 0) {
            if (n)
                *n = v;
            rc = 0;
        }
    } else if (cn_decode_atom_is(t.buf, &i, "error")) {
        rc = decode_err(t.buf, &i);
    }
out:
    cn_msg_free(msg);
    return rc;
}

int events_append(cn_dest_t dest, const uint8_t *ev, size_t len, int64_t timeout_ms,
                  uint64_t *seq)
{
    ei_x_buff x;
    /* {append, Event}: 16 bytes of headers around the event; sized at once,
     * with room for the call's envelope, which cn_gen_call then writes in
     * front of it in this buffer (~110 bytes with node names of 20-odd
     * characters; 160 leaves room, and without it a new buffer is made). */
    if (cn_x_new_size(&x, len + 16 + 160) < 0)
        return -ENOMEM;
    if (ei_x_encode_tuple_header(&x, 2) < 0 ||
        cn_x_encode_atom(&x, "append") < 0 || ei_x_encode_binary(&x, ev, (long)len) < 0) {
        ei_x_free(&x);
        return -ENOMEM;
    }
    return call_n(dest, &x, timeout_ms, seq);
}

int events_append_event(cn_dest_t dest, const ev_event_t *ev, int64_t timeout_ms,
                        uint64_t *seq)
{
    bson_t b;
    int rc;
    ev_event_encode(ev, &b);
    rc = events_append(dest, bson_get_data(&b), b.len, timeout_ms, seq);
    bson_destroy(&b);
    return rc;
}

int events_cast_batch(cn_dest_t dest, const ev_slice_t *evs, size_t n)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    /* The size is known: one allocation, not one per event (5 bytes of binary
     * header each, the tuple, atom and list headers well within 64). */
    size_t bytes = 64;
    for (size_t i = 0; i < n; i++)
        bytes += 5 + evs[i].len;
    if (cn_x_reserve(&x, bytes) < 0) {
        ei_x_free(&x);
        return -ENOMEM;
    }
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "append_batch");
    ei_x_encode_list_header(&x, (long)n);
    for (size_t i = 0; i < n; i++)
        ei_x_encode_binary(&x, evs[i].data, (long)evs[i].len);
    if (ei_x_encode_empty_list(&x) < 0) {
        ei_x_free(&x);
        return -ENOMEM;
    }
    return cn_gen_cast(dest, &x);
}

int events_wait(cn_dest_t dest, uint64_t after, int64_t timeout_ms, uint64_t *last)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "wait");
    if (ei_x_encode_ulonglong(&x, after) < 0) {
        ei_x_free(&x);
        return -ENOMEM;
    }
    return call_n(dest, &x, timeout_ms, last);
}

int events_last_seq(cn_dest_t dest, int64_t timeout_ms, uint64_t *last)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    if (ei_x_encode_atom(&x, "last_seq") < 0) {
        ei_x_free(&x);
        return -ENOMEM;
    }
    return call_n(dest, &x, timeout_ms, last);
}
