/* proto.h - the RPC contract between the CMS and its callers: the typed request
 * and reply structs and their Erlang-term codecs (libei only, no hand-written
 * term codec).
 *
 * A caller sends a gen_server call to the process registered as `cms`. Requests:
 *
 *   {get_post, Slug}            {get_page, Slug}           {get_preview, Token}
 *   {list_posts, Opts}          {get_tag, Slug}            list_tags
 *   {get_author, Slug}          list_authors               get_settings
 *   {search, Query, Opts}       sitemap                    {get_posts, Ids}
 *   content_version             {subscribe, Pid}
 *
 * Slug, Token and Query are binaries (UTF-8); Ids a list of integers (at most
 * PROTO_IDS_MAX); Opts a map with optional atom keys page (>= 1), per_page
 * (1..PROTO_PER_PAGE_MAX), tag (binary slug), author (binary slug), featured
 * (true | false). Anything else is {error, bad_request}.
 *
 * Replies: {ok, Map} with atom keys and binary strings (absent values are the
 * atom nil, times are ISO 8601 UTC binaries), {redirect, NewSlug} when the slug
 * asked for is an old slug of a post, or {error, not_found | bad_request |
 * internal}. Shapes:
 *
 *   get_post/get_page/get_preview  {ok, Post}            (proto_post_t, full)
 *   list_posts / search            {ok, #{posts => [Post summary],
 *                                        meta => #{pagination => #{page, per_page,
 *                                        pages, total, next, prev}}}}
 *   get_posts                      {ok, #{posts => [Post summary]}}
 *   get_tag / get_author           {ok, Tag | Author}
 *   list_tags / list_authors       {ok, #{tags | authors => [...]}}
 *   get_settings                   {ok, Settings}
 *   sitemap                        {ok, #{entries => [#{path, lastmod, kind}]}}
 *   content_version / subscribe    {ok, #{version => N}}
 *
 * Subscribers receive {content_changed, Version, [Path]} after every change that
 * readers can see (publish, edit of a published post, unpublish, delete).
 *
 * The content structs are shared with the CMS, which keeps a few fields that are
 * never encoded (marked "CMS only"). Every char * is NUL-terminated UTF-8 owned by
 * the struct (NULL = absent) and freed by the matching *_clear() function.
 */
#ifndef ONEBLOG_PROTO_H
#define ONEBLOG_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "cnode/term.h"

#define PROTO_SLUG_MAX 191     /* bytes */
#define PROTO_QUERY_MAX 256    /* bytes of a search query */
#define PROTO_IDS_MAX 100      /* ids in one get_posts */
#define PROTO_PER_PAGE_MAX 100
#define PROTO_TOKEN_MAX 64     /* bytes of a preview token */

enum { PROTO_POST = 0, PROTO_PAGE = 1 };
enum { PROTO_DRAFT = 0, PROTO_SCHEDULED = 1, PROTO_PUBLISHED = 2 };

/* ---------------------------------------------------------------------------------
 * Content
 * ------------------------------------------------------------------------------ */

typedef struct proto_tag {
    int64_t id;
    char *slug, *name, *description, *feature_image, *meta_title, *meta_description;
    bool internal;      /* name starts with '#': never shown to readers */
    int64_t post_count; /* published posts with this tag */
} proto_tag_t;

typedef struct proto_author {
    int64_t id;
    char *slug, *name, *bio, *profile_image, *website, *location;
    int64_t post_count; /* published posts by this author */
} proto_author_t;

typedef struct proto_post {
    int64_t id;
    int type;   /* PROTO_POST | PROTO_PAGE */
    int status; /* PROTO_DRAFT | PROTO_SCHEDULED | PROTO_PUBLISHED */
    char *title, *slug;
    char *html;           /* rendered once at save */
    char *plaintext;      /* html without markup, for search and excerpts */
    char *custom_excerpt; /* as written by the editor */
    char *excerpt;        /* custom_excerpt, else the start of plaintext */
    char *feature_image, *feature_image_alt, *feature_image_caption;
    bool featured;
    int64_t created_at, updated_at, published_at; /* s since the epoch; 0 = none */
    char *meta_title, *meta_description;
    char *og_title, *og_description, *og_image;
    char *canonical_url;
    int reading_time;     /* minutes, at 265 words a minute, at least 1 */
    proto_tag_t *tags;    /* ordered; tags[0] is the primary tag */
    int ntags;
    proto_author_t *authors; /* ordered; authors[0] is the primary author */
    int nauthors;
    /* CMS only (never encoded): */
    char *markdown;       /* the source */
    char *preview_token;  /* secret for the preview link */
} proto_post_t;

typedef struct proto_nav {
    char *label, *url;
} proto_nav_t;

typedef struct proto_settings {
    char *title, *description, *url, *timezone, *locale, *logo, *accent_color;
    int posts_per_page;
    proto_nav_t *navigation;
    int nnavigation;
} proto_settings_t;

typedef struct proto_pagination {
    int page, per_page, pages;
    int64_t total;
} proto_pagination_t;

typedef struct proto_sitemap_entry {
    char *path;   /* "/slug/", "/tag/x/", "/author/y/" */
    int64_t lastmod;
    const char *kind; /* static: "post", "page", "tag", "author" */
} proto_sitemap_entry_t;

void proto_tag_clear(proto_tag_t *t);
void proto_author_clear(proto_author_t *a);
void proto_post_clear(proto_post_t *p);
void proto_posts_free(proto_post_t *v, int n);
void proto_settings_clear(proto_settings_t *s);

/* ---------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------ */

