/* event.c - building events, the record format, hashes and the hash chain.
 *
 * Records are built by hand rather than through bson_append_*: a record is the
 * event's bytes with two fixed-size elements (seq, prev) spliced in front, so the
 * producer's bytes are kept exactly and the cost is one memcpy. See event.h for the
 * document layout.
 */
#include "events/event.h"

#include <errno.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "common/buf.h"

struct ev_event {
    char id[EV_ID_LEN + 1];
    int64_t ts_ms;
    char *type;
    char trace_id[33];
    char span_id[17];
    char *actor;
    char *node;
    char *app_version;
    bool has_model;
    bson_t model;       /* {name, version, params} */
    bool has_input;
    bson_t input;       /* {history, context_post, candidates | candidates_digest} */
    bool has_output;
    bson_t output;      /* array of {post, score} */
    uint32_t noutput;
    bool has_latency;
    int64_t latency_us;
    bson_t data;        /* free-form payload; encoded when not empty */
};

/* ---------------------------------------------------------------------------------
 * Ids and time
 * ------------------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The ULID generator's state is process-wide (ids from every thread of a process
 * must be monotonic); a mutex keeps it consistent. */
static pthread_mutex_t ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t ulid_last_ms = -1;
static unsigned __int128 ulid_last_rand; /* low 80 bits used */

/* Random bytes for the ids, drawn 25 ids' worth at a time: a getrandom call is a
 * system call on our glibc (2.36; no vDSO getrandom), ~1.3 us on a node that
 * has been idle for a few ms, once per new millisecond, i.e. on every paced
 * recs request. 250 bytes stay under the 256 that getrandom returns whole.
 * Under ulid_lock. A forked child drops what is left (and the last id's state),
 * so parent and child never hand out the same random part. */
#define ULID_RAND 10
static uint8_t ulid_pool[25 * ULID_RAND];
static size_t ulid_pool_left; /* bytes not handed out yet, at the pool's end */
static pthread_once_t ulid_fork_once = PTHREAD_ONCE_INIT;

static void ulid_on_fork_child(void)
{
    ulid_pool_left = 0;
    ulid_last_ms = -1;
}

static void ulid_fork_register(void)
{
    pthread_atfork(NULL, NULL, ulid_on_fork_child);
}

/* ULID_RAND random bytes into rb: false when the kernel has no entropy yet. */
static bool ulid_random(uint8_t rb[ULID_RAND])
{
    if (ulid_pool_left < ULID_RAND) {
        if (getrandom(ulid_pool, sizeof ulid_pool, 0) != (ssize_t)sizeof ulid_pool)
            return false;
        ulid_pool_left = sizeof ulid_pool;
    }
    memcpy(rb, ulid_pool + sizeof ulid_pool - ulid_pool_left, ULID_RAND);
    ulid_pool_left -= ULID_RAND;
    return true;
}

void ev_ulid(char out[EV_ID_LEN + 1])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    const unsigned __int128 mask80 = (((unsigned __int128)1) << 80) - 1;
    unsigned __int128 v, r = 0;
    int64_t ms = now_ms();

    pthread_once(&ulid_fork_once, ulid_fork_register);
    pthread_mutex_lock(&ulid_lock);
    if (ms <= ulid_last_ms) {
        /* Same millisecond (or the clock stepped back): increase the random part
         * so ids stay monotonic; on the (2^80) overflow borrow the next ms. */
        ms = ulid_last_ms;
        r = (ulid_last_rand + 1) & mask80;
        if (r == 0)
            ms++;
    } else {
        uint8_t rb[ULID_RAND];
        if (!ulid_random(rb)) {
            /* No entropy yet: fall back on the clock's nanoseconds; ids are still
             * monotonic, only less unpredictable. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            memcpy(rb, &ts, sizeof rb < sizeof ts ? sizeof rb : sizeof ts);
        }
        for (size_t i = 0; i < sizeof rb; i++)
            r = (r << 8) | rb[i];
        /* Leave headroom so that increments within one ms rarely overflow. */
        r &= mask80 >> 1;
    }
    ulid_last_ms = ms;
    ulid_last_rand = r;
    pthread_mutex_unlock(&ulid_lock);

    v = ((unsigned __int128)(uint64_t)ms << 80) | r;
    for (int i = EV_ID_LEN - 1; i >= 0; i--) {
        out[i] = alphabet[(unsigned)(v & 31)];
        v >>= 5;
    }
    out[EV_ID_LEN] = '\0';
}

