/* event.h - the event model: building events, the record format and the hash chain.
 *
 * An *event* is a BSON document made by a producer (the recs server, the HTTP edge):
 *
 *     { id: "01HV..." (ULID, monotonic per producer), ts: Date (ms, UTC),
 *       type: "recs.request" | "page.view" | "recs.click" | ...,
 *       trace_id: 32 hex, span_id: 16 hex, actor: reader id, node, app_version,
 *       model: { name, version, params: {...} },                  (recs.* only)
 *       input: { history: [post], context_post, candidates: [post]
 *                or candidates_digest: sha256 hex, candidates_n },  (recs.request)
 *       output: [ { post, score } ... ], latency_us,               (recs.request)
 *       data: { ... } }                                            (anything else)
 *
 * A *record* is what a store keeps: the event's bytes with two fields put in front,
 *
 *     { seq: Int64 (1, 2, 3 ... gapless, assigned by the store),
 *       prev: BinData(0, 32 bytes) = SHA-256 of the previous record's bytes
 *             (32 zero bytes for seq 1),
 *       ...the event's fields, byte for byte... }
 *
 * so the records form a hash chain: editing or removing a record breaks the `prev`
 * of the next one (ev_chain_check). The record's bytes are canonical: every backend
 * stores them verbatim (the file log as is, MongoDB and PostgreSQL in a binary
 * column beside the queryable fields), and hashes are taken over exactly them.
 *
 * JSON export is libbson's canonical extended JSON of the record (one line each).
 *
 * Memory: this module allocates through common/buf.h (aborts on exhaustion, as
 * libbson itself does); functions return 0 or a negative errno for bad input.
 */
#ifndef ONEBLOG_EVENTS_EVENT_H
#define ONEBLOG_EVENTS_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#define EV_HASH_LEN 32      /* SHA-256 */
#define EV_ID_LEN 26        /* ULID text, without the NUL */
#define EV_MAX_RECORD (1u << 20) /* largest record a store accepts (bytes) */
/* Candidate sets larger than this are logged as a digest (sha256 of the ids, each
 * followed by '\n', in the given order) and a count instead of inline. */
#define EV_MAX_INLINE_CANDIDATES 64

/* ---------------------------------------------------------------------------------
 * Building events
 * ------------------------------------------------------------------------------ */

typedef struct ev_event ev_event_t;

/* A new event of `type` (1..64 bytes of [a-z0-9._-]) with a fresh id and ts = now.
 * Returns 0 and *out (free with ev_event_free), or -EINVAL for a bad type. */
int ev_event_new(const char *type, ev_event_t **out);
void ev_event_free(ev_event_t *ev); /* NULL is allowed */

/* Setters copy their strings. -EINVAL for NULL or malformed values (trace_id must
 * be 32 lowercase hex digits and span_id 16, as in W3C traceparent). */
int ev_event_set_ts_ms(ev_event_t *ev, int64_t unix_ms);
int ev_event_set_trace(ev_event_t *ev, const char *trace_id, const char *span_id);
int ev_event_set_actor(ev_event_t *ev, const char *reader_id);
int ev_event_set_node(ev_event_t *ev, const char *node);
int ev_event_set_app_version(ev_event_t *ev, const char *version);

/* Recommendation fields. `params` is copied (NULL: empty document). */
int ev_event_set_model(ev_event_t *ev, const char *name, const char *version,
                       const bson_t *params);
/* The model's input: the reader's history (newest first), the post being read
 * (NULL: none) and the candidate set, inline up to EV_MAX_INLINE_CANDIDATES ids and
 * as a digest above that. */
int ev_event_set_input(ev_event_t *ev, const char *const *history, size_t nhistory,
                       const char *context_post, const char *const *candidates,
                       size_t ncandidates);
/* As ev_event_set_input for a candidate set above EV_MAX_INLINE_CANDIDATES whose
 * digest the caller already has (64 lowercase hex: SHA-256 of each id followed by
 * '\n', as ev_event_set_input computes it), so a request does not hash thousands
 * of ids. -EINVAL if ncandidates is not above the inline limit or the digest is
 * not 64 hex digits. */
int ev_event_set_input_digest(ev_event_t *ev, const char *const *history, size_t nhistory,
                              const char *context_post, const char *candidates_digest,
                              size_t ncandidates);
/* Append one ranked result (call in rank order). */
int ev_event_add_output(ev_event_t *ev, const char *post, double score);
int ev_event_set_latency_us(ev_event_t *ev, int64_t latency_us);

