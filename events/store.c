/* store.c - the backend-independent half of the store interface: picking the
 * backend from the URL, argument checks, result lists, query matching, and a
 * verify that works on any backend through its read function. */
#include "events/store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

static const ev_store_ops_t *const backends[] = { &ev_store_file_ops, &ev_store_mongo_ops,
                                                  &ev_store_pg_ops, NULL };

/* ---------------------------------------------------------------------------------
 * Lists
 * ------------------------------------------------------------------------------ */

void ev_list_push(ev_list_t *l, const uint8_t *rec, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = xrealloc(l->items, l->cap * sizeof *l->items);
    }
    if (l->used + len > l->size) {
        while (l->used + len > l->size)
            l->size = l->size ? 2 * l->size : 64 * 1024;
        l->bytes = xrealloc(l->bytes, l->size);
    }
    memcpy(l->bytes + l->used, rec, len);
    l->items[l->n].off = l->used;
    l->items[l->n].len = len;
    l->n++;
    l->used += len;
}

ev_slice_t ev_list_get(const ev_list_t *l, size_t i)
{
    ev_slice_t s = { l->bytes + l->items[i].off, l->items[i].len };
    return s;
}

void ev_list_clear(ev_list_t *l)
{
    l->n = 0;
    l->used = 0;
}

void ev_list_free(ev_list_t *l)
{
    if (l == NULL)
        return;
    free(l->items);
    free(l->bytes);
    memset(l, 0, sizeof *l);
}

bool ev_query_match(const ev_query_t *q, const ev_record_t *r)
{
    if (q->from_seq > 1 && r->seq < q->from_seq)
        return false;
    if (q->from_ts_ms && r->ts_ms < q->from_ts_ms)
        return false;
    if (q->to_ts_ms && r->ts_ms >= q->to_ts_ms)
        return false;
    if (q->type && strcmp(q->type, r->type) != 0)
        return false;
    if (q->actor && (r->actor == NULL || strcmp(q->actor, r->actor) != 0))
        return false;
    if (q->trace_id && (r->trace_id == NULL || strcmp(q->trace_id, r->trace_id) != 0))
        return false;
    if (q->id && strcmp(q->id, r->id) != 0)
        return false;
    return true;
}

/* ---------------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------------ */

void ev__store_err(ev_store_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
}

int ev__store_sync_opt(ev_store_t *s, const ev_url_t *url, char *err, size_t errlen)
{
    const char *v = ev_url_opt(url, "fsync", "always");
    char *end;
    long ms;

    if (strcmp(v, "always") == 0) {
        s->sync = EV_SYNC_ALWAYS;
    } else if (strcmp(v, "none") == 0) {
        s->sync = EV_SYNC_NONE;
    } else {
        ms = strtol(v, &end, 10);
        if (end == v || strcmp(end, "ms") != 0 || ms < 1 || ms > 10000) {
            snprintf(err, errlen, "EVENTS_URL: fsync=%s: expected always, none or 1ms..10000ms",
                     v);
            return -EINVAL;
        }
        s->sync = EV_SYNC_INTERVAL;
        s->sync_interval_ms = (int)ms;
    }
    return 0;
}

int ev_store_open(const char *url, int mode, ev_store_t **out, char *err, size_t errlen)
{
    ev_url_t u;
    int rc;

    *out = NULL;
    if (url == NULL)
        url = getenv("EVENTS_URL");
    if (url == NULL || *url == '\0')
        url = EV_URL_DEFAULT;
    if ((rc = ev_url_parse(url, &u, err, errlen)) < 0)
        return rc;
    rc = -EINVAL;
    for (int i = 0; backends[i]; i++) {
        if (strcmp(backends[i]->scheme, u.scheme) == 0) {
            err[0] = '\0';
            rc = backends[i]->open(&u, mode, out, err, errlen);
            if (rc == 0) {
                (*out)->ops = backends[i];
                (*out)->mode = mode;
            }
            break;
        }
    }
    ev_url_free(&u);
    return rc;
}

void ev_store_close(ev_store_t *s)
{
    if (s)
        s->ops->close(s);
}

int ev_store_append(ev_store_t *s, const ev_slice_t *events, size_t n, uint64_t *first_seq)
{
    s->err[0] = '\0';
    if (s->mode != EV_OPEN_WRITE) {
        ev__store_err(s, "append on a read-only store handle");
        return -EPERM;
    }
    if (n == 0) {
        ev__store_err(s, "append of no events");
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (ev_event_validate(events[i].data, events[i].len) < 0) {
            ev__store_err(s, "event %zu of the batch is not a valid event document", i);
            return -EINVAL;
        }
    }
    return s->ops->append(s, events, n, first_seq);
}