/* ---------------------------------------------------------------------------------
 * Building events
 * ------------------------------------------------------------------------------ */

static bool valid_type(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

static bool valid_hex(const char *s, size_t n)
{
    if (s == NULL || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int ev_event_new(const char *type, ev_event_t **out)
{
    if (!valid_type(type))
        return -EINVAL;
    ev_event_t *ev = xcalloc(1, sizeof *ev);
    ev_ulid(ev->id);
    ev->ts_ms = now_ms();
    ev->type = xstrdup(type);
    bson_init(&ev->data);
    *out = ev;
    return 0;
}

void ev_event_free(ev_event_t *ev)
{
    if (ev == NULL)
        return;
    free(ev->type);
    free(ev->actor);
    free(ev->node);
    free(ev->app_version);
    if (ev->has_model)
        bson_destroy(&ev->model);
    if (ev->has_input)
        bson_destroy(&ev->input);
    if (ev->has_output)
        bson_destroy(&ev->output);
    bson_destroy(&ev->data);
    free(ev);
}

int ev_event_set_ts_ms(ev_event_t *ev, int64_t unix_ms)
{
    if (unix_ms < 0)
        return -EINVAL;
    ev->ts_ms = unix_ms;
    return 0;
}

int ev_event_set_trace(ev_event_t *ev, const char *trace_id, const char *span_id)
{
    if (!valid_hex(trace_id, 32) || !valid_hex(span_id, 16))
        return -EINVAL;
    memcpy(ev->trace_id, trace_id, 33);
    memcpy(ev->span_id, span_id, 17);
    return 0;
}

static int set_str(char **field, const char *v)
{
    if (v == NULL || strlen(v) > 1024)
        return -EINVAL;
    free(*field);
    *field = xstrdup(v);
    return 0;
}

int ev_event_set_actor(ev_event_t *ev, const char *reader_id)
{
    return set_str(&ev->actor, reader_id);
}

int ev_event_set_node(ev_event_t *ev, const char *node)
{
    return set_str(&ev->node, node);
}

int ev_event_set_app_version(ev_event_t *ev, const char *version)
{
    return set_str(&ev->app_version, version);
}

int ev_event_set_model(ev_event_t *ev, const char *name, const char *version,
                       const bson_t *params)
{
    bson_t empty = BSON_INITIALIZER;
    if (name == NULL || version == NULL)
        return -EINVAL;
    if (ev->has_model)
        bson_destroy(&ev->model);
    bson_init(&ev->model);
    ev->has_model = true;
    BSON_APPEND_UTF8(&ev->model, "name", name);
    BSON_APPEND_UTF8(&ev->model, "version", version);
    BSON_APPEND_DOCUMENT(&ev->model, "params", params ? params : &empty);
    bson_destroy(&empty);
    return 0;
}

/* Append `ids` as a BSON array named `key`. */
static void append_str_array(bson_t *doc, const char *key, const char *const *ids, size_t n)
{
    bson_t arr;
    char kb[16];
    const char *k;

    bson_append_array_begin(doc, key, -1, &arr);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, kb, sizeof kb);
        bson_append_utf8(&arr, k, -1, ids[i] ? ids[i] : "", -1);
    }
    bson_append_array_end(doc, &arr);
}

/* Start the input afresh (a second call replaces it) with what both setters
 * put first: the history and the context post. */
static void input_begin(ev_event_t *ev, const char *const *history, size_t nhistory,
                        const char *context_post)
{
    if (ev->has_input)
        bson_destroy(&ev->input);
    bson_init(&ev->input);
    ev->has_input = true;
    append_str_array(&ev->input, "history", history, nhistory);
    if (context_post)
        BSON_APPEND_UTF8(&ev->input, "context_post", context_post);
}

int ev_event_set_input(ev_event_t *ev, const char *const *history, size_t nhistory,
                       const char *context_post, const char *const *candidates,
                       size_t ncandidates)
{
    if ((nhistory && history == NULL) || (ncandidates && candidates == NULL))
        return -EINVAL;
    input_begin(ev, history, nhistory, context_post);
    if (ncandidates <= EV_MAX_INLINE_CANDIDATES) {
        append_str_array(&ev->input, "candidates", candidates, ncandidates);
    } else {
        /* The digest makes a large candidate set checkable (replay recomputes it)
         * without logging thousands of ids per request. */
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        uint8_t h[EV_HASH_LEN];
        char hex[2 * EV_HASH_LEN + 1];
        if (c == NULL || !EVP_DigestInit_ex(c, EVP_sha256(), NULL))
            abort(); /* out of memory inside OpenSSL */
        for (size_t i = 0; i < ncandidates; i++) {
            const char *id = candidates[i] ? candidates[i] : "";
            EVP_DigestUpdate(c, id, strlen(id));
            EVP_DigestUpdate(c, "\n", 1);
        }
        EVP_DigestFinal_ex(c, h, NULL);
        EVP_MD_CTX_free(c);
        ev_hash_hex(h, hex);
        BSON_APPEND_UTF8(&ev->input, "candidates_digest", hex);
    }
    BSON_APPEND_INT64(&ev->input, "candidates_n", (int64_t)ncandidates);
    return 0;
}

int ev_event_set_input_digest(ev_event_t *ev, const char *const *history, size_t nhistory,
                              const char *context_post, const char *candidates_digest,
                              size_t ncandidates)
{
    size_t dl = candidates_digest ? strlen(candidates_digest) : 0;
    if ((nhistory && history == NULL) || ncandidates <= EV_MAX_INLINE_CANDIDATES ||
        dl != 2 * EV_HASH_LEN || strspn(candidates_digest, "0123456789abcdef") != dl)
        return -EINVAL;
    input_begin(ev, history, nhistory, context_post);
    BSON_APPEND_UTF8(&ev->input, "candidates_digest", candidates_digest);
    BSON_APPEND_INT64(&ev->input, "candidates_n", (int64_t)ncandidates);
    return 0;
}

int ev_event_add_output(ev_event_t *ev, const char *post, double score)
{
    bson_t item;
    char kb[16];
    const char *k;

    if (post == NULL)
        return -EINVAL;
    if (!ev->has_output) {
        bson_init(&ev->output);
        ev->has_output = true;
    }
    bson_uint32_to_string(ev->noutput++, &k, kb, sizeof kb);
    bson_append_document_begin(&ev->output, k, -1, &item);
    BSON_APPEND_UTF8(&item, "post", post);
    BSON_APPEND_DOUBLE(&item, "score", score);
    bson_append_document_end(&ev->output, &item);
    return 0;
}

int ev_event_set_latency_us(ev_event_t *ev, int64_t latency_us)
{
    if (latency_us < 0)
        return -EINVAL;
    ev->latency_us = latency_us;
    ev->has_latency = true;
    return 0;
}

bson_t *ev_event_data(ev_event_t *ev)
{
    return &ev->data;
}

const char *ev_event_id(const ev_event_t *ev)
{
    return ev->id;
}

int ev_event_encode(const ev_event_t *ev, bson_t *out)
{
    bson_init(out);
    BSON_APPEND_UTF8(out, "id", ev->id);
    BSON_APPEND_DATE_TIME(out, "ts", ev->ts_ms);
    BSON_APPEND_UTF8(out, "type", ev->type);
    if (ev->trace_id[0]) {
        BSON_APPEND_UTF8(out, "trace_id", ev->trace_id);
        BSON_APPEND_UTF8(out, "span_id", ev->span_id);
    }
    if (ev->actor)
        BSON_APPEND_UTF8(out, "actor", ev->actor);
    if (ev->node)
        BSON_APPEND_UTF8(out, "node", ev->node);
    if (ev->app_version)
        BSON_APPEND_UTF8(out, "app_version", ev->app_version);
    if (ev->has_model)
        BSON_APPEND_DOCUMENT(out, "model", &ev->model);
    if (ev->has_input)
        BSON_APPEND_DOCUMENT(out, "input", &ev->input);
    if (ev->has_output)
        BSON_APPEND_ARRAY(out, "output", &ev->output);
    if (ev->has_latency)
        BSON_APPEND_INT64(out, "latency_us", ev->latency_us);
    if (!bson_empty(&ev->data))
        BSON_APPEND_DOCUMENT(out, "data", &ev->data);
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Validation and records
 * ------------------------------------------------------------------------------ */

/* The walk that validates a document: bson_iter_next checks each element's
 * type and bounds (an error stops it with err_off set), bson_iter_recurse each
 * nested document's header, so walking every level is the structural check
 * bson_validate(BSON_VALIDATE_NONE) makes (its visitor is the same walk); ours
 * adds, in the same pass: every key and string value is UTF-8 without NUL (JSONB
 * and the JSON export could not carry one), nesting is at most 32 deep (the JSON
 * writer recurses) and no element of a type events have no use for. libbson
 * 1.23's bson_validate(BSON_VALIDATE_UTF8) lets some invalid strings through
 * (found by tests/fuzz/events_record_fuzz.c), so we check them here. One walk
 * instead of bson_validate's and ours halved the check of a recommendation
 * event. */
/* UTF-8 without NUL, as bson_utf8_validate(s, n, false) decides. Event strings
 * are nearly always ASCII (ids, slugs, hex): those are checked eight bytes at a
 * time (no byte with the high bit set, no zero byte), which made the check of
 * a recommendation event 5x cheaper; any other string goes to libbson. */
static bool utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    const uint64_t hi = 0x8080808080808080ULL, lo = 0x0101010101010101ULL;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if ((w & hi) || ((w - lo) & ~w & hi))
            return bson_utf8_validate(s, n, false);
    }
    for (; i < n; i++)
        if (p[i] == 0 || p[i] >= 0x80)
            return bson_utf8_validate(s, n, false);
    return true;
}

