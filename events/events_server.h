/* events_server.h - the `events` gen_server: the one writer of a node's event store,
 * with group commit, and the calls other processes use to append and follow.
 *
 * Protocol (Erlang terms, so other nodes and erl can use it too):
 *
 *   call {append, EventBin}          -> {ok, Seq} | {error, Reason}
 *   call {append_batch, [EventBin]}  -> {ok, FirstSeq} | {error, Reason}
 *   cast {append_batch, [EventBin]}     from other nodes (file backend: one owner
 *                                       node); invalid events are dropped, counted
 *   call {wait, AfterSeq}            -> {ok, LastSeq} once LastSeq > AfterSeq
 *   call last_seq                    -> {ok, LastSeq}
 *   call stats                       -> {ok, #{appended, batches, errors, dropped,
 *                                             inline}}   (inline: appends that ran
 *                                             on the scheduler's thread, see below)
 *
 * EventBin is an event's BSON (ev_event_encode). {ok, Seq} means the event is
 * durable as the store's fsync policy says: the reply is sent after the batch it
 * was part of was written (and synced). Reason is an atom: einval (not a valid
 * event), enospc, eio, econnrefused... (the store's error; the batch is not
 * acknowledged, see ev_store_append).
 *
 * Group commit: while the store works on a batch (on the blocking pool), calls
 * pile up in the mailbox; they form the next batch, written when the mailbox is
 * empty (fsync=always) or when the N ms window since the last sync has passed
 * (fsync=Nms), or when max_batch events are waiting.
 * The window applies only under load (the previous batch had more than one
 * caller, or calls arrived while it was written): a lone caller is committed at
 * once, so an idle node answers after one write + fdatasync.
 *
 * Where an append runs: on the node's blocking pool, except a lone caller's on
 * the file log when nothing else on the node is waiting to run and appends have
 * been quick (inline_max_us): then on the scheduler's own thread, which saves
 * waking a pool thread and then the scheduler (tens of us on a VM). The node
 * does nothing else meanwhile, so a slow disk sends appends back to the pool.
 */
#ifndef ONEBLOG_EVENTS_SERVER_H
#define ONEBLOG_EVENTS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "events/event.h"
#include "events/store.h"

typedef struct events_server_opts {
    const char *url;     /* EVENTS_URL syntax; NULL = getenv("EVENTS_URL") or the default */
    const char *name;    /* registered name; NULL = "events" */
    size_t max_batch;    /* events per store append; 0 = 4096 */
    bool link;           /* link to the caller (start under a supervisor) */
    char *io_note;       /* out, optional: on success, how the store writes (its
                            io_note: the file log's direct or buffered appends), for
                            the start-up log; "" when it has nothing to say */
    size_t io_note_len;  /* bytes at io_note */
    /* A lone caller's append to the file log, on an otherwise idle node, runs on
     * the scheduler's thread (cn_blocking_short) while appends take at most this
     * on average (us; a moving average of weight 1/8, so a disk that turns slow
     * sends appends to the pool after a few). 0 = 1000 (1 ms), < 0 = always on
     * the pool. */
    int inline_max_us;
} events_server_opts_t;

/* Start the server: opens the store for writing (on the pool; recovery may take a
 * moment) and registers it. From a process. Returns 0 and *out (and opts->io_note
 * when given), the store's open error (-EBUSY, -EBADMSG, -ECONNREFUSED... as
 * ev_store_open), -EEXIST. The open error's text goes to err (may be NULL). `opts`
 * is copied. */
int events_server_start(cn_node_t *node, const events_server_opts_t *opts, cn_pid_t *out,
                        char *err, size_t errlen);

/* Append one event (BSON bytes) through the server at `dest` and wait for it to be
 * durable. Returns 0 and *seq, -EINVAL (not a valid event), the store's error
 * (-ENOSPC, -EIO, ...), or a call error (-ESRCH no server, -ETIMEDOUT...). */
int events_append(cn_dest_t dest, const uint8_t *ev, size_t len, int64_t timeout_ms,
                  uint64_t *seq);

/* As events_append, encoding `ev` first. */
int events_append_event(cn_dest_t dest, const ev_event_t *ev, int64_t timeout_ms,
                        uint64_t *seq);

/* Cast a batch to the server (other nodes feeding the owner node). No reply, no
 * acknowledgement. Returns as cn_gen_cast. */
int events_cast_batch(cn_dest_t dest, const ev_slice_t *evs, size_t n);

/* Wait until the log holds a record with seq > after (the server wakes waiters
 * when it commits; nothing polls). Returns 0 and *last, -ETIMEDOUT, or a call
 * error. */
int events_wait(cn_dest_t dest, uint64_t after, int64_t timeout_ms, uint64_t *last);

/* The server's last committed seq. */
int events_last_seq(cn_dest_t dest, int64_t timeout_ms, uint64_t *last);

#endif /* ONEBLOG_EVENTS_SERVER_H */