typedef enum proto_req_kind {
    PROTO_REQ_GET_POST = 1,
    PROTO_REQ_GET_PAGE,
    PROTO_REQ_GET_PREVIEW,
    PROTO_REQ_LIST_POSTS,
    PROTO_REQ_GET_TAG,
    PROTO_REQ_LIST_TAGS,
    PROTO_REQ_GET_AUTHOR,
    PROTO_REQ_LIST_AUTHORS,
    PROTO_REQ_GET_SETTINGS,
    PROTO_REQ_SEARCH,
    PROTO_REQ_SITEMAP,
    PROTO_REQ_GET_POSTS,
    PROTO_REQ_CONTENT_VERSION,
    PROTO_REQ_SUBSCRIBE,
} proto_req_kind_t;

typedef struct proto_list_opts {
    int page;      /* >= 1; default 1 */
    int per_page;  /* 1..PROTO_PER_PAGE_MAX; 0 = the site's posts_per_page */
    char tag[PROTO_SLUG_MAX + 1];    /* "" = any */
    char author[PROTO_SLUG_MAX + 1]; /* "" = any */
    int featured;  /* -1 any, 0 not featured, 1 featured */
} proto_list_opts_t;

typedef struct proto_req {
    proto_req_kind_t kind;
    const char *name; /* static: the request atom */
    int arity;        /* 0 for a bare atom, else the tuple's arity */
    char slug[PROTO_SLUG_MAX + 1];   /* get_post/page/tag/author; token for preview */
    char query[PROTO_QUERY_MAX + 1]; /* search */
    proto_list_opts_t opts;          /* list_posts, search */
    int64_t ids[PROTO_IDS_MAX];      /* get_posts */
    int nids;
    cn_pid_t pid;                    /* subscribe */
} proto_req_t;

/* Defaults for opts: page 1, per_page 0, no filters, featured -1. */
void proto_list_opts_init(proto_list_opts_t *o);

/* Append the request term for r to x (kind and its arguments; name/arity are
 * ignored). Returns 0, or -EINVAL for an unknown kind, -ENOMEM. */
int proto_req_encode(ei_x_buff *x, const proto_req_t *r);

/* Decode the request term at buf+*index into *out (zeroed first) and advance
 * *index. Returns 0, or -EINVAL for anything malformed: unknown request, wrong
 * arity, wrong types, strings too long or not UTF-8, out-of-range options. */
int proto_req_decode(const char *buf, int *index, proto_req_t *out);

/* ---------------------------------------------------------------------------------
 * Replies: encoders (CMS side) append one term to x and return 0 or -ENOMEM
 * ------------------------------------------------------------------------------ */

/* {ok, Post}: summary = true leaves out html and plaintext (lists). */
int proto_encode_post(ei_x_buff *x, const proto_post_t *p, bool summary);
int proto_encode_tag(ei_x_buff *x, const proto_tag_t *t);
int proto_encode_author(ei_x_buff *x, const proto_author_t *a);
int proto_encode_settings(ei_x_buff *x, const proto_settings_t *s);
/* #{posts => [...], meta => #{pagination => ...}} (pg NULL: no meta key). */
int proto_encode_post_list(ei_x_buff *x, const proto_post_t *v, int n,
                           const proto_pagination_t *pg);
int proto_encode_ok_header(ei_x_buff *x);     /* "{ok, " - append one term after */
int proto_encode_error(ei_x_buff *x, const char *reason); /* {error, Reason} */
int proto_encode_redirect(ei_x_buff *x, const char *slug); /* {redirect, Slug} */
int proto_encode_version(ei_x_buff *x, int64_t version);  /* #{version => N} */

/* ---------------------------------------------------------------------------------
 * Replies: decoders (client side and tests). Each decodes the term at *index into a
 * zeroed struct (caller clears it) and returns 0 or -EINVAL; unknown keys are
 * skipped, so the CMS may add fields without breaking older clients.
 * ------------------------------------------------------------------------------ */

int proto_decode_post(const char *buf, int *index, proto_post_t *out);
int proto_decode_tag(const char *buf, int *index, proto_tag_t *out);
int proto_decode_author(const char *buf, int *index, proto_author_t *out);
int proto_decode_settings(const char *buf, int *index, proto_settings_t *out);
/* A post list map: *out is a new array of *n posts (free with proto_posts_free);
 * pg (may be NULL) receives the pagination if present. */
int proto_decode_post_list(const char *buf, int *index, proto_post_t **out, int *n,
                           proto_pagination_t *pg);

/* The same decoders taking every string and array from an allocator: a request's
 * arena, so that a page of posts costs no malloc and free per field. Structs
 * decoded so belong to the allocator: never pass them to the *_clear or
 * proto_posts_free functions (on failure too; the arena frees them). alloc
 * returns memory aligned for any struct here, or NULL (the decoder then fails). */
typedef struct proto_alloc {
    void *(*alloc)(void *ud, size_t n);
    void *ud;
} proto_alloc_t;

int proto_decode_post_in(const proto_alloc_t *a, const char *buf, int *index, proto_post_t *out);
int proto_decode_post_list_in(const proto_alloc_t *a, const char *buf, int *index,
                              proto_post_t **out, int *n, proto_pagination_t *pg);

/* Reply status: decodes the outer tuple. On {ok, X} returns PROTO_OK and leaves
 * *index at X; {error, Reason} returns PROTO_ERROR with the atom in reason;
 * {redirect, Slug} returns PROTO_REDIRECT with the slug in reason. -EINVAL else. */
enum { PROTO_OK = 0, PROTO_ERROR = 1, PROTO_REDIRECT = 2 };
int proto_decode_reply(const char *buf, int *index, char *reason, int reasonlen);

/* True if s[0..len) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool proto_utf8_valid(const char *s, size_t len);

#endif /* ONEBLOG_PROTO_H */