static bool strings_ok(bson_iter_t *it, int depth);

/* One element at the iterator, already stepped to by bson_iter_next: its key
 * and, by type, its string or nested document (see strings_ok). */
static bool element_ok(bson_iter_t *it, int depth)
{
    /* bson_iter_next found the key's NUL within the document: its length is
     * the distance to the value (no strlen). */
    if (!utf8_ok(bson_iter_key_unsafe(it), bson_iter_key_len(it)))
        return false;
    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8: {
        uint32_t n;
        const char *v = bson_iter_utf8(it, &n);
        return utf8_ok(v, n);
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bson_iter_t child;
        return bson_iter_recurse(it, &child) && strings_ok(&child, depth + 1);
    }
    case BSON_TYPE_CODE:
    case BSON_TYPE_SYMBOL:
    case BSON_TYPE_CODEWSCOPE:
    case BSON_TYPE_DBPOINTER:
    case BSON_TYPE_REGEX:
        return false; /* no use in an event; fewer shapes for the exporters */
    default:
        return true;
    }
}

static bool strings_ok(bson_iter_t *it, int depth)
{
    if (depth > 32)
        return false;
    while (bson_iter_next(it))
        if (!element_ok(it, depth))
            return false;
    return it->err_off == 0; /* stopped by the end, not by a damaged element */
}

