/* recs_proto.h - the `recs` gen_server's contract: typed request and reply structs
 * and their Erlang-term codecs (libei), in the style of proto/proto.h.
 *
 *   {recommend, #{reader => Bin, post => Slug | nil, k => N, trace => Bin}}
 *       reader  required, 1..RECS_READER_MAX bytes of UTF-8 (the first-party id)
 *       post    optional: the post being read (its slug) or nil
 *       k       optional: 1..RECS_K_MAX items, default RECS_K_DEFAULT
 *       trace   optional: a W3C trace id (32 lowercase hex) or a whole
 *               traceparent ("00-<trace id>-<span id>-<flags>")
 *   -> {ok, #{model => <<"recs@2">>, event => <<ULID>>,
 *             items => [#{id => Int, slug => Bin, title => Bin, score => Float}]}}
 *    | {error, bad_request | unavailable | event_log}
 *
 *   info -> {ok, #{posts => N, digest => Bin, content_version => N,
 *                  views_seq => N, rebuilds => N, requests => N}}
 *
 * `event` is the id of the recs.request event that logged the answer: the page
 * carries it into its page.view and recs.click events (data.recs_event), which
 * is how ab-report joins clicks to variants. {error, event_log}: the event could
 * not be made durable, so no recommendation is given (nothing unlogged leaves).
 * Unknown map keys are a bad_request, so typos show.
 */
#ifndef ONEBLOG_RECS_PROTO_H
#define ONEBLOG_RECS_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#include <ei.h>

#include "proto/proto.h"
#include "recs/model.h"

#define RECS_READER_MAX 128 /* bytes */
#define RECS_TRACE_MAX 64   /* bytes of the trace argument */
#define RECS_K_DEFAULT 5
#define RECS_EVENT_ID_MAX 26

typedef struct recs_req {
    char reader[RECS_READER_MAX + 1];
    char post[PROTO_SLUG_MAX + 1]; /* "" = nil */
    int k;                         /* 1..RECS_K_MAX */
    char trace[RECS_TRACE_MAX + 1]; /* "" = none */
} recs_req_t;

typedef struct recs_reply_item {
    int64_t id;
    char *slug, *title;
    double score;
} recs_reply_item_t;

typedef struct recs_reply {
    char model[16];                      /* "recs@2" */
    char event[RECS_EVENT_ID_MAX + 1];
    recs_reply_item_t *items;
    int n;
} recs_reply_t;

/* Append {recommend, #{...}} for r (post and trace only when set). 0 or -ENOMEM. */
int recs_req_encode(ei_x_buff *x, const recs_req_t *r);

/* Decode a recommend request into *out (zeroed first; k defaults). Returns 0 or
 * -EINVAL for anything malformed (see the top of this file). */
int recs_req_decode(const char *buf, int *index, recs_req_t *out);

/* Append {ok, #{model, event, items}}. 0 or -ENOMEM. */
int recs_reply_encode(ei_x_buff *x, const recs_reply_t *r);

/* Decode a reply: PROTO_OK and *out filled (free with recs_reply_clear), or
 * PROTO_ERROR with the reason atom in reason, or -EINVAL. */
int recs_reply_decode(const char *buf, int *index, recs_reply_t *out, char *reason,
                      int reasonlen);
void recs_reply_clear(recs_reply_t *r);

/* The 32-hex trace id in `trace` (bare or inside a traceparent) into out[33]
 * and the span id (traceparent only, else "") into span[17]. False if none. */
bool recs_trace_parse(const char *trace, char out[33], char span[17]);

#endif /* ONEBLOG_RECS_PROTO_H */
