/* proto_test.c - the RPC contract's codecs: every request round-trips; malformed
 * requests are refused; replies decode to what was encoded; internal tags never
 * leave the CMS. Terms are built with libei as a caller would send them. */
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/node.h"
#include "cnode/proc.h"
#include "proto/proto.h"

static int decode_x(ei_x_buff *x, proto_req_t *r)
{
    int i = 1; /* past the version byte */
    int rc = proto_req_decode(x->buff, &i, r);
    if (rc == 0 && i != x->index)
        return -100; /* the whole term must be consumed */
    return rc;
}

TEST(requests_round_trip)
{
    proto_req_kind_t kinds[] = { PROTO_REQ_GET_POST,     PROTO_REQ_GET_PAGE,
                                 PROTO_REQ_GET_PREVIEW,  PROTO_REQ_LIST_POSTS,
                                 PROTO_REQ_GET_TAG,      PROTO_REQ_LIST_TAGS,
                                 PROTO_REQ_GET_AUTHOR,   PROTO_REQ_LIST_AUTHORS,
                                 PROTO_REQ_GET_SETTINGS, PROTO_REQ_SEARCH,
                                 PROTO_REQ_SITEMAP,      PROTO_REQ_GET_POSTS,
                                 PROTO_REQ_CONTENT_VERSION };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        proto_req_t r, d;
        memset(&r, 0, sizeof r);
        proto_list_opts_init(&r.opts);
        r.kind = kinds[k];
        strcpy(r.slug, "hello-world");
        strcpy(r.query, "postgres tuning");
        r.opts.page = 3;
        r.opts.per_page = 25;
        strcpy(r.opts.tag, "c");
        r.opts.featured = 1;
        r.ids[0] = 7;
        r.ids[1] = 1000000;
        r.nids = 2;
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ASSERT_EQ(proto_req_encode(&x, &r), 0);
        ASSERT_EQ(decode_x(&x, &d), 0);
        ASSERT_EQ(d.kind, r.kind);
        if (r.kind == PROTO_REQ_GET_POST)
            ASSERT_STR_EQ(d.slug, "hello-world");
        if (r.kind == PROTO_REQ_SEARCH) {
            ASSERT_STR_EQ(d.query, "postgres tuning");
            ASSERT_EQ(d.opts.page, 3);
            ASSERT_EQ(d.opts.per_page, 25);
            ASSERT_STR_EQ(d.opts.tag, "c");
            ASSERT_EQ(d.opts.featured, 1);
        }
        if (r.kind == PROTO_REQ_GET_POSTS) {
            ASSERT_EQ(d.nids, 2);
            ASSERT_EQ(d.ids[1], 1000000);
        }
        ei_x_free(&x);
    }
}

/* Build a term from a format string with ei_x_format_wo_ver (which knows no
 * binaries or maps: those are added by hand). */
static int decode_fmt(const char *fmt)
{
    ei_x_buff x;
    proto_req_t r;
    ei_x_new_with_version(&x);
    ASSERT_EQ(ei_x_format_wo_ver(&x, fmt), 0);
    int rc = decode_x(&x, &r);
    ei_x_free(&x);
    return rc;
}

/* {list_posts, #{Key => Value}} with Value given in ei_x_format syntax. */
static int decode_opts1(const char *key, const char *value)
{
    ei_x_buff x;
    proto_req_t r;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "list_posts");
    ei_x_encode_map_header(&x, 1);
    ei_x_encode_atom(&x, key);
    ASSERT_EQ(ei_x_format_wo_ver(&x, value), 0);
    int rc = decode_x(&x, &r);
    ei_x_free(&x);
    return rc;
}

