/* rpc_test.c - the `cms` gen_server called with local cn_gen_call() from a process
 * on the same node, as the client app will once the distribution carries it: the
 * reader API, pagination and filters, search ranking, bad requests that harm
 * nothing, not_found and redirects, content_changed notifications, and scheduled
 * posts going live exactly once, also across a restart. Runs on SQLite, and on
 * PostgreSQL from tests/integ/cms_store.sh.
 */
#include "store_helper.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "cms.h"
#include "cnode/gen_server.h"

static int64_t fake_now = 1700000000;
static int64_t fake_clock(void)
{
    return fake_now;
}

/* ---- helpers ------------------------------------------------------------------- */

static cms_rpc_opts_t rpc_opts; /* outlives the server; not on a process stack */

static void start_cms(cms_store_t *s)
{
    rpc_opts = (cms_rpc_opts_t){ .store = s, .clock = fake_clock };
    int rc = cms_rpc_start(&rpc_opts, NULL);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "cms_rpc_start: %s", cn_strerror(rc));
}

static void stop_cms(void)
{
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("cms"), "normal", 5000), 0);
}

/* Call `cms` with the request in x (consumed); the reply goes to *msg and *reply. */
static void call_x(ei_x_buff *x, cn_msg_t **msg, cn_term_t *reply)
{
    int rc = cn_gen_call(cn_dest_name("cms"), x, 10000, msg, reply);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "call: %s", cn_strerror(rc));
}

static void call_req(const proto_req_t *r, cn_msg_t **msg, cn_term_t *reply)
{
    ei_x_buff x;
    cn_x_new(&x);
    ASSERT_EQ(proto_req_encode(&x, r), 0);
    call_x(&x, msg, reply);
}

static proto_req_t req(proto_req_kind_t kind, const char *slug)
{
    proto_req_t r;
    memset(&r, 0, sizeof r);
    proto_list_opts_init(&r.opts);
    r.kind = kind;
    if (slug)
        snprintf(r.slug, sizeof r.slug, "%s", slug);
    return r;
}

/* The reply's status; on PROTO_OK *idx is at the payload. */
static int reply_status(cn_term_t t, int *idx, char *reason)
{
    *idx = t.index;
    return proto_decode_reply(t.buf, idx, reason, 64);
}

static int get_post(const char *slug, proto_post_t *out, char *reason)
{
    cn_msg_t *m;
    cn_term_t t;
    int i;
    proto_req_t r = req(PROTO_REQ_GET_POST, slug);
    call_req(&r, &m, &t);
    int st = reply_status(t, &i, reason);
    if (st == PROTO_OK)
        ASSERT_EQ(proto_decode_post(t.buf, &i, out), 0);
    cn_msg_free(m);
    return st;
}

static int list(const proto_req_t *r, proto_post_t **v, int *n, proto_pagination_t *pg)
{
    cn_msg_t *m;
    cn_term_t t;
    int i;
    char reason[64];
    call_req(r, &m, &t);
    int st = reply_status(t, &i, reason);
    if (st == PROTO_OK)
        ASSERT_EQ(proto_decode_post_list(t.buf, &i, v, n, pg), 0);
    cn_msg_free(m);
    return st;
}

/* Call with a raw term written in ei_x_format syntax; returns the reply status. */
static int call_fmt(const char *fmt, long long a, long long b, char *reason)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t t;
    int i;
    cn_x_new(&x);
    if (ei_x_format_wo_ver(&x, fmt, a, b) < 0)
        test__fail(__FILE__, __LINE__, "ei_x_format cannot build %s", fmt);
    call_x(&x, &m, &t);
    int st = reply_status(t, &i, reason);
    cn_msg_free(m);
    return st;
}

