/* proto.c - codecs for the CMS RPC contract (see proto.h): requests both ways,
 * replies both ways. Content structs are encoded and decoded from field tables
 * ({key, type, offset}), so a field added to a struct and its table travels in
 * both directions at once. All term work goes through libei.
 */
#include "proto.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------
 * UTF-8 and small helpers
 * ------------------------------------------------------------------------------ */

bool proto_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

static int enc_str(ei_x_buff *x, const char *s)
{
    if (s == NULL)
        return ei_x_encode_atom(x, "nil");
    return ei_x_encode_binary(x, s, (long)strlen(s));
}

static int enc_time(ei_x_buff *x, int64_t t)
{
    char out[32];
    time_t tt = (time_t)t;
    struct tm tm;
    if (t == 0)
        return ei_x_encode_atom(x, "nil");
    gmtime_r(&tt, &tm);
    strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return ei_x_encode_binary(x, out, (long)strlen(out));
}

/* Decode a binary into a fixed buffer of cap bytes (with NUL). -EINVAL if the term
 * is not a binary, is longer than cap-1, contains NUL or is not UTF-8. */
static int dec_bin_fixed(const char *buf, int *index, char *out, size_t cap)
{
    int type, size;
    long len;
    if (ei_get_type(buf, index, &type, &size) < 0 || type != ERL_BINARY_EXT ||
        (size_t)size >= cap)
        return -EINVAL;
    if (ei_decode_binary(buf, index, out, &len) < 0)
        return -EINVAL;
    out[len] = '\0';
    if (memchr(out, '\0', (size_t)len) || !proto_utf8_valid(out, (size_t)len))
        return -EINVAL;
    return 0;
}

/* The atom at buf+index, read in place: its bytes, their count, and the size of
 * the whole term (tag and length included). Returns 0, or -EINVAL if it is not
 * an atom. The bytes are as encoded (UTF-8 or Latin-1): compared with our ASCII
 * names, either matches exactly when libei's decoded text would. The decoders
 * compare every map key and atom value this way (no copy, no conversion: the
 * key atoms were a tenth of the client's CPU on a page of ten cards). */
static int peek_atom(const char *buf, int index, const char **s, size_t *len, int *size)
{
    const unsigned char *p = (const unsigned char *)buf + index;
    switch (p[0]) {
    case ERL_SMALL_ATOM_UTF8_EXT:
    case ERL_SMALL_ATOM_EXT:
        *len = p[1];
        *s = buf + index + 2;
        *size = 2 + (int)*len;
        return 0;
    case ERL_ATOM_UTF8_EXT:
    case ERL_ATOM_EXT:
        *len = (size_t)p[1] << 8 | p[2];
        *s = buf + index + 3;
        *size = 3 + (int)*len;
        return 0;
    }
    return -EINVAL;
}

/* Is the atom at buf+*index `name`? Advances *index past it when it is an atom
 * (whatever its text); -EINVAL when it is not an atom. */
static int atom_eq(const char *buf, int *index, const char *name, size_t nlen, bool *eq)
{
    const char *a;
    size_t len;
    int size;
    if (peek_atom(buf, *index, &a, &len, &size) < 0)
        return -EINVAL;
    *eq = len == nlen && memcmp(a, name, len) == 0;
    *index += size;
    return 0;
}

/* Decoded memory: from the caller's allocator (a request arena: nothing is freed
 * one by one) or else malloc. */
static void *d_alloc(const proto_alloc_t *a, size_t n)
{
    return a ? a->alloc(a->ud, n) : malloc(n);
}

static void d_free(const proto_alloc_t *a, void *p)
{
    if (a == NULL)
        free(p);
}

/* Decode a binary (or nil) into a new string (*out NULL for nil). */
static int dec_str(const proto_alloc_t *al, const char *buf, int *index, char **out)
{
    int type, size;
    long len;
    *out = NULL;
    const unsigned char *p = (const unsigned char *)buf + *index;
    if (p[0] == ERL_BINARY_EXT) {
        /* the common case, without libei's type dispatch */
        size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        char *str = d_alloc(al, n + 1);
        if (str == NULL)
            return -EINVAL;
        memcpy(str, p + 5, n);
        str[n] = '\0';
        *index += 5 + (int)n;
        *out = str;
        return 0;
    }
    if (p[0] == ERL_SMALL_ATOM_UTF8_EXT && p[1] == 3 && memcmp(p + 2, "nil", 3) == 0) {
        *index += 5; /* nil, as the encoder writes it */
        return 0;
    }
    if (ei_get_type(buf, index, &type, &size) < 0)
        return -EINVAL;
    if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT || type == ERL_ATOM_UTF8_EXT ||
        type == ERL_SMALL_ATOM_UTF8_EXT) {
        char a[MAXATOMLEN_UTF8];
        if (ei_decode_atom(buf, index, a) < 0 || strcmp(a, "nil") != 0)
            return -EINVAL;
        return 0;
    }
    if (type != ERL_BINARY_EXT)
        return -EINVAL;
    char *s = d_alloc(al, (size_t)size + 1);
    if (s == NULL || ei_decode_binary(buf, index, s, &len) < 0) {
        d_free(al, s);
        return -EINVAL;
    }
    s[len] = '\0';
    *out = s;
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
 * days-from-civil arithmetic). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DDTHH:MM:SSZ" exactly, with fields in range, read in place: what the
 * encoder writes (strptime and timegm cost 5% of the client's CPU). Returns
 * false for anything else, which then goes the strptime way. */
static bool fast_time(const unsigned char *s, size_t len, int64_t *out)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (len != 20)
        return false;
    for (int i = 0; i < 20; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != (unsigned char)shape[i])
            return false;
#define D2(i) ((s[i] - '0') * 10 + (s[(i) + 1] - '0'))
    int y = D2(0) * 100 + D2(2), mo = D2(5), d = D2(8), h = D2(11), mi = D2(14), se = D2(17);
#undef D2
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
        return false;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return false;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return true;
}