/* bson_init_static accepts a buffer whose header says `len`; strings_ok then
 * walks every element (nested documents included) with bounds checks, after
 * which bson_iter may be used without further checks. */
static bool load(const uint8_t *buf, size_t len, bson_t *b)
{
    bson_iter_t it;
    if (len < 5 || len > EV_MAX_RECORD || !bson_init_static(b, buf, len))
        return false;
    if (!bson_iter_init(&it, b))
        return false;
    return strings_ok(&it, 0);
}

/* The top level of an event is checked as load() checks every level, and its
 * keys are looked at in the same walk: a second walk with a strcmp chain per
 * key was a third of a validation (callgrind, the 316-byte page.view of
 * bench-events). Keys are told apart by length first, then by bytes. */
int ev_event_validate(const uint8_t *buf, size_t len)
{
    bson_t b;
    bson_iter_t it;
    bool id = false, ts = false, type = false;

    if (len < 5 || len > EV_MAX_RECORD - 64 || !bson_init_static(&b, buf, len) ||
        !bson_iter_init(&it, &b))
        return -EINVAL;
    while (bson_iter_next(&it)) {
        if (!element_ok(&it, 0))
            return -EINVAL;
        const char *k = bson_iter_key_unsafe(&it);
        switch (bson_iter_key_len(&it)) {
        case 2:
            if (memcmp(k, "id", 2) == 0)
                id = BSON_ITER_HOLDS_UTF8(&it);
            else if (memcmp(k, "ts", 2) == 0)
                ts = BSON_ITER_HOLDS_DATE_TIME(&it);
            break;
        case 3:
            if (memcmp(k, "seq", 3) == 0)
                return -EINVAL; /* the store's */
            break;
        case 4:
            if (memcmp(k, "prev", 4) == 0)
                return -EINVAL; /* the store's */
            if (memcmp(k, "type", 4) == 0)
                type = BSON_ITER_HOLDS_UTF8(&it);
            break;
        default:
            break;
        }
    }
    if (it.err_off != 0)
        return -EINVAL; /* a damaged element stopped the walk */
    return id && ts && type ? 0 : -EINVAL;
}