TEST(malformed_requests_refused)
{
    /* Wrong shapes. */
    ASSERT_EQ(decode_fmt("hello"), -EINVAL);
    ASSERT_EQ(decode_fmt("{get_post}"), -EINVAL);
    ASSERT_EQ(decode_fmt("get_post"), -EINVAL);
    ASSERT_EQ(decode_fmt("{get_post, \"a-list-not-a-binary\"}"), -EINVAL);
    ASSERT_EQ(decode_fmt("{get_post, 42}"), -EINVAL);
    ASSERT_EQ(decode_fmt("{list_tags, 1}"), -EINVAL);
    ASSERT_EQ(decode_opts1("page", "0"), -EINVAL);
    ASSERT_EQ(decode_opts1("per_page", "101"), -EINVAL);
    ASSERT_EQ(decode_opts1("perpage", "10"), -EINVAL);
    ASSERT_EQ(decode_opts1("featured", "maybe"), -EINVAL);
    ASSERT_EQ(decode_opts1("tag", "\"a-list\""), -EINVAL);
    ASSERT_EQ(decode_fmt("{list_posts, [1,2]}"), -EINVAL);
    ASSERT_EQ(decode_fmt("{get_posts, [a]}"), -EINVAL);
    ASSERT_EQ(decode_fmt("{1, 2, 3, 4}"), -EINVAL);
    ASSERT_EQ(decode_fmt("[]"), -EINVAL);
    /* Good ones through the same path. */
    ASSERT_EQ(decode_opts1("page", "2"), 0);
    ASSERT_EQ(decode_opts1("per_page", "100"), 0);
    ASSERT_EQ(decode_opts1("featured", "false"), 0);
    ASSERT_EQ(decode_fmt("{get_posts, [1, 2, 300]}"), 0);
    ASSERT_EQ(decode_fmt("{get_posts, []}"), 0);
    ASSERT_EQ(decode_fmt("content_version"), 0);

    /* Binaries: invalid UTF-8, embedded NUL, too long, empty. */
    const char *bad[] = { "\xff\xfe", "a\0b", "" };
    size_t lens[] = { 2, 3, 0 };
    for (int k = 0; k < 3; k++) {
        ei_x_buff x;
        proto_req_t r;
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_atom(&x, "get_post");
        ei_x_encode_binary(&x, bad[k], (long)lens[k]);
        ASSERT_EQ(decode_x(&x, &r), -EINVAL);
        ei_x_free(&x);
    }
    char big[PROTO_SLUG_MAX + 2];
    memset(big, 'a', sizeof big);
    ei_x_buff x;
    proto_req_t r;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "get_tag");
    ei_x_encode_binary(&x, big, (long)sizeof big);
    ASSERT_EQ(decode_x(&x, &r), -EINVAL);
    ei_x_free(&x);
}

TEST(post_reply_round_trip_hides_internal_tags)
{
    proto_post_t p = { 0 }, d = { 0 };
    p.id = 42;
    p.type = PROTO_POST;
    p.status = PROTO_PUBLISHED;
    p.title = strdup("Title with \xc3\xa9");
    p.slug = strdup("title");
    p.html = strdup("<p>x</p>");
    p.excerpt = strdup("x");
    p.featured = true;
    p.published_at = 1700000000;
    p.reading_time = 4;
    p.markdown = strdup("never on the wire");
    p.ntags = 2;
    p.tags = calloc(2, sizeof(proto_tag_t));
    p.tags[0].slug = strdup("hash-secret");
    p.tags[0].name = strdup("#secret");
    p.tags[0].internal = true;
    p.tags[1].slug = strdup("c");
    p.tags[1].name = strdup("C");
    p.nauthors = 1;
    p.authors = calloc(1, sizeof(proto_author_t));
    p.authors[0].slug = strdup("alice");
    ei_x_buff x;
    ei_x_new(&x);
    ASSERT_EQ(proto_encode_post(&x, &p, false), 0);
    int i = 0;
    ASSERT_EQ(proto_decode_post(x.buff, &i, &d), 0);
    ASSERT_EQ(i, x.index);
    ASSERT_EQ(d.id, 42);
    ASSERT_STR_EQ(d.title, p.title);
    ASSERT_STR_EQ(d.html, "<p>x</p>");
    ASSERT_NULL(d.markdown);
    ASSERT_NULL(d.custom_excerpt);
    ASSERT(d.featured);
    ASSERT_EQ(d.published_at, 1700000000);
    ASSERT_EQ(d.status, PROTO_PUBLISHED);
    ASSERT_EQ(d.reading_time, 4);
    ASSERT_EQ(d.ntags, 1);
    ASSERT_STR_EQ(d.tags[0].slug, "c");
    ASSERT_EQ(d.nauthors, 1);
    ASSERT_STR_EQ(d.authors[0].slug, "alice");
    char text[2048];
    cn_term_t t = { x.buff, 0, x.index };
    ASSERT_GT(cn_term_print(t, text, sizeof text), 0);
    ASSERT_NULL(strstr(text, "secret"));
    ASSERT_NULL(strstr(text, "never on the wire"));
    ei_x_free(&x);
    proto_post_clear(&p);
    proto_post_clear(&d);
}