static int64_t version(void)
{
    cn_msg_t *m;
    cn_term_t t;
    int i, n;
    char reason[64];
    long long v = -1;
    proto_req_t r = req(PROTO_REQ_CONTENT_VERSION, NULL);
    call_req(&r, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    ASSERT_EQ(ei_decode_map_header(t.buf, &i, &n), 0);
    ASSERT(cn_decode_atom_is(t.buf, &i, "version"));
    ASSERT_EQ(ei_decode_longlong(t.buf, &i, &v), 0);
    cn_msg_free(m);
    return v;
}

static void add_author(cms_store_t *s, const char *slug)
{
    cms_user_t u = { 0 };
    char err[CMS_ERR_LEN];
    u.profile.slug = xstrdup(slug);
    u.profile.name = xstrdup(slug);
    ASSERT_EQ(cms_user_add(s, &u, 1, err), 0);
    cms_user_clear(&u);
}

static int64_t add_post(cms_store_t *s, const char *title, const char *md, int status,
                        int64_t published_at, const char *tag1, const char *tag2,
                        const char *author, bool featured)
{
    proto_post_t p = { 0 };
    char err[CMS_ERR_LEN] = "";
    p.title = xstrdup(title);
    p.markdown = xstrdup(md);
    p.status = status;
    p.published_at = published_at;
    p.featured = featured;
    const char *tags[2] = { tag1, tag2 };
    for (int i = 0; i < 2; i++)
        if (tags[i]) {
            p.tags = xrealloc(p.tags, (size_t)(p.ntags + 1) * sizeof(proto_tag_t));
            memset(&p.tags[p.ntags], 0, sizeof(proto_tag_t));
            p.tags[p.ntags++].name = xstrdup(tags[i]);
        }
    if (author) {
        p.authors = xcalloc(1, sizeof(proto_author_t));
        p.authors[0].slug = xstrdup(author);
        p.nauthors = 1;
    }
    cms_save_opts_t o = { .role = CMS_ROLE_EDITOR, .now = fake_now };
    if (cms_post_save(s, &p, &o, NULL, err) < 0)
        test__fail(__FILE__, __LINE__, "save %s: %s", title, err);
    int64_t id = p.id;
    proto_post_clear(&p);
    return id;
}

/* How cn_term_print() shows the binary s: #Bin<104,105> for "hi". */
static const char *bin(const char *s)
{
    static char out[4][512];
    static int k;
    char *o = out[k++ % 4];
    int n = snprintf(o, 512, "#Bin<");
    for (const char *c = s; *c; c++)
        n += snprintf(o + n, (size_t)(512 - n), "%s%d", c == s ? "" : ",", (unsigned char)*c);
    snprintf(o + n, (size_t)(512 - n), ">");
    return o;
}

/* ---- reads ----------------------------------------------------------------------- */

static void sc_reads(cms_store_t *s, void *arg)
{
    (void)arg;
    char reason[64];
    add_author(s, "alice");
    add_author(s, "bob");
    for (int i = 0; i < 25; i++) {
        char title[32];
        snprintf(title, sizeof title, "Post number %02d", i);
        add_post(s, title, "Body text.", PROTO_PUBLISHED, 1000 + i, i % 2 ? "odd" : "even",
                 "#internal", i % 5 ? "alice" : "bob", i % 10 == 0);
    }
    add_post(s, "Secret draft", "x", PROTO_DRAFT, 0, NULL, NULL, NULL, false);
    start_cms(s);

    proto_post_t p = { 0 };
    ASSERT_EQ(get_post("post-number-07", &p, reason), PROTO_OK);
    ASSERT_STR_EQ(p.title, "Post number 07");
    ASSERT_STR_EQ(p.html, "<p>Body text.</p>\n");
    ASSERT_EQ(p.ntags, 1); /* #internal never leaves the CMS */
    ASSERT_STR_EQ(p.tags[0].slug, "odd");
    ASSERT_EQ(p.nauthors, 1);
    ASSERT_STR_EQ(p.authors[0].slug, "alice");
    ASSERT_EQ(p.published_at, 1007);
    proto_post_clear(&p);
    ASSERT_EQ(get_post("secret-draft", &p, reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "not_found");
    ASSERT_EQ(get_post("no-such-post", &p, reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "not_found");

    /* Default page size from the settings (10), pagination meta. */
    proto_req_t r = req(PROTO_REQ_LIST_POSTS, NULL);
    proto_post_t *v;
    int n;
    proto_pagination_t pg = { 0 };
    ASSERT_EQ(list(&r, &v, &n, &pg), PROTO_OK);
    ASSERT_EQ(n, 10);
    ASSERT_EQ(pg.total, 25);
    ASSERT_EQ(pg.pages, 3);
    ASSERT_EQ(pg.per_page, 10);
    ASSERT_STR_EQ(v[0].title, "Post number 24");
    ASSERT_NULL(v[0].html); /* lists carry summaries */
    ASSERT_NOT_NULL(v[0].excerpt);
    proto_posts_free(v, n);
    r.opts.page = 2;
    r.opts.per_page = 7;
    ASSERT_EQ(list(&r, &v, &n, &pg), PROTO_OK);
    ASSERT_EQ(n, 7);
    ASSERT_EQ(pg.pages, 4);
    ASSERT_STR_EQ(v[0].title, "Post number 17");
    proto_posts_free(v, n);
    r = req(PROTO_REQ_LIST_POSTS, NULL);
    strcpy(r.opts.tag, "even");
    strcpy(r.opts.author, "bob");
    ASSERT_EQ(list(&r, &v, &n, &pg), PROTO_OK);
    ASSERT_EQ(pg.total, 3); /* 0, 10, 20 */
    proto_posts_free(v, n);
    r = req(PROTO_REQ_LIST_POSTS, NULL);
    r.opts.featured = 1;
    ASSERT_EQ(list(&r, &v, &n, &pg), PROTO_OK);
    ASSERT_EQ(pg.total, 3);
    proto_posts_free(v, n);

    /* get_posts keeps the order. */
    r = req(PROTO_REQ_GET_POSTS, NULL);
    r.ids[0] = 3;
    r.ids[1] = 1;
    r.ids[2] = 26; /* the draft */
    r.nids = 3;
    ASSERT_EQ(list(&r, &v, &n, NULL), PROTO_OK);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(v[0].id, 3);
    ASSERT_EQ(v[1].id, 1);
    proto_posts_free(v, n);

    /* Tags, authors, settings, sitemap. */
    cn_msg_t *m;
    cn_term_t t;
    int i;
    proto_tag_t tag = { 0 };
    r = req(PROTO_REQ_GET_TAG, "odd");
    call_req(&r, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    ASSERT_EQ(proto_decode_tag(t.buf, &i, &tag), 0);
    ASSERT_EQ(tag.post_count, 12);
    proto_tag_clear(&tag);
    cn_msg_free(m);
    r = req(PROTO_REQ_GET_TAG, "hash-internal");
    call_req(&r, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "not_found");
    cn_msg_free(m);
    r = req(PROTO_REQ_LIST_TAGS, NULL);
    call_req(&r, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    char *text = xmalloc(65536);
    cn_term_print(t, text, 65536);
    ASSERT_NOT_NULL(strstr(text, bin("even")));
    ASSERT_NULL(strstr(text, bin("hash-internal")));
    cn_msg_free(m);
    proto_author_t au = { 0 };
    r = req(PROTO_REQ_GET_AUTHOR, "bob");
    call_req(&r, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    ASSERT_EQ(proto_decode_author(t.buf, &i, &au), 0);
    ASSERT_EQ(au.post_count, 5);
    proto_author_clear(&au);
    cn_msg_free(m);
    r = req(PROTO_REQ_LIST_AUTHORS, NULL);
    call_req(&r, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    cn_msg_free(m);
    proto_settings_t set = { 0 };
    r = req(PROTO_REQ_GET_SETTINGS, NULL);
    call_req(&r, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    ASSERT_EQ(proto_decode_settings(t.buf, &i, &set), 0);
    ASSERT_STR_EQ(set.title, "OneBlog");
    ASSERT_EQ(set.posts_per_page, 10);
    ASSERT_EQ(set.nnavigation, 2);
    proto_settings_clear(&set);
    cn_msg_free(m);
    r = req(PROTO_REQ_SITEMAP, NULL);
    call_req(&r, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    cn_term_print(t, text, 65536);
    ASSERT_NOT_NULL(strstr(text, bin("/post-number-00/")));
    ASSERT_NOT_NULL(strstr(text, bin("/tag/even/")));
    ASSERT_NULL(strstr(text, bin("/secret-draft/")));
    free(text);
    cn_msg_free(m);
    stop_cms();
}
TEST(reads_pagination_filters) { run_store(sc_reads, NULL); }

/* ---- search -------------------------------------------------------------------- */

static void sc_search(cms_store_t *s, void *arg)
{
    (void)arg;
    int64_t body = add_post(s, "Notes", "A long text that mentions erlang once.", PROTO_PUBLISHED,
                            100, NULL, NULL, NULL, false);
    int64_t title = add_post(s, "Erlang distribution explained", "How nodes talk.",
                             PROTO_PUBLISHED, 50, NULL, NULL, NULL, false);
    add_post(s, "Erlang draft", "erlang erlang", PROTO_DRAFT, 0, NULL, NULL, NULL, false);
    add_post(s, "Cooking", "Pasta.", PROTO_PUBLISHED, 100, NULL, NULL, NULL, false);
    start_cms(s);
    proto_req_t r = req(PROTO_REQ_SEARCH, NULL);
    strcpy(r.query, "Erlang");
    proto_post_t *v;
    int n;
    proto_pagination_t pg = { 0 };
    ASSERT_EQ(list(&r, &v, &n, &pg), PROTO_OK);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(pg.total, 2);
    ASSERT_EQ(v[0].id, title);
    ASSERT_EQ(v[1].id, body);
    proto_posts_free(v, n);
    strcpy(r.query, "\"; DROP TABLE posts; --");
    ASSERT_EQ(list(&r, &v, &n, &pg), PROTO_OK);
    proto_posts_free(v, n);
    strcpy(r.query, "pasta");
    ASSERT_EQ(list(&r, &v, &n, &pg), PROTO_OK);
    ASSERT_EQ(n, 1);
    proto_posts_free(v, n);
    stop_cms();
}
TEST(search_ranked) { run_store(sc_search, NULL); }

/* ---- bad requests ----------------------------------------------------------------- */

static void sc_bad(cms_store_t *s, void *arg)
{
    (void)arg;
    char reason[64];
    add_post(s, "Keep me", "x", PROTO_PUBLISHED, 10, NULL, NULL, NULL, false);
    start_cms(s);
    int64_t v0 = version();
    const char *bad[] = {
        "hello",           "{get_post}",          "{get_post, 42}",
        "{get_post, \"charlist\"}", "{get_post, a, b}", "{list_posts, [1]}",
        "{get_posts, [a, b]}", "{search, 1, 2}",   "{publish, notanid}",
        "{delete, -1, 2}", "{schedule, 1}",       "{subscribe, notapid}",
        "[]",              "{}",                  "{get_post, 1.5}",
        "{\"get_post\", x}", "{restore_revision, 1}", "{changed, x, y}",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int st = call_fmt(bad[k], 0, 0, reason);
        if (st != PROTO_ERROR || strcmp(reason, "bad_request") != 0)
            test__fail(__FILE__, __LINE__, "%s: status %d %s", bad[k], st, reason);
    }
    /* Binaries that are too long or not UTF-8. */
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t t;
    int i;
    char big[400];
    memset(big, 'a', sizeof big);
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "get_post");
    ei_x_encode_binary(&x, big, sizeof big);
    call_x(&x, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "bad_request");
    cn_msg_free(m);
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "get_tag");
    ei_x_encode_binary(&x, "\xff", 1);
    call_x(&x, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "bad_request");
    cn_msg_free(m);
    /* Unknown ids are not_found, not bad requests. */
    ASSERT_EQ(call_fmt("{publish, ~l}", 999, 0, reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "not_found");
    /* Nothing was harmed. */
    proto_post_t p = { 0 };
    ASSERT_EQ(get_post("keep-me", &p, reason), PROTO_OK);
    proto_post_clear(&p);
    ASSERT_EQ(version(), v0);
    stop_cms();
}
TEST(bad_requests_harm_nothing) { run_store(sc_bad, NULL); }

/* ---- notifications --------------------------------------------------------------- */

typedef struct watch {
    int got;                 /* content_changed messages received */
    long long last_version;
    char last_paths[1024];
    bool subscribed, stop;
    bool ended;              /* the subscriber has returned: w may be freed */
} watch_t;

static void subscriber(void *arg)
{
    watch_t *w = arg;
    proto_req_t r = req(PROTO_REQ_SUBSCRIBE, NULL);
    cn_msg_t *m;
    cn_term_t t;
    r.pid = cn_self();
    call_req(&r, &m, &t);
    cn_msg_free(m);
    w->subscribed = true;
    while (!w->stop) {
        if (cn_receive(NULL, NULL, 50, &m) < 0)
            continue;
        cn_term_t mt = cn_msg_term(m);
        int i = mt.index, arity;
        long long v;
        if (ei_decode_tuple_header(mt.buf, &i, &arity) == 0 && arity == 3 &&
            cn_decode_atom_is(mt.buf, &i, "content_changed") &&
            ei_decode_longlong(mt.buf, &i, &v) == 0) {
            w->got++;
            w->last_version = v;
            cn_term_t pt = { mt.buf, i, mt.len };
            cn_term_print(pt, w->last_paths, sizeof w->last_paths);
        }
        cn_msg_free(m);
    }
    w->ended = true;
}

/* Wait (20 s at most: the store works on other threads, slow under ASan on a
 * loaded machine) until the watcher has seen `n` notifications. */
static void wait_for(watch_t *w, int n)
{
    WAIT_UNTIL(w->got >= n, 20000, cn_sleep(5));
}

/* Stop the watcher and wait until it has returned, so that w can be freed. */
static void stop_watch(watch_t *w)
{
    w->stop = true;
    ASSERT(WAIT_UNTIL(w->ended, 20000, cn_sleep(5)));
}

static void sc_notify(cms_store_t *s, void *arg)
{
    (void)arg;
    char reason[64];
    int64_t id = add_post(s, "To be published", "x", PROTO_DRAFT, 0, "news", NULL, NULL, false);
    start_cms(s);
    watch_t *w = xcalloc(1, sizeof(*w)), *w2 = xcalloc(1, sizeof(*w2));
    cn_pid_t pid2;
    ASSERT_EQ(cn_spawn(cn_node_self(), subscriber, w, NULL, NULL), 0);
    ASSERT_EQ(cn_spawn(cn_node_self(), subscriber, w2, NULL, &pid2), 0);
    ASSERT(WAIT_UNTIL(w->subscribed && w2->subscribed, 20000, cn_sleep(5)));

    ASSERT_EQ(call_fmt("{publish, ~l}", id, 0, reason), PROTO_OK);
    wait_for(w, 1);
    ASSERT_EQ(w->got, 1);
    ASSERT_EQ(w->last_version, 1);
    ASSERT_NOT_NULL(strstr(w->last_paths, bin("/to-be-published/")));
    ASSERT_NOT_NULL(strstr(w->last_paths, bin("/tag/news/")));
    wait_for(w2, 1);
    ASSERT_EQ(w2->got, 1);

    /* A dead subscriber is dropped; the others still hear. */
    ASSERT_EQ(cn_exit_pid(pid2, "kill"), 0);
    cn_sleep(10);
    ASSERT_EQ(call_fmt("{unpublish, ~l}", id, 0, reason), PROTO_OK);
    wait_for(w, 2);
    ASSERT_EQ(w->got, 2);
    ASSERT_EQ(w->last_version, 2);

    /* Editing a draft is invisible to readers: no notification. */
    int64_t v = version();
    ASSERT_EQ(call_fmt("{publish, ~l}", id, 0, reason), PROTO_OK);
    wait_for(w, 3);
    ASSERT_EQ(w->got, 3);
    ASSERT_EQ(call_fmt("{delete, ~l}", id, 0, reason), PROTO_OK);
    wait_for(w, 4);
    ASSERT_EQ(w->got, 4);
    ASSERT_EQ(w->last_version, v + 2);
    int64_t draft = add_post(s, "Quiet draft", "x", PROTO_DRAFT, 0, NULL, NULL, NULL, false);
    ASSERT_EQ(call_fmt("{delete, ~l}", draft, 0, reason), PROTO_OK);
    cn_sleep(20);
    ASSERT_EQ(w->got, 4);
    /* A local writer announces its own change. */
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t t;
    int i;
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "changed");
    ei_x_encode_longlong(&x, 99);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_binary(&x, "/x/", 3);
    ei_x_encode_empty_list(&x);
    call_x(&x, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    cn_msg_free(m);
    wait_for(w, 5);
    ASSERT_EQ(w->last_version, 99);
    stop_cms();
    stop_watch(w); /* (w2 was killed) */
    free(w);
    free(w2);
}
TEST(content_changed_notifications) { run_store(sc_notify, NULL); }

/* ---- scheduling ------------------------------------------------------------------ */

static int64_t publish_due_call(void)
{
    cn_msg_t *m;
    cn_term_t t;
    int i, n;
    long pub = -1;
    char reason[64];
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "publish_due");
    call_x(&x, &m, &t);
    ASSERT_EQ(reply_status(t, &i, reason), PROTO_OK);
    ASSERT_EQ(ei_decode_map_header(t.buf, &i, &n), 0);
    ASSERT(cn_decode_atom_is(t.buf, &i, "published"));
    ASSERT_EQ(ei_decode_long(t.buf, &i, &pub), 0);
    cn_msg_free(m);
    return pub;
}

static void sc_schedule(cms_store_t *s, void *arg)
{
    (void)arg;
    char reason[64];
    proto_post_t p = { 0 };
    fake_now = 1700000000;
    int64_t id = add_post(s, "Scheduled", "x", PROTO_DRAFT, 0, NULL, NULL, NULL, false);
    start_cms(s);
    watch_t *w = xcalloc(1, sizeof(*w));
    ASSERT_EQ(cn_spawn(cn_node_self(), subscriber, w, NULL, NULL), 0);
    ASSERT(WAIT_UNTIL(w->subscribed, 20000, cn_sleep(5)));
    ASSERT_EQ(call_fmt("{schedule, ~l, ~l}", id, fake_now - 10, reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "bad_request"); /* the past */
    ASSERT_EQ(call_fmt("{schedule, ~l, ~l}", id, fake_now + 3600, reason), PROTO_OK);
    ASSERT_EQ(publish_due_call(), 0);
    ASSERT_EQ(get_post("scheduled", &p, reason), PROTO_ERROR);
    fake_now += 3600; /* its time has come */
    ASSERT_EQ(publish_due_call(), 1);
    ASSERT_EQ(publish_due_call(), 0);
    ASSERT_EQ(publish_due_call(), 0);
    wait_for(w, 1);
    cn_sleep(20);
    ASSERT_EQ(w->got, 1); /* exactly one notification */
    ASSERT_EQ(get_post("scheduled", &p, reason), PROTO_OK);
    ASSERT_EQ(p.published_at, fake_now);
    proto_post_clear(&p);
    int64_t v = version();

    /* Across a restart: a post falls due while the CMS is down; starting the
     * server publishes it, once. */
    stop_cms();
    stop_watch(w);
    int64_t id2 = add_post(s, "While down", "x", PROTO_DRAFT, 0, NULL, NULL, NULL, false);
    cms_change_t chg = { 0 };
    char err[CMS_ERR_LEN];
    ASSERT_EQ(cms_post_schedule(s, id2, fake_now + 60, fake_now, &chg, err), 0);
    fake_now += 7200;
    start_cms(s);
    ASSERT_EQ(get_post("while-down", &p, reason), PROTO_OK);
    ASSERT_EQ(p.published_at, fake_now - 7200 + 60);
    proto_post_clear(&p);
    ASSERT_EQ(version(), v + 1);
    ASSERT_EQ(publish_due_call(), 0);
    ASSERT_EQ(version(), v + 1);
    stop_cms();
    free(w);
}
TEST(scheduled_post_exactly_once_and_across_restart) { run_store(sc_schedule, NULL); }

/* ---- concurrent reads ------------------------------------------------------------ */

/* Reads are answered by reader processes beside the server: many callers at once
 * all get right answers, a write in their midst is seen by every read that starts
 * after its reply, and the server answers while the readers are busy. */
typedef struct conc {
    int done, bad;
    cn_pid_t parent;
} conc_t;

static conc_t conc;

static void conc_caller(void *arg)
{
    int k = (int)(intptr_t)arg;
    char reason[64], slug[32];
    for (int i = 0; i < 20; i++) {
        proto_post_t p = { 0 };
        snprintf(slug, sizeof slug, "conc-%d", (k + i) % 8);
        if (get_post(slug, &p, reason) != PROTO_OK || strcmp(p.slug, slug) != 0)
            conc.bad++;
        proto_post_clear(&p);
        proto_req_t r = req(PROTO_REQ_LIST_POSTS, NULL);
        proto_post_t *v = NULL;
        int n = 0;
        proto_pagination_t pg;
        if (list(&r, &v, &n, &pg) != PROTO_OK || n < 8 || n > 9 || pg.total < 8)
            conc.bad++;
        proto_posts_free(v, n);
    }
    conc.done++;
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "conc_done");
    cn_send(conc.parent, &x);
}

static void sc_concurrent(cms_store_t *s, void *arg)
{
    (void)arg;
    char reason[64];
    add_author(s, "carol");
    for (int i = 0; i < 8; i++) {
        char title[32];
        snprintf(title, sizeof title, "conc %d", i);
        add_post(s, title, "Body.", PROTO_PUBLISHED, fake_now - 100 + i, NULL, NULL, "carol",
                 false);
    }
    int64_t draft = add_post(s, "conc late", "Late.", PROTO_DRAFT, 0, NULL, NULL, "carol", false);
    start_cms(s);
    conc = (conc_t){ 0, 0, cn_self() };
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    for (int k = 0; k < 16; k++)
        ASSERT_EQ(cn_spawn(cn_node_self(), conc_caller, (void *)(intptr_t)k, &own, NULL), 0);
    /* The server is not stuck behind the reads: a write goes through meanwhile, and
     * a read after its reply sees it. */
    ASSERT_EQ(call_fmt("{publish, ~l}", draft, 0, reason), PROTO_OK);
    proto_post_t p = { 0 };
    ASSERT_EQ(get_post("conc-late", &p, reason), PROTO_OK);
    proto_post_clear(&p);
    for (int k = 0; k < 16; k++) {
        cn_msg_t *m = NULL;
        ASSERT_EQ(cn_receive(NULL, NULL, 60000, &m), 0);
        cn_msg_free(m);
    }
    ASSERT_EQ(conc.done, 16);
    ASSERT_EQ(conc.bad, 0);
    stop_cms();
}
TEST(concurrent_reads_beside_writes) { run_store(sc_concurrent, NULL); }

/* ---- the reply cache follows the content version --------------------------------- */

/* Replies are cached per content version (cms/reply_cache.c): every write readers
 * can see moves the version, so no answer read before a change may come back
 * after it. */
static void sc_reply_cache(cms_store_t *s, void *arg)
{
    (void)arg;
    char reason[64], err[CMS_ERR_LEN];
    int64_t a = add_post(s, "Cached title", "body a", PROTO_PUBLISHED, fake_now - 100, "news",
                         NULL, NULL, false);
    int64_t b = add_post(s, "Second post", "body b", PROTO_PUBLISHED, fake_now - 50, "news", NULL,
                         NULL, false);
    start_cms(s);
    proto_post_t p = { 0 }, *v = NULL;
    int n = 0;
    proto_pagination_t pg;
    proto_req_t lr = req(PROTO_REQ_LIST_POSTS, NULL);
    /* Twice each: the second answers come from the cache. */
    for (int k = 0; k < 2; k++) {
        ASSERT_EQ(get_post("cached-title", &p, reason), PROTO_OK);
        ASSERT_STR_EQ(p.title, "Cached title");
        proto_post_clear(&p);
        memset(&p, 0, sizeof p);
        ASSERT_EQ(list(&lr, &v, &n, &pg), PROTO_OK);
        ASSERT_EQ(pg.total, 2);
        proto_posts_free(v, n);
    }
    /* An edit through the store (as the admin does) ... */
    ASSERT_EQ(cms_post_get(s, a, &p, err), 0);
    free(p.title);
    p.title = xstrdup("Edited title");
    cms_save_opts_t o = { .role = CMS_ROLE_EDITOR, .now = fake_now };
    ASSERT_EQ(cms_post_save(s, &p, &o, NULL, err), 0);
    proto_post_clear(&p);
    memset(&p, 0, sizeof p);
    /* ... is what readers see next, for the post and in lists. */
    ASSERT_EQ(get_post("cached-title", &p, reason), PROTO_OK);
    ASSERT_STR_EQ(p.title, "Edited title");
    proto_post_clear(&p);
    memset(&p, 0, sizeof p);
    ASSERT_EQ(list(&lr, &v, &n, &pg), PROTO_OK);
    ASSERT_EQ(n, 2);
    ASSERT(strcmp(v[0].title, "Edited title") == 0 || strcmp(v[1].title, "Edited title") == 0);
    proto_posts_free(v, n);
    /* An unpublish through `cms`: gone from get_post and from the list. */
    ASSERT_EQ(call_fmt("{unpublish, ~l}", b, 0, reason), PROTO_OK);
    ASSERT_EQ(get_post("second-post", &p, reason), PROTO_ERROR);
    ASSERT_STR_EQ(reason, "not_found");
    ASSERT_EQ(list(&lr, &v, &n, &pg), PROTO_OK);
    ASSERT_EQ(pg.total, 1);
    proto_posts_free(v, n);
    stop_cms();
}
TEST(reply_cache_follows_the_content_version) { run_store(sc_reply_cache, NULL); }