/* Element sizes of the two fields a record puts in front of the event. */
#define SEQ_ELEM_LEN (1 + 4 + 8)               /* type, "seq\0", int64 */
#define PREV_ELEM_LEN (1 + 5 + 4 + 1 + EV_HASH_LEN) /* type, "prev\0", len, subtype, bytes */

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

size_t ev_record_build(const uint8_t *event, size_t len, uint64_t seq,
                       const uint8_t prev[EV_HASH_LEN], buf_t *out)
{
    size_t total = len + SEQ_ELEM_LEN + PREV_ELEM_LEN;
    uint8_t *p;

    buf_reserve(out, total);
    p = (uint8_t *)out->data + out->len;
    put_le32(p, (uint32_t)total);
    p += 4;
    *p++ = BSON_TYPE_INT64;
    memcpy(p, "seq", 4);
    p += 4;
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(seq >> (8 * i));
    *p++ = BSON_TYPE_BINARY;
    memcpy(p, "prev", 5);
    p += 5;
    put_le32(p, EV_HASH_LEN);
    p += 4;
    *p++ = BSON_SUBTYPE_BINARY;
    memcpy(p, prev, EV_HASH_LEN);
    p += EV_HASH_LEN;
    memcpy(p, event + 4, len - 4); /* the event's elements and its final NUL */
    out->len += total;
    return total;
}

int ev_record_parse(const uint8_t *buf, size_t len, ev_record_t *out)
{
    bson_t b;

    memset(out, 0, sizeof *out);
    if (!load(buf, len, &b))
        return -EBADMSG;
    return ev_record_fields(buf, len, out);
}

/* ev_record_parse without load()'s walk of every key and string (UTF-8, no
 * embedded NUL, nested documents): that walk is ~90% of a parse of a 1.4 KB
 * recs.request record (callgrind: ~21k of ~24k instructions), and a record a
 * reader already checked needs only its fields found again. libbson's iterator
 * still bounds-checks every element it steps over. */