TEST(list_reply_and_status)
{
    proto_post_t v[2] = { { 0 } };
    v[0].id = 1;
    v[0].title = strdup("a");
    v[0].html = strdup("<p>big</p>");
    v[1].id = 2;
    v[1].title = strdup("b");
    proto_pagination_t pg = { 2, 2, 3, 6 }, got = { 0 };
    ei_x_buff x;
    ei_x_new(&x);
    ASSERT_EQ(proto_encode_ok_header(&x), 0);
    ASSERT_EQ(proto_encode_post_list(&x, v, 2, &pg), 0);
    int i = 0;
    char reason[64];
    ASSERT_EQ(proto_decode_reply(x.buff, &i, reason, sizeof reason), PROTO_OK);
    proto_post_t *out;
    int n;
    ASSERT_EQ(proto_decode_post_list(x.buff, &i, &out, &n, &got), 0);
    ASSERT_EQ(n, 2);
    ASSERT_NULL(out[0].html); /* summaries leave the body out */
    ASSERT_STR_EQ(out[1].title, "b");
    ASSERT_EQ(got.page, 2);
    ASSERT_EQ(got.pages, 3);
    ASSERT_EQ(got.total, 6);
    proto_posts_free(out, n);
    ei_x_free(&x);
    ei_x_new(&x);
    proto_encode_error(&x, "not_found");
    i = 0;
    ASSERT_EQ(proto_decode_reply(x.buff, &i, reason, sizeof reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "not_found");
    ei_x_free(&x);
    ei_x_new(&x);
    proto_encode_redirect(&x, "new-slug");
    i = 0;
    ASSERT_EQ(proto_decode_reply(x.buff, &i, reason, sizeof reason), PROTO_REDIRECT);
    ASSERT_STR_EQ(reason, "new-slug");
    ei_x_free(&x);
    proto_post_clear(&v[0]);
    proto_post_clear(&v[1]);
}

TEST(utf8_validator)
{
    ASSERT(proto_utf8_valid("plain", 5));
    ASSERT(proto_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    ASSERT(!proto_utf8_valid("\xc0\xaf", 2));         /* overlong */
    ASSERT(!proto_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ASSERT(!proto_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ASSERT(!proto_utf8_valid("\xe2\x82", 2));         /* truncated */
    ASSERT(!proto_utf8_valid("\x80", 1));
}

/* Encode {Key => Value} maps by hand to reach the decoders' paths: times read in
 * place, times that only strptime takes, atoms in every encoding. */
static int decode_post_from(void (*fill)(ei_x_buff *, const void *), const void *arg,
                            proto_post_t *d)
{
    ei_x_buff x;
    ei_x_new(&x);
    fill(&x, arg);
    int i = 0;
    memset(d, 0, sizeof(*d));
    int rc = proto_decode_post(x.buff, &i, d);
    ei_x_free(&x);
    return rc;
}

static void fill_time(ei_x_buff *x, const void *arg)
{
    const char *s = arg;
    ei_x_encode_map_header(x, 1);
    ei_x_encode_atom(x, "published_at");
    ei_x_encode_binary(x, s, (long)strlen(s));
}

TEST(times_decode_in_place_and_by_strptime)
{
    proto_post_t p = { 0 }, d;
    /* every encoded time comes back, 1900 to 2100, day ends and leap days */
    unsigned seed = 7;
    for (int64_t t = -2208988800LL; t < 4102444800LL;) {
        p.published_at = t;
        ei_x_buff x;
        ei_x_new(&x);
        ASSERT_EQ(proto_encode_post(&x, &p, true), 0);
        int i = 0;
        memset(&d, 0, sizeof d);
        ASSERT_EQ(proto_decode_post(x.buff, &i, &d), 0);
        ASSERT_EQ(d.published_at, t);
        ei_x_free(&x);
        proto_post_clear(&d);
        seed = seed * 1103515245u + 12345u;
        t += 86399 + (int64_t)(seed >> 12) % 3000000;
    }
    /* not the encoder's shape: strptime and timegm decide, as before */
    ASSERT_EQ(decode_post_from(fill_time, "2024-02-29T23:59:59Z", &d), 0);
    ASSERT_EQ(d.published_at, 1709251199);
    ASSERT_EQ(decode_post_from(fill_time, "2023-02-29T00:00:00Z", &d), 0); /* Mar 1 */
    ASSERT_EQ(d.published_at, 1677628800);
    ASSERT_EQ(decode_post_from(fill_time, "2023-3-1T00:00:00Z", &d), 0);
    ASSERT_EQ(d.published_at, 1677628800);
    ASSERT_EQ(decode_post_from(fill_time, "2023-03-01T00:00:00", &d), -EINVAL);
    ASSERT_EQ(decode_post_from(fill_time, "2023-03-01T00:00:00Zx", &d), -EINVAL);
    ASSERT_EQ(decode_post_from(fill_time, "yesterday", &d), -EINVAL);
    proto_post_clear(&d);
}

static void fill_atoms(ei_x_buff *x, const void *arg)
{
    /* keys and values as Latin-1 atoms (ATOM_EXT), then an unknown long key */
    (void)arg;
    char key[300];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    ei_x_encode_map_header(x, 4);
    ei_x_encode_atom_len_as(x, "type", 4, ERLANG_LATIN1, ERLANG_LATIN1);
    ei_x_encode_atom_len_as(x, "page", 4, ERLANG_LATIN1, ERLANG_LATIN1);
    ei_x_encode_atom_len_as(x, "status", 6, ERLANG_LATIN1, ERLANG_UTF8);
    ei_x_encode_atom_len_as(x, "scheduled", 9, ERLANG_LATIN1, ERLANG_LATIN1);
    ei_x_encode_atom(x, "slug");
    ei_x_encode_atom(x, "nil");
    ei_x_encode_atom_len_as(x, key, 255, ERLANG_UTF8, ERLANG_UTF8);
    ei_x_encode_binary(x, "skipped", 7);
}

TEST(atoms_in_every_encoding)
{
    proto_post_t d;
    ASSERT_EQ(decode_post_from(fill_atoms, NULL, &d), 0);
    ASSERT_EQ(d.type, PROTO_PAGE);
    ASSERT_EQ(d.status, PROTO_SCHEDULED);
    ASSERT_NULL(d.slug);
    proto_post_clear(&d);
}

/* A bump allocator over a fixed buffer that may be told to run dry after `left`
 * allocations, for the *_in decoders. */
typedef struct bump {
    char mem[1 << 16];
    size_t used;
    int left;
} bump_t;

static void *bump_alloc(void *ud, size_t n)
{
    bump_t *b = ud;
    if (b->left-- == 0 || b->used + n > sizeof b->mem)
        return NULL;
    void *p = b->mem + b->used;
    b->used += (n + 15) & ~(size_t)15;
    return p;
}

TEST(decoders_take_memory_from_an_allocator)
{
    proto_post_t v[3] = { { 0 } };
    proto_tag_t tags[1] = { { .slug = "t", .name = "T" } };
    proto_author_t authors[2] = { { .slug = "a", .name = "A" }, { .slug = "b", .bio = "bio" } };
    for (int k = 0; k < 3; k++) {
        v[k].id = k + 1;
        v[k].title = "title";
        v[k].slug = k == 1 ? NULL : "slug";
        v[k].excerpt = "excerpt";
        v[k].published_at = 1700000000 + k;
        v[k].tags = tags;
        v[k].ntags = 1;
        v[k].authors = authors;
        v[k].nauthors = 2;
    }
    proto_pagination_t pg = { 1, 3, 1, 3 }, got = { 0 };
    ei_x_buff x;
    ei_x_new(&x);
    ASSERT_EQ(proto_encode_post_list(&x, v, 3, &pg), 0);
    static bump_t b;
    b.used = 0;
    b.left = -1;
    proto_alloc_t a = { bump_alloc, &b };
    proto_post_t *out, *heap;
    int n, nh, i = 0;
    ASSERT_EQ(proto_decode_post_list_in(&a, x.buff, &i, &out, &n, &got), 0);
    ASSERT_EQ(i, x.index);
    i = 0;
    ASSERT_EQ(proto_decode_post_list(x.buff, &i, &heap, &nh, NULL), 0);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(got.total, 3);
    for (int k = 0; k < 3; k++) {
        ASSERT((char *)out[k].title >= b.mem && (char *)out[k].title < b.mem + sizeof b.mem);
        ASSERT_STR_EQ(out[k].title, heap[k].title);
        ASSERT_EQ(out[k].slug == NULL, k == 1);
        ASSERT_EQ(out[k].published_at, 1700000000 + k);
        ASSERT_EQ(out[k].nauthors, 2);
        ASSERT_STR_EQ(out[k].authors[1].bio, "bio");
        ASSERT_NULL(out[k].authors[1].name);
        ASSERT_STR_EQ(out[k].tags[0].name, "T");
    }
    proto_posts_free(heap, nh);
    /* An allocator running dry at each point fails the decode, and nothing leaks
     * (LeakSanitizer): the decoder frees nothing it did not malloc. */
    for (int left = 0; left < 200; left++) {
        b.used = 0;
        b.left = left;
        i = 0;
        int rc = proto_decode_post_list_in(&a, x.buff, &i, &out, &n, &got);
        if (rc == 0) {
            ASSERT(left > 20);
            break;
        }
        ASSERT(rc == -ENOMEM || rc == -EINVAL);
    }
    /* one post, as get_post answers */
    ei_x_free(&x);
    ei_x_new(&x);
    v[0].html = "<p>full</p>";
    ASSERT_EQ(proto_encode_post(&x, &v[0], false), 0);
    b.used = 0;
    b.left = -1;
    proto_post_t one;
    memset(&one, 0, sizeof one);
    i = 0;
    ASSERT_EQ(proto_decode_post_in(&a, x.buff, &i, &one), 0);
    ASSERT_STR_EQ(one.html, "<p>full</p>");
    ei_x_free(&x);
}

/* An empty list may come as a LIST_EXT of no elements with its [] tail (not how
 * erl writes [], but valid): the tail is read, the fields after it decode, and
 * the decoder ends where the term ends (found by tests/fuzz/proto_fuzz.c). */
TEST(empty_list_ext_has_a_tail)
{
    ei_x_buff x;
    ei_x_new(&x);
    ei_x_encode_map_header(&x, 2);
    ei_x_encode_atom(&x, "navigation");
    ei_x_encode_list_header(&x, 0); /* libei writes NIL for 0: write LIST_EXT by hand */
    x.index--;
    const char list0[] = { ERL_LIST_EXT, 0, 0, 0, 0, ERL_NIL_EXT };
    ei_x_append_buf(&x, list0, sizeof list0);
    ei_x_encode_atom(&x, "title");
    ei_x_encode_binary(&x, "t", 1);
    proto_settings_t s;
    memset(&s, 0, sizeof s);
    int i = 0;
    ASSERT_EQ(proto_decode_settings(x.buff, &i, &s), 0);
    ASSERT_EQ(i, x.index);
    ASSERT_EQ(s.nnavigation, 0);
    ASSERT_STR_EQ(s.title, "t");
    proto_settings_clear(&s);
    ei_x_free(&x);
}
