/* store.h - the event store interface: one table of functions per backend.
 *
 * A backend (store_file.c, store_mongo.c, store_pg.c) fills an ev_store_ops_t and
 * embeds ev_store_t as the first member of its own struct. ev_store_open() picks the
 * backend from the URL's scheme; the wrappers below check arguments and dispatch.
 * There is no update and no delete: the interface has none.
 *
 * Threading: every call blocks (file I/O, fsync, network). A store handle is used
 * by one thread at a time; from a libcnode process, call through cn_blocking()
 * (events_server.c does). Different handles on the same log may be used from
 * different threads and processes: one writer (EV_OPEN_WRITE) per file log
 * (enforced with a lock file), any number of readers.
 *
 * Records returned by reads were CRC- or driver-checked and parsed: a torn or
 * corrupt record is never returned. Reads stop at the first bad record with
 * -EBADMSG and a message naming its position (ev_store_errmsg); `verify` reads on
 * past it and reports everything it finds.
 */
#ifndef ONEBLOG_EVENTS_STORE_H
#define ONEBLOG_EVENTS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events/event.h"
#include "events/url.h"

#define EV_ERR_LEN 512

typedef struct ev_store ev_store_t;

enum {
    EV_OPEN_READ = 0,  /* readers: never change the store */
    EV_OPEN_WRITE = 1, /* the writer: recovers (file: truncates a torn tail), appends */
};

/* Durability policy of appends (EVENTS_URL fsync=...). */
typedef enum ev_sync {
    EV_SYNC_ALWAYS = 0,   /* each append call is durable when it returns (default) */
    EV_SYNC_INTERVAL = 1, /* the same per call, and the events server groups calls so
                             that it syncs at most every interval_ms (group commit) */
    EV_SYNC_NONE = 2,     /* written to the OS only: survives a crash of the process,
                             not of the machine; synced on close and segment roll */
} ev_sync_t;

typedef struct ev_slice {
    const uint8_t *data;
    size_t len;
} ev_slice_t;

/* Records read from a store: copies, owned by the list. */
typedef struct ev_list {
    size_t n, cap;
    struct { size_t off, len; } *items; /* private */
    uint8_t *bytes;                      /* private */
    size_t used, size;                   /* private */
} ev_list_t;

#define EV_LIST_INIT { 0, 0, NULL, NULL, 0, 0 }

void ev_list_push(ev_list_t *l, const uint8_t *rec, size_t len); /* copies rec */
/* The i-th record's bytes, valid until the list is cleared or freed. */
ev_slice_t ev_list_get(const ev_list_t *l, size_t i);
void ev_list_clear(ev_list_t *l);
void ev_list_free(ev_list_t *l);

/* A query: every condition set must hold. Results come in seq order. */
typedef struct ev_query {
    uint64_t from_seq;    /* first seq to consider; 0 or 1 = the beginning */
    int64_t from_ts_ms;   /* ts >= from_ts_ms; 0 = unbounded */
    int64_t to_ts_ms;     /* ts < to_ts_ms; 0 = unbounded */
    const char *type;     /* NULL = any */
    const char *actor;
    const char *trace_id;
    const char *id;       /* the event's id (ULID) */
    size_t limit;         /* at most this many results; 0 = 1000 */
} ev_query_t;

/* Whether a parsed record satisfies q (all backends filter through this). */
bool ev_query_match(const ev_query_t *q, const ev_record_t *r);

/* What verify reports, once per problem found. `seq` is the record concerned (0
 * when unknown), `where` a backend-specific position ("00000000000000000001.log
 * offset 4096"), `what` the problem. */
typedef void (*ev_verify_cb)(void *arg, uint64_t seq, const char *where, const char *what);

typedef struct ev_verify_stats {
    uint64_t records;     /* records that passed every check */
    uint64_t problems;    /* reports made */
    uint64_t last_seq;    /* highest seq seen */
    uint64_t bytes;       /* bytes of records read */
    uint64_t torn_tail_bytes; /* file: an incomplete last append (not damage: never
                                 acknowledged; the writer truncates it on open) */
} ev_verify_stats_t;

typedef struct ev_store_ops {
    const char *scheme;
    int (*open)(const ev_url_t *url, int mode, ev_store_t **out, char *err, size_t errlen);
    void (*close)(ev_store_t *s);
    int (*append)(ev_store_t *s, const ev_slice_t *events, size_t n, uint64_t *first_seq);
    int (*last_seq)(ev_store_t *s, uint64_t *out);
    int (*read)(ev_store_t *s, uint64_t from_seq, size_t max, ev_list_t *out);
    int (*query)(ev_store_t *s, const ev_query_t *q, ev_list_t *out);
    int (*wait)(ev_store_t *s, uint64_t after_seq, int timeout_ms);
    int (*verify)(ev_store_t *s, ev_verify_cb cb, void *arg, ev_verify_stats_t *st);
} ev_store_ops_t;