static int dec_time(const proto_alloc_t *al, const char *buf, int *index, int64_t *out)
{
    char *s;
    struct tm tm = { 0 };
    *out = 0;
    const unsigned char *p = (const unsigned char *)buf + *index;
    if (p[0] == ERL_BINARY_EXT && p[1] == 0 && p[2] == 0 && p[3] == 0 &&
        fast_time(p + 5, p[4], out)) {
        *index += 5 + p[4];
        return 0;
    }
    if (dec_str(al, buf, index, &s) < 0)
        return -EINVAL;
    if (s == NULL)
        return 0;
    char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int ok = end && *end == '\0';
    d_free(al, s);
    if (!ok)
        return -EINVAL;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Field tables
 * ------------------------------------------------------------------------------ */

enum { F_STR, F_I64, F_INT, F_BOOL, F_TIME, F_TYPE, F_STATUS, F_TAGS, F_AUTHORS, F_NAV };
enum { F_FULL = 1 }; /* left out of summaries */

typedef struct field {
    const char *key;
    size_t keylen;
    int type;
    size_t off;
    int flags;
} field_t;

#define FLD(T, k, t, f) { #k, sizeof(#k) - 1, t, offsetof(T, k), f }

static const field_t tag_fields[] = {
    FLD(proto_tag_t, id, F_I64, 0),
    FLD(proto_tag_t, slug, F_STR, 0),
    FLD(proto_tag_t, name, F_STR, 0),
    FLD(proto_tag_t, description, F_STR, 0),
    FLD(proto_tag_t, feature_image, F_STR, 0),
    FLD(proto_tag_t, meta_title, F_STR, 0),
    FLD(proto_tag_t, meta_description, F_STR, 0),
    FLD(proto_tag_t, post_count, F_I64, 0),
};

static const field_t author_fields[] = {
    FLD(proto_author_t, id, F_I64, 0),
    FLD(proto_author_t, slug, F_STR, 0),
    FLD(proto_author_t, name, F_STR, 0),
    FLD(proto_author_t, bio, F_STR, 0),
    FLD(proto_author_t, profile_image, F_STR, 0),
    FLD(proto_author_t, website, F_STR, 0),
    FLD(proto_author_t, location, F_STR, 0),
    FLD(proto_author_t, post_count, F_I64, 0),
};

static const field_t post_fields[] = {
    FLD(proto_post_t, id, F_I64, 0),
    FLD(proto_post_t, type, F_TYPE, 0),
    FLD(proto_post_t, status, F_STATUS, 0),
    FLD(proto_post_t, title, F_STR, 0),
    FLD(proto_post_t, slug, F_STR, 0),
    FLD(proto_post_t, html, F_STR, F_FULL),
    FLD(proto_post_t, plaintext, F_STR, F_FULL),
    FLD(proto_post_t, custom_excerpt, F_STR, 0),
    FLD(proto_post_t, excerpt, F_STR, 0),
    FLD(proto_post_t, feature_image, F_STR, 0),
    FLD(proto_post_t, feature_image_alt, F_STR, 0),
    FLD(proto_post_t, feature_image_caption, F_STR, 0),
    FLD(proto_post_t, featured, F_BOOL, 0),
    FLD(proto_post_t, created_at, F_TIME, 0),
    FLD(proto_post_t, updated_at, F_TIME, 0),
    FLD(proto_post_t, published_at, F_TIME, 0),
    FLD(proto_post_t, meta_title, F_STR, 0),
    FLD(proto_post_t, meta_description, F_STR, 0),
    FLD(proto_post_t, og_title, F_STR, 0),
    FLD(proto_post_t, og_description, F_STR, 0),
    FLD(proto_post_t, og_image, F_STR, 0),
    FLD(proto_post_t, canonical_url, F_STR, 0),
    FLD(proto_post_t, reading_time, F_INT, 0),
    FLD(proto_post_t, tags, F_TAGS, 0),
    FLD(proto_post_t, authors, F_AUTHORS, 0),
};

static const field_t settings_fields[] = {
    FLD(proto_settings_t, title, F_STR, 0),
    FLD(proto_settings_t, description, F_STR, 0),
    FLD(proto_settings_t, url, F_STR, 0),
    FLD(proto_settings_t, timezone, F_STR, 0),
    FLD(proto_settings_t, locale, F_STR, 0),
    FLD(proto_settings_t, logo, F_STR, 0),
    FLD(proto_settings_t, accent_color, F_STR, 0),
    FLD(proto_settings_t, posts_per_page, F_INT, 0),
    FLD(proto_settings_t, navigation, F_NAV, 0),
};

#define NFIELDS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int encode_fields(ei_x_buff *x, const void *obj, const field_t *f, int nf,
                         bool summary);

