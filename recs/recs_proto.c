/* recs_proto.c - codecs of recs_proto.h, with libei only. */
#include "recs/recs_proto.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

static int enc_bin(ei_x_buff *x, const char *s)
{
    return ei_x_encode_binary(x, s ? s : "", s ? (long)strlen(s) : 0);
}

int recs_req_encode(ei_x_buff *x, const recs_req_t *r)
{
    int n = 2 + (r->post[0] != 0) + (r->trace[0] != 0);
    if (ei_x_encode_tuple_header(x, 2) < 0 || ei_x_encode_atom(x, "recommend") < 0 ||
        ei_x_encode_map_header(x, n) < 0 || ei_x_encode_atom(x, "reader") < 0 ||
        enc_bin(x, r->reader) < 0 || ei_x_encode_atom(x, "k") < 0 ||
        ei_x_encode_long(x, r->k) < 0)
        return -ENOMEM;
    if (r->post[0] && (ei_x_encode_atom(x, "post") < 0 || enc_bin(x, r->post) < 0))
        return -ENOMEM;
    if (r->trace[0] && (ei_x_encode_atom(x, "trace") < 0 || enc_bin(x, r->trace) < 0))
        return -ENOMEM;
    return 0;
}

/* A binary of 1..max bytes of valid UTF-8 without NUL into out[max + 1]. */
static int dec_str(const char *buf, int *i, char *out, int max)
{
    int type, size;
    long len;
    if (ei_get_type(buf, i, &type, &size) < 0 || type != ERL_BINARY_EXT || size < 1 ||
        size > max || ei_decode_binary(buf, i, out, &len) < 0)
        return -EINVAL;
    out[len] = '\0';
    if (memchr(out, '\0', (size_t)len) || !proto_utf8_valid(out, (size_t)len))
        return -EINVAL;
    return 0;
}

int recs_req_decode(const char *buf, int *index, recs_req_t *out)
{
    int i = *index, arity, n;
    char key[MAXATOMLEN_UTF8];
    memset(out, 0, sizeof *out);
    out->k = RECS_K_DEFAULT;
    if (ei_decode_tuple_header(buf, &i, &arity) < 0 || arity != 2 ||
        !cn_decode_atom_is(buf, &i, "recommend") || ei_decode_map_header(buf, &i, &n) < 0)
        return -EINVAL;
    for (int k = 0; k < n; k++) {
        if (ei_decode_atom(buf, &i, key) < 0)
            return -EINVAL;
        if (strcmp(key, "reader") == 0) {
            if (dec_str(buf, &i, out->reader, RECS_READER_MAX) < 0)
                return -EINVAL;
        } else if (strcmp(key, "post") == 0) {
            if (cn_decode_atom_is(buf, &i, "nil"))
                out->post[0] = '\0';
            else if (dec_str(buf, &i, out->post, PROTO_SLUG_MAX) < 0)
                return -EINVAL;
        } else if (strcmp(key, "k") == 0) {
            long long v;
            if (ei_decode_longlong(buf, &i, &v) < 0 || v < 1 || v > RECS_K_MAX)
                return -EINVAL;
            out->k = (int)v;
        } else if (strcmp(key, "trace") == 0) {
            if (cn_decode_atom_is(buf, &i, "nil"))
                out->trace[0] = '\0';
            else if (dec_str(buf, &i, out->trace, RECS_TRACE_MAX) < 0)
                return -EINVAL;
        } else {
            return -EINVAL;
        }
    }
    if (out->reader[0] == '\0')
        return -EINVAL;
    *index = i;
    return 0;
}

/* The reply's atoms, encoded once by libei: ei_x_encode_atom converts its
 * argument from Latin-1 to UTF-8 on every call, twice (sizing, then writing),
 * about 350 instructions an atom, and a reply has 4 + 4 per item (44 for 10
 * items: 15,000 instructions of a request's ~190,000 in recs before this). */
enum { A_OK, A_MODEL, A_EVENT, A_ITEMS, A_ID, A_SLUG, A_TITLE, A_SCORE, NATOMS };
static const char *const atom_names[NATOMS] = { "ok", "model", "event", "items",
                                                "id", "slug", "title", "score" };
static char atom_bytes[NATOMS][16];
static int atom_len[NATOMS];
static pthread_once_t atoms_once = PTHREAD_ONCE_INIT;

static void atoms_init(void)
{
    for (int a = 0; a < NATOMS; a++)
        if (ei_encode_atom(atom_bytes[a], &atom_len[a], atom_names[a]) < 0)
            abort(); /* a short ASCII name always fits */
}

static int enc_atom(ei_x_buff *x, int a)
{
    return ei_x_append_buf(x, atom_bytes[a], atom_len[a]);
}

int recs_reply_encode(ei_x_buff *x, const recs_reply_t *r)
{
    pthread_once(&atoms_once, atoms_init);
    if (ei_x_encode_tuple_header(x, 2) < 0 || enc_atom(x, A_OK) < 0 ||
        ei_x_encode_map_header(x, 3) < 0 || enc_atom(x, A_MODEL) < 0 ||
        enc_bin(x, r->model) < 0 || enc_atom(x, A_EVENT) < 0 ||
        enc_bin(x, r->event) < 0 || enc_atom(x, A_ITEMS) < 0)
        return -ENOMEM;
    if (r->n > 0 && ei_x_encode_list_header(x, r->n) < 0)
        return -ENOMEM;
    for (int k = 0; k < r->n; k++) {
        const recs_reply_item_t *it = &r->items[k];
        if (ei_x_encode_map_header(x, 4) < 0 || enc_atom(x, A_ID) < 0 ||
            ei_x_encode_longlong(x, it->id) < 0 || enc_atom(x, A_SLUG) < 0 ||
            enc_bin(x, it->slug) < 0 || enc_atom(x, A_TITLE) < 0 ||
            enc_bin(x, it->title) < 0 || enc_atom(x, A_SCORE) < 0 ||
            ei_x_encode_double(x, it->score) < 0)
            return -ENOMEM;
    }
    return ei_x_encode_empty_list(x) < 0 ? -ENOMEM : 0;
}