int ev_record_fields(const uint8_t *buf, size_t len, ev_record_t *out)
{
    bson_t b;
    bson_iter_t it;
    int64_t seq;
    uint32_t blen;
    bson_subtype_t st;
    bool ts = false;

    memset(out, 0, sizeof *out);
    if (len < 5 || len > EV_MAX_RECORD || !bson_init_static(&b, buf, len) ||
        !bson_iter_init(&it, &b))
        return -EBADMSG;
    /* seq first, prev second: the layout ev_record_build makes. */
    if (!bson_iter_next(&it) || strcmp(bson_iter_key(&it), "seq") != 0 ||
        !BSON_ITER_HOLDS_INT64(&it) || (seq = bson_iter_int64(&it)) <= 0)
        return -EBADMSG;
    out->seq = (uint64_t)seq;
    if (!bson_iter_next(&it) || strcmp(bson_iter_key(&it), "prev") != 0 ||
        !BSON_ITER_HOLDS_BINARY(&it))
        return -EBADMSG;
    bson_iter_binary(&it, &st, &blen, &out->prev);
    if (blen != EV_HASH_LEN)
        return -EBADMSG;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "id") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            out->id = bson_iter_utf8(&it, NULL);
        } else if (strcmp(k, "ts") == 0 && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            out->ts_ms = bson_iter_date_time(&it);
            ts = true;
        } else if (strcmp(k, "type") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            out->type = bson_iter_utf8(&it, NULL);
        } else if (strcmp(k, "actor") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            out->actor = bson_iter_utf8(&it, NULL);
        } else if (strcmp(k, "trace_id") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            out->trace_id = bson_iter_utf8(&it, NULL);
        } else if (strcmp(k, "seq") == 0 || strcmp(k, "prev") == 0) {
            return -EBADMSG; /* duplicated store fields */
        }
    }
    if (out->id == NULL || out->type == NULL || !ts)
        return -EBADMSG;
    out->data = buf;
    out->len = len;
    return 0;
}

/* SHA-256 through an EVP_MD fetched once and a digest context kept per thread.
 * OpenSSL 3's one-shot SHA256() goes through EVP_Q_digest, which fetches the
 * algorithm by name (a provider lookup: string compares, locks) and allocates
 * and frees a context on every call: under callgrind ~5k instructions an event
 * around the hash itself, in an append path of ~10k. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void sha256_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static pthread_key_t sha256_key;
static pthread_once_t sha256_key_once = PTHREAD_ONCE_INIT;

static void sha256_key_make(void)
{
    pthread_key_create(&sha256_key, sha256_ctx_free);
}

void ev_record_hash(const uint8_t *buf, size_t len, uint8_t out[EV_HASH_LEN])
{
    pthread_once(&sha256_once, sha256_fetch);
    pthread_once(&sha256_key_once, sha256_key_make);
    EVP_MD_CTX *ctx = pthread_getspecific(sha256_key);
    if (ctx == NULL && (ctx = EVP_MD_CTX_new()) != NULL &&
        pthread_setspecific(sha256_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    unsigned int n = 0;
    if (sha256_md == NULL || ctx == NULL || EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, buf, len) != 1 || EVP_DigestFinal_ex(ctx, out, &n) != 1 ||
        n != EV_HASH_LEN)
        SHA256(buf, len, out); /* out of memory: the slow way, same answer */
}

char *ev_record_to_json(const uint8_t *buf, size_t len)
{
    bson_t b;
    if (len < 5 || !bson_init_static(&b, buf, len))
        return NULL;
    return bson_as_canonical_extended_json(&b, NULL);
}

void ev_hash_hex(const uint8_t h[EV_HASH_LEN], char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < EV_HASH_LEN; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[2 * EV_HASH_LEN] = '\0';
}

/* ---------------------------------------------------------------------------------
 * The hash chain
 * ------------------------------------------------------------------------------ */

void ev_chain_init(ev_chain_t *c)
{
    c->next_seq = 1;
    memset(c->hash, 0, sizeof c->hash);
    c->have_hash = true; /* seq 1's prev is all zeroes */
}

int ev_chain_next(ev_chain_t *c, const ev_record_t *r)
{
    int rc = 0;
    if (c->next_seq != 0 && r->seq != c->next_seq)
        rc = -ERANGE;
    else if (c->have_hash && memcmp(r->prev, c->hash, EV_HASH_LEN) != 0)
        rc = -EBADMSG;
    ev_record_hash(r->data, r->len, c->hash);
    c->have_hash = true;
    c->next_seq = r->seq + 1;
    return rc;
}