static int encode_field(ei_x_buff *x, const void *obj, const field_t *f)
{
    const char *p = (const char *)obj + f->off;
    switch (f->type) {
    case F_STR:
        return enc_str(x, *(char *const *)p);
    case F_I64:
        return ei_x_encode_longlong(x, *(const int64_t *)p);
    case F_INT:
        return ei_x_encode_long(x, *(const int *)p);
    case F_BOOL:
        return ei_x_encode_boolean(x, *(const bool *)p);
    case F_TIME:
        return enc_time(x, *(const int64_t *)p);
    case F_TYPE:
        return ei_x_encode_atom(x, *(const int *)p == PROTO_PAGE ? "page" : "post");
    case F_STATUS: {
        int s = *(const int *)p;
        return ei_x_encode_atom(x, s == PROTO_PUBLISHED   ? "published"
                                   : s == PROTO_SCHEDULED ? "scheduled"
                                                          : "draft");
    }
    case F_TAGS: {
        const proto_post_t *post = obj;
        int n = 0;
        /* Internal (#) tags never leave the CMS. */
        for (int i = 0; i < post->ntags; i++)
            n += !post->tags[i].internal;
        if (n && ei_x_encode_list_header(x, n) < 0)
            return -1;
        for (int i = 0; i < post->ntags; i++)
            if (!post->tags[i].internal &&
                encode_fields(x, &post->tags[i], tag_fields, NFIELDS(tag_fields), false) < 0)
                return -1;
        return ei_x_encode_empty_list(x);
    }
    case F_AUTHORS: {
        const proto_post_t *post = obj;
        if (post->nauthors && ei_x_encode_list_header(x, post->nauthors) < 0)
            return -1;
        for (int i = 0; i < post->nauthors; i++)
            if (encode_fields(x, &post->authors[i], author_fields, NFIELDS(author_fields),
                              false) < 0)
                return -1;
        return ei_x_encode_empty_list(x);
    }
    case F_NAV: {
        const proto_settings_t *s = obj;
        if (s->nnavigation && ei_x_encode_list_header(x, s->nnavigation) < 0)
            return -1;
        for (int i = 0; i < s->nnavigation; i++)
            if (ei_x_encode_map_header(x, 2) < 0 || ei_x_encode_atom(x, "label") < 0 ||
                enc_str(x, s->navigation[i].label) < 0 || ei_x_encode_atom(x, "url") < 0 ||
                enc_str(x, s->navigation[i].url) < 0)
                return -1;
        return ei_x_encode_empty_list(x);
    }
    }
    return -1;
}