void recs_reply_clear(recs_reply_t *r)
{
    if (r == NULL)
        return;
    for (int k = 0; k < r->n; k++) {
        free(r->items[k].slug);
        free(r->items[k].title);
    }
    free(r->items);
    memset(r, 0, sizeof *r);
}

/* A binary of any length into a new string. */
static char *dec_dup(const char *buf, int *i)
{
    int type, size;
    long len;
    if (ei_get_type(buf, i, &type, &size) < 0 || type != ERL_BINARY_EXT)
        return NULL;
    char *s = xmalloc((size_t)size + 1);
    if (ei_decode_binary(buf, i, s, &len) < 0) {
        free(s);
        return NULL;
    }
    s[len] = '\0';
    return s;
}

static int dec_item(const char *buf, int *i, recs_reply_item_t *it)
{
    int n;
    char key[MAXATOMLEN_UTF8];
    if (ei_decode_map_header(buf, i, &n) < 0)
        return -EINVAL;
    for (int k = 0; k < n; k++) {
        if (ei_decode_atom(buf, i, key) < 0)
            return -EINVAL;
        if (strcmp(key, "id") == 0) {
            long long v;
            if (ei_decode_longlong(buf, i, &v) < 0)
                return -EINVAL;
            it->id = v;
        } else if (strcmp(key, "slug") == 0 && it->slug == NULL) {
            if ((it->slug = dec_dup(buf, i)) == NULL)
                return -EINVAL;
        } else if (strcmp(key, "title") == 0 && it->title == NULL) {
            if ((it->title = dec_dup(buf, i)) == NULL)
                return -EINVAL;
        } else if (strcmp(key, "score") == 0) {
            if (ei_decode_double(buf, i, &it->score) < 0)
                return -EINVAL;
        } else if (ei_skip_term(buf, i) < 0) {
            return -EINVAL;
        }
    }
    return 0;
}

int recs_reply_decode(const char *buf, int *index, recs_reply_t *out, char *reason,
                      int reasonlen)
{
    int i = *index, arity, n;
    char atom[MAXATOMLEN_UTF8];
    memset(out, 0, sizeof *out);
    if (ei_decode_tuple_header(buf, &i, &arity) < 0 || arity != 2 ||
        ei_decode_atom(buf, &i, atom) < 0)
        return -EINVAL;
    if (strcmp(atom, "error") == 0) {
        if (ei_decode_atom(buf, &i, atom) < 0)
            return -EINVAL;
        snprintf(reason, (size_t)reasonlen, "%s", atom);
        *index = i;
        return PROTO_ERROR;
    }
    if (strcmp(atom, "ok") != 0 || ei_decode_map_header(buf, &i, &n) < 0)
        return -EINVAL;
    for (int k = 0; k < n; k++) {
        char *s;
        if (ei_decode_atom(buf, &i, atom) < 0)
            goto bad;
        if (strcmp(atom, "model") == 0 || strcmp(atom, "event") == 0) {
            if ((s = dec_dup(buf, &i)) == NULL)
                goto bad;
            if (atom[0] == 'm')
                snprintf(out->model, sizeof out->model, "%s", s);
            else
                snprintf(out->event, sizeof out->event, "%s", s);
            free(s);
        } else if (strcmp(atom, "items") == 0) {
            int len;
            if (ei_decode_list_header(buf, &i, &len) < 0 || len > RECS_K_MAX || out->items)
                goto bad;
            out->items = xcalloc((size_t)(len ? len : 1), sizeof *out->items);
            for (; out->n < len; out->n++)
                if (dec_item(buf, &i, &out->items[out->n]) < 0) {
                    out->n++;
                    goto bad;
                }
            if (len > 0 && ei_decode_list_header(buf, &i, &len) < 0)
                goto bad;
        } else if (ei_skip_term(buf, &i) < 0) {
            goto bad;
        }
    }
    *index = i;
    return PROTO_OK;
bad:
    recs_reply_clear(out);
    return -EINVAL;
}

static bool hex_run(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool recs_trace_parse(const char *trace, char out[33], char span[17])
{
    size_t len = trace ? strlen(trace) : 0;
    span[0] = '\0';
    if (len == 32 && hex_run(trace, 32)) {
        memcpy(out, trace, 33);
        return true;
    }
    /* traceparent: 2 hex version, '-', 32 hex trace id, '-', 16 hex span, '-', flags */
    if (len >= 55 && trace[2] == '-' && trace[35] == '-' && trace[52] == '-' &&
        hex_run(trace + 3, 32) && hex_run(trace + 36, 16)) {
        memcpy(out, trace + 3, 32);
        out[32] = '\0';
        memcpy(span, trace + 36, 16);
        span[16] = '\0';
        return true;
    }
    return false;
}
