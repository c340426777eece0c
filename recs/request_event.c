/* request_event.c - the recs.request event as BSON bytes, written in one pass.
 *
 * Why by hand and not with libbson's bson_append_*: the event is built on every
 * request, on the request's path, and its ~70 elements through libbson cost
 * about 500 instructions each (argument checks, a varargs copy loop, growth
 * checks, and for each sub-document a child bson_t to begin and end), 17-22 us of
 * a paced request with the caches cold. The layout is fixed and small, so the
 * writer below only knows the six element types the event uses; libbson stays
 * the judge of the result: the events server validates every event with it
 * before writing (ev_event_validate), and request_event_test compares these
 * bytes with ev_event_encode's for the same fields.
 *
 * BSON (bsonspec.org): a document is int32 total length, elements, 0x00; an
 * element is a type byte, the key as a C string, then the value: double (0x01)
 * 8 bytes little-endian IEEE 754; string (0x02) int32 length including the NUL,
 * the bytes, NUL; document (0x03) and array (0x04, keys "0", "1", ...) a nested
 * document; Date (0x09) and int64 (0x12) 8 bytes, int32 (0x10) 4 bytes, all
 * little-endian two's complement.
 */
#include "recs/request_event.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "events/event.h"

enum { T_DOUBLE = 0x01, T_STRING = 0x02, T_DOC = 0x03, T_ARRAY = 0x04, T_DATE = 0x09,
       T_INT32 = 0x10, T_INT64 = 0x12 };

/* The output is a buf_t whose room each element makes once (buf_reserve), then
 * its pieces are stored without further checks and without buf_t's trailing
 * NUL (the bytes are handed out with their length): through buf_append and
 * buf_putc (a capacity check, a copy and a NUL per piece, ~350 instructions an
 * element) the encoding was ~25,000 instructions a request. */

/* Store n bytes of v little-endian at w's end (room made by the caller). */
static inline void store_le(buf_t *w, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        w->data[w->len + (size_t)i] = (char)(v >> (8 * i));
    w->len += (size_t)n;
}

static inline void store(buf_t *w, const void *p, size_t n)
{
    memcpy(w->data + w->len, p, n);
    w->len += n;
}

/* An element's type and key, and room for a value of vlen bytes after them. */
static inline void put_key(buf_t *w, int type, const char *key, size_t vlen)
{
    size_t kl = strlen(key) + 1;
    buf_reserve(w, 1 + kl + vlen);
    w->data[w->len++] = (char)type;
    store(w, key, kl);
}

static void put_str(buf_t *w, const char *key, const char *s)
{
    size_t n = strlen(s) + 1;
    put_key(w, T_STRING, key, 4 + n);
    store_le(w, n, 4);
    store(w, s, n);
}

static void put_double(buf_t *w, const char *key, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(w, T_DOUBLE, key, 8);
    store_le(w, bits, 8);
}

static void put_int(buf_t *w, int type, const char *key, int64_t v)
{
    int n = type == T_INT32 ? 4 : 8;
    put_key(w, type, key, (size_t)n);
    store_le(w, (uint64_t)v, n);
}

/* Open a document (the top one when key is NULL): returns where its length goes. */
static size_t open_doc(buf_t *w, int type, const char *key)
{
    if (key)
        put_key(w, type, key, 4);
    else
        buf_reserve(w, 4);
    size_t at = w->len;
    store_le(w, 0, 4);
    return at;
}

static void close_doc(buf_t *w, size_t at)
{
    buf_reserve(w, 1);
    w->data[w->len++] = '\0';
    uint32_t n = (uint32_t)(w->len - at);
    for (int i = 0; i < 4; i++)
        w->data[at + (size_t)i] = (char)(n >> (8 * i));
}

/* An array's key for index i >= 0 ("0", "1", ...), at the end of kb. */
static const char *index_key(int i, char kb[12])
{
    char *p = kb + 11;
    *p = '\0';
    do {
        *--p = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    return p;
}

static void put_str_array(buf_t *w, const char *key, const char *const *v, int n)
{
    char kb[12];
    size_t at = open_doc(w, T_ARRAY, key);
    for (int i = 0; i < n; i++)
        put_str(w, index_key(i, kb), v[i]);
    close_doc(w, at);
}

void recs_request_event_encode(const recs_request_event_t *e, uint8_t **out, size_t *len)
{
    buf_t b = BUF_INIT;
    buf_reserve(&b, 2048);
    char kb[12];
    size_t top = open_doc(&b, 0, NULL);
    put_str(&b, "id", e->id);
    put_int(&b, T_DATE, "ts", e->ts_ms);
    put_str(&b, "type", "recs.request");
    if (e->trace_id) {
        put_str(&b, "trace_id", e->trace_id);
        put_str(&b, "span_id", e->span_id);
    }
    put_str(&b, "actor", e->actor);
    put_str(&b, "node", e->node);
    size_t model = open_doc(&b, T_DOC, "model");
    put_str(&b, "name", e->model_name);
    put_str(&b, "version", e->model_version);
    size_t params = open_doc(&b, T_DOC, "params");
    for (int i = 0; i < e->nparams; i++)
        put_double(&b, e->param_names[i], e->params[i]);
    close_doc(&b, params);
    close_doc(&b, model);
    size_t input = open_doc(&b, T_DOC, "input");
    put_str_array(&b, "history", e->history, e->nhistory);
    if (e->context_post)
        put_str(&b, "context_post", e->context_post);
    if (e->ncandidates <= EV_MAX_INLINE_CANDIDATES)
        put_str_array(&b, "candidates", e->candidates, (int)e->ncandidates);
    else
        put_str(&b, "candidates_digest", e->candidates_digest);
    put_int(&b, T_INT64, "candidates_n", e->ncandidates);
    close_doc(&b, input);
    size_t output = open_doc(&b, T_ARRAY, "output");
    for (int i = 0; i < e->nout; i++) {
        size_t item = open_doc(&b, T_DOC, index_key(i, kb));
        put_str(&b, "post", e->out_posts[i]);
        put_double(&b, "score", e->out_scores[i]);
        close_doc(&b, item);
    }
    close_doc(&b, output);
    put_int(&b, T_INT64, "latency_us", e->latency_us);
    size_t data = open_doc(&b, T_DOC, "data");
    put_str(&b, "variant", e->variant);
    put_int(&b, T_INT32, "k", e->k);
    put_int(&b, T_INT32, "bucket", e->bucket);
    put_double(&b, "share", e->share);
    put_str(&b, "server_vsn", e->server_vsn);
    put_str(&b, "snapshot", e->snapshot);
    put_int(&b, T_INT64, "content_version", e->content_version);
    put_int(&b, T_INT64, "views_from", e->views_from);
    put_int(&b, T_INT64, "views_to", e->views_to);
    close_doc(&b, data);
    close_doc(&b, top);
    *len = b.len;
    *out = (uint8_t *)b.data;
}