static int encode_fields(ei_x_buff *x, const void *obj, const field_t *f, int nf,
                         bool summary)
{
    int n = 0;
    for (int i = 0; i < nf; i++)
        n += !(summary && (f[i].flags & F_FULL));
    if (ei_x_encode_map_header(x, n) < 0)
        return -ENOMEM;
    for (int i = 0; i < nf; i++) {
        if (summary && (f[i].flags & F_FULL))
            continue;
        if (ei_x_encode_atom(x, f[i].key) < 0 || encode_field(x, obj, &f[i]) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int decode_fields(const proto_alloc_t *al, const char *buf, int *index, void *obj,
                         const field_t *f, int nf);

/* The end of a list whose header (at `start`) gave n elements, all read: the tail,
 * which must be []. The empty list [] (NIL_EXT) has no tail; a LIST_EXT of no
 * elements does (found by proto_fuzz.c: the tail was left unread, and the next
 * field decoded from it; for a request, the byte after the term was read). */
static int list_end(const char *buf, int *index, int start, int n)
{
    if (n == 0 && (unsigned char)buf[start] == ERL_NIL_EXT)
        return 0;
    int t;
    return ei_decode_list_header(buf, index, &t) == 0 && t == 0 ? 0 : -EINVAL;
}

/* Decode a list of n-field objects of size sz into a new array. */
static int decode_array(const proto_alloc_t *al, const char *buf, int *index, void **out,
                        int *count, size_t sz,
                        const field_t *f, int nf)
{
    int n;
    *out = NULL;
    *count = 0;
    int start = *index;
    if (ei_decode_list_header(buf, index, &n) < 0 || n < 0)
        return -EINVAL;
    if (n == 0)
        return list_end(buf, index, start, 0);
    if ((size_t)n > SIZE_MAX / sz)
        return -EINVAL;
    char *v = d_alloc(al, (size_t)n * sz);
    if (v == NULL)
        return -ENOMEM;
    memset(v, 0, (size_t)n * sz);
    *out = v;
    for (int i = 0; i < n; i++) {
        (*count)++;
        if (decode_fields(al, buf, index, v + (size_t)i * sz, f, nf) < 0)
            return -EINVAL;
    }
    return list_end(buf, index, start, n);
}

static int decode_field(const proto_alloc_t *al, const char *buf, int *index, void *obj,
                        const field_t *f)
{
    char *p = (char *)obj + f->off;
    bool eq;
    long long ll;
    long l;
    int b;
    switch (f->type) {
    case F_STR:
        d_free(al, *(char **)p);
        return dec_str(al, buf, index, (char **)p);
    case F_I64:
        if (ei_decode_longlong(buf, index, &ll) < 0)
            return -EINVAL;
        *(int64_t *)p = ll;
        return 0;
    case F_INT:
        if (ei_decode_long(buf, index, &l) < 0)
            return -EINVAL;
        *(int *)p = (int)l;
        return 0;
    case F_BOOL: {
        const char *a;
        size_t len;
        int size;
        if (peek_atom(buf, *index, &a, &len, &size) == 0 &&
            ((len == 4 && memcmp(a, "true", 4) == 0) || (len == 5 && memcmp(a, "false", 5) == 0))) {
            *(bool *)p = len == 4;
            *index += size;
            return 0;
        }
        if (ei_decode_boolean(buf, index, &b) < 0)
            return -EINVAL;
        *(bool *)p = b;
        return 0;
    }
    case F_TIME:
        return dec_time(al, buf, index, (int64_t *)p);
    case F_TYPE:
        if (atom_eq(buf, index, "page", 4, &eq) < 0)
            return -EINVAL;
        *(int *)p = eq ? PROTO_PAGE : PROTO_POST;
        return 0;
    case F_STATUS: {
        const char *a;
        size_t len;
        int size;
        if (peek_atom(buf, *index, &a, &len, &size) < 0)
            return -EINVAL;
        *index += size;
        *(int *)p = len == 9 && memcmp(a, "published", 9) == 0   ? PROTO_PUBLISHED
                    : len == 9 && memcmp(a, "scheduled", 9) == 0 ? PROTO_SCHEDULED
                                                                 : PROTO_DRAFT;
        return 0;
    }
    case F_TAGS: {
        proto_post_t *post = obj;
        return decode_array(al, buf, index, (void **)&post->tags, &post->ntags,
                            sizeof(proto_tag_t), tag_fields, NFIELDS(tag_fields));
    }
    case F_AUTHORS: {
        proto_post_t *post = obj;
        return decode_array(al, buf, index, (void **)&post->authors, &post->nauthors,
                            sizeof(proto_author_t), author_fields, NFIELDS(author_fields));
    }
    case F_NAV: {
        static const field_t nav_fields[] = {
            FLD(proto_nav_t, label, F_STR, 0),
            FLD(proto_nav_t, url, F_STR, 0),
        };
        proto_settings_t *s = obj;
        return decode_array(al, buf, index, (void **)&s->navigation, &s->nnavigation,
                            sizeof(proto_nav_t), nav_fields, NFIELDS(nav_fields));
    }
    }
    return -EINVAL;
}

static int decode_fields(const proto_alloc_t *al, const char *buf, int *index, void *obj,
                         const field_t *f, int nf)
{
    int n;
    if (ei_decode_map_header(buf, index, &n) < 0)
        return -EINVAL;
    /* The encoder writes the fields in table order, so the search starts after the
     * field just matched: one compare per key instead of up to nf (field lookup was
     * most of the uncached client's strcmp time, 10% of its CPU, make bench-web). */
    int next = 0;
    for (int i = 0; i < n; i++) {
        const char *key;
        size_t klen;
        int ksize;
        if (peek_atom(buf, *index, &key, &klen, &ksize) < 0)
            return -EINVAL;
        *index += ksize;
        int k = nf;
        for (int t = 0; t < nf; t++) {
            int c = next + t < nf ? next + t : next + t - nf;
            if (f[c].keylen == klen && memcmp(f[c].key, key, klen) == 0) {
                k = c;
                break;
            }
        }
        if (k == nf) {
            if (ei_skip_term(buf, index) < 0)
                return -EINVAL;
            continue;
        }
        if (decode_field(al, buf, index, obj, &f[k]) < 0)
            return -EINVAL;
        next = k + 1 < nf ? k + 1 : 0;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Clearing
 * ------------------------------------------------------------------------------ */

void proto_tag_clear(proto_tag_t *t)
{
    if (t == NULL)
        return;
    free(t->slug);
    free(t->name);
    free(t->description);
    free(t->feature_image);
    free(t->meta_title);
    free(t->meta_description);
    memset(t, 0, sizeof(*t));
}

void proto_author_clear(proto_author_t *a)
{
    if (a == NULL)
        return;
    free(a->slug);
    free(a->name);
    free(a->bio);
    free(a->profile_image);
    free(a->website);
    free(a->location);
    memset(a, 0, sizeof(*a));
}

void proto_post_clear(proto_post_t *p)
{
    if (p == NULL)
        return;
    char **strs[] = { &p->title, &p->slug, &p->html, &p->plaintext, &p->custom_excerpt,
                      &p->excerpt, &p->feature_image, &p->feature_image_alt,
                      &p->feature_image_caption, &p->meta_title, &p->meta_description,
                      &p->og_title, &p->og_description, &p->og_image, &p->canonical_url,
                      &p->markdown, &p->preview_token };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(*strs[i]);
    for (int i = 0; i < p->ntags; i++)
        proto_tag_clear(&p->tags[i]);
    free(p->tags);
    for (int i = 0; i < p->nauthors; i++)
        proto_author_clear(&p->authors[i]);
    free(p->authors);
    memset(p, 0, sizeof(*p));
}

void proto_posts_free(proto_post_t *v, int n)
{
    if (v == NULL)
        return;
    for (int i = 0; i < n; i++)
        proto_post_clear(&v[i]);
    free(v);
}

void proto_settings_clear(proto_settings_t *s)
{
    if (s == NULL)
        return;
    free(s->title);
    free(s->description);
    free(s->url);
    free(s->timezone);
    free(s->locale);
    free(s->logo);
    free(s->accent_color);
    for (int i = 0; i < s->nnavigation; i++) {
        free(s->navigation[i].label);
        free(s->navigation[i].url);
    }
    free(s->navigation);
    memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------------------------
 * Reply encoders
 * ------------------------------------------------------------------------------ */

int proto_encode_post(ei_x_buff *x, const proto_post_t *p, bool summary)
{
    return encode_fields(x, p, post_fields, NFIELDS(post_fields), summary);
}

int proto_encode_tag(ei_x_buff *x, const proto_tag_t *t)
{
    return encode_fields(x, t, tag_fields, NFIELDS(tag_fields), false);
}

int proto_encode_author(ei_x_buff *x, const proto_author_t *a)
{
    return encode_fields(x, a, author_fields, NFIELDS(author_fields), false);
}

int proto_encode_settings(ei_x_buff *x, const proto_settings_t *s)
{
    return encode_fields(x, s, settings_fields, NFIELDS(settings_fields), false);
}

static int enc_page_or_nil(ei_x_buff *x, int page, bool exists)
{
    return exists ? ei_x_encode_long(x, page) : ei_x_encode_atom(x, "nil");
}

int proto_encode_post_list(ei_x_buff *x, const proto_post_t *v, int n,
                           const proto_pagination_t *pg)
{
    if (ei_x_encode_map_header(x, pg ? 2 : 1) < 0 || ei_x_encode_atom(x, "posts") < 0)
        return -ENOMEM;
    if (n > 0 && ei_x_encode_list_header(x, n) < 0)
        return -ENOMEM;
    for (int i = 0; i < n; i++)
        if (proto_encode_post(x, &v[i], true) < 0)
            return -ENOMEM;
    if (ei_x_encode_empty_list(x) < 0)
        return -ENOMEM;
    if (pg == NULL)
        return 0;
    if (ei_x_encode_atom(x, "meta") < 0 || ei_x_encode_map_header(x, 1) < 0 ||
        ei_x_encode_atom(x, "pagination") < 0 || ei_x_encode_map_header(x, 6) < 0 ||
        ei_x_encode_atom(x, "page") < 0 || ei_x_encode_long(x, pg->page) < 0 ||
        ei_x_encode_atom(x, "per_page") < 0 || ei_x_encode_long(x, pg->per_page) < 0 ||
        ei_x_encode_atom(x, "pages") < 0 || ei_x_encode_long(x, pg->pages) < 0 ||
        ei_x_encode_atom(x, "total") < 0 || ei_x_encode_longlong(x, pg->total) < 0 ||
        ei_x_encode_atom(x, "next") < 0 ||
        enc_page_or_nil(x, pg->page + 1, pg->page < pg->pages) < 0 ||
        ei_x_encode_atom(x, "prev") < 0 ||
        enc_page_or_nil(x, pg->page - 1, pg->page > 1 && pg->page - 1 <= pg->pages) < 0)
        return -ENOMEM;
    return 0;
}

int proto_encode_ok_header(ei_x_buff *x)
{
    return ei_x_encode_tuple_header(x, 2) < 0 || ei_x_encode_atom(x, "ok") < 0 ? -ENOMEM
                                                                                  : 0;
}

int proto_encode_error(ei_x_buff *x, const char *reason)
{
    return ei_x_encode_tuple_header(x, 2) < 0 || ei_x_encode_atom(x, "error") < 0 ||
                   ei_x_encode_atom(x, reason) < 0
               ? -ENOMEM
               : 0;
}

int proto_encode_redirect(ei_x_buff *x, const char *slug)
{
    return ei_x_encode_tuple_header(x, 2) < 0 || ei_x_encode_atom(x, "redirect") < 0 ||
                   enc_str(x, slug) < 0
               ? -ENOMEM
               : 0;
}

int proto_encode_version(ei_x_buff *x, int64_t version)
{
    return ei_x_encode_map_header(x, 1) < 0 || ei_x_encode_atom(x, "version") < 0 ||
                   ei_x_encode_longlong(x, version) < 0
               ? -ENOMEM
               : 0;
}

/* ---------------------------------------------------------------------------------
 * Reply decoders
 * ------------------------------------------------------------------------------ */

int proto_decode_post(const char *buf, int *index, proto_post_t *out)
{
    return decode_fields(NULL, buf, index, out, post_fields, NFIELDS(post_fields));
}

int proto_decode_post_in(const proto_alloc_t *a, const char *buf, int *index, proto_post_t *out)
{
    return decode_fields(a, buf, index, out, post_fields, NFIELDS(post_fields));
}

int proto_decode_tag(const char *buf, int *index, proto_tag_t *out)
{
    return decode_fields(NULL, buf, index, out, tag_fields, NFIELDS(tag_fields));
}

int proto_decode_author(const char *buf, int *index, proto_author_t *out)
{
    return decode_fields(NULL, buf, index, out, author_fields, NFIELDS(author_fields));
}

int proto_decode_settings(const char *buf, int *index, proto_settings_t *out)
{
    return decode_fields(NULL, buf, index, out, settings_fields, NFIELDS(settings_fields));
}

static int dec_int_or_nil(const char *buf, int *index, int *out)
{
    long l;
    if (ei_decode_long(buf, index, &l) == 0) {
        *out = (int)l;
        return 0;
    }
    *out = 0;
    return cn_decode_atom_is(buf, index, "nil") ? 0 : -EINVAL;
}

int proto_decode_post_list(const char *buf, int *index, proto_post_t **out, int *n,
                           proto_pagination_t *pg)
{
    return proto_decode_post_list_in(NULL, buf, index, out, n, pg);
}

int proto_decode_post_list_in(const proto_alloc_t *a, const char *buf, int *index,
                              proto_post_t **out, int *n, proto_pagination_t *pg)
{
    int arity;
    char key[MAXATOMLEN_UTF8];
    *out = NULL;
    *n = 0;
    if (ei_decode_map_header(buf, index, &arity) < 0)
        return -EINVAL;
    for (int i = 0; i < arity; i++) {
        if (ei_decode_atom(buf, index, key) < 0)
            return -EINVAL;
        if (strcmp(key, "posts") == 0) {
            if (decode_array(a, buf, index, (void **)out, n, sizeof(proto_post_t), post_fields,
                             NFIELDS(post_fields)) < 0)
                return -EINVAL;
        } else if (strcmp(key, "meta") == 0 && pg) {
            int m, k;
            if (ei_decode_map_header(buf, index, &m) < 0 || m != 1 ||
                !cn_decode_atom_is(buf, index, "pagination") ||
                ei_decode_map_header(buf, index, &k) < 0)
                return -EINVAL;
            for (int j = 0; j < k; j++) {
                long long v = 0;
                int iv = 0, rc;
                if (ei_decode_atom(buf, index, key) < 0)
                    return -EINVAL;
                if (strcmp(key, "total") == 0) {
                    rc = ei_decode_longlong(buf, index, &v);
                    pg->total = v;
                } else {
                    rc = dec_int_or_nil(buf, index, &iv);
                    if (strcmp(key, "page") == 0)
                        pg->page = iv;
                    else if (strcmp(key, "per_page") == 0)
                        pg->per_page = iv;
                    else if (strcmp(key, "pages") == 0)
                        pg->pages = iv;
                }
                if (rc < 0)
                    return -EINVAL;
            }
        } else if (ei_skip_term(buf, index) < 0) {
            return -EINVAL;
        }
    }
    return 0;
}

int proto_decode_reply(const char *buf, int *index, char *reason, int reasonlen)
{
    int arity;
    char a[MAXATOMLEN_UTF8];
    if (reasonlen > 0)
        reason[0] = '\0';
    if (ei_decode_tuple_header(buf, index, &arity) < 0 || arity != 2 ||
        ei_decode_atom(buf, index, a) < 0)
        return -EINVAL;
    if (strcmp(a, "ok") == 0)
        return PROTO_OK;
    if (strcmp(a, "error") == 0) {
        if (ei_decode_atom(buf, index, a) < 0)
            return -EINVAL;
        snprintf(reason, (size_t)reasonlen, "%s", a);
        return PROTO_ERROR;
    }
    if (strcmp(a, "redirect") == 0) {
        char *s;
        if (dec_str(NULL, buf, index, &s) < 0 || s == NULL)
            return -EINVAL;
        snprintf(reason, (size_t)reasonlen, "%s", s);
        free(s);
        return PROTO_REDIRECT;
    }
    return -EINVAL;
}

/* ---------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------ */

/* Argument shapes of the requests, after the request atom. */
enum { A_NONE, A_SLUG, A_TOKEN, A_OPTS, A_QUERY_OPTS, A_IDS, A_PID };

static const struct req_def {
    proto_req_kind_t kind;
    const char *name;
    int args; /* A_* */
} req_defs[] = {
    { PROTO_REQ_GET_POST, "get_post", A_SLUG },
    { PROTO_REQ_GET_PAGE, "get_page", A_SLUG },
    { PROTO_REQ_GET_PREVIEW, "get_preview", A_TOKEN },
    { PROTO_REQ_LIST_POSTS, "list_posts", A_OPTS },
    { PROTO_REQ_GET_TAG, "get_tag", A_SLUG },
    { PROTO_REQ_LIST_TAGS, "list_tags", A_NONE },
    { PROTO_REQ_GET_AUTHOR, "get_author", A_SLUG },
    { PROTO_REQ_LIST_AUTHORS, "list_authors", A_NONE },
    { PROTO_REQ_GET_SETTINGS, "get_settings", A_NONE },
    { PROTO_REQ_SEARCH, "search", A_QUERY_OPTS },
    { PROTO_REQ_SITEMAP, "sitemap", A_NONE },
    { PROTO_REQ_GET_POSTS, "get_posts", A_IDS },
    { PROTO_REQ_CONTENT_VERSION, "content_version", A_NONE },
    { PROTO_REQ_SUBSCRIBE, "subscribe", A_PID },
};

static int args_arity(int args)
{
    return args == A_NONE ? 0 : args == A_QUERY_OPTS ? 3 : 2;
}

void proto_list_opts_init(proto_list_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->page = 1;
    o->featured = -1;
}

static int encode_opts(ei_x_buff *x, const proto_list_opts_t *o)
{
    int n = 2 + (o->tag[0] != 0) + (o->author[0] != 0) + (o->featured >= 0);
    if (o->per_page == 0)
        n--;
    if (ei_x_encode_map_header(x, n) < 0 || ei_x_encode_atom(x, "page") < 0 ||
        ei_x_encode_long(x, o->page) < 0)
        return -ENOMEM;
    if (o->per_page &&
        (ei_x_encode_atom(x, "per_page") < 0 || ei_x_encode_long(x, o->per_page) < 0))
        return -ENOMEM;
    if (o->tag[0] && (ei_x_encode_atom(x, "tag") < 0 || enc_str(x, o->tag) < 0))
        return -ENOMEM;
    if (o->author[0] && (ei_x_encode_atom(x, "author") < 0 || enc_str(x, o->author) < 0))
        return -ENOMEM;
    if (o->featured >= 0 &&
        (ei_x_encode_atom(x, "featured") < 0 || ei_x_encode_boolean(x, o->featured) < 0))
        return -ENOMEM;
    return 0;
}

int proto_req_encode(ei_x_buff *x, const proto_req_t *r)
{
    const struct req_def *d = NULL;
    for (size_t i = 0; i < sizeof(req_defs) / sizeof(req_defs[0]); i++)
        if (req_defs[i].kind == r->kind)
            d = &req_defs[i];
    if (d == NULL)
        return -EINVAL;
    if (d->args == A_NONE)
        return ei_x_encode_atom(x, d->name) < 0 ? -ENOMEM : 0;
    if (ei_x_encode_tuple_header(x, args_arity(d->args)) < 0 ||
        ei_x_encode_atom(x, d->name) < 0)
        return -ENOMEM;
    switch (d->args) {
    case A_SLUG:
    case A_TOKEN:
        return enc_str(x, r->slug) < 0 ? -ENOMEM : 0;
    case A_OPTS:
        return encode_opts(x, &r->opts);
    case A_QUERY_OPTS:
        return enc_str(x, r->query) < 0 ? -ENOMEM : encode_opts(x, &r->opts);
    case A_IDS:
        if (r->nids > 0 && ei_x_encode_list_header(x, r->nids) < 0)
            return -ENOMEM;
        for (int i = 0; i < r->nids; i++)
            if (ei_x_encode_longlong(x, r->ids[i]) < 0)
                return -ENOMEM;
        return ei_x_encode_empty_list(x) < 0 ? -ENOMEM : 0;
    case A_PID:
        return cn_x_encode_pid(x, r->pid);
    }
    return -EINVAL;
}

static int decode_opts(const char *buf, int *index, proto_list_opts_t *o)
{
    int n;
    char key[MAXATOMLEN_UTF8];
    if (ei_decode_map_header(buf, index, &n) < 0)
        return -EINVAL;
    for (int i = 0; i < n; i++) {
        long v;
        int b;
        if (ei_decode_atom(buf, index, key) < 0)
            return -EINVAL;
        if (strcmp(key, "page") == 0) {
            if (ei_decode_long(buf, index, &v) < 0 || v < 1 || v > 1000000)
                return -EINVAL;
            o->page = (int)v;
        } else if (strcmp(key, "per_page") == 0) {
            if (ei_decode_long(buf, index, &v) < 0 || v < 1 || v > PROTO_PER_PAGE_MAX)
                return -EINVAL;
            o->per_page = (int)v;
        } else if (strcmp(key, "tag") == 0) {
            if (dec_bin_fixed(buf, index, o->tag, sizeof o->tag) < 0)
                return -EINVAL;
        } else if (strcmp(key, "author") == 0) {
            if (dec_bin_fixed(buf, index, o->author, sizeof o->author) < 0)
                return -EINVAL;
        } else if (strcmp(key, "featured") == 0) {
            if (ei_decode_boolean(buf, index, &b) < 0)
                return -EINVAL;
            o->featured = b;
        } else {
            return -EINVAL; /* a misspelt option is a caller bug: say so */
        }
    }
    return 0;
}

int proto_req_decode(const char *buf, int *index, proto_req_t *out)
{
    int type, size, arity = 0, i = *index;
    char name[MAXATOMLEN_UTF8];
    memset(out, 0, sizeof(*out));
    proto_list_opts_init(&out->opts);
    if (ei_get_type(buf, &i, &type, &size) < 0)
        return -EINVAL;
    if (type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT) {
        if (ei_decode_tuple_header(buf, &i, &arity) < 0 || arity < 2 || arity > 3)
            return -EINVAL;
    }
    if (ei_decode_atom(buf, &i, name) < 0)
        return -EINVAL;
    const struct req_def *d = NULL;
    for (size_t k = 0; k < sizeof(req_defs) / sizeof(req_defs[0]); k++)
        if (strcmp(req_defs[k].name, name) == 0 && args_arity(req_defs[k].args) == arity)
            d = &req_defs[k];
    if (d == NULL)
        return -EINVAL;
    out->kind = d->kind;
    out->name = d->name;
    out->arity = arity;
    switch (d->args) {
    case A_NONE:
        break;
    case A_SLUG:
        if (dec_bin_fixed(buf, &i, out->slug, sizeof out->slug) < 0 || out->slug[0] == 0)
            return -EINVAL;
        break;
    case A_TOKEN:
        if (dec_bin_fixed(buf, &i, out->slug, PROTO_TOKEN_MAX + 1) < 0 || out->slug[0] == 0)
            return -EINVAL;
        break;
    case A_OPTS:
        if (decode_opts(buf, &i, &out->opts) < 0)
            return -EINVAL;
        break;
    case A_QUERY_OPTS:
        if (dec_bin_fixed(buf, &i, out->query, sizeof out->query) < 0 ||
            decode_opts(buf, &i, &out->opts) < 0)
            return -EINVAL;
        break;
    case A_IDS: {
        int n;
        if (ei_get_type(buf, &i, &type, &size) < 0)
            return -EINVAL;
        if (type == ERL_NIL_EXT) {
            i++;
            break;
        }
        if (type == ERL_STRING_EXT) { /* a list of small integers, as erl sends [1,2] */
            if (size > PROTO_IDS_MAX)
                return -EINVAL;
            char s[PROTO_IDS_MAX + 1];
            if (ei_decode_string(buf, &i, s) < 0)
                return -EINVAL;
            for (int k = 0; k < size; k++)
                out->ids[k] = (unsigned char)s[k];
            out->nids = size;
            break;
        }
        int start = i;
        if (ei_decode_list_header(buf, &i, &n) < 0 || n > PROTO_IDS_MAX)
            return -EINVAL;
        for (int k = 0; k < n; k++) {
            long long v;
            if (ei_decode_longlong(buf, &i, &v) < 0)
                return -EINVAL;
            out->ids[k] = v;
        }
        out->nids = n;
        if (list_end(buf, &i, start, n) < 0)
            return -EINVAL;
        break;
    }
    case A_PID:
        if (cn_decode_pid(buf, &i, &out->pid) < 0)
            return -EINVAL;
        break;
    }
    *index = i;
    return 0;
}