int ev__store_append_trusted(ev_store_t *s, const ev_slice_t *events, size_t n,
                             uint64_t *first_seq)
{
    s->err[0] = '\0';
    if (s->mode != EV_OPEN_WRITE || n == 0) {
        ev__store_err(s, "append on a read-only store handle, or of no events");
        return s->mode != EV_OPEN_WRITE ? -EPERM : -EINVAL;
    }
    return s->ops->append(s, events, n, first_seq);
}

int ev_store_last_seq(ev_store_t *s, uint64_t *out)
{
    s->err[0] = '\0';
    return s->ops->last_seq(s, out);
}

int ev_store_open_at_end(const char *url, int mode, ev_store_t **out, uint64_t *last,
                         char *err, size_t errlen)
{
    int rc = ev_store_open(url, mode, out, err, errlen);
    if (rc == 0 && (rc = ev_store_last_seq(*out, last)) < 0) {
        snprintf(err, errlen, "%s", ev_store_errmsg(*out));
        ev_store_close(*out);
        *out = NULL;
    }
    return rc;
}

int ev_store_read(ev_store_t *s, uint64_t from_seq, size_t max, ev_list_t *out)
{
    s->err[0] = '\0';
    if (max == 0)
        return 0;
    return s->ops->read(s, from_seq ? from_seq : 1, max, out);
}

int ev_store_query(ev_store_t *s, const ev_query_t *q, ev_list_t *out)
{
    ev_query_t qq = *q;
    s->err[0] = '\0';
    if (qq.limit == 0)
        qq.limit = 1000;
    if (qq.from_seq == 0)
        qq.from_seq = 1;
    return s->ops->query(s, &qq, out);
}

int ev_store_wait(ev_store_t *s, uint64_t after_seq, int timeout_ms)
{
    s->err[0] = '\0';
    return s->ops->wait(s, after_seq, timeout_ms);
}

static void ignore_report(void *arg, uint64_t seq, const char *where, const char *what)
{
    (void)arg;
    (void)seq;
    (void)where;
    (void)what;
}

int ev_store_verify(ev_store_t *s, ev_verify_cb cb, void *arg, ev_verify_stats_t *st)
{
    s->err[0] = '\0';
    if (cb == NULL)
        cb = ignore_report;
    memset(st, 0, sizeof *st);
    return s->ops->verify(s, cb, arg, st);
}

const char *ev_store_errmsg(const ev_store_t *s)
{
    return s->err;
}

/* ---------------------------------------------------------------------------------
 * Verify through read
 * ------------------------------------------------------------------------------ */

int ev__verify_by_reading(ev_store_t *s, ev_verify_cb cb, void *arg, ev_verify_stats_t *st,
                          const char *(*where)(uint64_t seq, char *buf, size_t len))
{
    ev_list_t l = EV_LIST_INIT;
    ev_chain_t chain;
    uint64_t from = 1;
    char wbuf[128], what[256];
    int rc = 0;

    ev_chain_init(&chain);
    for (;;) {
        ev_list_clear(&l);
        rc = s->ops->read(s, from, 1024, &l);
        if (rc == -EBADMSG) {
            /* The backend named the bad record in s->err; the records before it
             * are in l and get checked below, then we stop. */
            st->problems++;
            cb(arg, from, where(from, wbuf, sizeof wbuf), s->err);
        } else if (rc < 0) {
            goto out;
        }
        for (size_t i = 0; i < l.n; i++) {
            ev_slice_t sl = ev_list_get(&l, i);
            ev_record_t r;
            int crc;
            st->bytes += sl.len;
            if (ev_record_parse(sl.data, sl.len, &r) < 0) {
                st->problems++;
                cb(arg, from + i, where(from + i, wbuf, sizeof wbuf), "not a valid record");
                continue;
            }
            uint64_t expect = chain.next_seq;
            crc = ev_chain_next(&chain, &r);
            if (crc == -ERANGE) {
                snprintf(what, sizeof what, "seq %llu where %llu was expected (%s)",
                         (unsigned long long)r.seq, (unsigned long long)expect,
                         r.seq < expect ? "duplicate or out of order" : "records missing");
                st->problems++;
                cb(arg, r.seq, where(r.seq, wbuf, sizeof wbuf), what);
            } else if (crc == -EBADMSG) {
                st->problems++;
                cb(arg, r.seq, where(r.seq, wbuf, sizeof wbuf),
                   "hash chain broken: prev is not the hash of the record before "
                   "(a record was edited or removed)");
            } else {
                st->records++;
            }
            if (r.seq > st->last_seq)
                st->last_seq = r.seq;
        }
        if (rc == -EBADMSG || l.n == 0)
            break;
        ev_slice_t last = ev_list_get(&l, l.n - 1);
        ev_record_t lr;
        if (ev_record_parse(last.data, last.len, &lr) < 0 || lr.seq < from)
            break;
        from = lr.seq + 1;
    }
    rc = st->problems ? -EBADMSG : 0;
out:
    ev_list_free(&l);
    return rc;
}