/* Free-form payload for other event types: a document the event owns; fill it with
 * bson_append_*(). Borrowed until ev_event_free. */
bson_t *ev_event_data(ev_event_t *ev);

/* The event's id (ULID text, NUL-terminated). Borrowed. */
const char *ev_event_id(const ev_event_t *ev);

/* Encode the event as a BSON document into *out (initialised here; the caller
 * destroys it with bson_destroy). Fields come in a fixed order. Returns 0. */
int ev_event_encode(const ev_event_t *ev, bson_t *out);

/* Check that `buf` is an event a store may accept: valid BSON of at most
 * EV_MAX_RECORD - 64 bytes, string `id` and `type`, Date `ts`, no `seq` or `prev`
 * (those belong to the store). Returns 0 or -EINVAL. */
int ev_event_validate(const uint8_t *buf, size_t len);

/* Write a fresh ULID into out[EV_ID_LEN + 1]: 48 bits of ms time then 80 bits that
 * start random and increase within a millisecond, so ids from one process sort in
 * creation order. Thread-safe. */
void ev_ulid(char out[EV_ID_LEN + 1]);

/* ---------------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------------ */

/* A record's fields of interest, pointing into the record's bytes (borrowed). */
typedef struct ev_record {
    const uint8_t *data;   /* the record's BSON bytes */
    size_t len;
    uint64_t seq;
    const uint8_t *prev;   /* EV_HASH_LEN bytes */
    int64_t ts_ms;
    const char *id;        /* NUL-terminated inside data */
    const char *type;
    const char *actor;     /* NULL when absent */
    const char *trace_id;  /* NULL when absent */
} ev_record_t;

/* Build a record from an event: {seq, prev, ...event fields}. `event` must have
 * passed ev_event_validate. Appends the record's bytes to *out (a buf_t; see
 * common/buf.h) and returns their length. */
struct buf;
size_t ev_record_build(const uint8_t *event, size_t len, uint64_t seq,
                       const uint8_t prev[EV_HASH_LEN], struct buf *out);

/* Parse and validate a record's bytes (well-formed BSON, seq first and > 0, prev
 * second and 32 bytes, string id and type, Date ts). Returns 0 and fills *out, or
 * -EBADMSG. Never reads outside [buf, buf + len). */
int ev_record_parse(const uint8_t *buf, size_t len, ev_record_t *out);

/* The fields of a record that passed ev_record_parse before (every record
 * ev_store_read returns did; a frame whose checksum still matches the bytes a
 * reader once parsed): as ev_record_parse, but without checking every key and
 * string in the record (UTF-8, no NUL inside, nested documents), which is most
 * of a parse's cost. Bad UTF-8 is not caught; structure is (-EBADMSG as above).
 * Never reads outside [buf, buf + len). */
int ev_record_fields(const uint8_t *buf, size_t len, ev_record_t *out);

/* SHA-256 of a record's bytes: the `prev` of the record that follows it. */
void ev_record_hash(const uint8_t *buf, size_t len, uint8_t out[EV_HASH_LEN]);

/* Canonical extended JSON of a record, NUL-terminated, caller frees with
 * bson_free(). Returns NULL for invalid BSON. */
char *ev_record_to_json(const uint8_t *buf, size_t len);

/* Lowercase hex of a hash into out[2 * EV_HASH_LEN + 1]. */
void ev_hash_hex(const uint8_t h[EV_HASH_LEN], char *out);

/* ---------------------------------------------------------------------------------
 * The hash chain
 * ------------------------------------------------------------------------------ */

/* Running check of consecutive records, as verify and readers use it. */
typedef struct ev_chain {
    uint64_t next_seq;           /* seq the next record must carry; 0 = any */
    uint8_t hash[EV_HASH_LEN];   /* hash of the last record seen */
    bool have_hash;              /* false until a record was seen (or seeded) */
} ev_chain_t;

/* Start a chain check at the beginning of the log (seq 1, prev all zeroes). */
void ev_chain_init(ev_chain_t *c);

/* Feed the next record. Returns 0, -ERANGE if its seq is not the expected one (a
 * gap or a duplicate), -EBADMSG if its prev is not the hash of the record before.
 * The chain advances to this record either way, so one bad record is reported
 * once and the check carries on after it. */
int ev_chain_next(ev_chain_t *c, const ev_record_t *r);

#endif /* ONEBLOG_EVENTS_EVENT_H */
