/* request_event.h - the recs.request event a recommendation logs, encoded as BSON
 * bytes in one pass (see request_event.c for why not with libbson's appends).
 *
 * The document is the one ev_event_encode (events/event.h) lays out for an event
 * with these fields, byte for byte: id, ts, type "recs.request", trace_id and
 * span_id (when traced), actor, node, model {name, version, params}, input
 * {history, context_post, candidates or candidates_digest, candidates_n}, output
 * [{post, score}], latency_us, data {...}. One difference: with no item the
 * output is an empty array (ev_event_encode leaves it out), as the server has
 * logged it since it encodes in place.
 */
#ifndef ONEBLOG_RECS_REQUEST_EVENT_H
#define ONEBLOG_RECS_REQUEST_EVENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct recs_request_event {
    const char *id;                 /* ULID text */
    int64_t ts_ms;                  /* ms since the epoch (a BSON Date) */
    const char *trace_id, *span_id; /* both or neither (NULL): 32 and 16 hex */
    const char *actor, *node;
    /* model */
    const char *model_name, *model_version;
    const char *const *param_names; /* nparams names, with their values */
    const double *params;
    int nparams;
    /* input */
    const char *const *history;
    int nhistory;
    const char *context_post;       /* NULL: none */
    const char *const *candidates;  /* inline when ncandidates <= EV_MAX_INLINE_CANDIDATES */
    const char *candidates_digest;  /* else this (64 hex) */
    int64_t ncandidates;
    /* output, in rank order */
    const char *const *out_posts;
    const double *out_scores;
    int nout;
    int64_t latency_us;
    /* data */
    const char *variant;
    int32_t k, bucket;
    double share;
    const char *server_vsn, *snapshot;
    int64_t content_version, views_from, views_to;
} recs_request_event_t;

/* Encode e into a new buffer: *out (free with free()) and *len, the document's
 * size. Strings must be NUL-free UTF-8 (the events server validates the event
 * again before it is written). Never fails (allocation aborts). */
void recs_request_event_encode(const recs_request_event_t *e, uint8_t **out, size_t *len);

#endif /* ONEBLOG_RECS_REQUEST_EVENT_H */