/* The part of every store the wrappers use. */
struct ev_store {
    const ev_store_ops_t *ops;
    ev_sync_t sync;
    int sync_interval_ms;  /* EV_SYNC_INTERVAL: the group-commit window */
    int mode;              /* EV_OPEN_READ / EV_OPEN_WRITE */
    uint64_t sync_ns;      /* the last append's fdatasync (ns; file store); 0 = none */
    char io_note[160];     /* writer: how appends reach the disk, for the start-up log
                              (file: "direct (...)" or "buffered (why)"); "" = no note */
    char err[EV_ERR_LEN];  /* the last error's text */
};

extern const ev_store_ops_t ev_store_file_ops;
extern const ev_store_ops_t ev_store_mongo_ops;
extern const ev_store_ops_t ev_store_pg_ops;

/* Open the store named by `url` (EVENTS_URL syntax, see url.h; NULL = getenv
 * EVENTS_URL, then EV_URL_DEFAULT). Returns 0 and *out, or a negative errno with
 * the reason in err: -EINVAL bad URL, -EBUSY another writer holds the file log,
 * -EBADMSG the log is corrupt where recovery may not truncate, -ECONNREFUSED /
 * -EHOSTUNREACH the server is unreachable, -EIO. */
int ev_store_open(const char *url, int mode, ev_store_t **out, char *err, size_t errlen);

/* ev_store_open() and ev_store_last_seq() in one: what a server needs to start
 * (blocking: call it on the pool). On a failure the store is closed, *out is NULL
 * and err holds the reason. Returns as ev_store_open() or ev_store_last_seq(). */
int ev_store_open_at_end(const char *url, int mode, ev_store_t **out, uint64_t *last,
                         char *err, size_t errlen);

/* Close and free. With EV_SYNC_NONE, syncs first. NULL allowed. */
void ev_store_close(ev_store_t *s);

/* Append n events (each must pass ev_event_validate: checked here) as records with
 * consecutive seqs; *first_seq gets the first one. When it returns 0 they are
 * durable as the store's sync policy says, and all of them are there; on an error
 * none of them is acknowledged (some may still appear later: a failed fsync leaves
 * the OS's state unknown, so the file store refuses further appends until it is
 * reopened and has re-read the log). Returns 0, -EINVAL (a bad event, -EPERM on a
 * read-only handle), -ENOSPC, -EIO, -ECONNREFUSED... */
int ev_store_append(ev_store_t *s, const ev_slice_t *events, size_t n, uint64_t *first_seq);

/* The highest seq in the store (0 when empty), refreshed from the medium. */
int ev_store_last_seq(ev_store_t *s, uint64_t *out);

/* Up to max records with seq >= from_seq, in order, appended to out. Returns 0
 * (fewer than max: the end was reached), -EBADMSG at a corrupt record (records
 * before it are in out). Every record in out passed ev_record_parse during this
 * call (so ev_record_fields is enough for its fields). */
int ev_store_read(ev_store_t *s, uint64_t from_seq, size_t max, ev_list_t *out);

/* Records matching q, appended to out (at most q->limit). Returns as read. */
int ev_store_query(ev_store_t *s, const ev_query_t *q, ev_list_t *out);

/* Wait until the store holds a record with seq > after_seq, or timeout_ms passes
 * (file and MongoDB poll every poll_ms, default 50; PostgreSQL waits on NOTIFY).
 * Returns 0, -ETIMEDOUT, or an error. Inside a node, prefer events_wait() (the
 * writer notifies waiters directly). */
int ev_store_wait(ev_store_t *s, uint64_t after_seq, int timeout_ms);

/* Check the whole store: per-record checksums (file), record structure, gapless
 * seqs, the hash chain. Calls cb (may be NULL) for each problem. Returns 0 when intact,
 * -EBADMSG when something was reported, another error when it could not read. */
int ev_store_verify(ev_store_t *s, ev_verify_cb cb, void *arg, ev_verify_stats_t *st);

/* Text of the last error on s (empty when none). Borrowed until the next call. */
const char *ev_store_errmsg(const ev_store_t *s);

/* ---------------------------------------------------------------------------------
 * Helpers for backends
 * ------------------------------------------------------------------------------ */

/* ev_store_append for events the caller has already checked with
 * ev_event_validate (the events server validates on the pool thread, once). */
int ev__store_append_trusted(ev_store_t *s, const ev_slice_t *events, size_t n,
                             uint64_t *first_seq);

/* Format into s->err. */
void ev__store_err(ev_store_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse fsync=... into s->sync / s->sync_interval_ms. Returns 0 or -EINVAL. */
int ev__store_sync_opt(ev_store_t *s, const ev_url_t *url, char *err, size_t errlen);

/* Generic verify over ops->read for backends without checksums of their own:
 * parses every record and checks seqs and the chain, reporting through cb. */
int ev__verify_by_reading(ev_store_t *s, ev_verify_cb cb, void *arg, ev_verify_stats_t *st,
                          const char *(*where)(uint64_t seq, char *buf, size_t len));

#endif /* ONEBLOG_EVENTS_STORE_H */
